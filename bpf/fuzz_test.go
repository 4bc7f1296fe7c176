package bpf_test

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"testing"

	"github.com/peerwatch/peerwatch/bpf"
)

// FuzzCounter runs arbitrary frames through the XDP program and checks what
// must hold for every packet: the verdict is XDP_PASS, seen grows by one,
// and exactly one place (one remote key, in one direction and one class, or
// one global bucket) grows by one packet, a remote key by the frame's
// length in bytes. Every frame the skb runner accepts then goes through the
// TC program, which must count it in the same place.
//
// The program is loaded once per fuzzing process. Coverage guidance sees
// only the Go side, so guide() turns the program's outcomes into Go branches.
// Run it with
//
//	go test -run='^$' -fuzz=FuzzCounter -fuzztime=30s ./bpf/
//
// With Go 1.26 a duration-bounded run can end in a spurious "context
// deadline exceeded" failure without a failing input, a race in the fuzzing
// coordinator (golang/go#75804); a count bound (-fuzztime=60000x) has none.
func FuzzCounter(f *testing.F) {
	objs := loadCounter(f, defaultConfig, nil)
	setFixtureTables(f, objs)

	for _, tc := range frameCases(f) {
		if len(tc.frame) <= maxFuzzFrame {
			f.Add(tc.frame)
		}
	}
	for _, seed := range [][]byte{
		{},
		{0x00},
		make([]byte, 13),
		{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0x08, 0x00},
		{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0x86, 0xdd, 0x60},
		{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0x81, 0x00, 0x00, 0x64, 0x08},
		{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0x88, 0xa8, 0, 1, 0x81, 0, 0, 2, 0x88, 0xa8, 0, 3},
	} {
		f.Add(seed)
	}

	f.Fuzz(func(t *testing.T, frame []byte) {
		if len(frame) > maxFuzzFrame {
			t.Skipf("%d bytes: longer than maxFuzzFrame (%d)", len(frame), maxFuzzFrame)
		}

		// Every input leaves the counters zeroed. Reading the whole cache
		// costs about half a millisecond, ten times the rest of an input, so
		// the slots of the keys the frame's addresses can give are read
		// first, and the whole cache of epoch 0 (the only one in use) only
		// if the packet was counted under a remote key but not there.
		verdict, err := hookXDP.run(objs, frame)
		got := newTally(t, objs)
		got.readSlots(t, objs, slotHints(frame)...)
		if g := got.globals[0]; g[bpf.CounterGlobalCounterGLOBAL_SEEN] != got.remotePackets(0)+got.buckets(0) {
			got = newTally(t, objs)
			got.scanCache(t, objs, cacheSlots)
		}
		got.reset(t, objs)
		if err != nil {
			t.Fatalf("xdp run of %d bytes: %v", len(frame), err)
		}
		if verdict != xdpPass {
			t.Errorf("xdp verdict = %d, want XDP_PASS", verdict)
		}
		where := countedOnce(t, got, len(frame))
		guide(where)

		if !hookTC.accepts(frame) {
			return
		}
		// TC must count the frame where XDP did: the globals, the counter
		// maps and the cache slot of XDP's key tell.
		verdict, err = hookTC.run(objs, frame)
		got = newTally(t, objs)
		if where.key.IsValid() {
			got.readSlots(t, objs, cacheSlot(0, keyAddr(where.key)))
		}
		got.reset(t, objs)
		if err != nil {
			t.Fatalf("tc run of %d bytes: %v", len(frame), err)
		}
		if verdict != tcNext {
			t.Errorf("tc verdict = %d, want %d", verdict, uint32(tcNext))
		}
		checkOne(t, got, 0, where, len(frame))
	})
}

// maxFuzzFrame is the longest frame the fuzzer tries. Every header the
// program parses fits (two VLAN tags, IPv6 and seven extension headers of
// 8 bytes take 118 bytes); longer frames only add payload, which the table
// tests cover up to maxTestFrame. The fuzzer minimizes each new interesting
// input in a time quadratic in its length, at about 0.2 ms an execution: a
// 1.4 KB input stalls fuzzing for the whole minimization limit (60 s).
const maxFuzzFrame = 256

