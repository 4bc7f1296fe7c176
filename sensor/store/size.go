package store

import (
	"cmp"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/tidwall/buntdb"
)

// evictLogEvery rate-limits the warning about evicted records.
const evictLogEvery = time.Minute

// evictTarget is the share of MaxSize that eviction brings the records
// down to, so that the file has room to grow before the next rewrite.
const evictTarget = 0.9

// enforceCap keeps the file under MaxSize. When it is over, the oldest
// records (by the end of their window, all levels together, but never the
// newest record of a level) are deleted until the records would take less
// than 90% of the cap, and buntdb rewrites the file without what was
// replaced, deleted or expired. st.mu is held.
func (st *Store) enforceCap() {
	size := st.fileSize()
	if size <= st.opts.MaxSize {
		return
	}
	target := int64(float64(st.opts.MaxSize) * evictTarget)
	var evicted uint64
	for round := 0; size > st.opts.MaxSize && round < 4; round++ {
		// In the first round only what the rewrite would not bring under
		// the target; later rounds correct an estimate that was short.
		n, left, err := st.evict(target, round > 0)
		if err != nil {
			st.log.Error("evict records over the size cap", "path", st.path, "err", err)
			return
		}
		evicted += n
		if err := st.shrink(); err != nil {
			st.log.Error("rewrite store file", "path", st.path, "err", err)
			return
		}
		size = st.fileSize()
		if size > st.opts.MaxSize && !left {
			st.log.Error("store file over its size cap with only the newest record of each level left",
				"path", st.path, "file_size", size, "max_size", st.opts.MaxSize)
			break
		}
	}
	if evicted == 0 {
		return
	}
	st.evicted += evicted
	st.evictedSinceLog += evicted
	if now := time.Now(); now.Sub(st.lastEvictLog) >= evictLogEvery {
		st.log.Warn("store file reached its size cap: evicted the oldest records", "path", st.path,
			"evicted", st.evictedSinceLog, "evicted_total", st.evicted, "file_size", size, "max_size", st.opts.MaxSize)
		st.lastEvictLog, st.evictedSinceLog = now, 0
	}
}

// evict deletes the oldest records until the estimated size of all records
// (what a rewrite leaves) is under target, or, with force, at least the
// oldest one. It keeps the newest record of each level, returns how many
// it deleted and whether any record could still go.
func (st *Store) evict(target int64, force bool) (n uint64, left bool, err error) {
	type candidate struct {
		key  string
		end  int64 // end of the record's window, nanoseconds
		size int64
	}
	width := map[string]int64{}
	for _, l := range st.opts.Levels[1:] {
		width[l.Name] = int64(l.Width)
	}
	var cands []candidate
	var total int64
	newest := map[string]int{} // level prefix of a key → index of its newest record
	err = st.view(func(tx *buntdb.Tx) error {
		return tx.Ascend("", func(k, v string) bool {
			// The size of the record in a rewritten file: the key, the
			// value and the RESP framing of "set key value ae n".
			size := int64(len(k)+len(v)) + 64
			total += size
			t, ok := keyTime(k)
			if !ok || !(strings.HasPrefix(k, prefixRaw) || strings.HasPrefix(k, prefixRollup)) {
				return true
			}
			level := k[:strings.LastIndexByte(k, ':')+1]
			end := t
			if strings.HasPrefix(k, prefixRollup) {
				// A level no longer configured sorts by its window start.
				end = t*1e9 + width[strings.TrimSuffix(strings.TrimPrefix(level, prefixRollup), ":")]
			}
			newest[level] = len(cands) // keys ascend within a level
			cands = append(cands, candidate{k, end, size})
			return true
		})
	})
	if err != nil {
		return 0, false, err
	}
	keep := map[int]bool{}
	for _, i := range newest {
		keep[i] = true
	}
	var old []candidate
	for i, c := range cands {
		if !keep[i] {
			old = append(old, c)
		}
	}
	slices.SortFunc(old, func(a, b candidate) int { return cmp.Or(cmp.Compare(a.end, b.end), strings.Compare(a.key, b.key)) })
	err = st.db.Update(func(tx *buntdb.Tx) error {
		for _, c := range old {
			if total <= target && !(force && n == 0) {
				break
			}
			if _, err := tx.Delete(c.key); err != nil && !errors.Is(err, buntdb.ErrNotFound) {
				return err
			}
			total -= c.size
			n++
		}
		return nil
	})
	if err != nil {
		return 0, false, closedErr(err)
	}
	return n, int(n) < len(old), nil
}

// shrink rewrites the file, waiting for a rewrite that buntdb runs in the
// background to finish first.
func (st *Store) shrink() error {
	for range 100 {
		err := st.db.Shrink()
		if !errors.Is(err, buntdb.ErrShrinkInProcess) {
			return closedErr(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return buntdb.ErrShrinkInProcess
}
