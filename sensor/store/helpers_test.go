package store

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/peerwatch/peerwatch/sensor/summary"
	"github.com/peerwatch/peerwatch/sensor/traffic"
)

// prefixPool is the remote prefixes test summaries draw from; each has a
// fixed country and AS, as a prefix table would give it.
var prefixPool = func() []summary.PrefixCount {
	countries := []string{"NZ", "KP", "DE", "US", ""}
	var pool []summary.PrefixCount
	for i := range 40 {
		asn := uint32(64500 + i%7)
		if i%5 == 4 {
			asn = 0 // no table places it
		}
		pool = append(pool, summary.PrefixCount{
			Prefix:  netip.PrefixFrom(netip.AddrFrom4([4]byte{175, 45, byte(i), 0}), 24),
			Country: countries[i%len(countries)],
			ASN:     asn,
		})
	}
	return pool
}()

// makeSummary builds a consistent summary (Check passes) of an interval of
// the given width ending at end, with n remote prefixes drawn from the
// pool by seed, and the top top of them listed (the rest in Other).
func makeSummary(tb testing.TB, end time.Time, width time.Duration, seed uint64, n, top int) *summary.Summary {
	tb.Helper()
	rng := rand.New(rand.NewPCG(seed, 7))
	s := &summary.Summary{Schema: summary.SchemaVersion, Sensor: "pw-test", Start: end.Add(-width).UTC(), End: end.UTC()}
	countries := map[string]*summary.CountryCount{}
	ases := map[uint32]*summary.ASCount{}
	var watch traffic.Counters
	for _, i := range rng.Perm(len(prefixPool))[:n] {
		p := prefixPool[i]
		in, out := rng.Uint64N(5000)+1, rng.Uint64N(5000)
		p.Packets = [2]uint64{in, out}
		p.Bytes = [2]uint64{in * (64 + rng.Uint64N(1400)), out * (64 + rng.Uint64N(1400))}
		left := in + out
		for c := range traffic.NumClasses - 1 {
			k := rng.Uint64N(left + 1)
			p.Class[c] = k
			left -= k
		}
		p.Class[traffic.NumClasses-1] = left
		s.Prefixes = append(s.Prefixes, p)
		s.Remote.Add(p.Counters)
		if countries[p.Country] == nil {
			countries[p.Country] = &summary.CountryCount{Country: p.Country}
		}
		countries[p.Country].Add(p.Counters)
		if ases[p.ASN] == nil {
			ases[p.ASN] = &summary.ASCount{ASN: p.ASN}
		}
		ases[p.ASN].Add(p.Counters)
		if p.Country == "KP" {
			watch.Add(p.Counters)
		}
	}
	for _, c := range countries {
		s.Countries = append(s.Countries, *c)
	}
	for _, a := range ases {
		s.ASes = append(s.ASes, *a)
	}
	if watch.Total() > 0 {
		s.Watch = []summary.WatchCount{{List: "kp", Counters: watch}}
	}
	s.Globals = traffic.Globals{
		NonIP: rng.Uint64N(50), Malformed: rng.Uint64N(5), BothLocal: rng.Uint64N(500),
		NeitherLocal: rng.Uint64N(20), Overflow: rng.Uint64N(3),
	}
	s.Globals.Seen = s.Remote.Total() + s.Globals.Buckets()
	s.Sort()
	s.TopN(top)
	if err := s.Check(); err != nil {
		tb.Fatalf("test summary does not reconcile: %v", err)
	}
	return s
}

// mergeAll is the summary of a rollup: the summaries merged one by one,
// each merge cut to top, as the store does.
func mergeAll(top int, ss ...*summary.Summary) *summary.Summary {
	out := &summary.Summary{Schema: summary.SchemaVersion}
	for _, s := range ss {
		if out.Sensor == "" {
			out.Sensor = s.Sensor
		}
		out.Merge(s)
		out.TopN(top)
	}
	return out
}

// sameJSON fails unless a and b encode to the same JSON.
func sameJSON(tb testing.TB, what string, got, want any) {
	tb.Helper()
	g, err := json.Marshal(got)
	if err != nil {
		tb.Fatal(err)
	}
	w, err := json.Marshal(want)
	if err != nil {
		tb.Fatal(err)
	}
	if !bytes.Equal(g, w) {
		tb.Fatalf("%s differs:\n got %s\nwant %s", what, g, w)
	}
}

// sameTotals fails unless the exact parts of two summaries agree: globals,
// remote, countries, ASes, watch lists, and prefixes + other.
func sameTotals(tb testing.TB, what string, got, want *summary.Summary) {
	tb.Helper()
	if err := got.Check(); err != nil {
		tb.Fatalf("%s: %v", what, err)
	}
	type exact struct {
		Globals   traffic.Globals
		Remote    traffic.Counters
		Countries []summary.CountryCount
		ASes      []summary.ASCount
		Watch     []summary.WatchCount
	}
	g, w := *got, *want
	g.Sort()
	w.Sort()
	sameJSON(tb, what, exact{g.Globals, g.Remote, g.Countries, g.ASes, g.Watch}, exact{w.Globals, w.Remote, w.Countries, w.ASes, w.Watch})
}

// logBuffer collects log output for tests that check it.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func testLogger(tb testing.TB) (*slog.Logger, *logBuffer) {
	lb := &logBuffer{}
	h := slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("store log:\n%s", lb.String())
		}
	})
	return slog.New(h), lb
}

// openTest opens a store in a new temporary directory (SyncNever unless
// opts says otherwise) and closes it at the end of the test.
func openTest(tb testing.TB, opts Options) (*Store, string) {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "store.db")
	return reopen(tb, path, opts), path
}

func reopen(tb testing.TB, path string, opts Options) *Store {
	tb.Helper()
	if opts.Sync == SyncEverySecond {
		opts.Sync = SyncNever
	}
	log, _ := testLogger(tb)
	st, err := Open(path, opts, log)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = st.Close() })
	return st
}

// put stores s and fails the test unless it was stored.
func put(tb testing.TB, st *Store, s *summary.Summary, o Origin) {
	tb.Helper()
	stored, err := st.Put(s, o)
	if err != nil {
		tb.Fatal(err)
	}
	if !stored {
		tb.Fatalf("interval %+v not stored", o)
	}
}
