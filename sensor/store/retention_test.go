package store

import (
	"errors"
	"os"
	"testing"
	"time"

	"github.com/tidwall/buntdb"

	"github.com/peerwatch/peerwatch/sensor/summary"
)

// Records carry a TTL that ends their level's retention after the end of
// their window, and buntdb expires them then. buntdb reads the system
// clock, so the test places an interval just before a 10 s boundary and
// sets the retentions so that it expires about 1.5 s after the Put. The
// 10s level keeps its records for less than a minute, so the 1m level is
// written on every Put rather than when its window closes.
func TestRetentionExpires(t *testing.T) {
	t.Parallel()
	now := time.Now()
	end := now.Truncate(10 * time.Second) // a window end of the 10s level
	short := now.Sub(end) + 1500*time.Millisecond
	levels := []Level{
		{Name: "interval", Retention: short},
		{Name: "10s", Width: 10 * time.Second, Retention: short},
		{Name: "1m", Width: time.Minute, Retention: time.Hour},
	}
	st, _ := openTest(t, Options{Levels: levels})
	s := makeSummary(t, end, 10*time.Second, 1, 4, 4)
	put(t, st, s, Origin{1, 1})

	minute := end.Add(-time.Nanosecond).Truncate(time.Minute)
	keys := map[string]time.Time{ // key → expected expiry
		rawKey(end.UnixNano()):          end.Add(short),
		rollupKey("10s", end.Unix()-10): end.Add(short),
		rollupKey("1m", minute.Unix()):  minute.Add(time.Minute + time.Hour),
	}
	err := st.db.View(func(tx *buntdb.Tx) error {
		for k, exp := range keys {
			ttl, err := tx.TTL(k)
			if err != nil {
				t.Fatalf("%s: %v", k, err)
			}
			if at := time.Now().Add(ttl); at.Sub(exp).Abs() > 200*time.Millisecond {
				t.Errorf("%s expires at %s, want %s", k, at.Format(time.StampMilli), exp.Format(time.StampMilli))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// Wait for buntdb to delete the short-lived records.
	deadline := time.Now().Add(5 * time.Second)
	for {
		gone := 0
		_ = st.db.View(func(tx *buntdb.Tx) error {
			for k := range keys {
				if _, err := tx.Get(k, true); errors.Is(err, buntdb.ErrNotFound) {
					gone++
				}
			}
			return nil
		})
		if gone == 2 {
			break
		}
		if gone > 2 || time.Now().After(deadline) {
			t.Fatalf("%d of the 2 short-lived records deleted by %s", gone, time.Now().Format(time.StampMilli))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if ivs, err := st.Intervals(end.Add(-time.Minute), end); err != nil || len(ivs) != 0 {
		t.Fatalf("intervals after expiry: %d, %v", len(ivs), err)
	}
	if _, err := st.Latest(); !errors.Is(err, ErrNoData) {
		t.Fatalf("Latest after expiry: %v", err)
	}
	sameJSON(t, "records after expiry", st.Stats().Records, map[string]int{"interval": 0, "10s": 0, "1m": 1})
	got, err := st.Window(minute, minute.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	sameJSON(t, "minute after expiry", got, mergeAll(DefaultTopN, s))

	// An interval whose windows are all past their retention is accepted
	// but leaves nothing.
	old := makeSummary(t, end.Add(-3*time.Hour), 10*time.Second, 2, 4, 4)
	put(t, st, old, Origin{1, 2})
	if _, err := st.Window(old.Start, old.End); !errors.Is(err, ErrNoData) {
		t.Fatalf("window of an expired interval: %v", err)
	}
}

// The file stays under a small cap through many Puts: the oldest records
// go first, the newest record of each level stays.
func TestSizeCap(t *testing.T) {
	t.Parallel()
	const maxSize = 64 << 10
	st, path := openTest(t, Options{MaxSize: maxSize})
	base := time.Now().UTC().Truncate(time.Minute).Add(-2 * time.Hour)
	var last *summary.Summary
	for i := range 28 {
		last = makeSummary(t, base.Add(time.Duration(i+1)*time.Minute), time.Minute, uint64(i), 4, 4)
		put(t, st, last, Origin{5, uint64(i + 1)})
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() > maxSize {
			t.Fatalf("after Put %d the file is %d bytes, over the cap of %d", i, fi.Size(), maxSize)
		}
	}
	stats := st.Stats()
	if stats.Evicted == 0 {
		t.Fatalf("nothing evicted: %+v", stats)
	}
	t.Logf("stats %+v", stats)
	latest, err := st.Latest()
	if err != nil {
		t.Fatal(err)
	}
	sameJSON(t, "latest", latest, last)
	// The newest minute is still whole, and the oldest interval is gone.
	w, err := st.Window(last.End.Add(-time.Minute), last.End)
	if err != nil {
		t.Fatal(err)
	}
	sameJSON(t, "newest minute", w, mergeAll(DefaultTopN, last))
	if ivs, _ := st.Intervals(base, base.Add(time.Minute)); len(ivs) != 0 {
		t.Fatal("the oldest interval survived the cap")
	}
	for _, level := range []string{"1h", "1d"} {
		if stats.Records[level] == 0 {
			t.Fatalf("no %s record left: the newest of a level must stay", level)
		}
	}
}
