package datapath

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/peerwatch/peerwatch/bpf"
	"github.com/peerwatch/peerwatch/internal/testutil"
	"github.com/peerwatch/peerwatch/sensor/prefixes"
)

// The real tables, from the copy of ipdb the boards ship.
var ipdbDir = filepath.Join("..", "..", "board", "common", "ipdb")

var realTables struct {
	once         sync.Once
	country, asn *prefixes.Table
	err          error
	loadTime     time.Duration
}

func loadRealTables(tb testing.TB) (country, asn *prefixes.Table) {
	tb.Helper()
	realTables.once.Do(func() {
		start := time.Now()
		load := func(name, format string, files ...string) *prefixes.Table {
			b := prefixes.NewTable(name)
			for _, f := range files {
				if _, err := prefixes.LoadFile(format, filepath.Join(ipdbDir, f), prefixes.Entry{}, b); err != nil {
					realTables.err = err
				}
			}
			t, _ := b.Build()
			return t
		}
		realTables.country = load("country", prefixes.FormatIPLocationCountry,
			"geo-whois-asn-country-ipv4.csv.gz", "geo-whois-asn-country-ipv6.csv.gz")
		realTables.asn = load("asn", prefixes.FormatIPLocationASN, "asn-ipv4.csv.gz", "asn-ipv6.csv.gz")
		realTables.loadTime = time.Since(start)
	})
	if realTables.err != nil {
		tb.Fatalf("load the real tables from %s: %v", ipdbDir, realTables.err)
	}
	return realTables.country, realTables.asn
}

// Local prefixes of the benchmarks and tests on real tables: addresses no
// RIR hands out, so that every table address is remote.
var realLocal = pfxs("100.64.0.0/10", "fd00:1::/32")

// sampleFrames returns frames from n addresses drawn uniformly over the
// table's prefixes of one family (not one hot address), to the local side.
func sampleFrames(tb testing.TB, t *prefixes.Table, v6 bool, n int, seed uint64) [][]byte {
	tb.Helper()
	rng := rand.New(rand.NewPCG(seed, seed))
	var family []prefixes.Entry
	for _, e := range t.Entries() {
		if e.Prefix.Addr().Is6() == v6 {
			family = append(family, e)
		}
	}
	local := netip.MustParseAddr("100.64.0.1")
	if v6 {
		local = netip.MustParseAddr("fd00:1::1")
	}
	frames := make([][]byte, n)
	for i := range frames {
		src := randomAddrIn(rng, family[rng.IntN(len(family))].Prefix)
		frames[i] = testutil.Frame{Src: src, Dst: local, Proto: 6, SrcPort: 443, DstPort: 40000}.Bytes(tb)
	}
	return frames
}

// benchAgainstFloor runs the program and the empty XDP program on the same
// frames, alternating, and reports ns per packet of both and their ratio.
func benchAgainstFloor(b *testing.B, d *Datapath, frames [][]byte) {
	const repeat = 2000
	empty := d.objs.PeerwatchEmpty
	var ours, floor time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		f := frames[i%len(frames)]
		_, df, err := empty.Benchmark(f, repeat, nil)
		if err != nil {
			b.Fatal(err)
		}
		_, do, err := d.Program().Benchmark(f, repeat, nil)
		if err != nil {
			b.Fatal(err)
		}
		floor += df
		ours += do
	}
	b.ReportMetric(float64(ours.Nanoseconds())/float64(b.N), "ns/pkt")
	b.ReportMetric(float64(floor.Nanoseconds())/float64(b.N), "floor-ns/pkt")
	b.ReportMetric(float64(ours)/float64(floor), "x-floor")
}

// benchCold runs each frame once per BPF_PROG_TEST_RUN call, over many
// distinct addresses, so that map lookups miss the caches; the floor is the
// empty program run the same way.
func benchCold(b *testing.B, d *Datapath, frames [][]byte) {
	empty := d.objs.PeerwatchEmpty
	var ours, floor time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		f := frames[i%len(frames)]
		_, df, err := empty.Benchmark(f, 1, nil)
		if err != nil {
			b.Fatal(err)
		}
		_, do, err := d.Program().Benchmark(f, 1, nil)
		if err != nil {
			b.Fatal(err)
		}
		floor += df
		ours += do
	}
	b.ReportMetric(float64(ours.Nanoseconds())/float64(b.N), "ns/pkt")
	b.ReportMetric(float64(floor.Nanoseconds())/float64(b.N), "floor-ns/pkt")
	b.ReportMetric(float64(ours)/float64(floor), "x-floor")
}

