package bpf_test

// The harness of the BPF tests: loading the counter program, writing local
// prefixes into its tables, running frames through BPF_PROG_TEST_RUN and
// reading back where each packet was counted.
//
// Kernel quirks of BPF_PROG_TEST_RUN (Linux 6.18) that shape these helpers:
//
//   - Both the XDP and the skb (TC) runner refuse data shorter than an
//     Ethernet header (14 bytes) with EINVAL. XDP frames shorter than that are
//     run by passing 14 bytes with an xdp_md context whose data_end is the
//     frame length: the kernel then puts only data_end bytes in the linear
//     area, which is all a non-frags XDP program can see. The skb runner has
//     no such escape, so TC never sees a frame shorter than 14 bytes.
//   - The skb runner also refuses (EINVAL) a frame whose EtherType is IPv4
//     and that is shorter than 14+20 bytes, or IPv6 and shorter than 14+40: TC
//     test runs never see a truncated IP header right after the Ethernet
//     header (behind a VLAN tag they do). tcAccepts encodes this.
//   - The linear area is at most PAGE_SIZE - XDP_PACKET_HEADROOM -
//     sizeof(skb_shared_info) = 3520 bytes on x86-64 for XDP; longer data goes
//     into fragments the program cannot see (and the skb runner refuses data
//     past about 3.7 KiB). Frames in these tests stay at or below maxTestFrame.
//   - The skb runner calls eth_type_trans and pushes the MAC header back, so
//     a TC program sees the whole frame, VLAN tags included, and skb->len is
//     the frame length. On a real device the kernel usually strips the outer
//     VLAN tag into skb->vlan_tci before TC runs: test runs cannot show that.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"net/netip"
	"runtime"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/peerwatch/peerwatch/bpf"
	"github.com/peerwatch/peerwatch/internal/testutil"
)

const (
	xdpDrop = 1
	xdpPass = 2
	// tcNext is TC_ACT_UNSPEC (-1, also TCX_NEXT) as the uint32 that
	// Program.Run returns.
	tcNext = math.MaxUint32

	ethHeaderLen = 14
	// maxTestFrame is the longest frame both test runners put whole into
	// the linear area that the program reads.
	maxTestFrame = 3520

	globalMax = int(bpf.CounterGlobalCounterGLOBAL_MAX)

	// testCounterEntries is the size of each counter map in tests.
	testCounterEntries = 256
)

// defaultConfig is the program's compiled-in configuration.
var defaultConfig = bpf.CounterConfig{XdpVerdict: xdpPass, V4KeyLen: 24, V6KeyLen: 48}

// xdpContext mirrors struct xdp_md, the context of an XDP test run.
type xdpContext struct {
	Data           uint32
	DataEnd        uint32
	DataMeta       uint32
	IngressIfindex uint32
	RxQueueIndex   uint32
	EgressIfindex  uint32
}

// loadCounter loads the counter program with cfg, after edit (if not nil)
// has changed the spec, and closes it when the test ends.
func loadCounter(tb testing.TB, cfg bpf.CounterConfig, edit func(*ebpf.CollectionSpec)) *bpf.CounterObjects {
	tb.Helper()
	testutil.RequireBPF(tb)

	spec, err := bpf.LoadCounter()
	if err != nil {
		tb.Fatalf("load counter spec: %v", err)
	}
	if err := spec.Variables[bpf.CounterVarPeerwatchConfig].Set(cfg); err != nil {
		tb.Fatalf("set config: %v", err)
	}
	// Reading or emptying a hash map walks all its buckets: test-sized
	// counter maps keep that to microseconds.
	spec.Maps[bpf.CounterMapCountersEven].MaxEntries = testCounterEntries
	spec.Maps[bpf.CounterMapCountersOdd].MaxEntries = testCounterEntries
	if edit != nil {
		edit(spec)
	}
	objs := new(bpf.CounterObjects)
	if err := spec.LoadAndAssign(objs, nil); err != nil {
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			tb.Fatalf("load counter: %+v", verr)
		}
		tb.Fatalf("load counter: %v", err)
	}
	tb.Cleanup(func() { objs.Close() })
	return objs
}

