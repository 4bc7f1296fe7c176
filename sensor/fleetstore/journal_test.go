package fleetstore

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/peerwatch/peerwatch/sensor/collector"
	"github.com/peerwatch/peerwatch/sensor/store"
	"github.com/peerwatch/peerwatch/sensor/summary"
	"github.com/peerwatch/peerwatch/sensor/traffic"
)

// encodeJournalV1 is a journal record's value in a version 1 file.
func encodeJournalV1(topic string, payload []byte, received time.Time) string {
	return strconv.FormatInt(received.UnixNano(), 10) + "\x00" + topic + "\x00" + string(payload)
}

// encodeRecord is a whole journal record, as the journal writes it.
func encodeRecord(n uint64, received time.Time, topic string, payload []byte) []byte {
	return append(recordHead(n, received, topic, payload), payload...)
}

func TestRecordCodec(t *testing.T) {
	at := time.Unix(1700000000, 123456789).UTC()
	b := encodeRecord(7, at, "peerwatch/s1/summary", []byte("\x00\x01{x}"))
	e, n, err := decodeRecord(append(b, 0xff))
	if err != nil || n != len(b) {
		t.Fatalf("decode: %d bytes, %v; want %d", n, err, len(b))
	}
	if want := (journalEntry{n: 7, received: at, topic: "peerwatch/s1/summary", payload: []byte("\x00\x01{x}")}); !reflect.DeepEqual(e, want) {
		t.Errorf("%+v, want %+v", e, want)
	}
	for i := range len(b) {
		if _, _, err := decodeRecord(b[:i]); !errors.Is(err, errShortRecord) {
			t.Errorf("cut to %d bytes: %v, want errShortRecord", i, err)
		}
	}
	// Every bit flipped, one at a time: the checksum or the bounds catch it.
	for i := range 8 * len(b) {
		c := bytes.Clone(b)
		c[i/8] ^= 1 << (i % 8)
		if _, _, err := decodeRecord(c); err == nil {
			t.Fatalf("bit %d flipped: decoded", i)
		}
	}
	if _, _, err := decodeRecord(make([]byte, 64)); !errors.Is(err, errBadRecord) {
		t.Errorf("zeros: %v, want errBadRecord", err)
	}
}

// FuzzDecodeRecord: the decoder never panics, never reads past the
// buffer, and what it decodes encodes back to the same bytes.
func FuzzDecodeRecord(f *testing.F) {
	at := time.Unix(1700000000, 5).UTC()
	f.Add(encodeRecord(1, at, "peerwatch/s1/summary", []byte("payload")))
	f.Add(encodeRecord(1<<40, time.Unix(0, 0), "t", nil))
	f.Add(append(encodeRecord(2, at, "peerwatch/s1/alert", []byte("{}")), encodeRecord(3, at, "x", []byte("y"))...))
	f.Add([]byte{})
	f.Add(make([]byte, 40))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, n, err := decodeRecord(b)
		if err != nil {
			if !errors.Is(err, errShortRecord) && !errors.Is(err, errBadRecord) {
				t.Fatalf("error %v", err)
			}
			return
		}
		if n > len(b) || n < recordHeadSize+bodyFixedSize+1 {
			t.Fatalf("record of %d bytes in %d", n, len(b))
		}
		if again := encodeRecord(e.n, e.received, e.topic, e.payload); !bytes.Equal(again, b[:n]) {
			t.Fatalf("re-encoded %x, decoded from %x", again, b[:n])
		}
	})
}

// segments returns the journal segment files of the store at path.
func segments(t *testing.T, path string) []string {
	t.Helper()
	segs, err := listSegments(path)
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, s := range segs {
		paths = append(paths, s.path)
	}
	return paths
}

// saveFiles returns the files that match pattern, with their content.
func saveFiles(t *testing.T, pattern string) map[string][]byte {
	t.Helper()
	names, err := filepath.Glob(pattern)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for _, n := range names {
		if fi, err := os.Stat(n); err == nil && fi.IsDir() {
			maps.Copy(files, saveFiles(t, filepath.Join(n, "*"))) // the view files
			continue
		}
		if files[n], err = os.ReadFile(n); err != nil {
			t.Fatal(err)
		}
	}
	return files
}

