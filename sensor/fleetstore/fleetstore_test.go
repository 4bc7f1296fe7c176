package fleetstore

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidwall/buntdb"

	"github.com/peerwatch/peerwatch/sensor/collector"
	"github.com/peerwatch/peerwatch/sensor/store"
	"github.com/peerwatch/peerwatch/sensor/summary"
	"github.com/peerwatch/peerwatch/sensor/traffic"
)

var t0 = time.Date(2026, 3, 14, 12, 0, 0, 0, time.UTC)

// testSummary is a consistent summary of nPrefixes /24s for (id, seq),
// ending seq minutes after t0.
func testSummary(id string, seq uint64, nPrefixes int) *summary.Summary {
	end := t0.Add(time.Duration(seq) * time.Minute)
	s := &summary.Summary{Schema: summary.SchemaVersion, Sensor: id, Seq: seq, Start: end.Add(-10 * time.Second), End: end}
	countries := map[string]traffic.Counters{}
	for i := range nPrefixes {
		k := uint64(i%97) + seq
		c := traffic.Counters{Packets: [2]uint64{k, 2 * k}, Bytes: [2]uint64{100 * k, 300 * k}}
		c.Class[traffic.TCP] = 3 * k
		cc := []string{"NZ", "KP", "AU", "US"}[i%4]
		s.Prefixes = append(s.Prefixes, summary.PrefixCount{
			Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 0}), 24), Country: cc, ASN: uint32(64500 + i%50), Counters: c})
		s.Remote.Add(c)
		x := countries[cc]
		x.Add(c)
		countries[cc] = x
	}
	ases := map[uint32]traffic.Counters{}
	for _, p := range s.Prefixes {
		x := ases[p.ASN]
		x.Add(p.Counters)
		ases[p.ASN] = x
	}
	for cc, c := range countries {
		s.Countries = append(s.Countries, summary.CountryCount{Country: cc, Counters: c})
	}
	for asn, c := range ases {
		s.ASes = append(s.ASes, summary.ASCount{ASN: asn, Counters: c})
	}
	s.Globals = traffic.Globals{NonIP: seq, Seen: s.Remote.Total() + seq}
	s.Sort()
	return s
}