// --- hooks -------------------------------------------------------------

// hook is one attach point of the counter program.
type hook struct {
	name    string
	prog    func(*bpf.CounterObjects) *ebpf.Program
	verdict func(bpf.CounterConfig) uint32
	// accepts tells whether the kernel's test runner takes the frame.
	accepts func(frame []byte) bool
}

var (
	hookXDP = hook{
		name:    "xdp",
		prog:    func(o *bpf.CounterObjects) *ebpf.Program { return o.PeerwatchXdp },
		verdict: func(c bpf.CounterConfig) uint32 { return c.XdpVerdict },
		accepts: func([]byte) bool { return true },
	}
	hookTC = hook{
		name:    "tc",
		prog:    func(o *bpf.CounterObjects) *ebpf.Program { return o.PeerwatchTc },
		verdict: func(bpf.CounterConfig) uint32 { return tcNext },
		accepts: tcAccepts,
	}
	hooks = []hook{hookXDP, hookTC}
)

// tcAccepts tells whether the skb test runner takes frame (see the top of
// this file).
func tcAccepts(frame []byte) bool {
	if len(frame) < ethHeaderLen {
		return false
	}
	switch binary.BigEndian.Uint16(frame[12:]) {
	case 0x0800:
		return len(frame) >= ethHeaderLen+20
	case 0x86dd:
		return len(frame) >= ethHeaderLen+40
	}
	return true
}

// run runs frame once through the hook's program and returns its verdict.
func (h hook) run(objs *bpf.CounterObjects, frame []byte) (uint32, error) {
	prog := h.prog(objs)
	opts := &ebpf.RunOptions{Data: frame}
	if len(frame) < ethHeaderLen && prog.Type() == ebpf.XDP {
		data := make([]byte, ethHeaderLen)
		copy(data, frame)
		opts = &ebpf.RunOptions{Data: data, Context: xdpContext{DataEnd: uint32(len(frame))}}
	}
	return prog.Run(opts)
}

// --- tables ------------------------------------------------------------

func mustPrefix(tb testing.TB, s string) netip.Prefix {
	tb.Helper()
	p, err := netip.ParsePrefix(s)
	if err != nil {
		tb.Fatal(err)
	}
	if p != p.Masked() {
		tb.Fatalf("prefix %s has host bits set", s)
	}
	return p
}

func v4Uint(a netip.Addr) uint32 {
	b := a.As4()
	return binary.BigEndian.Uint32(b[:])
}

// v4Block returns the v4_blocks index and bit of the /24 that holds addr.
func v4Block(set uint32, addr uint32) (uint32, uint64) {
	net := addr >> 8
	return set*uint32(bpf.CounterV4LayoutV4BLOCK_WORDS) + net>>6, 1 << (net & 63)
}

func updateV4Block(tb testing.TB, objs *bpf.CounterObjects, set, addr uint32, f func(*bpf.CounterV4Block, uint64)) {
	tb.Helper()
	idx, bit := v4Block(set, addr)
	var blk bpf.CounterV4Block
	if err := objs.V4Blocks.Lookup(idx, &blk); err != nil {
		tb.Fatalf("lookup v4_blocks[%d]: %v", idx, err)
	}
	f(&blk, bit)
	if err := objs.V4Blocks.Put(idx, &blk); err != nil {
		tb.Fatalf("put v4_blocks[%d]: %v", idx, err)
	}
}