// restoreFiles writes files back as saveFiles found them.
func restoreFiles(t *testing.T, files map[string][]byte) {
	t.Helper()
	for n, b := range files {
		if err := os.WriteFile(n, b, 0o640); err != nil {
			t.Fatal(err)
		}
	}
}

// TestJournalTornTail: a crash in the middle of a write leaves part of a
// record, or zeros, at the end of the last segment; Open cuts them off,
// keeps every record before, and the journal goes on after them.
func TestJournalTornTail(t *testing.T) {
	for _, tc := range []struct {
		name string
		tail func(whole []byte) []byte
	}{
		{"cut record", func(whole []byte) []byte { return whole[:len(whole)/2] }},
		{"cut head", func(whole []byte) []byte { return whole[:5] }},
		{"zeros", func(whole []byte) []byte { return make([]byte, 4096) }},
		{"garbage", func(whole []byte) []byte {
			c := bytes.Clone(whole)
			c[len(c)-1] ^= 0xff // the checksum fails
			return c
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), FileName)
			col, st := open(t, path)
			for seq := uint64(1); seq <= 3; seq++ {
				deliver(t, col, st, "s1", seq)
			}
			want := state(t, col)
			st.Close() // a crash: no flush
			segs := segments(t, path)
			if len(segs) != 1 {
				t.Fatalf("segments %v, want 1", segs)
			}
			s := testSummary("s1", 4, 20)
			tail := tc.tail(encodeRecord(3, s.End, topic("s1", "summary"), payload(t, s)))
			f, err := os.OpenFile(segs[0], os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.Write(tail); err != nil {
				t.Fatal(err)
			}
			f.Close()

			col2, st2 := reopen(t, path, want, "the torn write")
			stats := st2.Stats()
			if stats.Replayed != 3 || stats.JournalCut != int64(len(tail)) {
				t.Errorf("replayed %d, cut %d bytes; want 3 and %d", stats.Replayed, stats.JournalCut, len(tail))
			}
			// The journal goes on: seq 4 is kept across another crash.
			deliver(t, col2, st2, "s1", 4)
			want = state(t, col2)
			st2.Close()
			_, st3 := reopen(t, path, want, "seq 4 and a crash")
			defer st3.Close()
			if s := st3.Stats(); s.JournalCut != 0 {
				t.Errorf("cut %d bytes at the second Open, want 0", s.JournalCut)
			}
		})
	}
}

// TestJournalCorruptRecord: a record damaged in a closed segment (not the
// write a crash cut) is cut off with the rest of its segment, reported,
// and the records of the segments after it are still replayed.
func TestJournalCorruptRecord(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	col, st := openFlushed(t, path)
	deliver(t, col, st, "s1", 2)
	deliver(t, col, st, "s1", 3)
	// A flush whose checkpoint never reached the disk: the journal was
	// rotated at its mark, but the old mark holds.
	old := saveFiles(t, path)
	segsBefore := saveFiles(t, path+journalSuffix+"*")
	if err := st.Flush(); err != nil {
		t.Fatal(err)
	}
	deliver(t, col, st, "s2", 1)
	st.Close()
	restoreFiles(t, old)
	restoreFiles(t, segsBefore)
	segs := segments(t, path)
	if len(segs) != 2 {
		t.Fatalf("segments %v, want 2", segs)
	}
	// seq 3 of s1, the second record of the first segment, is damaged.
	b, err := os.ReadFile(segs[0])
	if err != nil {
		t.Fatal(err)
	}
	_, n, err := decodeRecord(b)
	if err != nil {
		t.Fatal(err)
	}
	b[n+recordHeadSize+bodyFixedSize+5] ^= 0x10
	if err := os.WriteFile(segs[0], b, 0o640); err != nil {
		t.Fatal(err)
	}

	col2, st2 := open(t, path)
	defer st2.Close()
	stats := st2.Stats()
	if stats.Replayed != 2 || stats.JournalCut != int64(len(b)-n) {
		t.Errorf("replayed %d, cut %d bytes; want 2 (s1 seq 2, s2 seq 1) and %d", stats.Replayed, stats.JournalCut, len(b)-n)
	}
	got := map[string]uint64{}
	for _, s := range col2.Sensors(t0.Add(time.Hour)) {
		got[s.ID] = s.Summaries
	}
	if got["s1"] != 2 || got["s2"] != 1 {
		t.Errorf("summaries by sensor %v, want s1 2 (seq 3 lost with its record), s2 1", got)
	}
}