// slotHints returns the cache slots (epoch 0) of the keys that the frame's
// IP addresses give with the default key lengths and the fixture's split
// /24s and /48s. It is a hint: the caller scans the whole cache when the
// packet is not found there.
func slotHints(frame []byte) []uint32 {
	pos, proto := ethHeaderLen, uint16(0)
	if len(frame) >= ethHeaderLen {
		proto = binary.BigEndian.Uint16(frame[12:])
	}
	for range 2 {
		if (proto != 0x8100 && proto != 0x88a8) || len(frame) < pos+4 {
			break
		}
		proto = binary.BigEndian.Uint16(frame[pos+2:])
		pos += 4
	}
	var keys []netip.Addr
	switch {
	case proto == 0x0800 && len(frame) >= pos+20:
		for _, off := range []int{12, 16} {
			a := binary.BigEndian.Uint32(frame[pos+off:])
			for _, cell := range []uint32{0, 4, 16, 32, 64, 128, 192} { // the fixture's cells
				k := a&^0xff | cell
				keys = append(keys, netip.AddrFrom4([4]byte{byte(k >> 24), byte(k >> 16), byte(k >> 8), byte(k)}))
			}
		}
	case proto == 0x86dd && len(frame) >= pos+40:
		for _, off := range []int{8, 24} {
			a := netip.AddrFrom16([16]byte(frame[pos+off : pos+off+16]))
			for _, bits := range []int{48, 64} {
				keys = append(keys, netip.PrefixFrom(a, bits).Masked().Addr())
			}
		}
	}
	slots := make([]uint32, 0, len(keys))
	for _, k := range keys {
		if s := cacheSlot(0, netip.AddrFrom16(k.As16())); !slices.Contains(slots, s) {
			slots = append(slots, s)
		}
	}
	return slots
}

// guide branches on where a frame was counted. Coverage guidance sees only
// Go code, not the program in the kernel: these branches let the fuzzer tell
// frames apart by what the program did with them and keep those that reach a
// new outcome.
func guide(where outcome) {
	if !where.key.IsValid() {
		switch where.bucket {
		case nonIP:
			guideSink++
		case malformed:
			guideSink += 2
		case bothLocal:
			guideSink += 3
		case neitherLocal:
			guideSink += 4
		case overflow:
			guideSink += 5
		}
		return
	}
	ipv4 := where.key.Addr().Is4In6()
	switch {
	case where.dir == in && ipv4:
		guideSink += 10
	case where.dir == in:
		guideSink += 11
	case ipv4:
		guideSink += 12
	default:
		guideSink += 13
	}
	switch where.class {
	case classTCP:
		guideSink += 20
	case classUDP:
		guideSink += 21
	case classICMP:
		guideSink += 22
	case classTunnel:
		guideSink += 23
	case classOther:
		guideSink += 24
	}
}

var guideSink int

// countedOnce checks that t holds exactly one packet of frameLen bytes,
// counted in epoch 0 in one place, and returns that place.
func countedOnce(tb testing.TB, t tally, frameLen int) outcome {
	tb.Helper()
	t.checkInvariant(tb)
	if seen := t.globals[0][bpf.CounterGlobalCounterGLOBAL_SEEN]; seen != 1 {
		tb.Fatalf("seen = %d, want 1", seen)
	}
	if t.globals[1] != [globalMax]uint64{} || len(t.remotes[1]) != 0 {
		tb.Fatalf("epoch 1 counted %s", describe(t, 1))
	}

	var where outcome
	places := 0
	for g := 1; g < globalMax; g++ {
		switch n := t.globals[0][g]; n {
		case 0:
		case 1:
			places++
			where = bucket(bpf.CounterGlobalCounter(g))
		default:
			tb.Errorf("%s = %d, want 0 or 1", globalName(bpf.CounterGlobalCounter(g)), n)
		}
	}
	for k, c := range t.remotes[0] {
		places++
		dir := in
		if c.Packets[out] != 0 {
			dir = out
		}
		class := bpf.CounterProtoClass(0)
		classes := 0
		for cl, n := range c.ClassPackets {
			if n != 0 {
				class = bpf.CounterProtoClass(cl)
				classes++
			}
		}
		if c.Packets[dir] != 1 || c.Packets[1-dir] != 0 || c.Bytes[dir] != uint64(frameLen) || c.Bytes[1-dir] != 0 ||
			classes != 1 || c.ClassPackets[class] != 1 {
			tb.Errorf("remote %s: packets %v bytes %v classes %v, want one packet of %d bytes in one class",
				k, c.Packets, c.Bytes, c.ClassPackets, frameLen)
		}
		where = outcome{key: netip.PrefixFrom(k, 128), dir: dir, class: class}
	}
	if places != 1 {
		tb.Fatalf("counted in %d places, want 1: %s", places, describe(t, 0))
	}
	return where
}