// setLocalV4 marks every /24 of prefix (at most /24 long) local in set.
func setLocalV4(tb testing.TB, objs *bpf.CounterObjects, set uint32, prefix string) {
	tb.Helper()
	p := mustPrefix(tb, prefix)
	if !p.Addr().Is4() || p.Bits() > 24 {
		tb.Fatalf("setLocalV4 takes IPv4 prefixes up to /24, not %s", p)
	}
	first := v4Uint(p.Addr())
	for i := uint32(0); i < 1<<(24-p.Bits()); i++ {
		updateV4Block(tb, objs, set, first+i<<8, func(b *bpf.CounterV4Block, bit uint64) { b.Local |= bit })
	}
}

// setSplitV4 divides the /24 net in set: cellStarts are the first hosts of
// its cells, in order and starting at 0, and localHosts are its local hosts.
//
// The split /24s of a v4_blocks word have consecutive v4_split entries in
// address order from the word's split_base; each table set uses one half of
// v4_split. The word's entries are rewritten at the next free index.
func setSplitV4(tb testing.TB, objs *bpf.CounterObjects, set uint32, net string, cellStarts []uint8, localHosts []uint8) {
	tb.Helper()
	p := mustPrefix(tb, net)
	if !p.Addr().Is4() || p.Bits() != 24 || len(cellStarts) == 0 || cellStarts[0] != 0 {
		tb.Fatalf("setSplitV4 takes an IPv4 /24 and cells from host 0, not %s %v", p, cellStarts)
	}
	var split bpf.CounterSplit24
	for i, start := range cellStarts {
		end := 256
		if i+1 < len(cellStarts) {
			end = int(cellStarts[i+1])
		}
		for h := int(start); h < end; h++ {
			split.Cell[h] = start
		}
	}
	for _, h := range localHosts {
		split.Local[h>>6] |= 1 << (h & 63)
	}

	updateV4Block(tb, objs, set, v4Uint(p.Addr()), func(blk *bpf.CounterV4Block, bit uint64) {
		var entries []bpf.CounterSplit24
		for i := range 64 {
			b := uint64(1) << i
			switch {
			case b == bit:
				entries = append(entries, split)
			case blk.Split&b != 0:
				var e bpf.CounterSplit24
				old := blk.SplitBase + uint32(bits.OnesCount64(blk.Split&(b-1)))
				if err := objs.V4Split.Lookup(old, &e); err != nil {
					tb.Fatalf("lookup v4_split[%d]: %v", old, err)
				}
				entries = append(entries, e)
			}
		}
		base := allocSplit24(tb, objs, set, len(entries))
		for i := range entries {
			if err := objs.V4Split.Put(base+uint32(i), &entries[i]); err != nil {
				tb.Fatalf("put v4_split[%d] (%s): %v", base+uint32(i), p, err)
			}
		}
		blk.Split |= bit
		blk.SplitBase = base
	})
}

// nextSplit24 is the next free v4_split index of each table set, per loaded
// program.
var nextSplit24 = map[*bpf.CounterObjects]*[2]uint32{}

func allocSplit24(tb testing.TB, objs *bpf.CounterObjects, set uint32, n int) uint32 {
	tb.Helper()
	half := objs.V4Split.MaxEntries() / 2
	next, ok := nextSplit24[objs]
	if !ok {
		next = &[2]uint32{0, half}
		nextSplit24[objs] = next
		tb.Cleanup(func() { delete(nextSplit24, objs) })
	}
	base := next[set]
	if base+uint32(n) > (set+1)*half {
		tb.Fatalf("v4_split half of table set %d is full", set)
	}
	next[set] += uint32(n)
	return base
}

// v6Net32 is the first 32 bits of addr in host order.
func v6Net32(addr netip.Addr) uint32 {
	b := addr.As16()
	return binary.BigEndian.Uint32(b[:4])
}

// v6Filter returns the v6_filter index and bit of the bucket of addr's /32.
func v6Filter(set uint32, addr netip.Addr) (uint32, uint64) {
	h := (v6Net32(addr) * uint32(bpf.CounterV6LayoutV6FILTER_MULT)) >> (32 - uint32(bpf.CounterV6LayoutV6FILTER_BITS))
	return set*uint32(bpf.CounterV6LayoutV6FILTER_WORDS) + h>>6, 1 << (h & 63)
}