// TestFlushCrashPoints: a crash at each step of a flush (before its
// checkpoint record, after it, after it was applied, before the old
// segments were deleted, after) loses no journaled summary and counts
// none twice.
func TestFlushCrashPoints(t *testing.T) {
	for _, tc := range []struct {
		name string
		// crash leaves the files as a crash at that step would, from
		// those before the flush (before) and after it.
		crash func(t *testing.T, path string, before, after map[string][]byte)
	}{
		{"before the checkpoint record", func(t *testing.T, path string, before, after map[string][]byte) {
			// The new segment and view files were made; the store file
			// is as before.
			restoreFiles(t, map[string][]byte{path: before[path]})
			restoreSegments(t, before)
			restoreViewFiles(t, path, before)
		}},
		{"checkpoint written, old segments not deleted", func(t *testing.T, path string, before, after map[string][]byte) {
			restoreSegments(t, before)
			restoreViewFiles(t, path, before)
		}},
		{"after the flush", func(t *testing.T, path string, before, after map[string][]byte) {}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), FileName)
			col, st := openFlushed(t, path)
			deliver(t, col, st, "s1", 2)
			deliver(t, col, st, "s2", 1)
			before := saveFiles(t, path+"*")
			if err := st.Flush(); err != nil {
				t.Fatal(err)
			}
			after := saveFiles(t, path+"*")
			deliver(t, col, st, "s1", 3) // in the new segment
			want := state(t, col)
			st.Close()
			tc.crash(t, path, before, after)

			_, st2 := reopen(t, path, want, "the crash")
			st2.Close()
			_, st3 := reopen(t, path, want, "a second restart")
			defer st3.Close()
			if s := st3.Stats(); s.Replayed != 0 || s.JournalFiles != 1 {
				t.Errorf("second restart: replayed %d, %d segments; want 0 and 1", s.Replayed, s.JournalFiles)
			}
		})
	}
}

// restoreViewFiles writes back the view files of files.
func restoreViewFiles(t *testing.T, path string, files map[string][]byte) {
	t.Helper()
	for n, b := range files {
		if filepath.Dir(n) == viewDir(path) {
			restoreFiles(t, map[string][]byte{n: b})
		}
	}
}

// restoreSegments writes back the journal segments of files.
func restoreSegments(t *testing.T, files map[string][]byte) {
	t.Helper()
	for n, b := range files {
		if filepath.Ext(n) != ".lock" && bytes.Contains([]byte(n), []byte(journalSuffix)) {
			restoreFiles(t, map[string][]byte{n: b})
		}
	}
}

