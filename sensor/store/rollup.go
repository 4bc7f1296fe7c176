package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/tidwall/buntdb"

	"github.com/peerwatch/peerwatch/sensor/summary"
	"github.com/peerwatch/peerwatch/sensor/wallclock"
)

// Rollup records are written once, when their window closes: Put closes
// the windows of every rollup level that end at or before the End of the
// interval it stores (finest level first), and Open closes those that end
// before the clock or the newest interval. A window is built by merging the
// records of the next finer level within it (cover: whole windows of that
// level, filled from finer levels where one has no record yet). Until then
// the window is open: queries compute it on the fly the same way.
//
// A level's frontier is the end of the window of its newest record. Every
// window before the frontier is closed; a window at or after it that holds
// finer records is open. An interval placed in a closed window (its End
// went backwards, or it arrived after a restart closed its window) is
// merged into that window's record, as every interval was before.

// eager reports whether level i is written on every Put instead of when
// its windows close: the next finer level does not keep its records for a
// whole window of level i, so they could expire before the window closes.
func (st *Store) eager(i int) bool {
	return i > 0 && st.opts.Levels[i-1].Retention < st.opts.Levels[i].Width
}

// frontier returns the end of the window of the newest live record of
// rollup level i, in Unix nanoseconds (0 when the level has none).
func (st *Store) frontier(tx *buntdb.Tx, i int, now time.Time) (int64, error) {
	prefix := rollupPrefix(st.opts.Levels[i].Name)
	var front int64
	err := tx.DescendRange("", prefix+strings.Repeat("9", 12), prefix, func(k, _ string) bool {
		if t, ok := keyTime(k); ok && st.live(i, t, now) {
			front = t*1e9 + int64(st.opts.Levels[i].Width)
			return false
		}
		return true
	})
	return front, err
}

// openWindows returns the starts (Unix nanoseconds, ascending) of the open
// windows of rollup level i that hold data and are still within their
// retention.
func (st *Store) openWindows(tx *buntdb.Tx, i int, now time.Time) ([]int64, error) {
	if i == 0 || st.eager(i) {
		return nil, nil
	}
	l := st.opts.Levels[i]
	w := int64(l.Width)
	front, err := st.frontier(tx, i, now)
	if err != nil {
		return nil, err
	}
	var starts []int64
	addStart := func(ws int64) {
		if ws >= front && time.Unix(0, ws+w).Add(l.Retention).After(now) {
			starts = append(starts, ws)
		}
	}
	lo := front // a finer rollup's window start
	if i == 1 {
		lo = front + 1 // a raw record's End
	}
	if err := st.scanLevel(tx, i-1, lo, maxNanos, now, func(k, _ string) error {
		t, _ := keyTime(k)
		if i == 1 {
			addStart(floorDiv(t-1, w) * w)
		} else {
			addStart(floorDiv(t*1e9, w) * w)
		}
		return nil
	}); err != nil {
		return nil, err
	}
	finer, err := st.openWindows(tx, i-1, now)
	if err != nil {
		return nil, err
	}
	for _, s := range finer {
		addStart(floorDiv(s, w) * w)
	}
	slices.Sort(starts)
	return slices.Compact(starts), nil
}

// buildWindow merges the records of the levels finer than i that hold the
// window of level i starting at ws: the record the window gets when it
// closes, or its value while it is open. It returns nil when the window
// holds no data.
func (st *Store) buildWindow(tx *buntdb.Tx, i int, ws int64, now time.Time) (*summary.Summary, error) {
	var rec *summary.Summary
	err := st.cover(tx, i-1, ws, ws+int64(st.opts.Levels[i].Width), now, func(s *summary.Summary) {
		if rec == nil {
			rec = &summary.Summary{Schema: s.Schema, Sensor: s.Sensor}
		}
		rec.Merge(s)
		rec.TopN(st.opts.TopN)
	})
	return rec, err
}

// closeLevel writes the record of every open window of rollup level i that
// ends at or before limit (Unix nanoseconds). The finer levels must have
// been closed up to limit first. It returns how many records it wrote.
func (st *Store) closeLevel(tx *buntdb.Tx, i int, limit int64, now time.Time) (int, error) {
	starts, err := st.openWindows(tx, i, now)
	if err != nil {
		return 0, err
	}
	l := st.opts.Levels[i]
	n := 0
	for _, ws := range starts {
		end := time.Unix(0, ws).Add(l.Width)
		if end.UnixNano() > limit {
			break
		}
		ttl := end.Add(l.Retention).Sub(now)
		if ttl <= 0 {
			continue
		}
		rec, err := st.buildWindow(tx, i, ws, now)
		if err != nil {
			return n, err
		}
		if rec == nil {
			continue
		}
		key := rollupKey(l.Name, ws/1e9)
		if err := st.setRecord(tx, key, rec, ttl); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// closeWindows closes the open windows of every rollup level that end at
// or before limit, finest level first.
func (st *Store) closeWindows(tx *buntdb.Tx, limit int64, now time.Time) (int, error) {
	n := 0
	for i := 1; i < len(st.opts.Levels); i++ {
		k, err := st.closeLevel(tx, i, limit, now)
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// closeAtOpen closes the windows that a crash or a stop left open and that
// no interval can complete any more: those that end before the clock, or
// before the newest interval stored. Closing is idempotent: a closed window
// has a record and is not open any more.
func (st *Store) closeAtOpen() error {
	now := wallclock.Now()
	var n int
	err := st.db.Update(func(tx *buntdb.Tx) error {
		limit := nanos(now)
		if s, err := st.newest(tx, 0, now); err == nil {
			limit = max(limit, nanos(s.End))
		} else if !errors.Is(err, ErrNoData) {
			return err
		}
		var err error
		n, err = st.closeWindows(tx, limit, now)
		return err
	})
	if err != nil {
		return fmt.Errorf("close the rollup windows left open: %w", err)
	}
	if n > 0 {
		st.log.Info("closed the rollup windows that a stop or a crash left open", "records", n)
	}
	return nil
}

// mergeInto merges s into the record of level i that holds it (the raw
// record for level 0), unless that record holds it already (its Seq is
// not below s.Seq) or the window is past its retention.
func (st *Store) mergeInto(tx *buntdb.Tx, i int, s *summary.Summary, now time.Time) error {
	key, winEnd := st.place(i, s.End)
	ttl := winEnd.Add(st.opts.Levels[i].Retention).Sub(now)
	if ttl <= 0 {
		return nil // would expire at once
	}
	var rec *summary.Summary
	old, err := tx.Get(key)
	switch {
	case errors.Is(err, buntdb.ErrNotFound):
		if i == 0 {
			rec = s
		} else {
			rec = &summary.Summary{Schema: s.Schema, Sensor: s.Sensor}
			rec.Merge(s)
			rec.TopN(st.opts.TopN)
		}
	case err != nil:
		return err
	default:
		if rec, err = decode(key, old); err != nil {
			return err
		}
		if rec.Seq >= s.Seq {
			return nil // holds this interval already
		}
		// Two intervals ending at the same instant, or one placed in a
		// window that is closed already: merge them.
		rec.Merge(s)
		rec.TopN(st.opts.TopN)
	}
	return st.setRecord(tx, key, rec, ttl)
}

func (st *Store) setRecord(tx *buntdb.Tx, key string, rec *summary.Summary, ttl time.Duration) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode %s: %w", key, err)
	}
	_, _, err = tx.Set(key, string(b), &buntdb.SetOptions{Expires: true, TTL: ttl})
	return err
}