func payload(tb testing.TB, s *summary.Summary) []byte {
	tb.Helper()
	b, err := summary.Encode(s, summary.EncodeOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func topic(id, kind string) string { return "peerwatch/" + id + "/" + kind }

// deliver handles a summary and journals it, as collectord does.
func deliver(tb testing.TB, col *collector.Collector, st *Store, id string, seq uint64) {
	tb.Helper()
	s := testSummary(id, seq, 20)
	p := payload(tb, s)
	if err := col.Handle(topic(id, "summary"), p, s.End); err != nil {
		tb.Fatal(err)
	}
	if err := st.Journal(topic(id, "summary"), p, s.End); err != nil {
		tb.Fatal(err)
	}
}

func open(tb testing.TB, path string) (*collector.Collector, *Store) {
	tb.Helper()
	col := collector.New(collector.Options{}, nil)
	st, err := Open(path, col, Options{Sync: store.SyncNever}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return col, st
}

func state(tb testing.TB, col *collector.Collector) string {
	tb.Helper()
	end := t0.Add(24 * time.Hour)
	b, err := json.Marshal(map[string]any{
		"sensors": col.Sensors(end), "rejects": col.Rejects(), "alerts": col.Alerts(collector.DefaultMaxAlerts), "accepted": col.Accepted(),
		"1m": col.Window("1m", t0, end), "1h": col.Window("1h", t0, end), "1d": col.Window("1d", t0.Truncate(24*time.Hour), end),
	})
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

// TestFlushAndJournal: a store closed after a flush, or without one (as a
// crash leaves it), restores the same state.
func TestFlushAndJournal(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	col, st := open(t, path)
	for seq := uint64(1); seq <= 10; seq++ {
		deliver(t, col, st, "s1", seq)
		if seq != 4 {
			deliver(t, col, st, "s2", seq)
		}
	}
	if err := col.Handle(topic("s1", "alert"), []byte(`{"sensor":"s1","event":"start","alert":{"id":"kp@1"}}`), t0); err != nil {
		t.Fatal(err)
	}
	if err := st.Journal(topic("s1", "alert"), []byte(`{"sensor":"s1","event":"start","alert":{"id":"kp@1"}}`), t0); err != nil {
		t.Fatal(err)
	}
	if st.Stats().JournalDepth != 20 {
		t.Errorf("journal depth %d, want 20", st.Stats().JournalDepth)
	}
	if err := st.Flush(); err != nil {
		t.Fatal(err)
	}
	if got := st.Stats(); got.JournalDepth != 0 || got.Flushes != 1 || got.LastFlushBytes == 0 {
		t.Errorf("after the flush: %+v", got)
	}
	// More after the flush, then a "crash": no flush before Close.
	for seq := uint64(11); seq <= 15; seq++ {
		deliver(t, col, st, "s1", seq)
	}
	want := state(t, col)
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	col2, st2 := open(t, path)
	if got := state(t, col2); got != want {
		t.Errorf("restored state differs:\n%s\nwant\n%s", got, want)
	}
	if s := st2.Stats(); s.Replayed != 5 || s.ReplaySkipped != 0 || s.JournalDepth != 0 || s.Flushes != 1 {
		t.Errorf("replayed %d, skipped %d, depth %d, flushes %d; want 5, 0, 0 (flushed after the replay), 1", s.Replayed, s.ReplaySkipped, s.JournalDepth, s.Flushes)
	}
	// The restored collector dedupes: seq 3 again is a duplicate.
	if err := col2.Handle(topic("s1", "summary"), payload(t, testSummary("s1", 3, 20)), t0.Add(time.Hour)); !errors.Is(err, collector.ErrDuplicate) {
		t.Errorf("re-sent summary: %v, want a duplicate", err)
	}
	if err := st2.Flush(); err != nil {
		t.Fatal(err)
	}
	want = state(t, col2)
	if err := st2.Close(); err != nil {
		t.Fatal(err)
	}
	col3, st3 := open(t, path)
	defer st3.Close()
	if got := state(t, col3); got != want {
		t.Errorf("second restore differs:\n%s\nwant\n%s", got, want)
	}
	if s := st3.Stats(); s.Replayed != 0 || s.JournalDepth != 0 {
		t.Errorf("after a flush: replayed %d, depth %d; want 0, 0", s.Replayed, s.JournalDepth)
	}
}

// TestJournalMarkRace: a record journaled after the flush took its mark,
// for a message the checkpoint already holds, is replayed as a duplicate
// and changes nothing.
func TestJournalMarkRace(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	col, st := open(t, path)
	s := testSummary("s1", 1, 5)
	p := payload(t, s)
	if err := col.Handle(topic("s1", "summary"), p, s.End); err != nil {
		t.Fatal(err)
	}
	if err := st.Flush(); err != nil { // holds seq 1, journal still empty
		t.Fatal(err)
	}
	if err := st.Journal(topic("s1", "summary"), p, s.End); err != nil {
		t.Fatal(err)
	}
	want := state(t, col)
	st.Close()
	col2, st2 := open(t, path)
	defer st2.Close()
	if got := state(t, col2); got != want {
		t.Errorf("state differs:\n%s\nwant\n%s", got, want)
	}
	if s := st2.Stats(); s.Replayed != 0 || s.ReplaySkipped != 1 {
		t.Errorf("replayed %d, skipped %d; want 0, 1", s.Replayed, s.ReplaySkipped)
	}
}

// TestRetentionDeletes: windows that leave a level's retention leave the
// file at the next flush, and a level no longer configured goes too.
func TestRetentionDeletes(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	col := collector.New(collector.Options{Windows: []time.Duration{time.Minute, time.Hour}, Retention: []int{5, 2}}, nil)
	st, err := Open(path, col, Options{Sync: store.SyncNever}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for seq := uint64(1); seq <= 30; seq++ { // 30 minutes, one summary a minute
		deliver(t, col, st, "s1", seq)
	}
	if err := st.Flush(); err != nil {
		t.Fatal(err)
	}
	count := func() map[string]int {
		n := map[string]int{}
		_ = st.file.DB.View(func(tx *buntdb.Tx) error {
			return tx.AscendKeys(prefixWindow+"*", func(k, _ string) bool {
				n[strings.Split(k, ":")[1]]++
				return true
			})
		})
		return n
	}
	if got := count(); got["1m"] != 5 || got["1h"] != 1 {
		t.Errorf("windows in the file %v, want 5 of 1m and 1 of 1h", got)
	}
	for seq := uint64(31); seq <= 90; seq++ {
		deliver(t, col, st, "s1", seq)
	}
	if err := st.Flush(); err != nil {
		t.Fatal(err)
	}
	if got := count(); got["1m"] != 5 || got["1h"] != 2 {
		t.Errorf("windows in the file %v, want 5 of 1m and 2 of 1h", got)
	}
	st.Close()

	// Reopened with the minute level only: the hour windows are left out
	// and leave the file at the next flush.
	col2 := collector.New(collector.Options{Windows: []time.Duration{time.Minute}, Retention: []int{5}}, nil)
	st2, err := Open(path, col2, Options{Sync: store.SyncNever}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	deliver(t, col2, st2, "s1", 91)
	if err := st2.Flush(); err != nil {
		t.Fatal(err)
	}
	st = st2
	if got := count(); got["1m"] != 5 || got["1h"] != 0 {
		t.Errorf("after dropping the hour level: %v, want 5 of 1m and none of 1h", got)
	}
}

// TestDamagedFileMovedAside: a file buntdb cannot load, a record that is
// not valid, a schema of another version, and an unfinished write at the
// end: each is reported, and the bytes are kept in a damaged-file.
func TestDamagedFileMovedAside(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, path string)
		want   error
		fresh  bool   // the state is gone (the whole file moved aside)
		says   string // and the reason says this, when set
	}{
		{"garbage", func(t *testing.T, path string) { writeFile(t, path, "*3\r\n$3\r\nset\r\nxx garbage\r\n") }, store.ErrDamaged, true, ""},
		{"bad record", func(t *testing.T, path string) {
			setRecord(t, path, prefixSensor+"s1", `{"id":"s1","seqs":{"high":"x"}}`)
		}, store.ErrDamaged, true, ""},
		{"unknown key", func(t *testing.T, path string) { setRecord(t, path, "other:1", `{}`) }, store.ErrDamaged, true, ""},
		{"invalid state", func(t *testing.T, path string) {
			setRecord(t, path, prefixSensor+"s9", `{"id":"s9","last_seen":"2026-01-01T00:00:00Z","seqs":{"high":3,"gaps":[{"first":5,"last":6}]}}`)
		}, store.ErrDamaged, true, ""},
		{"bad journal", func(t *testing.T, path string) { setRecord(t, path, journalKey(99), "no-nul") }, store.ErrDamaged, true, ""},
		{"schema", func(t *testing.T, path string) { setRecord(t, path, keySchema, `{"store":99,"summary":1}`) }, store.ErrSchema, true, ""},
		{"unfinished write", func(t *testing.T, path string) { appendFile(t, path, "*3\r\n$3\r\nset\r\n$5\r\nab") }, store.ErrUnfinishedWrite, false, ""},
		// A file of a later version: moved aside, saying why (version 1
		// is migrated: TestMigrateV1, TestMigrateV1Views).
		{"schema 3", func(t *testing.T, path string) { setRecord(t, path, keySchema, `{"store":3,"summary":1}`) }, store.ErrSchema, true, "the file has store schema 3 (summary schema 1), this build keeps 2"},
		// View files: the reason names the window and the file.
		{"damaged view file", func(t *testing.T, path string) {
			b, err := os.ReadFile(s1ViewFile(t, path))
			if err != nil {
				t.Fatal(err)
			}
			b[len(b)-1] ^= 1
			writeFile(t, s1ViewFile(t, path), string(b))
		}, store.ErrDamaged, true, "view file "},
		{"missing view file", func(t *testing.T, path string) {
			if err := os.Remove(s1ViewFile(t, path)); err != nil {
				t.Fatal(err)
			}
		}, store.ErrDamaged, true, "no such file"},
		{"view file without the shard", func(t *testing.T, path string) {
			writeFile(t, s1ViewFile(t, path), string(encodeViewFile([]*collector.SensorView{{Sensor: "s2"}})))
		}, store.ErrDamaged, true, fmt.Sprintf("no views of shard %d, which the window record takes from it", collector.ViewShard("s1"))},
		{"bad view_files", func(t *testing.T, path string) {
			key := s1Window()
			v := getRecord(t, path, key)
			bad := regexp.MustCompile(`"shards":\[\d+\]`).ReplaceAllString(v, `"shards":[256]`)
			if bad == v {
				t.Fatalf("no view_files in %s", v)
			}
			setRecord(t, path, key, bad)
		}, store.ErrDamaged, true, "record " + s1Window() + ": view_files: shard 256 out of range"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), FileName)
			col, st := open(t, path)
			deliver(t, col, st, "s1", 1)
			if err := st.Flush(); err != nil {
				t.Fatal(err)
			}
			st.Close()
			tc.damage(t, path)
			before, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}

			col2, st2 := open(t, path)
			defer st2.Close()
			stats := st2.Stats()
			if stats.Aside == "" || !strings.Contains(stats.Recovered, strings.TrimPrefix(tc.want.Error(), "store ")) || !strings.Contains(stats.Recovered, tc.says) {
				t.Fatalf("stats %+v, want a file aside and a reason like %v %s", stats, tc.want, tc.says)
			}
			aside, err := os.ReadFile(stats.Aside)
			if err != nil {
				t.Fatal(err)
			}
			if tc.fresh && string(aside) != string(before) {
				t.Errorf("the file aside is not the damaged file")
			}
			if tc.fresh {
				// Its view files went aside with it, before the new
				// file's schema record (a crash between the two must not
				// leave them to the new file, whose flush deletes them).
				if aside, _ := filepath.Glob(viewDir(path) + ".aside-*"); len(aside) != 1 {
					t.Errorf("view directories moved aside with the store file: %v, want one", aside)
				}
			}
			if n := len(col2.Sensors(t0)); (n == 0) != tc.fresh {
				t.Errorf("%d sensors after the recovery, fresh %v", n, tc.fresh)
			}
			// The new store works.
			deliver(t, col2, st2, "s1", 2)
			if err := st2.Flush(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// s1Window is the key of the window of sensor s1's first summary's minute.
func s1Window() string {
	return windowKey("1m", testSummary("s1", 1, 20).End.Truncate(time.Minute))
}

// s1ViewFile is the view file of s1Window in the store at path (the only
// one).
func s1ViewFile(t *testing.T, path string) string {
	t.Helper()
	files, _, err := viewFileGens(viewDir(path))
	if err != nil || len(files[s1Window()]) != 1 {
		t.Fatalf("view files %v (%v), want one of %s", files, err, s1Window())
	}
	return filepath.Join(viewDir(path), viewFileName(s1Window(), files[s1Window()][0]))
}

// getRecord returns the record at key of the store file at path.
func getRecord(t *testing.T, path, key string) string {
	t.Helper()
	db, err := buntdb.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var v string
	if err := db.View(func(tx *buntdb.Tx) (err error) {
		v, err = tx.Get(key)
		return err
	}); err != nil {
		t.Fatalf("record %s: %v", key, err)
	}
	return v
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func appendFile(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

// setRecord writes one record with buntdb's own format, as another
// program (or a bug) would.
func setRecord(t *testing.T, path, key, value string) {
	t.Helper()
	appendFile(t, path, fmt.Sprintf("*3\r\n$3\r\nset\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", len(key), key, len(value), value))
}

func TestLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	_, st := open(t, path)
	defer st.Close()
	_, err := Open(path, collector.New(collector.Options{}, nil), Options{}, nil)
	if !errors.Is(err, store.ErrLocked) {
		t.Errorf("second Open: %v, want ErrLocked", err)
	}
}

// TestJournalCodecV1: the journal records of a version 1 file, which Open
// migrates.
func TestJournalCodecV1(t *testing.T) {
	at := time.Unix(1700000000, 123456789).UTC()
	v := encodeJournalV1("peerwatch/s1/summary", []byte("\x00\x01{x}"), at)
	e, err := decodeJournal(journalKey(7), v)
	if err != nil {
		t.Fatal(err)
	}
	if want := (journalEntry{n: 7, received: at, topic: "peerwatch/s1/summary", payload: []byte("\x00\x01{x}")}); !reflect.DeepEqual(e, want) {
		t.Errorf("%+v, want %+v", e, want)
	}
	for _, bad := range []struct{ key, v string }{
		{journalKey(1), "123"}, {journalKey(1), "x\x00t\x00p"}, {journalKey(1), "1\x00\x00p"}, {"journal:1", "1\x00t\x00p"},
	} {
		if _, err := decodeJournal(bad.key, bad.v); !errors.Is(err, store.ErrDamaged) {
			t.Errorf("decode %q %q: %v, want ErrDamaged", bad.key, bad.v, err)
		}
	}
}

// TestTornFlush: a crash cut the second transaction of a flush, so that a
// record still holds its value from before; the checkpoint record
// completes the flush at Open, and the next flush writes everything.
func TestTornFlush(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	col, st := open(t, path)
	for seq := uint64(1); seq <= 3; seq++ {
		deliver(t, col, st, "s1", seq)
	}
	if err := st.Flush(); err != nil {
		t.Fatal(err)
	}
	var old string
	_ = st.file.DB.View(func(tx *buntdb.Tx) error {
		var err error
		old, err = tx.Get(prefixSensor + "s1")
		return err
	})
	for seq := uint64(4); seq <= 6; seq++ {
		deliver(t, col, st, "s1", seq)
	}
	seg := saveFiles(t, path+journalSuffix+"*")
	if err := st.Flush(); err != nil {
		t.Fatal(err)
	}
	want := state(t, col)
	// The crash cut the second transaction, so the third, which replaces
	// the checkpoint record by its mark, never ran: the whole checkpoint
	// is still there, and so is the journal segment of seqs 4 to 6, which
	// the flush deletes after the third.
	full := wholeCheckpoint(t, st)
	st.Close()
	setRecord(t, path, keyCheckpoint, full)
	setRecord(t, path, prefixSensor+"s1", old)
	restoreFiles(t, seg)

	col2, st2 := open(t, path)
	if r := st2.Stats().Recovered; r != "" {
		t.Fatalf("the file was moved aside: %s", r)
	}
	if got := state(t, col2); got != want {
		t.Errorf("state after the torn flush:\n%s\nwant\n%s", got, want)
	}
	if s := st2.Stats(); s.Flushes != 1 || s.Replayed != 0 || s.ReplaySkipped != 0 || s.JournalDepth != 0 {
		t.Errorf("flushes %d, replayed %d, depth %d: want a full flush at Open, nothing replayed below the mark, and the journal gone", s.Flushes, s.Replayed, s.JournalDepth)
	}
	st2.Close()
	col3, st3 := open(t, path)
	defer st3.Close()
	if got := state(t, col3); got != want {
		t.Errorf("state after the full flush:\n%s\nwant\n%s", got, want)
	}
}

// TestJournalAfterRestart: journal numbers go on from the last flush's
// mark after a restart with an empty journal, so that what is journaled
// then is replayed after a crash.
func TestJournalAfterRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	col, st := open(t, path)
	for seq := uint64(1); seq <= 4; seq++ {
		deliver(t, col, st, "s1", seq)
	}
	if err := st.Flush(); err != nil {
		t.Fatal(err)
	}
	st.Close()
	col2, st2 := open(t, path)
	deliver(t, col2, st2, "s1", 5)
	want := state(t, col2)
	st2.Close() // a crash: no flush
	col3, st3 := open(t, path)
	defer st3.Close()
	if got := state(t, col3); got != want {
		t.Errorf("state after the crash:\n%s\nwant\n%s", got, want)
	}
	if s := st3.Stats(); s.Replayed != 1 {
		t.Errorf("replayed %d, want 1", s.Replayed)
	}
}

// TestConcurrentFlush: handlers journal while flushes run; a crash after
// the last message (no flush) restores every summary exactly once.
func TestConcurrentFlush(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	col, st := open(t, path)
	const sensors, perSensor = 4, 150
	payloads := map[string][][]byte{}
	for i := range sensors {
		id := fmt.Sprintf("s%d", i)
		for seq := uint64(1); seq <= perSensor; seq++ {
			payloads[id] = append(payloads[id], payload(t, testSummary(id, seq, 3)))
		}
	}
	done := make(chan struct{})
	flushed := make(chan int)
	go func() {
		n := 0
		for {
			select {
			case <-done:
				flushed <- n
				return
			default:
			}
			if err := st.Flush(); err != nil {
				t.Error(err)
			}
			n++
		}
	}()
	var wg sync.WaitGroup
	for id, ps := range payloads {
		wg.Go(func() {
			for seq, p := range ps {
				now := t0.Add(time.Duration(seq+1) * time.Minute)
				if err := col.Handle(topic(id, "summary"), p, now); err != nil {
					t.Error(err)
				}
				if err := st.Journal(topic(id, "summary"), p, now); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	close(done)
	n := <-flushed
	want := state(t, col)
	st.Close()
	col2, st2 := open(t, path)
	defer st2.Close()
	if got := state(t, col2); got != want {
		t.Errorf("state after %d flushes during the writes and a crash differs:\n%s\nwant\n%s", n, got, want)
	}
	for _, s := range col2.Sensors(t0) {
		if s.Summaries != perSensor || len(s.Gaps) != 0 {
			t.Errorf("sensor %s: %d summaries, gaps %v; want %d, none", s.ID, s.Summaries, s.Gaps, perSensor)
		}
	}
	s := st2.Stats()
	t.Logf("%d flushes during %d summaries; at restart %d journal records replayed, %d skipped", n, sensors*perSensor, s.Replayed, s.ReplaySkipped)
}

func TestFileTooLarge(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(MaxFileBytes + 1); err != nil { // sparse
		t.Fatal(err)
	}
	f.Close()
	_, err = Open(path, collector.New(collector.Options{}, nil), Options{}, nil)
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), path) {
		t.Errorf("Open of a %d-byte file: %v, want ErrTooLarge naming the file", int64(MaxFileBytes+1), err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() != MaxFileBytes+1 {
		t.Errorf("the file was touched: %v", err)
	}
}

// TestGroupCommit: messages journaled at once share transactions, every
// one is reported written, and a store reopened without a flush (as a
// crash leaves it) replays all of them, also those still pending at Close.
func TestGroupCommit(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	col, st := open(t, path)
	const n = 400
	var wg sync.WaitGroup
	var failed atomic.Int64
	for i := range n {
		id, seq := fmt.Sprintf("s%d", i%8), uint64(i/8+1)
		s := testSummary(id, seq, 5)
		p := payload(t, s)
		if err := col.Handle(topic(id, "summary"), p, s.End); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		st.JournalAsync(topic(id, "summary"), p, s.End, func(err error) {
			if err != nil {
				failed.Add(1)
			}
			wg.Done()
		})
	}
	want := state(t, col)
	if err := st.Close(); err != nil { // no flush: the journal holds everything
		t.Fatal(err)
	}
	wg.Wait()
	stats := st.Stats()
	if failed.Load() != 0 || stats.Journaled != n || stats.JournalBatches == 0 || stats.JournalBatches > n {
		t.Fatalf("%d failed; stats %+v", failed.Load(), stats)
	}
	t.Logf("%d records in %d transactions", stats.Journaled, stats.JournalBatches)
	st.JournalAsync("peerwatch/x/summary", []byte("{}"), t0, func(err error) {
		if !errors.Is(err, store.ErrClosed) {
			t.Errorf("journal after Close: %v", err)
		}
	})

	col2, st2 := open(t, path)
	defer st2.Close()
	if got := state(t, col2); got != want {
		t.Fatalf("after reopening:\n got %s\nwant %s", got, want)
	}
	if got := st2.Stats().Replayed; got != n {
		t.Errorf("replayed %d, want %d", got, n)
	}
}

// TestShrinkAfterFlush: a flush rewrites the file without its garbage (the
// records that later flushes replaced) once it is past ShrinkMinBytes,
// and the store reopens to the same state; a flush after little growth
// does not.
func TestShrinkAfterFlush(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	col, st := open(t, path)
	for seq := uint64(1); seq <= 5; seq++ {
		deliver(t, col, st, "s1", seq)
	}
	// Garbage past ShrinkMinBytes in all, as the records of many flushes
	// leave it.
	blob := strings.Repeat("x", 1<<20)
	for range ShrinkMinBytes>>20 + 2 {
		if err := st.file.DB.Update(func(tx *buntdb.Tx) error {
			_, _, err := tx.Set(keyState+"-garbage", blob, nil)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if err := st.file.DB.Update(func(tx *buntdb.Tx) error {
			_, err := tx.Delete(keyState + "-garbage")
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Flush(); err != nil {
		t.Fatal(err)
	}
	stats := st.Stats()
	if stats.Shrinks != 1 || stats.FileSize > 1<<20 {
		t.Fatalf("after the flush: %d rewrites, file of %d bytes; want 1, under 1 MiB", stats.Shrinks, stats.FileSize)
	}
	deliver(t, col, st, "s1", 6)
	if err := st.Flush(); err != nil {
		t.Fatal(err)
	}
	if n := st.Stats().Shrinks; n != 1 {
		t.Errorf("%d rewrites after a small flush, want still 1", n)
	}
	want := state(t, col)
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	col2, st2 := open(t, path)
	defer st2.Close()
	if got := state(t, col2); got != want {
		t.Errorf("reopened after the rewrite:\n got %s\nwant %s", got, want)
	}
	if s := col2.Sensors(t0)[0]; s.Summaries != 6 {
		t.Errorf("%d summaries after reopening, want 6", s.Summaries)
	}
}

// wholeCheckpoint is the checkpoint record as the last flush of st wrote
// it before applying it (with every record, not only those it changed,
// which applies to the same): the mark of the record the flush left, and
// the records of the file.
func wholeCheckpoint(t *testing.T, st *Store) string {
	t.Helper()
	var ck checkpointRecord
	if err := st.file.DB.View(func(tx *buntdb.Tx) error {
		v, err := tx.Get(keyCheckpoint)
		if err != nil {
			return err
		}
		if err := json.Unmarshal([]byte(v), &ck); err != nil {
			return err
		}
		return tx.Ascend("", func(k, v string) bool {
			if validRecordKey(k) {
				ck.Records = append(ck.Records, recordUpdate{Key: k, Value: json.RawMessage(v)})
			}
			return true
		})
	}); err != nil {
		t.Fatal(err)
	}
	return string(appendCheckpoint(nil, &ck))
}

// TestAppendCheckpoint: the checkpoint record written by hand is the
// bytes json.Marshal writes, for a real flush and for edge cases; after
// the flush, the record holds the mark and floor alone.
func TestAppendCheckpoint(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	_, st := openTwoSensors(t, path)
	var stored string
	if err := st.file.DB.View(func(tx *buntdb.Tx) error {
		var err error
		stored, err = tx.Get(keyCheckpoint)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if want := `{"mark":6,"alerts_floor":0,"records":null}`; stored != want {
		t.Errorf("checkpoint record after the flush %s, want %s", stored, want)
	}
	var ck checkpointRecord
	if err := json.Unmarshal([]byte(wholeCheckpoint(t, st)), &ck); err != nil {
		t.Fatal(err)
	}
	st.Close()
	if len(ck.Records) < 4 {
		t.Fatalf("checkpoint of %d records", len(ck.Records))
	}
	for _, c := range []checkpointRecord{
		ck,
		{Mark: 1<<64 - 1, AlertsFloor: 7},
		{Records: []recordUpdate{}},
		{Records: []recordUpdate{{Key: `sensor:<a&b>"\`, Value: json.RawMessage(`{"x":"\u003c\u0026\u003e"}`)}}},
	} {
		want, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendCheckpoint(nil, &c); string(got) != string(want) {
			t.Errorf("appendCheckpoint:\n got %.300s\nwant %.300s", got, want)
		}
	}
}

// TestViewFiles: the per-sensor views come back from their files as they
// were (WhoSees and per-sensor series answer alike); a window whose shards
// change in different flushes is read from at most maxViewFiles files, and
// the files a flush replaced are deleted; a file a failed flush left is
// ignored and deleted. TestDamagedFileMovedAside has the damaged ones.
func TestViewFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	col, st := open(t, path)
	var ids []string
	for i := range 12 {
		ids = append(ids, fmt.Sprintf("s%d", i+1))
	}
	for seq := uint64(1); seq <= 3; seq++ {
		for _, id := range ids {
			deliver(t, col, st, id, seq)
		}
	}
	if err := st.Flush(); err != nil {
		t.Fatal(err)
	}
	// One sensor per flush: their fourth minute changes in one shard
	// each time.
	minute := windowKey("1m", testSummary("s1", 4, 20).End.Truncate(time.Minute))
	for _, id := range ids {
		deliver(t, col, st, id, 4)
		if err := st.Flush(); err != nil {
			t.Fatal(err)
		}
		files, _, err := viewFileGens(viewDir(path))
		if err != nil {
			t.Fatal(err)
		}
		read := st.views[minute].files()
		if len(read) > maxViewFiles || len(files[minute]) != len(read) {
			t.Fatalf("after %s's flush the minute is read from %d files (limit %d), %d on the disk", id, len(read), maxViewFiles, len(files[minute]))
		}
		for window, gens := range files {
			for _, gen := range gens {
				if !slices.Contains(st.views[window][:], gen) {
					t.Errorf("view file %s left on the disk", viewFileName(window, gen))
				}
			}
		}
	}
	// What a flush that failed after writing its files leaves.
	orphan := filepath.Join(viewDir(path), viewFileName(minute, st.viewGen+1))
	writeFile(t, orphan, string(encodeViewFile([]*collector.SensorView{{Sensor: "s1"}})))
	// A name of a generation the store never gives: not taken for one
	// (the next generation would wrap to 0, "no file").
	writeFile(t, filepath.Join(viewDir(path), viewFileName(minute, math.MaxUint64)), "")
	st.Close()

	col2, st2 := open(t, path)
	if r := st2.Stats().Recovered; r != "" {
		t.Fatalf("the file was moved aside: %s", r)
	}
	end := t0.Add(time.Hour)
	for _, cc := range testSummary("s1", 1, 20).Countries {
		for _, level := range []string{"1m", "1h"} {
			key := collector.SeriesKey{By: collector.ByCountry, Country: cc.Country}
			a, _ := col.WhoSeesAt(level, key, t0, end)
			b, _ := col2.WhoSeesAt(level, key, t0, end)
			if len(a) != len(ids) || !reflect.DeepEqual(a, b) {
				t.Errorf("%s %q: WhoSeesAt after the restart %+v, before %+v", level, cc.Country, b, a)
			}
			key.Sensor = "s2"
			x, _ := col.Series(level, t0, end, key)
			y, _ := col2.Series(level, t0, end, key)
			if !reflect.DeepEqual(x, y) {
				t.Errorf("%s %q: s2's series after the restart %+v, before %+v", level, cc.Country, y, x)
			}
		}
	}
	deliver(t, col2, st2, "s1", 5)
	if err := st2.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(orphan); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the failed flush's view file is still there: %v", err)
	}
	if x := st2.views[windowKey("1m", testSummary("s1", 5, 20).End.Truncate(time.Minute))]; st2.viewGen == 0 || st2.viewGen > maxViewGen || x == nil || len(x.files()) != 1 || x.files()[0].Gen != st2.viewGen {
		t.Errorf("generation %d after the flush, the window of s1's seq 5 not read from it", st2.viewGen)
	}
	st2.Close()
}

// encodeViewFile is the content of a view file of views.
func encodeViewFile(views []*collector.SensorView) []byte {
	var b bytes.Buffer
	_ = writeViews(&b, views) // a bytes.Buffer does not fail
	return b.Bytes()
}

// TestFailedFlush: a flush that fails (its view files cannot be written)
// changes nothing on the disk that the next start reads, and the next
// flush writes every record and the views the failed one took, not the
// view files still sound: the state comes back whole, views included.
func TestFailedFlush(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	col, st := openTwoSensors(t, path)
	first := s1ViewFile(t, path) // of a window the failed flush does not touch
	deliver(t, col, st, "s1", 4)
	deliver(t, col, st, "s2", 4)
	// A file where the view directory should be.
	if err := os.Rename(viewDir(path), viewDir(path)+".away"); err != nil {
		t.Fatal(err)
	}
	writeFile(t, viewDir(path), "not a directory")
	if err := st.Flush(); err == nil {
		t.Fatal("flush with no view directory succeeded")
	}
	if s := st.Stats(); s.FlushErrors != 1 || s.LastError == "" {
		t.Errorf("stats %+v: want one flush error", s)
	}
	if err := os.Remove(viewDir(path)); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(viewDir(path)+".away", viewDir(path)); err != nil {
		t.Fatal(err)
	}
	deliver(t, col, st, "s1", 5)
	if err := st.Flush(); err != nil {
		t.Fatal(err)
	}
	// The records were written in full, but not the view files the last
	// good flush left sound.
	if got := s1ViewFile(t, path); got != first {
		t.Errorf("the view file of an untouched window is %s, was %s: written again", got, first)
	}
	want, wantSeen := state(t, col), whoSees(t, col)
	st.Close()
	col2, st2 := open(t, path)
	defer st2.Close()
	if got := state(t, col2); got != want {
		t.Errorf("state after a failed flush and a good one:\n%s\nwant\n%s", got, want)
	}
	if got := whoSees(t, col2); got != wantSeen {
		t.Errorf("who sees after a failed flush and a good one:\n%s\nwant\n%s", got, wantSeen)
	}
	if s := st2.Stats(); s.Replayed != 0 || s.Aside != "" {
		t.Errorf("reopened: replayed %d, aside %q; want 0, none", s.Replayed, s.Aside)
	}
}

// TestCrashAfterAside: a crash right after the start that moved a damaged
// file aside wrote the new file's schema record leaves the old file's
// journal segments and view files aside already: the next start does not
// replay the damaged file's journal into the new store (it did when they
// were moved later, at openJournal).
func TestCrashAfterAside(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	col, st := open(t, path)
	deliver(t, col, st, "s1", 1)
	if err := st.Flush(); err != nil {
		t.Fatal(err)
	}
	deliver(t, col, st, "s1", 2) // in the journal only
	st.Close()
	writeFile(t, path, "garbage, not a buntdb file\n")

	// The start, up to the new file's schema record: the crash comes
	// before Open goes on.
	s := &Store{path: path, col: collector.New(collector.Options{}, nil), log: slog.New(slog.DiscardHandler), stats: Stats{Path: path}}
	f, err := store.OpenFile(path, func(db *buntdb.DB) error {
		_, err := s.load(db)
		return err
	}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if f.Recovery.Aside == "" {
		t.Fatal("the damaged file was not moved aside")
	}
	f.Close()

	col2, st2 := open(t, path)
	defer st2.Close()
	if s := st2.Stats(); s.Replayed != 0 || len(col2.Sensors(t0)) != 0 {
		t.Errorf("replayed %d records of the damaged file's journal into the new file (%d sensors)", s.Replayed, len(col2.Sensors(t0)))
	}
	if aside, _ := filepath.Glob(path + journalSuffix + "*.aside-*"); len(aside) == 0 {
		t.Error("the damaged file's journal segments were not moved aside")
	}
}

// TestIdleFlush: a flush with nothing to write still counts, and moves
// LastFlush on: an idle collector's store is current, and an alert on the
// last flush's age must not fire for it.
func TestIdleFlush(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	col, st := open(t, path)
	defer st.Close()
	deliver(t, col, st, "s1", 1)
	if err := st.Flush(); err != nil {
		t.Fatal(err)
	}
	before := st.Stats()
	time.Sleep(10 * time.Millisecond)
	if err := st.Flush(); err != nil {
		t.Fatal(err)
	}
	after := st.Stats()
	if after.Flushes != before.Flushes+1 || !after.LastFlush.After(before.LastFlush) || after.LastFlushBytes != 0 || after.FileSize != before.FileSize {
		t.Errorf("idle flush: flushes %d -> %d, last %v -> %v, %d bytes, file %d -> %d; want one more, later, 0 bytes, the same file",
			before.Flushes, after.Flushes, before.LastFlush, after.LastFlush, after.LastFlushBytes, before.FileSize, after.FileSize)
	}
}

// TestLimitWriter: a view file stops at its bound, as soon as a write
// would pass it.
func TestLimitWriter(t *testing.T) {
	var b bytes.Buffer
	w := &limitWriter{w: &b, left: 10}
	if n, err := w.Write([]byte("123456")); n != 6 || err != nil {
		t.Fatalf("first write: %d, %v", n, err)
	}
	if n, err := w.Write([]byte("78901")); n != 0 || !errors.Is(err, errViewFileTooLarge) || b.String() != "123456" {
		t.Errorf("write past the bound: %d, %v, wrote %q; want 0, errViewFileTooLarge, nothing more", n, err, b.String())
	}
	if n, err := w.Write([]byte("7890")); n != 4 || err != nil || w.left != 0 {
		t.Errorf("write up to the bound: %d, %v, %d left", n, err, w.left)
	}
}