// BenchmarkProgram measures ns/packet of the counter against the empty
// program, in fixed-length mode and with the real country and AS tables.
func BenchmarkProgram(b *testing.B) {
	country, asn := loadRealTables(b)
	cases := []struct {
		name   string
		tables *Tables
		v6     bool
	}{
		{"fixed/ipv4", &Tables{Local: realLocal}, false},
		{"fixed/ipv6", &Tables{Local: realLocal}, true},
		{"country/ipv4", &Tables{Local: realLocal, Prefix: []*prefixes.Table{country}}, false},
		{"country/ipv6", &Tables{Local: realLocal, Prefix: []*prefixes.Table{country}}, true},
		{"country+asn/ipv4", &Tables{Local: realLocal, Prefix: []*prefixes.Table{country, asn}}, false},
		{"country+asn/ipv6", &Tables{Local: realLocal, Prefix: []*prefixes.Table{country, asn}}, true},
	}
	for _, c := range cases {
		d := openTest(b, Config{CounterEntries: 1 << 17})
		if err := d.SetTables(c.tables); err != nil {
			b.Fatal(err)
		}
		hot := sampleFrames(b, country, c.v6, 512, 1)
		b.Run(c.name+"/spread", func(b *testing.B) { benchAgainstFloor(b, d, hot) })
		cold := sampleFrames(b, country, c.v6, 50000, 2)
		b.Run(c.name+"/cold", func(b *testing.B) { benchCold(b, d, cold) })
		d.Close()
	}
}

// fillEpoch writes n distinct keys with counters into the active epoch.
func fillEpoch(tb testing.TB, d *Datapath, n int) {
	tb.Helper()
	st, err := readState(d.objs.State)
	if err != nil {
		tb.Fatal(err)
	}
	m := d.epochMap(activeEpoch(st))
	keys := make([]bpf.CounterRemoteKey, 0, drainBatch)
	values := make([]bpf.CounterRemoteCounters, 0, drainBatch*d.ncpu)
	for i := 0; i < n; i++ {
		a := netip.AddrFrom4([4]byte{byte(1 + i>>16), byte(i >> 8), byte(i), 0})
		if i%2 == 1 {
			a = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, byte(i >> 16), byte(i >> 8), byte(i)})
		}
		keys = append(keys, rawKey(a))
		for range d.ncpu {
			values = append(values, bpf.CounterRemoteCounters{Packets: [2]uint64{1, 2}, Bytes: [2]uint64{100, 200}, ClassPackets: [5]uint64{3}})
		}
		if len(keys) == drainBatch || i == n-1 {
			if _, err := m.BatchUpdate(keys, values, nil); err != nil {
				tb.Fatalf("fill %d keys: %v", i, err)
			}
			keys, values = keys[:0], values[:0]
		}
	}
}

// BenchmarkDrain drains an epoch of 1,000,000 active keys: the switch, the
// read of every key's per-CPU counters, and the clearing at the next drain.
func BenchmarkDrain(b *testing.B) {
	const keys = 1_000_000
	d := openTest(b, Config{CounterEntries: keys})
	for _, method := range []string{"batch", "iterate"} {
		b.Run(fmt.Sprintf("%s/%d", method, keys), func(b *testing.B) {
			var cpu time.Duration
			var heap uint64
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				fillEpoch(b, d, keys)
				runtime.GC()
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				start := cpuTime()
				b.StartTimer()
				var n int
				if method == "batch" {
					ivs, err := d.Drain()
					if err != nil {
						b.Fatal(err)
					}
					n = len(ivs[len(ivs)-1].Remote)
					// The clearing happens at the next drain: count it here.
					if err := d.clearEpoch(activeEpoch(mustState(b, d)) ^ 1); err != nil {
						b.Fatal(err)
					}
				} else {
					ks, raw, err := d.readCountersIterate(d.epochMap(activeEpoch(mustState(b, d))))
					if err != nil {
						b.Fatal(err)
					}
					n = len(ks)
					d.lastKeys[activeEpoch(mustState(b, d))] = raw
					if err := d.clearEpoch(activeEpoch(mustState(b, d))); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				cpu += cpuTime() - start
				runtime.ReadMemStats(&after)
				heap += after.TotalAlloc - before.TotalAlloc
				if n != keys {
					b.Fatalf("drained %d keys, want %d", n, keys)
				}
			}
			b.ReportMetric(float64(cpu.Milliseconds())/float64(b.N), "cpu-ms/drain")
			b.ReportMetric(float64(heap)/float64(b.N)/(1<<20), "alloc-MiB/drain")
		})
	}
}

func mustState(tb testing.TB, d *Datapath) bpf.CounterRunState {
	st, err := readState(d.objs.State)
	if err != nil {
		tb.Fatal(err)
	}
	return st
}

// cpuTime is the CPU time (user + system) this process used so far.
func cpuTime() time.Duration {
	var ru syscallRusage
	getrusage(&ru)
	return ru.total()
}

var _ = ebpf.ErrKeyNotExist
