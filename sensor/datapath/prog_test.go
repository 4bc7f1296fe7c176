package datapath

import (
	"bytes"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/peerwatch/peerwatch/bpf"
	"github.com/peerwatch/peerwatch/internal/testutil"
	"github.com/peerwatch/peerwatch/sensor/prefixes"
)

// Tier 2: the program in the kernel, driven through BPF_PROG_TEST_RUN.

func openTest(tb testing.TB, cfg Config) *Datapath {
	tb.Helper()
	testutil.RequireBPF(tb)
	d, err := Open(cfg, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { d.Close() })
	return d
}

func run(tb testing.TB, prog *ebpf.Program, frame []byte) {
	tb.Helper()
	ret, err := prog.Run(&ebpf.RunOptions{Data: frame})
	if err != nil {
		tb.Fatalf("run program: %v", err)
	}
	if ret != 2 { // XDP_PASS
		tb.Fatalf("verdict %d, want XDP_PASS", ret)
	}
}

func drainOne(tb testing.TB, d *Datapath) *Interval {
	tb.Helper()
	merged := &Interval{}
	for _, iv := range drainAll(tb, d) {
		if err := iv.Check(); err != nil {
			tb.Fatalf("interval %d: %v", iv.Generation, err)
		}
		merged.Globals.Add(iv.Globals)
		merged.Remote = append(merged.Remote, iv.Remote...)
		merged.Generation = iv.Generation
	}
	return merged
}

// randomTable makes a table of nested random prefixes inside base.
func randomTable(tb testing.TB, rng *rand.Rand, name string, base netip.Prefix, n, minBits, maxBits int) *prefixes.Table {
	tb.Helper()
	b := prefixes.NewTable(name)
	for i := range n {
		bits := minBits + rng.IntN(maxBits-minBits+1)
		p := netip.PrefixFrom(randomAddrIn(rng, base), bits).Masked()
		_ = b.Add(prefixes.Entry{Prefix: p, Country: fmt.Sprintf("%c%c", 'A'+i%26, 'A'+i/26%26), ASN: uint32(i)})
	}
	t, _ := b.Build()
	return t
}