func updateV6Filter(tb testing.TB, objs *bpf.CounterObjects, set uint32, addr netip.Addr, f func(*bpf.CounterV6FilterWord, uint64)) {
	tb.Helper()
	idx, bit := v6Filter(set, addr)
	var w bpf.CounterV6FilterWord
	if err := objs.V6Filter.Lookup(idx, &w); err != nil {
		tb.Fatalf("lookup v6_filter[%d]: %v", idx, err)
	}
	f(&w, bit)
	if err := objs.V6Filter.Put(idx, &w); err != nil {
		tb.Fatalf("put v6_filter[%d]: %v", idx, err)
	}
}

func putLocal32(tb testing.TB, objs *bpf.CounterObjects, set uint32, addr netip.Addr, state bpf.CounterLocal32State) {
	tb.Helper()
	key := bpf.CounterV6Net32Key{Set: set, Net: v6Net32(addr)}
	if err := objs.V6Local32.Put(&key, uint8(state)); err != nil {
		tb.Fatalf("put v6_local32 %s: %v", addr, err)
	}
	updateV6Filter(tb, objs, set, addr, func(w *bpf.CounterV6FilterWord, bit uint64) { w.Local |= bit })
}

// setLocalV6Net32 marks the IPv6 /32 prefix all local in set.
func setLocalV6Net32(tb testing.TB, objs *bpf.CounterObjects, set uint32, prefix string) {
	tb.Helper()
	p := mustPrefix(tb, prefix)
	if !p.Addr().Is6() || p.Bits() != 32 {
		tb.Fatalf("setLocalV6Net32 takes an IPv6 /32, not %s", p)
	}
	putLocal32(tb, objs, set, p.Addr(), bpf.CounterLocal32StateLOCAL32ALL)
}

// setLocalV6Prefix marks the IPv6 prefix, longer than /32, local in set: its
// /32 becomes partial and the prefix goes into the trie.
func setLocalV6Prefix(tb testing.TB, objs *bpf.CounterObjects, set uint32, prefix string) {
	tb.Helper()
	p := mustPrefix(tb, prefix)
	if !p.Addr().Is6() || p.Bits() <= 32 {
		tb.Fatalf("setLocalV6Prefix takes an IPv6 prefix longer than /32, not %s", p)
	}
	putLocal32(tb, objs, set, p.Addr(), bpf.CounterLocal32StateLOCAL32PARTIAL)
	key := bpf.CounterV6LocalKey{Prefixlen: 32 + uint32(p.Bits()), Set: set, Addr: p.Addr().As16()}
	if err := objs.V6LocalTrie.Put(&key, uint8(1)); err != nil {
		tb.Fatalf("put v6_local_trie %s: %v", p, err)
	}
}

// setSplitV6 divides the IPv6 /48 net in set into keys of depth bits.
func setSplitV6(tb testing.TB, objs *bpf.CounterObjects, set uint32, net string, depth uint8) {
	tb.Helper()
	p := mustPrefix(tb, net)
	if !p.Addr().Is6() || p.Bits() != 48 {
		tb.Fatalf("setSplitV6 takes an IPv6 /48, not %s", p)
	}
	b := p.Addr().As16()
	key := bpf.CounterSplit48Key{Set: set, Net: binary.BigEndian.Uint64(b[:8])}
	if err := objs.V6Split.Put(&key, depth); err != nil {
		tb.Fatalf("put v6_split %s: %v", p, err)
	}
	updateV6Filter(tb, objs, set, p.Addr(), func(w *bpf.CounterV6FilterWord, bit uint64) { w.Split |= bit })
}

func setState(tb testing.TB, objs *bpf.CounterObjects, active uint32) {
	tb.Helper()
	if err := objs.State.Put(uint32(0), bpf.CounterRunState{Active: active}); err != nil {
		tb.Fatalf("put state: %v", err)
	}
}