// TestMigrateV1: a version 1 file, its journal in buntdb records, is
// migrated: the journal replayed, the records deleted and the schema
// record rewritten; a crash before the last step migrates it again.
func TestMigrateV1(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	_, st := openFlushed(t, path)
	mark := st.nextJournal
	st.Close()
	for _, p := range segments(t, path) {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
	// As version 1 wrote it: the schema, and two journal records.
	setRecord(t, path, keySchema, `{"store":1,"summary":`+strconv.Itoa(currentSchema.Summary)+`}`)
	want := collectorWith(t, "s1", 1, 2, 3)
	for seq := uint64(2); seq <= 3; seq++ {
		s := testSummary("s1", seq, 20)
		setRecord(t, path, journalKey(mark+seq-2), encodeJournalV1(topic("s1", "summary"), payload(t, s), s.End))
	}

	_, st2 := reopen(t, path, want, "the migration")
	if s := st2.Stats(); s.Replayed != 2 || s.Aside != "" {
		t.Errorf("replayed %d, aside %q; want 2, none", s.Replayed, s.Aside)
	}
	st2.Close()
	_, st3 := reopen(t, path, want, "reopening the migrated file")
	if s := st3.Stats(); s.Replayed != 0 {
		t.Errorf("replayed %d after the migration, want 0", s.Replayed)
	}
	st3.Close()

	// A crash before the last step: the checkpoint that covers the
	// version 1 journal is written, the records and the schema are not.
	setRecord(t, path, keySchema, `{"store":1,"summary":`+strconv.Itoa(currentSchema.Summary)+`}`)
	for seq := uint64(2); seq <= 3; seq++ {
		s := testSummary("s1", seq, 20)
		setRecord(t, path, journalKey(mark+seq-2), encodeJournalV1(topic("s1", "summary"), payload(t, s), s.End))
	}
	_, st4 := reopen(t, path, want, "a crash in the migration")
	defer st4.Close()
	if s := st4.Stats(); s.Replayed != 0 || s.Aside != "" {
		t.Errorf("replayed %d, aside %q; want 0 (below the mark), none", s.Replayed, s.Aside)
	}
}

// collectorWith is the state of a collector that handled the given seqs
// of one sensor, on a store of its own.
func collectorWith(t *testing.T, id string, seqs ...uint64) string {
	t.Helper()
	col, st := open(t, filepath.Join(t.TempDir(), FileName))
	defer st.Close()
	for _, seq := range seqs {
		deliver(t, col, st, id, seq)
	}
	return state(t, col)
}

// TestJournalSyncPolicies: the journal keeps what it was given under each
// sync policy, across a crash (no flush) and a flush.
func TestJournalSyncPolicies(t *testing.T) {
	for _, policy := range []store.SyncPolicy{store.SyncAlways, store.SyncEverySecond, store.SyncNever} {
		t.Run(policy.String(), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), FileName)
			openWith := func() (*collector.Collector, *Store) {
				col := collector.New(collector.Options{}, nil)
				st, err := Open(path, col, Options{Sync: policy}, nil)
				if err != nil {
					t.Fatal(err)
				}
				return col, st
			}
			col, st := openWith()
			deliver(t, col, st, "s1", 1)
			if err := st.Flush(); err != nil {
				t.Fatal(err)
			}
			deliver(t, col, st, "s1", 2)
			if policy == store.SyncEverySecond {
				time.Sleep(1500 * time.Millisecond) // the syncer's turn
			}
			want := state(t, col)
			st.Close()
			col2, st2 := openWith()
			defer st2.Close()
			if got := state(t, col2); got != want {
				t.Errorf("state:\n%s\nwant\n%s", got, want)
			}
			if s := st2.Stats(); s.Replayed != 1 || s.JournalFiles != 1 || s.JournalDepth != 0 {
				t.Errorf("replayed %d, %d segments, depth %d; want 1, 1 and 0 (Open flushed)", s.Replayed, s.JournalFiles, s.JournalDepth)
			}
		})
	}
}

// openFlushed opens a new store at path with summary 1 of s1 flushed.
func openFlushed(t *testing.T, path string) (*collector.Collector, *Store) {
	t.Helper()
	col, st := open(t, path)
	deliver(t, col, st, "s1", 1)
	if err := st.Flush(); err != nil {
		t.Fatal(err)
	}
	return col, st
}

// openTwoSensors opens a store at path with seqs 1 to 3 of sensors s1 and
// s2, flushed.
func openTwoSensors(t *testing.T, path string) (*collector.Collector, *Store) {
	t.Helper()
	col, st := open(t, path)
	for seq := uint64(1); seq <= 3; seq++ {
		deliver(t, col, st, "s1", seq)
		deliver(t, col, st, "s2", seq)
	}
	if err := st.Flush(); err != nil {
		t.Fatal(err)
	}
	return col, st
}

