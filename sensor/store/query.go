package store

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/tidwall/buntdb"

	"github.com/peerwatch/peerwatch/sensor/summary"
	"github.com/peerwatch/peerwatch/sensor/wallclock"
)

// Intervals returns the raw records of the intervals that end in
// (from, to], oldest first.
func (st *Store) Intervals(from, to time.Time) ([]*summary.Summary, error) {
	var out []*summary.Summary
	err := st.view(func(tx *buntdb.Tx) error {
		return st.scanLevel(tx, 0, nanos(from)+1, nanos(to)+1, wallclock.Now(), func(k, v string) error {
			s, err := decode(k, v)
			if err == nil {
				out = append(out, s)
			}
			return err
		})
	})
	if err != nil {
		return nil, fmt.Errorf("intervals: %w", err)
	}
	return out, nil
}

// Series returns the records of a level whose windows overlap [from, to),
// oldest first. For the raw level it is Intervals. The windows that are
// still open (the current one, usually) have no record yet; Series
// computes them from the finer levels, as they will be written when they
// close. A record's Start and End are those of the intervals merged into
// it, which may reach past its window by the part of an interval that
// straddles the window's start.
func (st *Store) Series(level string, from, to time.Time) ([]*summary.Summary, error) {
	i := slices.IndexFunc(st.opts.Levels, func(l Level) bool { return l.Name == level })
	switch {
	case i < 0:
		return nil, fmt.Errorf("series: %w %q", ErrUnknownLevel, level)
	case i == 0:
		return st.Intervals(from, to)
	}
	w := int64(st.opts.Levels[i].Width)
	lo, hi := floorDiv(nanos(from), w)*w, nanos(to)
	var out []*summary.Summary
	now := wallclock.Now()
	err := st.view(func(tx *buntdb.Tx) error {
		if err := st.scanLevel(tx, i, lo, hi, now, func(k, v string) error {
			s, err := decode(k, v)
			if err == nil {
				out = append(out, s)
			}
			return err
		}); err != nil {
			return err
		}
		// The open windows come after every written one.
		open, err := st.openWindows(tx, i, now)
		if err != nil {
			return err
		}
		for _, ws := range open {
			if ws < lo || ws >= hi {
				continue
			}
			s, err := st.buildWindow(tx, i, ws, now)
			if err != nil {
				return err
			}
			if s != nil {
				out = append(out, s)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("series %s: %w", level, err)
	}
	return out, nil
}

// Window returns one summary of the intervals that end in (from, to]: the
// whole windows of the coarsest level that fit, then finer levels towards
// the edges, down to raw intervals; a window whose record is gone (expired
// or evicted) is filled from finer levels where they still have it.
//
// Totals, global counters, countries, ASes and watch lists are exact sums.
// The prefixes are the top TopN of the merged records: a prefix that fell
// out of a record's top N is counted in Other for that record, so a
// prefix's count is a lower bound, and Prefixes + Other still add up to
// Remote. Start and End are those of the first and last interval found,
// and Seq that of the newest: a range that is only partly stored shows it.
// It returns ErrNoData when nothing is stored in the range.
func (st *Store) Window(from, to time.Time) (*summary.Summary, error) {
	if !from.Before(to) {
		return nil, fmt.Errorf("window: from %s is not before to %s", from.Format(time.RFC3339), to.Format(time.RFC3339))
	}
	out := &summary.Summary{Schema: summary.SchemaVersion}
	n := 0
	add := func(s *summary.Summary) {
		if out.Sensor == "" {
			out.Sensor = s.Sensor
		}
		out.Merge(s)
		n++
	}
	now := wallclock.Now()
	err := st.view(func(tx *buntdb.Tx) error {
		return st.cover(tx, len(st.opts.Levels)-1, nanos(from), nanos(to), now, add)
	})
	if err != nil {
		return nil, fmt.Errorf("window: %w", err)
	}
	if n == 0 {
		return nil, fmt.Errorf("window %s to %s: %w", from.UTC().Format(time.RFC3339), to.UTC().Format(time.RFC3339), ErrNoData)
	}
	out.TopN(st.opts.TopN)
	return out, nil
}

// cover adds the records that hold the intervals ending in (from, to],
// using level i and finer ones.
func (st *Store) cover(tx *buntdb.Tx, i int, from, to int64, now time.Time, add func(*summary.Summary)) error {
	if from >= to {
		return nil
	}
	if i == 0 {
		return st.scanLevel(tx, 0, from+1, to+1, now, func(k, v string) error {
			s, err := decode(k, v)
			if err == nil {
				add(s)
			}
			return err
		})
	}
	w := int64(st.opts.Levels[i].Width)
	first, last := ceilDiv(from, w)*w, floorDiv(to, w)*w
	if first >= last {
		return st.cover(tx, i-1, from, to, now, add)
	}
	type record struct {
		start    int64
		key, val string
	}
	var recs []record
	if err := st.scanLevel(tx, i, first, last, now, func(k, v string) error {
		sec, _ := keyTime(k)
		recs = append(recs, record{sec * 1e9, k, v})
		return nil
	}); err != nil {
		return err
	}
	if err := st.cover(tx, i-1, from, first, now, add); err != nil {
		return err
	}
	at := first
	for _, r := range recs {
		if err := st.cover(tx, i-1, at, r.start, now, add); err != nil { // a window without record
			return err
		}
		s, err := decode(r.key, r.val)
		if err != nil {
			return err
		}
		add(s)
		at = r.start + w
	}
	if err := st.cover(tx, i-1, at, last, now, add); err != nil {
		return err
	}
	return st.cover(tx, i-1, last, to, now, add)
}

// Latest returns the raw record of the interval that ended last, or
// ErrNoData.
func (st *Store) Latest() (*summary.Summary, error) {
	var s *summary.Summary
	err := st.view(func(tx *buntdb.Tx) error {
		var err error
		s, err = st.newest(tx, 0, wallclock.Now())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("latest: %w", err)
	}
	return s, nil
}

// newest returns the newest live record of level i.
func (st *Store) newest(tx *buntdb.Tx, i int, now time.Time) (*summary.Summary, error) {
	prefix, digits := prefixRaw, 20
	if i > 0 {
		prefix, digits = rollupPrefix(st.opts.Levels[i].Name), 12
	}
	var key, val string
	err := tx.DescendRange("", prefix+strings.Repeat("9", digits), prefix, func(k, v string) bool {
		if t, ok := keyTime(k); ok && st.live(i, t, now) {
			key, val = k, v
			return false
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	if key == "" {
		return nil, ErrNoData
	}
	return decode(key, val)
}

// scanLevel calls fn, in key order, for the live records of level i whose
// key time is in [lo, hi) nanoseconds: the End of a raw record, the window
// start of a rollup (rounded up to seconds).
func (st *Store) scanLevel(tx *buntdb.Tx, i int, lo, hi int64, now time.Time, fn func(key, val string) error) error {
	if lo >= hi {
		return nil
	}
	var first, last string
	if i == 0 {
		first, last = rawKey(lo), rawKey(hi)
	} else {
		name := st.opts.Levels[i].Name
		first, last = rollupKey(name, ceilDiv(lo, 1e9)), rollupKey(name, ceilDiv(hi, 1e9))
	}
	var ferr error
	err := tx.AscendRange("", first, last, func(k, v string) bool {
		t, ok := keyTime(k)
		if !ok || !st.live(i, t, now) {
			return true
		}
		ferr = fn(k, v)
		return ferr == nil
	})
	if err != nil {
		return err
	}
	return ferr
}

// live reports whether a record of level i with key time t (nanoseconds
// for raw records, seconds for rollups) is within its retention. buntdb
// deletes expired records within a second or so; until then they are
// skipped here.
func (st *Store) live(i int, t int64, now time.Time) bool {
	l := st.opts.Levels[i]
	end := time.Unix(0, t)
	if i > 0 {
		end = time.Unix(t, 0).Add(l.Width)
	}
	return end.Add(l.Retention).After(now)
}