// --- counters ----------------------------------------------------------

// Where the program counts: the globals, and per remote key a per-CPU
// direct-mapped cache slot (cache) in front of the epoch's hash map
// (counters_even / counters_odd), which receives a key's counters when
// another key takes its slot. A key's counters are the sum of its hash entry
// and its cache slots on every CPU, as the drain reads them.

var cacheSlots = uint32(bpf.CounterCacheLayoutCACHE_SLOTS) // per epoch

// tally is every counter of both epochs, summed over CPUs.
type tally struct {
	globals [2][globalMax]uint64
	// remotes maps remote keys (IPv4 as ::ffff:a.b.c.d) to their counters.
	remotes [2]map[netip.Addr]bpf.CounterRemoteCounters
	// slots are the cache slots in use.
	slots []uint32
}

func counterMap(objs *bpf.CounterObjects, epoch int) *ebpf.Map {
	if epoch == 0 {
		return objs.CountersEven
	}
	return objs.CountersOdd
}

// keyBytes is a remote key as the bytes the program stores (network order).
func keyBytes(k bpf.CounterRemoteKey) [16]byte {
	var b [16]byte
	for i, w := range k.Addr {
		binary.NativeEndian.PutUint32(b[4*i:], w)
	}
	return b
}

// cacheSlot is the slot of the counter cache that the program uses for key
// in epoch (cache_slot in counter.c).
func cacheSlot(epoch int, key netip.Addr) uint32 {
	b := key.As16()
	var x uint32
	for i := 0; i < 16; i += 4 {
		x ^= binary.NativeEndian.Uint32(b[i:])
	}
	slot := (x * uint32(bpf.CounterCacheLayoutCACHE_MULT)) >> (32 - uint32(bpf.CounterCacheLayoutCACHE_BITS))
	return uint32(epoch)*cacheSlots + slot
}

func addCounters(sum *bpf.CounterRemoteCounters, c bpf.CounterRemoteCounters) {
	for d := range sum.Packets {
		sum.Packets[d] += c.Packets[d]
		sum.Bytes[d] += c.Bytes[d]
	}
	for k := range sum.ClassPackets {
		sum.ClassPackets[k] += c.ClassPackets[k]
	}
}

// readTally reads every counter.
func readTally(tb testing.TB, objs *bpf.CounterObjects) tally {
	tb.Helper()
	t := newTally(tb, objs)
	t.scanCache(tb, objs, 2*cacheSlots)
	return t
}

// takeTally reads every counter and then resets them.
func takeTally(tb testing.TB, objs *bpf.CounterObjects) tally {
	tb.Helper()
	t := readTally(tb, objs)
	t.reset(tb, objs)
	return t
}

// resetCounters zeroes every counter.
func resetCounters(tb testing.TB, objs *bpf.CounterObjects) {
	tb.Helper()
	takeTally(tb, objs)
}

// newTally reads the globals and both hash maps, not the cache.
func newTally(tb testing.TB, objs *bpf.CounterObjects) tally {
	tb.Helper()
	ncpu := possibleCPUs(tb)
	var t tally
	idx := make([]uint32, 2*globalMax)
	perCPU := make([]uint64, 2*globalMax*ncpu)
	var cursor ebpf.MapBatchCursor
	n, err := objs.Globals.BatchLookup(&cursor, idx, perCPU, nil)
	if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) || n != len(idx) {
		tb.Fatalf("batch lookup globals: %d of %d: %v", n, len(idx), err)
	}
	for i, k := range idx {
		for _, v := range perCPU[i*ncpu : (i+1)*ncpu] {
			t.globals[k/uint32(globalMax)][k%uint32(globalMax)] += v
		}
	}
	for epoch := range 2 {
		t.remotes[epoch] = make(map[netip.Addr]bpf.CounterRemoteCounters)
		var (
			key    [16]byte // struct remote_key: the address in network order
			values []bpf.CounterRemoteCounters
		)
		it := counterMap(objs, epoch).Iterate()
		for it.Next(&key, &values) {
			var sum bpf.CounterRemoteCounters
			for _, c := range values {
				addCounters(&sum, c)
			}
			t.remotes[epoch][netip.AddrFrom16(key)] = sum
		}
		if err := it.Err(); err != nil {
			tb.Fatalf("iterate counters of epoch %d: %v", epoch, err)
		}
	}
	return t
}

