package store

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/peerwatch/peerwatch/sensor/summary"
)

// resp encodes one buntdb log command.
func resp(parts ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(parts))
	for _, p := range parts {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(p), p)
	}
	return b.String()
}

// storeFile writes a store of n intervals and returns its bytes and the
// intervals.
func storeFile(t *testing.T, n int) ([]byte, []*summary.Summary) {
	t.Helper()
	st, path := openTest(t, Options{})
	base := recent(20)
	var ivs []*summary.Summary
	for i := range n {
		s := makeSummary(t, base.Add(time.Duration(i+1)*10*time.Second), 10*time.Second, uint64(i), 6, 6)
		put(t, st, s, Origin{Instance: 1, Generation: uint64(i + 1)})
		ivs = append(ivs, s)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b, ivs
}

// asideFiles lists the damaged-files next to path.
func asideFiles(t *testing.T, path string) []string {
	t.Helper()
	m, err := filepath.Glob(path + ".damaged-*")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestRecovery(t *testing.T) {
	good, ivs := storeFile(t, 5)
	middle := len(good) / 2
	nextDollar := middle + bytes.Index(good[middle:], []byte("\r\n$")) + 2
	schemaRec := resp("set", keySchema, `{"store":1,"summary":1}`)
	cases := []struct {
		name    string
		content []byte
		// want is nil for a file that needs no recovery.
		want error
		// whole: the file is moved aside and a new store started; else the
		// unfinished write at its end is cut off and the rest kept.
		whole bool
		// kept: the intervals still there after Open.
		kept int
	}{
		{name: "zero length", content: []byte{}, want: ErrDamaged, whole: true},
		{name: "sound", content: good, kept: 5},
		{name: "NULs at the end", content: append(bytes.Clone(good), make([]byte, 4096)...), kept: 5},
		// The cut lands in the last Put's rollups, after its journal
		// record: Open completes it, nothing is lost.
		{name: "truncated in a record", content: good[:len(good)-100], want: ErrUnfinishedWrite, kept: 5},
		{name: "truncated and zero-filled", content: append(bytes.Clone(good[:len(good)-100]), make([]byte, 8192)...), want: ErrUnfinishedWrite, kept: 5},
		{name: "cut in the first record", content: good[:30], want: ErrUnfinishedWrite},
		{name: "corrupted framing", content: func() []byte {
			b := bytes.Clone(good)
			b[nextDollar] = '#'
			return b
		}(), want: ErrDamaged, whole: true},
		{name: "corrupted length", content: func() []byte {
			b := bytes.Clone(good)
			b[nextDollar+1] = 'x'
			return b
		}(), want: ErrDamaged, whole: true},
		{name: "only NULs", content: make([]byte, 4096), want: ErrDamaged, whole: true},
		{name: "garbage text", content: []byte("this is not a store\nat all\n"), want: ErrDamaged, whole: true},
		{name: "garbage without newline", content: []byte("\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00"), want: ErrDamaged, whole: true},
		{name: "empty command name", content: []byte("*1\r\n$0\r\n\r\n"), want: ErrDamaged, whole: true},
		{name: "unknown command", content: []byte(resp("incr", "x")), want: ErrDamaged, whole: true},
		{name: "NULs between records", content: func() []byte {
			cut := bytes.Index(good[middle:], []byte("\r\n*")) + middle + 2
			return slicesConcat(good[:cut], make([]byte, 512), good[cut:])
		}(), want: ErrDamaged, whole: true},
		{name: "record not JSON", content: []byte(string(good) + resp("set", rawKey(time.Now().UnixNano()), `{"schema":1,`)), want: ErrDamaged, whole: true},
		{name: "another schema", content: []byte(string(good) + resp("set", keySchema, `{"store":2,"summary":1}`)), want: ErrSchema, whole: true},
		{name: "another summary schema", content: []byte(resp("set", keySchema, `{"store":1,"summary":9}`)), want: ErrSchema, whole: true},
		{name: "not a store", content: []byte(resp("set", "foo", "bar")), want: ErrSchema, whole: true},
		{name: "schema only", content: []byte(schemaRec)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "store.db")
			if err := os.WriteFile(path, c.content, 0o640); err != nil {
				t.Fatal(err)
			}
			log, logs := testLogger(t)
			st, err := Open(path, Options{Sync: SyncNever}, log)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			aside, reason := st.Recovered()
			files := asideFiles(t, path)
			if c.want == nil {
				if aside != "" || reason != nil || len(files) != 0 {
					t.Fatalf("recovered %q (%v), files %v; want nothing", aside, reason, files)
				}
			} else {
				if !errors.Is(reason, c.want) {
					t.Fatalf("reason %v, want %v", reason, c.want)
				}
				if len(files) != 1 || files[0] != aside {
					t.Fatalf("aside %q, files %v", aside, files)
				}
				kept, err := os.ReadFile(aside)
				if err != nil {
					t.Fatal(err)
				}
				level := "WARN"
				if c.whole {
					level = "ERROR"
					if !bytes.Equal(kept, c.content) {
						t.Fatalf("the file moved aside is not the damaged file")
					}
				} else {
					// The cut-off bytes are the end of the damaged file,
					// and the store kept the rest.
					if !bytes.HasSuffix(c.content, kept) || len(kept) == 0 {
						t.Fatalf("kept %d bytes that are not the end of the file", len(kept))
					}
					now, err := os.ReadFile(path)
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.HasPrefix(now, c.content[:len(c.content)-len(kept)]) {
						t.Fatalf("the store did not keep the sound part of the file")
					}
				}
				var line string
				for l := range strings.Lines(logs.String()) {
					if strings.Contains(l, "aside=") {
						line = l
					}
				}
				for _, want := range []string{"level=" + level, "path=" + path, "aside=" + aside, "reason="} {
					if !strings.Contains(line, want) {
						t.Fatalf("log line %q lacks %q", line, want)
					}
				}
			}
			got, err := st.Intervals(time.Time{}, time.Now().Add(time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != c.kept {
				t.Fatalf("%d intervals after Open, want %d", len(got), c.kept)
			}
			if c.kept == 5 {
				sameJSON(t, "intervals", got, ivs)
				w, err := st.Window(ivs[0].Start, ivs[4].End)
				if err != nil {
					t.Fatal(err)
				}
				sameJSON(t, "window", w, mergeAll(DefaultTopN, ivs...))
			}
			// The store works: a new instance's interval goes in and
			// comes out, with a sequence number above the old ones.
			s := makeSummary(t, recent(2), 10*time.Second, 99, 3, 3)
			put(t, st, s, Origin{Instance: 2, Generation: 1})
			if c.kept == 5 && s.Seq != 6 {
				t.Fatalf("seq %d after 5 kept intervals", s.Seq)
			}
			latest, err := st.Latest()
			if err != nil {
				t.Fatal(err)
			}
			sameJSON(t, "latest", latest, s)
			if err := st.Close(); err != nil {
				t.Fatal(err)
			}
			st = reopen(t, path, Options{})
			if aside, reason := st.Recovered(); aside != "" || reason != nil {
				t.Fatalf("the new store needed recovery too: %q %v", aside, reason)
			}
			if l, err := st.Latest(); err != nil || l.Seq != s.Seq {
				t.Fatalf("latest after reopen: %v", err)
			}
		})
	}
}

func slicesConcat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// Whatever byte a crash cuts the file at during a Put, the reopened store
// holds that interval in every level exactly once after the daemon hands
// it out again: never twice, never partly. buntdb writes the commands of a
// transaction in random order, so several rounds try several orders.
// In the "closing" rounds the last interval ends on an hour boundary, so
// that its Put closes the 1m and 1h windows (and 1d at midnight): a crash
// in the middle of writing them is completed at Open.
func TestCrashDuringPut(t *testing.T) {
	t.Parallel()
	for round := range 4 {
		for _, closing := range []bool{false, true} {
			t.Run(fmt.Sprint("round", round, map[bool]string{true: "/closing"}[closing]), func(t *testing.T) {
				t.Parallel()
				crashDuringPut(t, round, closing)
			})
		}
	}
}

// crashDuringPut stores four intervals, then cuts copies of the file at
// every command boundary of the fifth Put and at points inside commands.
func crashDuringPut(t *testing.T, round int, closing bool) {
	st, path := openTest(t, Options{})
	base := recent(20)
	// Windows the last Put closes.
	closed := 0
	if closing {
		base = time.Now().UTC().Truncate(time.Hour).Add(-50 * time.Second)
		closed = 2
		if base.Add(50 * time.Second).Truncate(24 * time.Hour).Equal(base.Add(50 * time.Second)) {
			closed = 3
		}
	}
	var ivs []*summary.Summary
	for i := range 5 {
		ivs = append(ivs, makeSummary(t, base.Add(time.Duration(i+1)*10*time.Second), 10*time.Second, uint64(10*round+i), 6, 6))
	}
	for i, s := range ivs[:4] {
		put(t, st, s, Origin{Instance: 1, Generation: uint64(i + 1)})
	}
	pre := st.fileSize()
	put(t, st, ivs[4], Origin{Instance: 1, Generation: 5})
	post := st.fileSize()
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	full, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// The offsets where the commands of the last Put end, and where its
	// journal record ends.
	var ends []int64
	journalEnd := int64(-1)
	journal := []byte(fmt.Sprintf("*3\r\n$3\r\nset\r\n$%d\r\n%s\r\n", len(keyPending), keyPending))
	p := &logParser{r: bufio.NewReader(bytes.NewReader(full[pre:post])), off: pre}
	for p.off < post {
		start := p.off
		if err := p.command(); err != nil {
			t.Fatal(err)
		}
		ends = append(ends, p.off)
		if bytes.HasPrefix(full[start:], journal) {
			journalEnd = p.off
		}
	}
	// Journal and seq; raw, origin and the closed windows' rollups; the
	// journal's delete.
	if journalEnd < 0 || len(ends) != 5+closed {
		t.Fatalf("the last Put wrote %d commands, want %d; journal end %d", len(ends), 5+closed, journalEnd)
	}
	cuts := append([]int64{pre}, ends...)
	for c := pre + 1; c < post; c += 97 {
		cuts = append(cuts, c)
	}
	for _, cut := range cuts {
		checkCut(t, full[:cut], ivs, cut >= journalEnd)
	}
}

// checkCut opens a store file cut at some byte during the last Put, hands
// the last interval in again, and checks that every interval is counted
// once in every level.
func checkCut(t *testing.T, content []byte, ivs []*summary.Summary, journaled bool) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "cut.db")
	if err := os.WriteFile(path, content, 0o640); err != nil {
		t.Fatal(err)
	}
	st := reopen(t, path, Options{})
	last := *ivs[len(ivs)-1]
	last.Seq = 0
	stored, err := st.Put(&last, Origin{Instance: 1, Generation: uint64(len(ivs))})
	if err != nil {
		t.Fatal(err)
	}
	if stored == journaled {
		t.Fatalf("cut at %d: stored again %v, but the journal record was complete: %v", len(content), stored, journaled)
	}
	want := mergeAll(DefaultTopN, ivs...)
	got, err := st.Intervals(ivs[0].Start, ivs[len(ivs)-1].End)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(ivs) {
		t.Fatalf("cut at %d: %d intervals, want %d", len(content), len(got), len(ivs))
	}
	for _, level := range []string{"1m", "1h", "1d"} {
		series, err := st.Series(level, ivs[0].Start, ivs[len(ivs)-1].End)
		if err != nil {
			t.Fatal(err)
		}
		sameTotals(t, fmt.Sprintf("cut at %d: %s", len(content), level), mergeAll(DefaultTopN, series...), want)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
}