// reopen opens the store at path and checks that it restores the state
// want, as it was before what happened (after).
func reopen(t *testing.T, path, want, after string) (*collector.Collector, *Store) {
	t.Helper()
	col, st := open(t, path)
	if got := state(t, col); got != want {
		t.Errorf("state after %s:\n%s\nwant\n%s", after, got, want)
	}
	return col, st
}

// TestConsumed: what a partial writev leaves to write.
func TestConsumed(t *testing.T) {
	iovs := func() [][]byte { return [][]byte{[]byte("abc"), []byte("de"), {}, []byte("f")} }
	for n, want := range []string{"abcdef", "bcdef", "cdef", "def", "ef", "f", ""} {
		var got []byte
		for _, b := range consumed(iovs(), n) {
			got = append(got, b...)
		}
		if string(got) != want {
			t.Errorf("consumed %d: %q, want %q", n, got, want)
		}
	}
}

// TestJournalWriteFailure: a journal write that fails is reported to the
// handler (no acknowledgement), the segment takes no more records when
// the failed write could not be undone, and the next flush, on a new
// segment, keeps what the collector counted.
func TestJournalWriteFailure(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	col, st := openFlushed(t, path)
	// The descriptor goes away under the journal: the write fails, and so
	// does the truncation that would undo it.
	if err := st.jr.f.Close(); err != nil {
		t.Fatal(err)
	}
	s := testSummary("s1", 2, 20)
	p := payload(t, s)
	if err := col.Handle(topic("s1", "summary"), p, s.End); err != nil {
		t.Fatal(err)
	}
	if err := st.Journal(topic("s1", "summary"), p, s.End); err == nil {
		t.Fatal("journal write on a closed segment: no error")
	}
	if err := st.Journal(topic("s1", "summary"), p, s.End); err == nil || !strings.Contains(err.Error(), "unusable until the next flush") {
		t.Fatalf("second write: %v, want the segment unusable", err)
	}
	if err := st.Flush(); err == nil {
		t.Fatal("flush that could not close the broken segment: no error")
	}
	if err := st.Flush(); err != nil {
		t.Fatalf("flush on the new segment: %v", err)
	}
	deliver(t, col, st, "s1", 3)
	want := state(t, col)
	if s := st.Stats(); s.JournalErrors != 2 {
		t.Errorf("%d journal errors, want 2", s.JournalErrors)
	}
	st.Close()
	_, st2 := reopen(t, path, want, "a failed journal write and a crash")
	defer st2.Close()
	if s := st2.Stats(); s.Replayed != 1 || s.JournalCut != 0 {
		t.Errorf("replayed %d, cut %d bytes; want 1 (seq 3; seq 2 is in the checkpoint) and 0", s.Replayed, s.JournalCut)
	}
}