// scanCache adds the cache's first n slots (2*cacheSlots: both epochs) to t.
func (t *tally) scanCache(tb testing.TB, objs *bpf.CounterObjects, n uint32) {
	tb.Helper()
	ncpu := possibleCPUs(tb)
	idx := make([]uint32, n)
	entries := make([]bpf.CounterCacheEntry, int(n)*ncpu)
	var cursor ebpf.MapBatchCursor
	got, err := objs.Cache.BatchLookup(&cursor, idx, entries, nil)
	if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) || got != len(idx) {
		tb.Fatalf("batch lookup cache: %d of %d: %v", got, len(idx), err)
	}
	for i, slot := range idx {
		t.addSlot(slot, entries[i*ncpu:(i+1)*ncpu])
	}
}

// readSlots adds the given cache slots to t.
func (t *tally) readSlots(tb testing.TB, objs *bpf.CounterObjects, slots ...uint32) {
	tb.Helper()
	for _, slot := range slots {
		var entries []bpf.CounterCacheEntry
		if err := objs.Cache.Lookup(slot, &entries); err != nil {
			tb.Fatalf("lookup cache slot %d: %v", slot, err)
		}
		t.addSlot(slot, entries)
	}
}

func (t *tally) addSlot(slot uint32, perCPU []bpf.CounterCacheEntry) {
	used := false
	for _, e := range perCPU {
		if e.Used == 0 {
			continue
		}
		used = true
		epoch := slot / cacheSlots
		k := netip.AddrFrom16(keyBytes(e.Key))
		sum := t.remotes[epoch][k]
		addCounters(&sum, e.Counters)
		t.remotes[epoch][k] = sum
	}
	if used {
		t.slots = append(t.slots, slot)
	}
}

// reset zeroes the counters that t holds: the globals, t's hash keys and
// cache slots.
func (t tally) reset(tb testing.TB, objs *bpf.CounterObjects) {
	tb.Helper()
	ncpu := possibleCPUs(tb)
	idx := make([]uint32, 2*globalMax)
	for i := range idx {
		idx[i] = uint32(i)
	}
	if _, err := objs.Globals.BatchUpdate(idx, make([]uint64, len(idx)*ncpu), nil); err != nil {
		tb.Fatalf("zero globals: %v", err)
	}
	for epoch := range 2 {
		m := counterMap(objs, epoch)
		for k := range t.remotes[epoch] {
			if err := m.Delete(k.As16()); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				tb.Fatalf("delete counters of %s in epoch %d: %v", k, epoch, err)
			}
		}
	}
	zero := make([]bpf.CounterCacheEntry, ncpu)
	for _, slot := range t.slots {
		if err := objs.Cache.Put(slot, zero); err != nil {
			tb.Fatalf("zero cache slot %d: %v", slot, err)
		}
	}
}

// allowedCPUs lists the CPUs the test process may run on.
func allowedCPUs(tb testing.TB) []int {
	tb.Helper()
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		tb.Fatalf("get CPU affinity: %v", err)
	}
	var cpus []int
	for cpu := 0; cpu < len(set)*64; cpu++ {
		if set.IsSet(cpu) {
			cpus = append(cpus, cpu)
		}
	}
	return cpus
}