func randomAddrIn(rng *rand.Rand, p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := range b {
		bitsBefore := i * 8
		if bitsBefore+8 <= p.Bits() {
			continue
		}
		r := byte(rng.IntN(256))
		if keep := p.Bits() - bitsBefore; keep > 0 {
			mask := byte(0xFF << (8 - keep))
			r = b[i]&mask | r&^mask
		}
		b[i] = r
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// TestProgExactAttribution sends packets from random remote addresses
// through the program and checks that resolving the drained keys gives every
// table exactly the per-prefix counts that resolving the addresses gives.
func TestProgExactAttribution(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	v4Base := netip.MustParsePrefix("100.64.0.0/10")
	v6Base := netip.MustParsePrefix("2001:db8::/32")
	mk := func(name string, minV4, minV6 int) *prefixes.Table {
		b := prefixes.NewTable(name)
		for _, tbl := range []*prefixes.Table{
			randomTable(t, rng, name, v4Base, 400, minV4, 32),
			randomTable(t, rng, name, v6Base, 400, minV6, 128),
		} {
			for _, e := range tbl.Entries() {
				_ = b.Add(e)
			}
		}
		tbl, _ := b.Build()
		return tbl
	}
	country, asn := mk("country", 12, 36), mk("asn", 16, 40)
	local4, local6 := netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("2001:db9::10")
	tables := &Tables{Local: pfxs("192.0.2.0/24", "2001:db9::/32"), Prefix: []*prefixes.Table{country, asn}}

	d := openTest(t, Config{})
	if err := d.SetTables(tables); err != nil {
		t.Fatal(err)
	}
	drainOne(t, d) // the interval before the tables

	type count map[string]map[netip.Prefix]uint64
	want, got := count{}, count{}
	add := func(c count, addr netip.Addr, n uint64) {
		for _, tbl := range tables.Prefix {
			if c[tbl.Name()] == nil {
				c[tbl.Name()] = map[netip.Prefix]uint64{}
			}
			e, ok := tbl.Lookup(addr)
			if !ok {
				e.Prefix = netip.Prefix{} // unmatched
			}
			c[tbl.Name()][e.Prefix] += n
		}
	}
	const packets = 4000
	for i := range packets {
		var remote, local netip.Addr
		if i%2 == 0 {
			remote, local = randomAddrIn(rng, v4Base), local4
		} else {
			remote, local = randomAddrIn(rng, v6Base), local6
		}
		f := testutil.Frame{Src: remote, Dst: local}
		if i%3 == 0 {
			f = testutil.Frame{Src: local, Dst: remote}
		}
		run(t, d.Program(), f.Bytes(t))
		add(want, remote, 1)
	}
	iv := drainOne(t, d)
	if iv.Globals.Seen != packets || iv.Globals.Buckets() != 0 {
		t.Fatalf("seen %d, buckets %+v; want %d packets all on remote keys", iv.Globals.Seen, iv.Globals, packets)
	}
	for _, r := range iv.Remote {
		add(got, r.Key, r.Total())
	}
	for name, w := range want {
		if len(w) < 100 {
			t.Errorf("table %s: only %d prefixes hit, the test is too weak", name, len(w))
		}
		for p, n := range w {
			if got[name][p] != n {
				t.Errorf("table %s prefix %v: counted %d, sent %d", name, p, got[name][p], n)
			}
		}
		if len(got[name]) != len(w) {
			t.Errorf("table %s: %d prefixes counted, %d sent to", name, len(got[name]), len(w))
		}
	}
}

// TestProgDirectionsAndClasses checks one packet of each kind end to end
// through the Go side: direction, class, bytes and buckets.
func TestProgDirectionsAndClasses(t *testing.T) {
	d := openTest(t, Config{})
	if err := d.SetTables(&Tables{Local: pfxs("192.0.2.0/24", "2001:db8:1::/48")}); err != nil {
		t.Fatal(err)
	}
	drainOne(t, d)
	local, remote := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("198.51.100.77")
	in := testutil.Frame{Src: remote, Dst: local, Payload: 100}.Bytes(t)
	out := testutil.Frame{Src: local, Dst: remote, Proto: 6, DstPort: 443}.Bytes(t)
	wg := testutil.Frame{Src: local, Dst: remote, DstPort: 51820}.Bytes(t)
	both := testutil.Frame{Src: local, Dst: local}.Bytes(t)
	neither := testutil.Frame{Src: remote, Dst: remote}.Bytes(t)
	v6 := testutil.Frame{Src: netip.MustParseAddr("2001:db8:1::1"), Dst: netip.MustParseAddr("2a00:1450:4001:81c::200e")}.Bytes(t)
	truncated := in[:14+10] // Ethernet, then half an IPv4 header
	for _, f := range [][]byte{in, out, wg, both, neither, v6, truncated} {
		run(t, d.Program(), f)
	}
	iv := drainOne(t, d)
	want := Globals{Seen: 7, BothLocal: 1, NeitherLocal: 1, Malformed: 1}
	if iv.Globals != want {
		t.Errorf("globals %+v, want %+v", iv.Globals, want)
	}
	byKey := map[string]Counters{}
	for _, r := range iv.Remote {
		byKey[r.Key.String()] = r.Counters
	}
	wantKeys := map[string]Counters{
		"198.51.100.0": {
			Packets: [2]uint64{1, 2},
			Bytes:   [2]uint64{uint64(len(in)), uint64(len(out) + len(wg))},
			Class:   [NumClasses]uint64{TCP: 1, UDP: 1, Tunnel: 1},
		},
		"2a00:1450:4001::": {
			Packets: [2]uint64{0, 1},
			Bytes:   [2]uint64{0, uint64(len(v6))},
			Class:   [NumClasses]uint64{UDP: 1},
		},
	}
	if len(byKey) != len(wantKeys) {
		t.Errorf("keys %v, want %v", byKey, wantKeys)
	}
	for k, w := range wantKeys {
		if byKey[k] != w {
			t.Errorf("key %s: %+v, want %+v", k, byKey[k], w)
		}
	}
}

// TestProgMapFull floods more distinct remote keys than an epoch holds (its
// counter map and its per-CPU caches): the rest is overflow, nothing is lost,
// and the next drain frees the room.
func TestProgMapFull(t *testing.T) {
	const room = 64
	d := openTest(t, Config{CounterEntries: room})
	if err := d.SetTables(&Tables{Local: pfxs("192.0.2.0/24")}); err != nil {
		t.Fatal(err)
	}
	drainOne(t, d)
	local := netip.MustParseAddr("192.0.2.1")
	const sources = 3 * 4096
	frames := make([][]byte, sources)
	for i := range frames {
		src := netip.AddrFrom4([4]byte{198, byte(i >> 8), byte(i), 1})
		frames[i] = testutil.Frame{Src: src, Dst: local}.Bytes(t)
	}
	for round := range 3 {
		for _, f := range frames {
			run(t, d.Program(), f)
		}
		iv := drainOne(t, d)
		var remote uint64
		for _, r := range iv.Remote {
			remote += r.Total()
		}
		// One packet per source: each kept key holds exactly one.
		if iv.Globals.Seen != sources || remote != uint64(len(iv.Remote)) || iv.Globals.Overflow != sources-remote {
			t.Fatalf("round %d: seen %d, %d keys with %d packets, overflow %d", round, iv.Globals.Seen, len(iv.Remote), remote, iv.Globals.Overflow)
		}
		if maxKeys := room + d.ncpu*cacheSlots; len(iv.Remote) < room || len(iv.Remote) > maxKeys {
			t.Fatalf("round %d: %d keys kept, want between %d and %d", round, len(iv.Remote), room, maxKeys)
		}
		t.Logf("round %d: %d keys kept, %d packets overflowed", round, len(iv.Remote), iv.Globals.Overflow)
	}
}

// TestProgRestartFromPins closes the Go side and opens it again from the
// pins: counts of the open interval continue without loss.
func TestProgRestartFromPins(t *testing.T) {
	dir := testutil.PinDir(t)
	cfg := Config{PinDir: dir}
	tables := &Tables{Local: pfxs("192.0.2.0/24")}
	local, remote := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("198.51.100.1")
	frame := testutil.Frame{Src: remote, Dst: local}.Bytes(t)

	d1 := openTest(t, cfg)
	if err := d1.SetTables(tables); err != nil {
		t.Fatal(err)
	}
	first := drainOne(t, d1)
	for range 100 {
		run(t, d1.Program(), frame)
	}
	if err := d1.Close(); err != nil {
		t.Fatal(err)
	}

	d2 := openTest(t, cfg)
	if err := d2.SetTables(tables); err != nil { // the same tables: kept, no switch
		t.Fatal(err)
	}
	for range 50 {
		run(t, d2.Program(), frame)
	}
	ivs := drainTwice(t, d2)
	// The interval drained just before the restart comes again, marked, under
	// its generation: the kernel cannot know the caller stored it.
	if len(ivs) != 2 || !ivs[0].Recovered || ivs[0].Generation != first.Generation || ivs[0].Globals.Seen != first.Globals.Seen {
		t.Fatalf("got %d intervals, want interval %d recovered and the open one", len(ivs), first.Generation)
	}
	iv := ivs[1]
	if iv.Globals.Seen != 150 || len(iv.Remote) != 1 || iv.Remote[0].Packets[In] != 150 {
		t.Fatalf("after restart: seen %d, remote %+v; want 150 packets in", iv.Globals.Seen, iv.Remote)
	}
	if iv.Generation != first.Generation+1 {
		t.Errorf("generation %d, want %d", iv.Generation, first.Generation+1)
	}
	if iv.Tables != tables {
		t.Error("interval does not carry the tables it was counted under")
	}
}

// drainAll drains until the open interval is closed: the intervals closed
// by a table swap or found at start come first, alone.
func drainAll(tb testing.TB, d *Datapath) []*Interval {
	tb.Helper()
	var ivs []*Interval
	for {
		pending := len(d.pending) > 0 // then Drain leaves the open interval for the next one
		more, err := d.Drain()
		if err != nil {
			tb.Fatal(err)
		}
		ivs = append(ivs, more...)
		if !pending {
			return ivs
		}
	}
}

// drainTwice drains once for the interval found at start, which Drain
// hands out alone, and once for the open one.
func drainTwice(t *testing.T, d *Datapath) []*Interval {
	t.Helper()
	var ivs []*Interval
	for i := range 2 {
		more, err := d.Drain()
		if err != nil {
			t.Fatal(err)
		}
		if len(more) != 1 {
			t.Fatalf("drain %d after the restart: %d intervals, want 1", i+1, len(more))
		}
		ivs = append(ivs, more...)
	}
	return ivs
}

// TestProgRecoveredInterval kills the Go side between a drain and the next
// one: the interval is found again at start under the same generation.
func TestProgRecoveredInterval(t *testing.T) {
	dir := testutil.PinDir(t)
	cfg := Config{PinDir: dir}
	frame := testutil.Frame{Src: netip.MustParseAddr("198.51.100.1"), Dst: netip.MustParseAddr("192.0.2.1")}.Bytes(t)
	d1 := openTest(t, cfg)
	if err := d1.SetTables(&Tables{Local: pfxs("192.0.2.0/24")}); err != nil {
		t.Fatal(err)
	}
	drainOne(t, d1)
	for range 10 {
		run(t, d1.Program(), frame)
	}
	ivs, err := d1.Drain()
	if err != nil {
		t.Fatal(err)
	}
	lost := ivs[len(ivs)-1]
	d1.Close() // dies before the interval was stored

	d2 := openTest(t, cfg)
	ivs = drainTwice(t, d2)
	if len(ivs) != 2 || !ivs[0].Recovered {
		t.Fatalf("got %d intervals, want the recovered one and the open one", len(ivs))
	}
	if ivs[0].Instance == 0 || ivs[0].Instance != lost.Instance || ivs[1].Instance != lost.Instance {
		t.Errorf("instances %x and %x after restart, want %x: the maps are the same", ivs[0].Instance, ivs[1].Instance, lost.Instance)
	}
	if ivs[0].Generation != lost.Generation || ivs[0].Globals != lost.Globals {
		t.Errorf("recovered generation %d %+v, want %d %+v", ivs[0].Generation, ivs[0].Globals, lost.Generation, lost.Globals)
	}
	if ivs[1].Globals.Seen != 0 {
		t.Errorf("open interval saw %d packets, want 0", ivs[1].Globals.Seen)
	}
}

// TestProgTableSwap switches tables between packets: each interval is
// counted under one table set and nothing is lost.
func TestProgTableSwap(t *testing.T) {
	d := openTest(t, Config{})
	a := &Tables{Local: pfxs("192.0.2.0/24")}
	b := &Tables{Local: pfxs("198.51.100.0/24")}
	frame := testutil.Frame{Src: netip.MustParseAddr("198.51.100.1"), Dst: netip.MustParseAddr("192.0.2.1")}.Bytes(t)
	var total Globals
	for i := range 6 {
		tables := a
		if i%2 == 1 {
			tables = b
		}
		if err := d.SetTables(tables); err != nil {
			t.Fatal(err)
		}
		for range 10 {
			run(t, d.Program(), frame)
		}
		ivs := drainAll(t, d)
		last := ivs[len(ivs)-1]
		if last.Tables != tables {
			t.Fatalf("swap %d: interval carries other tables", i)
		}
		var dir Direction = In
		if tables == b {
			dir = Out
		}
		if len(last.Remote) != 1 || last.Remote[0].Packets[dir] != 10 {
			t.Fatalf("swap %d: remote %+v, want 10 packets in direction %d", i, last.Remote, dir)
		}
		for _, iv := range ivs {
			total.Add(iv.Globals)
		}
	}
	if total.Seen != 60 {
		t.Errorf("seen %d over all swaps, want 60", total.Seen)
	}
}

// TestProgIncompatiblePins opens pinned maps of another layout (another map
// size, another state ABI): they are moved aside with a clear log line and
// counting starts from zero, never silently mixed.
func TestProgIncompatiblePins(t *testing.T) {
	testutil.RequireBPF(t)
	frame := testutil.Frame{Src: netip.MustParseAddr("198.51.100.1"), Dst: netip.MustParseAddr("192.0.2.1")}.Bytes(t)
	for _, c := range []struct {
		name  string
		alter func(t *testing.T, d *Datapath, cfg *Config)
	}{
		{"map size", func(t *testing.T, d *Datapath, cfg *Config) { cfg.CounterEntries *= 2 }},
		{"state abi", func(t *testing.T, d *Datapath, cfg *Config) {
			st, err := readState(d.objs.State)
			if err != nil {
				t.Fatal(err)
			}
			st.Abi = 99 // what another version would have written
			if err := writeState(d.objs.State, st); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := testutil.PinDir(t)
			cfg := Config{PinDir: dir, CounterEntries: 1024}
			d1, err := Open(cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := d1.SetTables(&Tables{Local: pfxs("192.0.2.0/24")}); err != nil {
				t.Fatal(err)
			}
			run(t, d1.Program(), frame)
			c.alter(t, d1, &cfg)
			d1.Close()

			var logs bytes.Buffer
			d2, err := Open(cfg, slog.New(slog.NewTextHandler(&logs, nil)))
			if err != nil {
				t.Fatal(err)
			}
			defer d2.Close()
			if !strings.Contains(logs.String(), "moving them aside, counting restarts from zero") {
				t.Errorf("no clear log line about the incompatible maps; logs:\n%s", logs.String())
			}
			st, err := readState(d2.objs.State)
			if err != nil {
				t.Fatal(err)
			}
			if st.Generation != 0 || st.Abi != uint32(bpf.CounterStateBitsSTATE_ABI) {
				t.Errorf("state after reset: %+v", st)
			}
			if matches, _ := filepath.Glob(filepath.Join(dir, "maps-incompatible-*")); len(matches) != 1 {
				t.Errorf("old maps kept aside: %v, want one directory", matches)
			}
		})
	}
}

// TestProgKernelMemory checks KernelMemory against the kernel's accounting
// of the loaded maps, and the budget of the default configuration with the
// real tables on a 4-CPU board: 256 MB.
func TestProgKernelMemory(t *testing.T) {
	d := openTest(t, Config{})
	maps := []*ebpf.Map{d.objs.State, d.objs.Globals, d.objs.Counters, d.objs.CountersEven, d.objs.CountersOdd,
		d.objs.Cache, d.objs.V4Blocks, d.objs.V4Split, d.objs.V6Filter, d.objs.V6Local32, d.objs.V6LocalTrie, d.objs.V6Split}
	var kernel uint64
	for _, m := range maps {
		info, err := m.Info()
		if err != nil {
			t.Fatal(err)
		}
		n, _ := info.Memlock() // 0 for the trie: it allocates per element
		kernel += n
	}
	formula := KernelMemory(Config{}, d.ncpu)
	if diff := int64(kernel) - int64(formula); diff < 0 || diff > 64<<10 {
		t.Errorf("kernel accounts %d bytes, formula says %d (diff %d): update KernelMemory and docs/datapath.md", kernel, formula, diff)
	}
	four := KernelMemory(Config{}, 4)
	t.Logf("default maps: %.1f MB on %d CPUs (kernel: %.1f MB), %.1f MB on 4 CPUs", float64(formula)/1e6, d.ncpu, float64(kernel)/1e6, float64(four)/1e6)
	if four > 256<<20 {
		t.Errorf("default maps take %d MB on 4 CPUs, over the 256 MB budget", four>>20)
	}
}

// TestProgCacheClearedWhereUsed checks the counter cache between intervals:
// a drain clears only the slots the epoch's read found in use, and that is
// every slot a key was counted in, so no interval ever carries counts of
// an earlier one, whether its keys are new, the same or in other slots.
func TestProgCacheClearedWhereUsed(t *testing.T) {
	d := openTest(t, Config{})
	if err := d.SetTables(&Tables{Local: pfxs("192.0.2.0/24")}); err != nil {
		t.Fatal(err)
	}
	drainOne(t, d)
	drainOne(t, d) // both epochs read by this process
	local := netip.MustParseAddr("192.0.2.10")
	rng := rand.New(rand.NewPCG(3, 4))
	base := netip.MustParsePrefix("100.64.0.0/10")
	sets := [][]netip.Addr{nil, nil}
	for i := range sets {
		for range 600 {
			sets[i] = append(sets[i], randomAddrIn(rng, base))
		}
	}
	for round, set := range [][]netip.Addr{sets[0], sets[1], sets[0], sets[0][:50], sets[1]} {
		want := map[netip.Addr]uint64{}
		var packets uint64
		for i, remote := range set {
			n := uint64(1 + i%3)
			for range n {
				run(t, d.Program(), testutil.Frame{Src: remote, Dst: local}.Bytes(t))
			}
			want[netip.PrefixFrom(remote, 24).Masked().Addr()] += n
			packets += n
		}
		iv := drainOne(t, d)
		if iv.Globals.Seen != packets || iv.Globals.Buckets() != 0 {
			t.Fatalf("round %d: seen %d, buckets %+v; sent %d, all to remote keys", round, iv.Globals.Seen, iv.Globals, packets)
		}
		got := map[netip.Addr]uint64{}
		for _, r := range iv.Remote {
			got[r.Key] += r.Total()
		}
		for k, n := range want {
			if got[k] != n {
				t.Errorf("round %d: key %s counted %d, sent %d", round, k, got[k], n)
			}
		}
		if len(got) != len(want) {
			t.Errorf("round %d: %d keys counted, %d sent to", round, len(got), len(want))
		}
		// The epoch now counting was cleared before it became active:
		// none of its slots may hold a key.
		st := mustState(t, d)
		epoch := activeEpoch(st)
		if used := d.usedSlots[epoch^1]; len(used) == 0 || len(used) > len(set) {
			t.Errorf("round %d: %d cache slots recorded in use for %d keys", round, len(used), len(set))
		}
		if _, err := d.readCache(epoch); err != nil {
			t.Fatal(err)
		}
		if n := len(d.usedSlots[epoch]); n != 0 {
			t.Errorf("round %d: the active epoch holds %d used cache slots before any packet", round, n)
		}
		d.usedSlots[epoch] = nil // unknown again: readCache was only a look
	}
}
