package store

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/buntdb"

	"github.com/peerwatch/peerwatch/sensor/summary"
)

// recent returns a minute boundary some minutes before now, so that test
// intervals are well within the default retentions.
func recent(minutesAgo int) time.Time {
	return time.Now().UTC().Truncate(time.Minute).Add(-time.Duration(minutesAgo) * time.Minute)
}

func TestPutIntervalsLatest(t *testing.T) {
	st, _ := openTest(t, Options{})
	if _, err := st.Latest(); !errors.Is(err, ErrNoData) {
		t.Fatalf("Latest of an empty store: %v, want ErrNoData", err)
	}
	base := recent(30)
	var want []*summary.Summary
	for i := range 12 {
		s := makeSummary(t, base.Add(time.Duration(i+1)*10*time.Second), 10*time.Second, uint64(i), 8, 8)
		put(t, st, s, Origin{Instance: 7, Generation: uint64(i + 1)})
		if s.Seq != uint64(i+1) {
			t.Fatalf("interval %d got seq %d, want %d", i, s.Seq, i+1)
		}
		want = append(want, s)
	}
	got, err := st.Intervals(base, base.Add(2*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	sameJSON(t, "intervals", got, want)

	// (from, to]: the interval ending at from is out, the one ending at to in.
	got, err = st.Intervals(want[2].End, want[5].End)
	if err != nil {
		t.Fatal(err)
	}
	sameJSON(t, "intervals (3rd end, 6th end]", got, want[3:6])

	latest, err := st.Latest()
	if err != nil {
		t.Fatal(err)
	}
	sameJSON(t, "latest", latest, want[len(want)-1])

	stats := st.Stats()
	wantRecords := map[string]int{"interval": 12, "1m": 2, "1h": 1, "1d": 1}
	if base.Add(2*time.Minute).Truncate(time.Hour) != base.Add(time.Second).Truncate(time.Hour) {
		wantRecords["1h"] = 2 // the two minutes straddle an hour
	}
	if base.Add(2*time.Minute).Truncate(24*time.Hour) != base.Add(time.Second).Truncate(24*time.Hour) {
		wantRecords["1d"] = 2
	}
	sameJSON(t, "records", stats.Records, wantRecords)
	if stats.Seq != 12 || stats.LastOrigin != (Origin{7, 12}) || stats.FileSize == 0 {
		t.Fatalf("stats %+v", stats)
	}
}

// Six 10 s intervals in a minute make one 1m record equal to their merged
// summary, and the 1h and 1d records that hold only them are the same.
func TestRollupMergesExactly(t *testing.T) {
	for _, top := range []int{1000, 5} {
		t.Run("top"+map[int]string{1000: "1000", 5: "5"}[top], func(t *testing.T) {
			st, _ := openTest(t, Options{TopN: top})
			minute := recent(10)
			var ivs []*summary.Summary
			for i := range 6 {
				s := makeSummary(t, minute.Add(time.Duration(i+1)*10*time.Second), 10*time.Second, uint64(100+i), 12, 12)
				put(t, st, s, Origin{Instance: 3, Generation: uint64(i + 1)})
				ivs = append(ivs, s)
			}
			want := mergeAll(top, ivs...)
			if err := want.Check(); err != nil {
				t.Fatal(err)
			}
			for _, level := range []string{"1m", "1h", "1d"} {
				got, err := st.Series(level, minute, minute.Add(time.Minute))
				if err != nil {
					t.Fatal(err)
				}
				if len(got) != 1 {
					t.Fatalf("%s: %d records, want 1", level, len(got))
				}
				if err := got[0].Check(); err != nil {
					t.Fatalf("%s: %v", level, err)
				}
				sameJSON(t, level+" record", got[0], want)
			}
			if top == 5 {
				if want.Other.Total() == 0 || len(want.Prefixes) != 5 {
					t.Fatalf("top 5 of 6 × 12 prefixes kept %d prefixes and other %d", len(want.Prefixes), want.Other.Total())
				}
				// The exact parts are those of the merge without any cut.
				sameTotals(t, "1m totals", want, mergeAll(1000, ivs...))
			}
			// A window of the whole minute is the 1m record.
			w, err := st.Window(minute, minute.Add(time.Minute))
			if err != nil {
				t.Fatal(err)
			}
			sameJSON(t, "window", w, want)
		})
	}
}

// Window over three hours of 1-minute intervals: exact for any range,
// and still exact from coarser records once the finer ones are gone.
func TestWindow(t *testing.T) {
	st, _ := openTest(t, Options{})
	base := time.Now().UTC().Truncate(time.Hour).Add(-4 * time.Hour)
	var ivs []*summary.Summary
	for i := range 180 {
		s := makeSummary(t, base.Add(time.Duration(i+1)*time.Minute), time.Minute, uint64(1000+i), 6, 6)
		put(t, st, s, Origin{Instance: 9, Generation: uint64(i + 1)})
		ivs = append(ivs, s)
	}
	// expect merges the intervals ending in (from, to].
	expect := func(from, to time.Time) *summary.Summary {
		var in []*summary.Summary
		for _, s := range ivs {
			if s.End.After(from) && !s.End.After(to) {
				in = append(in, s)
			}
		}
		return mergeAll(1000, in...)
	}
	ranges := []struct {
		name     string
		from, to time.Time
	}{
		{"all", base.Add(-time.Hour), base.Add(5 * time.Hour)},
		{"hours", base, base.Add(3 * time.Hour)},
		{"middle hour", base.Add(time.Hour), base.Add(2 * time.Hour)},
		{"unaligned", base.Add(7*time.Minute + 30*time.Second), base.Add(2*time.Hour + 13*time.Minute)},
		{"one interval", base.Add(59 * time.Minute), base.Add(time.Hour)},
		{"inside an interval", base.Add(59*time.Minute + 10*time.Second), base.Add(time.Hour + 10*time.Second)},
	}
	check := func(t *testing.T, name string, from, to time.Time) {
		t.Helper()
		got, err := st.Window(from, to)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		sameJSON(t, name, got, expect(from, to))
	}
	for _, r := range ranges {
		check(t, r.name, r.from, r.to)
	}
	if _, err := st.Window(base.Add(-3*time.Hour), base.Add(-2*time.Hour)); !errors.Is(err, ErrNoData) {
		t.Fatalf("window before any data: %v, want ErrNoData", err)
	}
	if _, err := st.Window(base, base); err == nil {
		t.Fatal("empty window accepted")
	}

	series, err := st.Series("1h", base.Add(30*time.Minute), base.Add(2*time.Hour+1))
	if err != nil {
		t.Fatal(err)
	}
	if len(series) != 3 {
		t.Fatalf("1h series overlapping 00:30–02:00: %d records, want 3", len(series))
	}
	sameJSON(t, "1h record", series[1], expect(base.Add(time.Hour), base.Add(2*time.Hour)))
	if _, err := st.Series("1w", base, base.Add(time.Hour)); !errors.Is(err, ErrUnknownLevel) {
		t.Fatalf("unknown level: %v", err)
	}

	// Drop every raw record and the 1m records of the middle hour: whole
	// hours come from the 1h records, the rest of the middle hour is gone.
	drop := func(prefix string, from, to time.Time) {
		t.Helper()
		err := st.db.Update(func(tx *buntdb.Tx) error {
			var keys []string
			_ = tx.AscendKeys(prefix+"*", func(k, _ string) bool {
				if n, _ := keyTime(k); strings.HasPrefix(k, prefixRaw) || (n >= from.Unix() && n < to.Unix()) {
					keys = append(keys, k)
				}
				return true
			})
			for _, k := range keys {
				if _, err := tx.Delete(k); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	drop(prefixRaw, base, base)
	drop(rollupPrefix("1m"), base.Add(time.Hour), base.Add(2*time.Hour))
	check(t, "hours from 1h records", base, base.Add(3*time.Hour))
	check(t, "minutes from 1m records", base.Add(10*time.Minute), base.Add(50*time.Minute))
	// A missing 1h record is filled from the 1m records.
	drop(rollupPrefix("1h"), base.Add(2*time.Hour), base.Add(3*time.Hour))
	check(t, "last hour from 1m records", base.Add(2*time.Hour), base.Add(3*time.Hour))
	// Only the 1h record of the middle hour is left of it: a range inside
	// it finds nothing, and the edges of a larger range are what is left.
	if _, err := st.Window(base.Add(time.Hour+10*time.Minute), base.Add(time.Hour+20*time.Minute)); !errors.Is(err, ErrNoData) {
		t.Fatalf("window of dropped minutes: %v, want ErrNoData", err)
	}
	got, err := st.Window(base.Add(50*time.Minute), base.Add(2*time.Hour+10*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	sameJSON(t, "range with edges", got, mergeAll(1000,
		expect(base.Add(50*time.Minute), base.Add(time.Hour)),
		expect(base.Add(time.Hour), base.Add(2*time.Hour)),
		expect(base.Add(2*time.Hour), base.Add(2*time.Hour+10*time.Minute))))

}

func TestDuplicateOrigin(t *testing.T) {
	st, path := openTest(t, Options{})
	base := recent(20)
	iv := func(i int) *summary.Summary {
		return makeSummary(t, base.Add(time.Duration(i)*10*time.Second), 10*time.Second, uint64(i), 5, 5)
	}
	put(t, st, iv(1), Origin{Instance: 11, Generation: 5})
	put(t, st, iv(2), Origin{Instance: 11, Generation: 6})
	before := st.Stats()
	w0, err := st.Window(base, base.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range []Origin{{11, 6}, {11, 5}, {11, 1}} {
		s := iv(3)
		stored, err := st.Put(s, o)
		if err != nil || stored {
			t.Fatalf("Put of %+v after generation 6: stored %v, %v", o, stored, err)
		}
		if s.Seq != 0 {
			t.Fatalf("a duplicate was numbered %d", s.Seq)
		}
	}
	w1, err := st.Window(base, base.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	sameJSON(t, "window after duplicates", w1, w0)
	sameJSON(t, "stats after duplicates", st.Stats(), before)

	// The next generation, and then new maps (generation from 1 again).
	put(t, st, iv(3), Origin{Instance: 11, Generation: 7})
	put(t, st, iv(4), Origin{Instance: 12, Generation: 1})
	if o := st.Stats().LastOrigin; o != (Origin{12, 1}) {
		t.Fatalf("last origin %+v", o)
	}
	// The rule survives a restart.
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st = reopen(t, path, Options{})
	if stored, err := st.Put(iv(5), Origin{Instance: 12, Generation: 1}); err != nil || stored {
		t.Fatalf("duplicate after reopen: stored %v, %v", stored, err)
	}
	put(t, st, iv(5), Origin{Instance: 12, Generation: 2})
	ivs, err := st.Intervals(base, base.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(ivs) != 5 {
		t.Fatalf("%d intervals stored, want 5", len(ivs))
	}
}

func TestSeqIncreases(t *testing.T) {
	st, path := openTest(t, Options{})
	base := recent(20)
	var last uint64
	next := func(s *summary.Summary) {
		t.Helper()
		if s.Seq <= last {
			t.Fatalf("seq %d after %d", s.Seq, last)
		}
		last = s.Seq
	}
	gen := uint64(0)
	putNext := func(st *Store) {
		t.Helper()
		gen++
		s := makeSummary(t, base.Add(time.Duration(gen)*10*time.Second), 10*time.Second, gen, 3, 3)
		put(t, st, s, Origin{Instance: 1, Generation: gen})
		next(s)
	}
	putNext(st)
	putNext(st)
	seq, err := st.NextSeq()
	if err != nil || seq != 3 {
		t.Fatalf("NextSeq %d, %v; want 3", seq, err)
	}
	last = seq
	putNext(st) // 4
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := st.NextSeq(); !errors.Is(err, ErrClosed) {
		t.Fatalf("NextSeq after Close: %v", err)
	}
	st = reopen(t, path, Options{})
	putNext(st) // 5
	if last != 5 {
		t.Fatalf("seq %d after reopen, want 5", last)
	}

	// A caller's own number must be above the last stored one, and the
	// store continues above it.
	s := makeSummary(t, base.Add(100*time.Second), 10*time.Second, 100, 3, 3)
	s.Seq = 5
	if _, err := st.Put(s, Origin{Instance: 1, Generation: 100}); !errors.Is(err, ErrSeqOrder) {
		t.Fatalf("Put with seq 5 after 5: %v", err)
	}
	s.Seq = 40
	put(t, st, s, Origin{Instance: 1, Generation: 100})
	last, gen = 40, 100
	putNext(st) // 41

	// A crash (the file as it is on the disk while the store is open):
	// numbers continue above all those handed out.
	seq, err = st.NextSeq()
	if err != nil {
		t.Fatal(err)
	}
	last = seq
	crashed := filepath.Join(t.TempDir(), "crashed.db")
	copyFile(t, path, crashed)
	st2 := reopen(t, crashed, Options{})
	putNext(st2)
	if last != seq+1 {
		t.Fatalf("seq %d after a crash, want %d", last, seq+1)
	}
}

func copyFile(tb testing.TB, from, to string) {
	tb.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o640); err != nil {
		tb.Fatal(err)
	}
}

func TestPutRefuses(t *testing.T) {
	st, _ := openTest(t, Options{})
	end := recent(5)
	good := func() *summary.Summary { return makeSummary(t, end, 10*time.Second, 1, 4, 4) }
	cases := map[string]struct {
		s *summary.Summary
		o Origin
	}{
		"nil":          {nil, Origin{1, 1}},
		"no instance":  {good(), Origin{0, 1}},
		"schema":       {func() *summary.Summary { s := good(); s.Schema = 2; return s }(), Origin{1, 1}},
		"no end":       {func() *summary.Summary { s := good(); s.End = time.Time{}; return s }(), Origin{1, 1}},
		"before 1970":  {func() *summary.Summary { s := good(); s.Start, s.End = time.Unix(-20, 0), time.Unix(-10, 0); return s }(), Origin{1, 1}},
		"ends early":   {func() *summary.Summary { s := good(); s.Start = s.End.Add(time.Second); return s }(), Origin{1, 1}},
		"inconsistent": {func() *summary.Summary { s := good(); s.Globals.Seen++; return s }(), Origin{1, 1}},
	}
	for name, c := range cases {
		stored, err := st.Put(c.s, c.o)
		if !errors.Is(err, ErrRefused) || stored {
			t.Errorf("%s: stored %v, %v; want ErrRefused", name, stored, err)
		}
	}
	if n := st.Stats().Records["interval"]; n != 0 {
		t.Fatalf("%d refused intervals stored", n)
	}
	// A recovered interval has no Start; it is stored by its End.
	s := good()
	s.Start = time.Time{}
	put(t, st, s, Origin{1, 1})
}

func TestOptions(t *testing.T) {
	bad := map[string]Options{
		"MaxSize":         {MaxSize: 1000},
		"Sync":            {Sync: 7},
		"TopN":            {TopN: -1},
		"empty levels":    {Levels: []Level{}},
		"raw width":       {Levels: []Level{{Name: "raw", Width: time.Second, Retention: time.Hour}}},
		"name":            {Levels: []Level{{Name: "a:b", Retention: time.Hour}}},
		"twice":           {Levels: []Level{{Name: "a", Retention: time.Hour}, {Name: "a", Width: time.Minute, Retention: time.Hour}}},
		"retention":       {Levels: []Level{{Name: "a", Retention: 0}}},
		"sub-second":      {Levels: []Level{{Name: "a", Retention: time.Hour}, {Name: "b", Width: 1500 * time.Millisecond, Retention: time.Hour}}},
		"not increasing":  {Levels: []Level{{Name: "a", Retention: time.Hour}, {Name: "b", Width: time.Hour, Retention: time.Hour}, {Name: "c", Width: time.Minute, Retention: time.Hour}}},
		"negative widths": {Levels: []Level{{Name: "a", Retention: time.Hour}, {Name: "b", Width: -time.Minute, Retention: time.Hour}}},
		"not nested":      {Levels: []Level{{Name: "a", Retention: time.Hour}, {Name: "b", Width: 40 * time.Second, Retention: time.Hour}, {Name: "c", Width: time.Minute, Retention: time.Hour}}},
	}
	for name, o := range bad {
		if err := o.Validate(); !errors.Is(err, ErrOptions) {
			t.Errorf("%s: %v, want ErrOptions", name, err)
		}
		if _, err := Open(filepath.Join(t.TempDir(), "x.db"), o, nil); !errors.Is(err, ErrOptions) {
			t.Errorf("Open with %s: %v", name, err)
		}
	}
	if err := DefaultOptions().Validate(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []SyncPolicy{SyncEverySecond, SyncAlways, SyncNever} {
		b, err := p.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		var q SyncPolicy
		if err := q.UnmarshalText(b); err != nil || q != p {
			t.Fatalf("%s: %v %v", b, q, err)
		}
	}
	var q SyncPolicy
	if err := q.UnmarshalText([]byte("sometimes")); !errors.Is(err, ErrOptions) {
		t.Fatalf("sync policy sometimes: %v", err)
	}
}

func TestLocked(t *testing.T) {
	st, path := openTest(t, Options{})
	if _, err := Open(path, Options{}, nil); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := st.Latest(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Latest after Close: %v", err)
	}
	st = reopen(t, path, Options{})
	if _, err := st.Put(makeSummary(t, recent(1), time.Second, 1, 1, 1), Origin{1, 1}); err != nil {
		t.Fatal(err)
	}
}