// onCPU runs f on cpu: test runs execute on the calling CPU, so a sequence
// of runs in f shares one CPU's cache slots.
func onCPU(tb testing.TB, cpu int, f func()) {
	tb.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var old, set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		tb.Fatalf("get CPU affinity: %v", err)
	}
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		tb.Fatalf("pin to CPU %d: %v", cpu, err)
	}
	defer func() {
		if err := unix.SchedSetaffinity(0, &old); err != nil {
			tb.Errorf("restore CPU affinity: %v", err)
		}
	}()
	f()
}

func possibleCPUs(tb testing.TB) int {
	tb.Helper()
	n, err := ebpf.PossibleCPU()
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

// remotePackets is the sum of all packets of all remote keys of an epoch.
func (t tally) remotePackets(epoch int) uint64 {
	var n uint64
	for _, c := range t.remotes[epoch] {
		n += c.Packets[0] + c.Packets[1]
	}
	return n
}

// buckets is the sum of the global buckets (all globals but SEEN) of an epoch.
func (t tally) buckets(epoch int) uint64 {
	var n uint64
	for g := 1; g < globalMax; g++ {
		n += t.globals[epoch][g]
	}
	return n
}

// checkInvariant checks seen == remote packets + buckets in both epochs.
func (t tally) checkInvariant(tb testing.TB) {
	tb.Helper()
	for epoch := range 2 {
		seen := t.globals[epoch][bpf.CounterGlobalCounterGLOBAL_SEEN]
		if got := t.remotePackets(epoch) + t.buckets(epoch); got != seen {
			tb.Errorf("epoch %d: remote packets %d + buckets %d = %d, seen %d",
				epoch, t.remotePackets(epoch), t.buckets(epoch), got, seen)
		}
	}
}

// --- expectations ------------------------------------------------------

// outcome is where one packet must be counted: the counters of one remote
// key, or one global bucket.
type outcome struct {
	key    netip.Prefix // remote key; valid when the packet goes to a remote key
	dir    bpf.CounterDirection
	class  bpf.CounterProtoClass
	bucket bpf.CounterGlobalCounter // when key is not valid
}

func (o outcome) String() string {
	if o.key.IsValid() {
		return fmt.Sprintf("remote %s %s %s", o.key, dirName(o.dir), className(o.class))
	}
	return globalName(o.bucket)
}

// remote is the outcome of a packet counted under the remote key prefix
// (the remote address masked to the prefix).
func remote(prefix string, dir bpf.CounterDirection, class bpf.CounterProtoClass) outcome {
	return outcome{key: netip.MustParsePrefix(prefix), dir: dir, class: class}
}

func bucket(g bpf.CounterGlobalCounter) outcome { return outcome{bucket: g} }

const (
	in  = bpf.CounterDirectionDIR_IN
	out = bpf.CounterDirectionDIR_OUT

	classTCP    = bpf.CounterProtoClassCLASS_TCP
	classUDP    = bpf.CounterProtoClassCLASS_UDP
	classICMP   = bpf.CounterProtoClassCLASS_ICMP
	classTunnel = bpf.CounterProtoClassCLASS_TUNNEL
	classOther  = bpf.CounterProtoClassCLASS_OTHER

	nonIP        = bpf.CounterGlobalCounterGLOBAL_NON_IP
	malformed    = bpf.CounterGlobalCounterGLOBAL_MALFORMED
	bothLocal    = bpf.CounterGlobalCounterGLOBAL_BOTH_LOCAL
	neitherLocal = bpf.CounterGlobalCounterGLOBAL_NEITHER_LOCAL
	overflow     = bpf.CounterGlobalCounterGLOBAL_OVERFLOW
)

func dirName(d bpf.CounterDirection) string {
	return [...]string{"in", "out"}[d&1]
}

func className(c bpf.CounterProtoClass) string {
	if c >= bpf.CounterProtoClassCLASS_MAX {
		return fmt.Sprintf("class(%d)", c)
	}
	return [...]string{"tcp", "udp", "icmp", "tunnel", "other"}[c]
}

func globalName(g bpf.CounterGlobalCounter) string {
	if int(g) >= globalMax {
		return fmt.Sprintf("global(%d)", g)
	}
	return [...]string{"seen", "non-ip", "malformed", "both-local", "neither-local", "overflow"}[g]
}

// keyAddr is the remote key the program stores for prefix.
func keyAddr(p netip.Prefix) netip.Addr {
	return netip.AddrFrom16(p.Addr().As16())
}

// checkOne checks that t holds exactly one packet, of frameLen bytes, counted
// in epoch at want, and nothing else, and that the invariant holds.
func checkOne(tb testing.TB, t tally, epoch int, want outcome, frameLen int) {
	tb.Helper()
	t.checkInvariant(tb)
	other := 1 - epoch
	if t.globals[other] != [globalMax]uint64{} || len(t.remotes[other]) != 0 {
		tb.Errorf("epoch %d counted something: globals %v, %d remote keys", other, t.globals[other], len(t.remotes[other]))
	}
	g := t.globals[epoch]
	if g[bpf.CounterGlobalCounterGLOBAL_SEEN] != 1 {
		tb.Errorf("seen = %d, want 1", g[bpf.CounterGlobalCounterGLOBAL_SEEN])
	}
	got := describe(t, epoch)
	if !want.key.IsValid() {
		var wantG [globalMax]uint64
		wantG[bpf.CounterGlobalCounterGLOBAL_SEEN] = 1
		wantG[want.bucket] = 1
		if g != wantG || len(t.remotes[epoch]) != 0 {
			tb.Errorf("counted as %s, want %s", got, want)
		}
		return
	}
	if t.buckets(epoch) != 0 || len(t.remotes[epoch]) != 1 {
		tb.Errorf("counted as %s, want %s", got, want)
		return
	}
	c, ok := t.remotes[epoch][keyAddr(want.key)]
	if !ok {
		tb.Errorf("counted as %s, want key %s (%s)", got, keyAddr(want.key), want)
		return
	}
	var wantC bpf.CounterRemoteCounters
	wantC.Packets[want.dir] = 1
	wantC.Bytes[want.dir] = uint64(frameLen)
	wantC.ClassPackets[want.class] = 1
	if c != wantC {
		tb.Errorf("counters of %s = packets %v bytes %v classes %v, want packets %v bytes %v classes %v (%s)",
			want.key.Addr(), c.Packets, c.Bytes, c.ClassPackets,
			wantC.Packets, wantC.Bytes, wantC.ClassPackets, want)
	}
}

// describe names where the packets of an epoch were counted.
func describe(t tally, epoch int) string {
	var s string
	for g := 1; g < globalMax; g++ {
		if n := t.globals[epoch][g]; n != 0 {
			s += fmt.Sprintf("[%s ×%d]", globalName(bpf.CounterGlobalCounter(g)), n)
		}
	}
	for k, c := range t.remotes[epoch] {
		s += fmt.Sprintf("[remote %s packets %v bytes %v classes %v]", k, c.Packets, c.Bytes, c.ClassPackets)
	}
	if s == "" {
		return "nothing"
	}
	return s
}

// countOne runs frame through h on zeroed counters, checks the verdict and
// that it was counted once in epoch at want, and zeroes the counters again.
func countOne(tb testing.TB, objs *bpf.CounterObjects, cfg bpf.CounterConfig, h hook, epoch int, frame []byte, want outcome) {
	tb.Helper()
	verdict, err := h.run(objs, frame)
	t := takeTally(tb, objs)
	if err != nil {
		tb.Fatalf("%s run of %d bytes: %v", h.name, len(frame), err)
	}
	if wantV := h.verdict(cfg); verdict != wantV {
		tb.Errorf("%s verdict = %d, want %d", h.name, verdict, wantV)
	}
	checkOne(tb, t, epoch, want, len(frame))
}
