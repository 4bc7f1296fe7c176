package store

import (
	"bytes"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/tidwall/buntdb"

	"github.com/peerwatch/peerwatch/sensor/summary"
)

// writes counts the commands in the file at path that name key: how often
// the record was written (the tests that use it delete nothing).
func writes(tb testing.TB, path, key string) int {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return bytes.Count(b, []byte("\r\n"+key+"\r\n"))
}

// within returns the intervals that end in (from, to].
func within(ivs []*summary.Summary, from, to time.Time) []*summary.Summary {
	var in []*summary.Summary
	for _, s := range ivs {
		if s.End.After(from) && !s.End.After(to) {
			in = append(in, s)
		}
	}
	return in
}

// putTenSeconds stores n 10 s intervals, the first ending 10 s after
// base, and returns them.
func putTenSeconds(t *testing.T, st *Store, base time.Time, n int, gen uint64) []*summary.Summary {
	t.Helper()
	var ivs []*summary.Summary
	for i := range n {
		s := makeSummary(t, base.Add(time.Duration(i+1)*10*time.Second), 10*time.Second, gen+uint64(i), 6, 6)
		put(t, st, s, Origin{Instance: 4, Generation: gen + uint64(i)})
		ivs = append(ivs, s)
	}
	return ivs
}

// Two hours and three minutes of 10 s intervals: every 1m and 1h record of
// a closed window is written exactly once, with the exact totals of its
// intervals, and the open hour is computed on the fly.
func TestRollupWrittenOnce(t *testing.T) {
	t.Parallel()
	st, path := openTest(t, Options{})
	base := time.Now().UTC().Truncate(time.Hour).Add(-3 * time.Hour)
	end := base.Add(2*time.Hour + 3*time.Minute)
	ivs := putTenSeconds(t, st, base, int(end.Sub(base)/(10*time.Second)), 1)

	for m := base; m.Before(end); m = m.Add(time.Minute) {
		if n := writes(t, path, rollupKey("1m", m.Unix())); n != 1 {
			t.Fatalf("1m record of %s written %d times, want once", m.Format(time.TimeOnly), n)
		}
	}
	for h := base; h.Before(base.Add(2 * time.Hour)); h = h.Add(time.Hour) {
		if n := writes(t, path, rollupKey("1h", h.Unix())); n != 1 {
			t.Fatalf("1h record of %s written %d times, want once", h.Format(time.TimeOnly), n)
		}
	}
	if n := writes(t, path, rollupKey("1h", base.Add(2*time.Hour).Unix())); n != 0 {
		t.Fatalf("1h record of the open hour written %d times", n)
	}

	minutes, err := st.Series("1m", base, end)
	if err != nil {
		t.Fatal(err)
	}
	if len(minutes) != 123 {
		t.Fatalf("%d 1m records, want 123", len(minutes))
	}
	for k, got := range minutes {
		from := base.Add(time.Duration(k) * time.Minute)
		sameJSON(t, "1m record "+from.Format(time.TimeOnly), got, mergeAll(DefaultTopN, within(ivs, from, from.Add(time.Minute))...))
	}
	hours, err := st.Series("1h", base, end)
	if err != nil {
		t.Fatal(err)
	}
	if len(hours) != 3 {
		t.Fatalf("%d 1h records, want 3 (the last one open)", len(hours))
	}
	for k, got := range hours {
		from := base.Add(time.Duration(k) * time.Hour)
		in := within(ivs, from, from.Add(time.Hour))
		what := fmt.Sprintf("1h record %d", k)
		sameTotals(t, what, got, mergeAll(DefaultTopN, in...))
		if !got.Start.Equal(in[0].Start) || !got.End.Equal(in[len(in)-1].End) || got.Seq != in[len(in)-1].Seq {
			t.Fatalf("%s covers %s to %s, seq %d", what, got.Start, got.End, got.Seq)
		}
	}
	day, err := st.Series("1d", base, end)
	if err != nil {
		t.Fatal(err)
	}
	var total *summary.Summary
	for _, d := range day {
		if total == nil {
			total = &summary.Summary{Schema: summary.SchemaVersion}
		}
		total.Merge(d)
	}
	sameTotals(t, "1d records", total, mergeAll(DefaultTopN, ivs...))
	if got := st.Stats().Records["1h"]; got != 3 {
		t.Fatalf("Stats counts %d 1h windows, want 3", got)
	}
}

