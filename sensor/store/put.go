package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/tidwall/buntdb"

	"github.com/peerwatch/peerwatch/sensor/summary"
	"github.com/peerwatch/peerwatch/sensor/wallclock"
)

// Put stores the summary of one interval: its raw record, and the record
// of every rollup window that the interval closes (one that ends at or
// before the interval's End and has no record yet), built from the next
// finer level. Every record has a TTL that ends its level's retention after
// the end of its window; a window already past its retention is skipped.
//
// origin identifies the datapath interval. When its instance is that of the
// last interval stored and its generation is not above that one's, the
// interval was stored already (the datapath hands it out again after a
// daemon crash): Put returns stored=false and changes nothing. Any other
// instance (new counter maps, after a reboot) is accepted.
//
// When s.Seq is 0, Put sets it to the next sequence number of the store;
// otherwise s.Seq must be above the sequence number of the last interval
// stored (NextSeq hands such numbers out). A duplicate keeps s.Seq as it
// was, so that no number is spent on it.
//
// Put sets s.OutboxDropped to the outbox items dropped since the store was
// made (kept in the store): a count that only grows, so a summary that is
// itself dropped loses no report.
//
// Put refuses (ErrRefused) a summary whose totals do not reconcile
// (summary.Check), of another schema, without End, or an origin without
// instance. When Put fails after it journaled the summary, s.Seq stays set
// so that a retry keeps the number, and the journal is completed at the
// next Open unless another Put came first.
func (st *Store) Put(s *summary.Summary, origin Origin) (stored bool, err error) {
	if err := checkPut(s, origin); err != nil {
		return false, err
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closed {
		return false, ErrClosed
	}
	if origin.Instance == st.origin.Instance && origin.Generation <= st.origin.Generation {
		st.log.Info("interval already stored, not storing it again", "instance", origin.Instance,
			"generation", origin.Generation, "last_generation", st.origin.Generation)
		return false, nil
	}
	seq := s.Seq
	if seq == 0 {
		seq = st.next
	} else if seq <= st.origin.Seq {
		return false, fmt.Errorf("put interval ending %s: %w: %d <= %d", s.End.UTC().Format(time.RFC3339), ErrSeqOrder, seq, st.origin.Seq)
	}
	if err := st.countOutbox(); err != nil {
		return false, fmt.Errorf("put interval %d: %w", seq, err)
	}
	rec := *s
	rec.Seq, rec.Start, rec.End = seq, s.Start.UTC(), s.End.UTC()
	rec.OutboxDropped = st.ob.total
	p := &pendingRecord{Origin: origin, Summary: &rec}
	pj, err := json.Marshal(p)
	if err != nil {
		return false, fmt.Errorf("put interval %d: %w", seq, err)
	}
	next := max(st.next, seq+1)
	// The journal record and the sequence number reach the disk before the
	// rollups change: a crash from here on is completed by Open, and no
	// sequence number is handed out twice, even after a power loss.
	if err := st.syncedUpdate(func(tx *buntdb.Tx) error {
		if _, _, err := tx.Set(keyPending, string(pj), nil); err != nil {
			return err
		}
		_, _, err := tx.Set(keySeq, strconv.FormatUint(next, 10), nil)
		return err
	}); err != nil {
		return false, fmt.Errorf("put interval %d: journal: %w", seq, closedErr(err))
	}
	s.Seq, s.OutboxDropped, st.next = seq, rec.OutboxDropped, next
	if err := st.db.Update(func(tx *buntdb.Tx) error { return st.apply(tx, p, wallclock.Now()) }); err != nil {
		return false, fmt.Errorf("put interval %d: %w", seq, closedErr(err))
	}
	st.origin = originRecord{origin, seq}
	if err := st.dropPending(); err != nil {
		return true, fmt.Errorf("put interval %d: %w", seq, err)
	}
	st.enforceCap()
	return true, nil
}

func checkPut(s *summary.Summary, origin Origin) error {
	switch {
	case s == nil:
		return fmt.Errorf("%w: nil summary", ErrRefused)
	case s.Schema != summary.SchemaVersion:
		return fmt.Errorf("%w: summary schema %d, the store keeps %d", ErrRefused, s.Schema, summary.SchemaVersion)
	case s.End.IsZero():
		return fmt.Errorf("%w: summary without End", ErrRefused)
	case s.End.Unix() <= 0 || s.End.Year() >= 2262:
		return fmt.Errorf("%w: summary End %s out of range", ErrRefused, s.End.UTC().Format(time.RFC3339))
	case !s.Start.IsZero() && s.End.Before(s.Start):
		return fmt.Errorf("%w: summary ends before it starts", ErrRefused)
	case origin.Instance == 0:
		return fmt.Errorf("%w: origin without instance", ErrRefused)
	}
	if err := s.Check(); err != nil {
		return fmt.Errorf("%w: %w", ErrRefused, err)
	}
	return nil
}

// apply writes the journaled interval's raw record, closes the rollup
// windows that end at or before its End (finest level first), and records
// its origin. A rollup window of the interval that is closed already gets
// the interval merged into its record; one that is still open gets nothing
// now. It is idempotent: a record whose Seq is not below the interval's
// already holds it, and a closed window is not closed again.
func (st *Store) apply(tx *buntdb.Tx, p *pendingRecord, now time.Time) error {
	s := p.Summary
	if err := st.mergeInto(tx, 0, s, now); err != nil {
		return err
	}
	for i := 1; i < len(st.opts.Levels); i++ {
		front, err := st.frontier(tx, i, now)
		if err != nil {
			return err
		}
		if _, winEnd := st.place(i, s.End); st.eager(i) || winEnd.UnixNano() <= front {
			if err := st.mergeInto(tx, i, s, now); err != nil {
				return err
			}
			continue
		}
		if _, err := st.closeLevel(tx, i, nanos(s.End), now); err != nil {
			return err
		}
	}
	b, _ := json.Marshal(originRecord{p.Origin, s.Seq})
	_, _, err := tx.Set(keyOrigin, string(b), nil)
	return err
}

func (st *Store) dropPending() error {
	err := st.db.Update(func(tx *buntdb.Tx) error {
		_, err := tx.Delete(keyPending)
		if errors.Is(err, buntdb.ErrNotFound) {
			return nil
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("drop the journal record: %w", closedErr(err))
	}
	return nil
}

// NextSeq hands out the next sequence number of the store. Numbers increase
// strictly, across Close and Open and across a power loss (the number is on
// the disk before NextSeq returns, unless the policy is SyncNever). Put
// numbers the summaries it stores itself when their Seq is 0.
func (st *Store) NextSeq() (uint64, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closed {
		return 0, ErrClosed
	}
	seq := st.next
	if err := st.syncedUpdate(func(tx *buntdb.Tx) error {
		_, _, err := tx.Set(keySeq, strconv.FormatUint(seq+1, 10), nil)
		return err
	}); err != nil {
		return 0, fmt.Errorf("next sequence number: %w", closedErr(err))
	}
	st.next = seq + 1
	return seq, nil
}

// newestSeq returns the largest Seq of the newest record of each level, a
// floor for the next sequence number.
func (st *Store) newestSeq() (uint64, error) {
	var seq uint64
	now := wallclock.Now()
	err := st.view(func(tx *buntdb.Tx) error {
		for i := range st.opts.Levels {
			s, err := st.newest(tx, i, now)
			if err != nil && !errors.Is(err, ErrNoData) {
				return err
			}
			if s != nil {
				seq = max(seq, s.Seq)
			}
		}
		return nil
	})
	return seq, err
}

func closedErr(err error) error {
	if errors.Is(err, buntdb.ErrDatabaseClosed) {
		return ErrClosed
	}
	return err
}

// Keys. Raw records are "iv:<End in Unix nanoseconds, 20 digits>", rollups
// "r:<level>:<window start in Unix seconds, 12 digits>": in both, key order
// is time order.
const (
	prefixRaw    = "iv:"
	prefixRollup = "r:"
)

func rawKey(endNanos int64) string { return fmt.Sprintf("%s%020d", prefixRaw, endNanos) }

func rollupKey(level string, startSec int64) string {
	return fmt.Sprintf("%s%s:%012d", prefixRollup, level, startSec)
}

func rollupPrefix(level string) string { return prefixRollup + level + ":" }

// ownKey reports whether key is one of the store's records.
func ownKey(key string) bool {
	return strings.HasPrefix(key, prefixRaw) || strings.HasPrefix(key, prefixRollup) || strings.HasPrefix(key, "meta:")
}

// keyTime parses the number at the end of a key.
func keyTime(key string) (int64, bool) {
	i := strings.LastIndexByte(key, ':')
	n, err := strconv.ParseInt(key[i+1:], 10, 64)
	return n, err == nil
}

// place returns the key of the record of level i that holds an interval
// ending at end, and the end of that record's window.
func (st *Store) place(i int, end time.Time) (string, time.Time) {
	if i == 0 {
		return rawKey(end.UnixNano()), end
	}
	l := st.opts.Levels[i]
	start := floorDiv(end.UnixNano()-1, int64(l.Width)) * int64(l.Width)
	return rollupKey(l.Name, start/1e9), time.Unix(0, start).Add(l.Width)
}

const maxNanos = math.MaxInt64 - 1

// nanos clamps t to the Unix nanoseconds the keys can hold.
func nanos(t time.Time) int64 {
	switch {
	case t.Unix() < 0:
		return 0
	case t.Year() >= 2262:
		return maxNanos
	}
	return t.UnixNano()
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

func ceilDiv(a, b int64) int64 { return -floorDiv(-a, b) }

func decode(key, val string) (*summary.Summary, error) {
	var s summary.Summary
	if err := json.Unmarshal([]byte(val), &s); err != nil {
		return nil, fmt.Errorf("%w: record %s: %w", ErrDamaged, key, err)
	}
	return &s, nil
}