// TestMigrateV1Views: the per-sensor views of a version 1 file, JSON maps
// in its window records, come through the migration into view files:
// the same answers to "which sensors see this country, this AS".
func TestMigrateV1Views(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	col, st := openTwoSensors(t, path)
	want := whoSees(t, col)
	cp := col.Checkpoint(true)
	st.Close()

	// Rewrite the file as version 1 kept it: the views in the window
	// records, no view files; with bad, one country that is no code.
	writeV1 := func(bad string) {
		t.Helper()
		views := 0
		for _, w := range cp.Windows {
			v1 := windowV1{windowRecord: windowRecord{WindowState: w}, BySeen: map[string]map[string]traffic.Counters{}, ByAS: map[uint32]map[string]traffic.Counters{}}
			for _, sv := range w.Views {
				for _, c := range sv.Countries {
					cc := summary.CountryOf(int(c.Key))
					if bad != "" {
						cc = bad
					}
					if v1.BySeen[cc] == nil {
						v1.BySeen[cc] = map[string]traffic.Counters{}
					}
					v1.BySeen[cc][sv.Sensor] = c.Counters
				}
				for _, a := range sv.ASes {
					if v1.ByAS[a.Key] == nil {
						v1.ByAS[a.Key] = map[string]traffic.Counters{}
					}
					v1.ByAS[a.Key][sv.Sensor] = a.Counters
				}
				views++
			}
			b, err := json.Marshal(v1)
			if err != nil {
				t.Fatal(err)
			}
			setRecord(t, path, windowKey(w.Level, w.Start), string(b))
		}
		if err := os.RemoveAll(viewDir(path)); err != nil {
			t.Fatal(err)
		}
		if views == 0 {
			t.Fatal("no per-sensor views to migrate")
		}
		setRecord(t, path, keySchema, `{"store":1,"summary":`+strconv.Itoa(currentSchema.Summary)+`}`)
	}
	writeV1("")

	for _, what := range []string{"the migration", "reopening the migrated file"} {
		col2, st2 := open(t, path)
		if got := whoSees(t, col2); got != want {
			t.Errorf("after %s, who sees:\n%s\nwant\n%s", what, got, want)
		}
		if s := st2.Stats(); s.Aside != "" {
			t.Errorf("after %s: moved aside to %s", what, s.Aside)
		}
		st2.Close()
	}

	// A version 1 file whose views name a country that is no code is
	// damaged: moved aside, and collectord starts on a new store.
	writeV1("nz")
	_, st3 := open(t, path)
	if s := st3.Stats(); s.Aside == "" || !strings.Contains(s.Recovered, `country "nz"`) {
		t.Errorf("a bad country in a version 1 view: aside %q, recovered %q; want moved aside for it", s.Aside, s.Recovered)
	}
	st3.Close()
}

// whoSees is what col says of which sensors see each country and AS of
// testSummary, at every level.
func whoSees(t *testing.T, col *collector.Collector) string {
	t.Helper()
	end := t0.Add(48 * time.Hour)
	out := map[string]any{}
	for _, level := range col.Levels() {
		for _, key := range []collector.SeriesKey{{By: collector.ByCountry, Country: "NZ"}, {By: collector.ByCountry, Country: "KP"}, {By: collector.ByAS, ASN: 64500}, {By: collector.ByAS, ASN: 64501}} {
			seen, ok := col.WhoSeesAt(level, key, t0.Add(-48*time.Hour), end)
			if !ok {
				t.Fatalf("level %s, %+v: not answered", level, key)
			}
			out[fmt.Sprintf("%s %s%s%d", level, key.By, key.Country, key.ASN)] = seen
		}
	}
	b, err := json.Marshal(out)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestJournalNumberGap: a batch whose write failed and was undone leaves
// its numbers unwritten; the records after it in the same segment were
// acknowledged and are replayed after a crash, not cut as out of order.
func TestJournalNumberGap(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	col, st := openFlushed(t, path)
	deliver(t, col, st, "s1", 2)
	// What a failed and undone batch leaves: a number taken, no record.
	st.mu.Lock()
	st.nextJournal++
	st.mu.Unlock()
	deliver(t, col, st, "s1", 3)
	deliver(t, col, st, "s1", 4)
	want := state(t, col)
	st.Close() // as a crash leaves it: no flush
	_, st2 := reopen(t, path, want, "a gap in the numbers and a crash")
	defer st2.Close()
	if s := st2.Stats(); s.Replayed != 3 || s.JournalCut != 0 {
		t.Errorf("replayed %d, cut %d bytes; want 3 and 0", s.Replayed, s.JournalCut)
	}
}

// TestJournalDirName: a data directory whose name holds glob characters,
// given as a relative path: the journal's segments are found and
// replayed after a crash.
func TestJournalDirName(t *testing.T) {
	t.Chdir(t.TempDir())
	if err := os.Mkdir("data[1]*?", 0o755); err != nil {
		t.Fatal(err)
	}
	path := "./data[1]*?/" + FileName
	col, st := openFlushed(t, path)
	deliver(t, col, st, "s1", 2)
	want := state(t, col)
	st.Close() // as a crash leaves it: no flush
	_, st2 := reopen(t, path, want, "a crash")
	defer st2.Close()
	if s := st2.Stats(); s.Replayed != 1 {
		t.Errorf("replayed %d, want 1", s.Replayed)
	}
}