// A stop leaves the windows of the last intervals open; Open closes those
// that have ended, with the exact totals, and an interval handed in after
// that (the datapath's recovered one) is merged into the closed records.
func TestOpenClosesWindows(t *testing.T) {
	t.Parallel()
	st, path := openTest(t, Options{})
	hour := time.Now().UTC().Truncate(time.Hour).Add(-time.Hour)
	// 59:00 to 59:40 of the last hour: its last minute and the hour stay
	// open.
	ivs := putTenSeconds(t, st, hour.Add(59*time.Minute), 4, 1)
	minuteKey, hourKey := rollupKey("1m", hour.Add(59*time.Minute).Unix()), rollupKey("1h", hour.Unix())
	if writes(t, path, minuteKey)+writes(t, path, hourKey) != 0 {
		t.Fatal("rollups of open windows written before Close")
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st = reopen(t, path, Options{})
	if writes(t, path, minuteKey) != 1 || writes(t, path, hourKey) != 1 {
		t.Fatalf("Open wrote the 1m record %d times and the 1h record %d times, want once each",
			writes(t, path, minuteKey), writes(t, path, hourKey))
	}
	check := func(what string, ivs []*summary.Summary) {
		t.Helper()
		err := st.db.View(func(tx *buntdb.Tx) error {
			for _, key := range []string{minuteKey, hourKey} {
				v, err := tx.Get(key)
				if err != nil {
					return fmt.Errorf("%s: %w", key, err)
				}
				got, err := decode(key, v)
				if err != nil {
					return err
				}
				sameTotals(t, what+" "+key, got, mergeAll(DefaultTopN, ivs...))
				if got.Seq != ivs[len(ivs)-1].Seq {
					t.Fatalf("%s %s: seq %d, want %d", what, key, got.Seq, ivs[len(ivs)-1].Seq)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	check("closed at Open", ivs)
	// Open again: nothing left to close.
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st = reopen(t, path, Options{})
	if writes(t, path, minuteKey) != 1 || writes(t, path, hourKey) != 1 {
		t.Fatal("a second Open closed the windows again")
	}
	// The interval the daemon was counting at the stop ends in the closed
	// minute: it is merged into the closed records.
	late := makeSummary(t, hour.Add(time.Hour), 10*time.Second, 99, 6, 6)
	put(t, st, late, Origin{Instance: 4, Generation: 5})
	check("after a late interval", append(ivs, late))
	w, err := st.Window(hour, hour.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	sameTotals(t, "window of the hour", w, mergeAll(DefaultTopN, append(ivs, late)...))
}

// The open windows of every level appear in Series, computed from the
// finer levels, with exact totals; they are not written.
func TestSeriesOpenWindow(t *testing.T) {
	t.Parallel()
	st, path := openTest(t, Options{TopN: 5})
	base := recent(30)
	ivs := putTenSeconds(t, st, base, 9, 1) // a closed minute, then 30 s of the next
	for _, c := range []struct {
		level string
		want  [][]*summary.Summary // per window
	}{
		{"1m", [][]*summary.Summary{ivs[:6], ivs[6:]}},
		{"1h", [][]*summary.Summary{ivs}},
		{"1d", [][]*summary.Summary{ivs}},
	} {
		if base.Add(90*time.Second).Truncate(time.Hour) != base.Truncate(time.Hour) && c.level != "1m" {
			continue // the intervals straddle an hour
		}
		got, err := st.Series(c.level, base, base.Add(2*time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(c.want) {
			t.Fatalf("%s: %d records, want %d", c.level, len(got), len(c.want))
		}
		for k, w := range c.want {
			what := fmt.Sprintf("%s record %d", c.level, k)
			sameTotals(t, what, got[k], mergeAll(5, w...))
			if !got[k].End.Equal(w[len(w)-1].End) || got[k].Seq != w[len(w)-1].Seq {
				t.Fatalf("%s ends %s, seq %d", what, got[k].End, got[k].Seq)
			}
		}
	}
	// The open minute is the same as when its record is written.
	open, err := st.Series("1m", base.Add(time.Minute), base.Add(2*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	sameJSON(t, "open minute", open[0], mergeAll(5, ivs[6:]...))
	if n := writes(t, path, rollupKey("1m", base.Add(time.Minute).Unix())); n != 0 {
		t.Fatalf("the open minute was written %d times", n)
	}
	rest := putTenSeconds(t, st, base.Add(90*time.Second), 3, 10)
	if n := writes(t, path, rollupKey("1m", base.Add(time.Minute).Unix())); n != 1 {
		t.Fatalf("the closed minute was written %d times", n)
	}
	closed, err := st.Series("1m", base.Add(time.Minute), base.Add(2*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	sameJSON(t, "closed minute", closed[0], mergeAll(5, append(ivs[6:], rest...)...))
}
