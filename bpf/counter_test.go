package bpf_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"syscall"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/google/gopacket"

	"github.com/peerwatch/peerwatch/bpf"
	"github.com/peerwatch/peerwatch/internal/testutil"
)

// TestCounterFrames runs every table case through XDP and TC and checks the
// verdict, the one place the packet was counted, its bytes, and the
// invariant seen == remote packets + buckets.
func TestCounterFrames(t *testing.T) {
	objs := loadCounter(t, defaultConfig, nil)
	setFixtureTables(t, objs)

	for _, tc := range frameCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			if bug, ok := knownBugs[tc.name]; ok {
				t.Logf("known bug: %s", bug)
			}
			for _, h := range hooks {
				t.Run(h.name, func(t *testing.T) {
					if !h.accepts(tc.frame) {
						checkRefused(t, objs, h, tc.frame)
						return
					}
					countOne(t, objs, defaultConfig, h, 0, tc.frame, tc.want)
				})
			}
		})
	}
}

// checkRefused checks that the kernel's test runner refuses a frame too
// short for it (EINVAL) and that nothing was counted.
func checkRefused(t *testing.T, objs *bpf.CounterObjects, h hook, frame []byte) {
	t.Helper()
	_, err := h.run(objs, frame)
	if !errors.Is(err, syscall.EINVAL) {
		t.Errorf("%s run of %d bytes: err = %v, want EINVAL from the test runner", h.name, len(frame), err)
	}
	if got := describe(takeTally(t, objs), 0); got != "nothing" {
		t.Errorf("refused run counted %s", got)
	}
}

// TestCounterAccumulates runs all table cases through both hooks without
// resetting in between, so keys are hit again, and checks every total.
func TestCounterAccumulates(t *testing.T) {
	objs := loadCounter(t, defaultConfig, nil)
	setFixtureTables(t, objs)
	resetCounters(t, objs)

	var (
		seen    uint64
		buckets [globalMax]uint64
		remotes = make(map[netip.Addr]bpf.CounterRemoteCounters)
	)
	for _, tc := range frameCases(t) {
		if _, ok := knownBugs[tc.name]; ok {
			continue
		}
		for _, h := range hooks {
			if !h.accepts(tc.frame) {
				continue
			}
			if _, err := h.run(objs, tc.frame); err != nil {
				t.Fatalf("%s %s: %v", tc.name, h.name, err)
			}
			seen++
			if !tc.want.key.IsValid() {
				buckets[tc.want.bucket]++
				continue
			}
			c := remotes[keyAddr(tc.want.key)]
			c.Packets[tc.want.dir]++
			c.Bytes[tc.want.dir] += uint64(len(tc.frame))
			c.ClassPackets[tc.want.class]++
			remotes[keyAddr(tc.want.key)] = c
		}
	}
	buckets[bpf.CounterGlobalCounterGLOBAL_SEEN] = seen

	got := readTally(t, objs)
	got.checkInvariant(t)
	if got.globals[0] != buckets {
		t.Errorf("globals = %v, want %v", got.globals[0], buckets)
	}
	for k, want := range remotes {
		if c := got.remotes[0][k]; c != want {
			t.Errorf("key %s = %+v, want %+v", k, c, want)
		}
	}
	for k := range got.remotes[0] {
		if _, ok := remotes[k]; !ok {
			t.Errorf("unexpected key %s", k)
		}
	}
}

// TestCounterRepeat runs frames many times in one test run: the counters of
// an existing key are updated in place.
func TestCounterRepeat(t *testing.T) {
	objs := loadCounter(t, defaultConfig, nil)
	setFixtureTables(t, objs)
	const repeat = 1000

	for _, tc := range frameCases(t) {
		if tc.name != "ipv4/tcp/in" && tc.name != "ipv6/udp/out" && tc.name != "ipv4/ihl-4" && tc.name != "non-ip/arp" {
			continue
		}
		for _, h := range hooks {
			t.Run(tc.name+"/"+h.name, func(t *testing.T) {
				resetCounters(t, objs)
				verdict, err := h.prog(objs).Run(&ebpf.RunOptions{Data: tc.frame, Repeat: repeat})
				if err != nil {
					t.Fatal(err)
				}
				if verdict != h.verdict(defaultConfig) {
					t.Errorf("verdict = %d, want %d", verdict, h.verdict(defaultConfig))
				}
				got := readTally(t, objs)
				got.checkInvariant(t)
				if seen := got.globals[0][bpf.CounterGlobalCounterGLOBAL_SEEN]; seen != repeat {
					t.Fatalf("seen = %d, want %d", seen, repeat)
				}
				if !tc.want.key.IsValid() {
					if n := got.globals[0][tc.want.bucket]; n != repeat {
						t.Errorf("%s = %d, want %d", tc.want, n, repeat)
					}
					return
				}
				c := got.remotes[0][keyAddr(tc.want.key)]
				if c.Packets[tc.want.dir] != repeat || c.Bytes[tc.want.dir] != repeat*uint64(len(tc.frame)) ||
					c.ClassPackets[tc.want.class] != repeat {
					t.Errorf("counters of %s = %+v, want %d packets of %d bytes", tc.want, c, repeat, len(tc.frame))
				}
			})
		}
	}
}

// truncationCase is a frame that is cut at every length: shorter than
// needed, where the parser has read or stepped over every header it uses, the
// frame is malformed; from needed on it counts like the whole frame.
type truncationCase struct {
	name   string
	frame  []byte
	needed int
	want   outcome
}

// TestCounterTruncated cuts frames at every length from 0 to their full
// length. None may crash the program or be counted anywhere but malformed
// until the headers the program reads are complete.
func TestCounterTruncated(t *testing.T) {
	objs := loadCounter(t, defaultConfig, nil)
	setFixtureTables(t, objs)
	b := func(ls ...gopacket.SerializableLayer) []byte { return build(t, ls...) }

	cases := []truncationCase{
		{
			name:   "ipv6/tcp",
			frame:  b(eth(ipv6), ip6(remote6, local6, pTCP), tcp(portHTTPS, portEphemeral)),
			needed: 14 + 40 + 4, // the ports
			want:   remote(remote6Key, in, classTCP),
		},
		{
			name:   "qinq/ipv4-options/udp",
			frame:  b(eth(qinq), vlan(10, q8021), vlan(100, ipv4), ipv4WithOptions(local4, remote4), udp(portEphemeral, portIKE), payload(8)),
			needed: 14 + 8 + 28 + 4,
			want:   remote(remote4Key, out, classTunnel),
		},
		{
			name: "ipv6/hbh-routing-dstopts/udp",
			frame: b(eth(ipv6), ip6(local6, remote6, pHop), hopByHop(pRoute, 2), routing(pDest), destOpts(pUDP, 1),
				udp(portEphemeral, portDNS), payload(8)),
			needed: 14 + 40 + 16 + 8 + 8 + 4,
			want:   remote(remote6Key, out, classUDP),
		},
		{
			name:   "ipv4/icmp",
			frame:  b(eth(ipv4), ip4(remote4, local4, pICMP), icmp4(), payload(20)),
			needed: 14 + 20, // the ICMP header is not read
			want:   remote(remote4Key, in, classICMP),
		},
		{
			name:   "ipv6/non-first-fragment/udp",
			frame:  b(eth(ipv6), ip6(remote6, local6, pFrag), fragment(pUDP, 100, true), payload(16)),
			needed: 14 + 40 + 8, // the fragment header, no ports
			want:   remote(remote6Key, in, classUDP),
		},
		{
			// Fails from 56 to 69 bytes: bugTruncatedExtHeader.
			name:   "ipv6/hbh/icmpv6",
			frame:  b(eth(ipv6), ip6(remote6, local6, pHop), rawExt(pICMPv6, 2), icmp6(), payload(8)),
			needed: 14 + 40 + 16, // the whole extension header the parser steps over
			want:   remote(remote6Key, in, classICMP),
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, h := range hooks {
				t.Run(h.name, func(t *testing.T) {
					for n := 0; n <= len(tc.frame); n++ {
						frame := tc.frame[:n]
						want := tc.want
						if n < tc.needed {
							want = bucket(malformed)
						}
						t.Run(fmt.Sprint(n), func(t *testing.T) {
							if !h.accepts(frame) {
								checkRefused(t, objs, h, frame)
								return
							}
							countOne(t, objs, defaultConfig, h, 0, frame, want)
						})
					}
				})
			}
		})
	}
}

// TestCounterXDPDrop checks the verdict of a program configured for a pure
// mirror port: XDP drops every frame it has counted; TC still hands every
// packet on.
func TestCounterXDPDrop(t *testing.T) {
	cfg := defaultConfig
	cfg.XdpVerdict = xdpDrop
	objs := loadCounter(t, cfg, nil)
	setFixtureTables(t, objs)

	for _, tc := range frameCases(t) {
		switch tc.name {
		case "ipv4/tcp/in", "ipv6/udp/out", "vlan/triple-tag", "ipv4/ihl-4", "ipv4/both-local", "garbage/short":
		default:
			continue
		}
		for _, h := range hooks {
			if !h.accepts(tc.frame) {
				continue
			}
			t.Run(tc.name+"/"+h.name, func(t *testing.T) {
				countOne(t, objs, cfg, h, 0, tc.frame, tc.want)
			})
		}
	}
}

// TestCounterKeyLength checks the counting granularity outside split /24s
// and /48s, and that split cells and depths do not depend on it.
func TestCounterKeyLength(t *testing.T) {
	testutil.RequireBPF(t)
	type keyCase struct {
		frame []byte
		want  outcome
	}
	for _, lens := range []struct {
		v4, v6 uint8
		v4Key  string
		v6Key  string
	}{
		{v4: 32, v6: 128, v4Key: "198.51.100.7/32", v6Key: "2001:4860:1:2::8888/128"},
		{v4: 16, v6: 64, v4Key: "198.51.0.0/16", v6Key: "2001:4860:1:2::/64"},
		{v4: 20, v6: 56, v4Key: "198.51.96.0/20", v6Key: "2001:4860:1::/56"},
		{v4: 8, v6: 32, v4Key: "198.0.0.0/8", v6Key: "2001:4860::/32"},
		{v4: 0, v6: 0, v4Key: "0.0.0.0/0", v6Key: "::/0"},
	} {
		t.Run(fmt.Sprintf("v4-%d-v6-%d", lens.v4, lens.v6), func(t *testing.T) {
			cfg := bpf.CounterConfig{XdpVerdict: xdpPass, V4KeyLen: lens.v4, V6KeyLen: lens.v6}
			objs := loadCounter(t, cfg, nil)
			setFixtureTables(t, objs)
			b := func(ls ...gopacket.SerializableLayer) []byte { return build(t, ls...) }
			cases := map[string]keyCase{
				"ipv4": {b(eth(ipv4), ip4(remote4, local4, pTCP), tcp(portHTTPS, portEphemeral)), remote(lens.v4Key, in, classTCP)},
				"ipv6": {b(eth(ipv6), ip6(local6, remote6, pUDP), udp(portEphemeral, portDNS)), remote(lens.v6Key, out, classUDP)},
				"ipv4-split-/24": {b(eth(ipv4), ip4(local4, "203.0.113.130", pUDP), udp(portEphemeral, portDNS)),
					remote("203.0.113.128/26", out, classUDP)},
				"ipv4-partly-local-/24": {b(eth(ipv4), ip4("198.18.7.200", local4, pUDP), udp(portDNS, portEphemeral)),
					remote("198.18.7.64/26", in, classUDP)},
				"ipv6-split-/48": {b(eth(ipv6), ip6("2001:470:1:abcd::1", local6, pUDP), udp(portDNS, portEphemeral)),
					remote("2001:470:1:abcd::/64", in, classUDP)},
			}
			for name, kc := range cases {
				for _, h := range hooks {
					t.Run(name+"/"+h.name, func(t *testing.T) {
						countOne(t, objs, cfg, h, 0, kc.frame, kc.want)
					})
				}
			}
		})
	}
}

// TestCounterEpochs checks that state.active selects the counter epoch
// (bit 0) and the table set (bit 1) independently.
func TestCounterEpochs(t *testing.T) {
	objs := loadCounter(t, defaultConfig, nil)
	setFixtureTables(t, objs)
	b := func(ls ...gopacket.SerializableLayer) []byte { return build(t, ls...) }

	in4 := b(eth(ipv4), ip4(remote4, local4, pTCP), tcp(portHTTPS, portEphemeral))
	in6 := b(eth(ipv6), ip6(remote6, local6, pUDP), udp(portEphemeral, portWireGuard))
	split4 := b(eth(ipv4), ip4(remote4, "203.0.113.130", pUDP), udp(portDNS, portEphemeral))
	partly4 := b(eth(ipv4), ip4("198.18.7.1", local4, pUDP), udp(portDNS, portEphemeral))
	arp := frameCaseByName(t, "non-ip/arp")

	// In table set 1, 198.51.100.0/24 and 2001:4860::/32 are local, the set 0
	// prefixes are not, and 203.0.113.0/24 has other cells.
	set0 := map[string]outcome{
		"ipv4":             remote(remote4Key, in, classTCP),
		"ipv6":             remote(remote6Key, in, classTunnel),
		"split-/24":        bucket(neitherLocal),
		"partly-local-/24": bucket(bothLocal),
		"arp":              bucket(nonIP),
	}
	set1 := map[string]outcome{
		"ipv4":             remote("192.0.2.0/24", out, classTCP),
		"ipv6":             remote("2001:db8:1::/48", out, classTunnel),
		"split-/24":        remote("203.0.113.16/28", out, classUDP),
		"partly-local-/24": bucket(neitherLocal),
		"arp":              bucket(nonIP),
	}
	frames := map[string][]byte{"ipv4": in4, "ipv6": in6, "split-/24": split4, "partly-local-/24": partly4, "arp": arp}

	for _, st := range []struct {
		active uint32
		epoch  int
		want   map[string]outcome
	}{
		{active: 0, epoch: 0, want: set0},
		{active: 1, epoch: 1, want: set0},
		{active: 2, epoch: 0, want: set1},
		{active: 3, epoch: 1, want: set1},
	} {
		t.Run(fmt.Sprintf("active-%d", st.active), func(t *testing.T) {
			setState(t, objs, st.active)
			t.Cleanup(func() { setState(t, objs, 0) })
			for name, frame := range frames {
				for _, h := range hooks {
					t.Run(name+"/"+h.name, func(t *testing.T) {
						countOne(t, objs, defaultConfig, h, st.epoch, frame, st.want[name])
					})
				}
			}
		})
	}
}

func frameCaseByName(tb testing.TB, name string) []byte {
	tb.Helper()
	for _, tc := range frameCases(tb) {
		if tc.name == name {
			return tc.frame
		}
	}
	tb.Fatalf("no frame case %q", name)
	return nil
}

// collidingKeys returns n remote /24s whose keys share the counter cache
// slot of first (first included), outside the fixture's local prefixes.
func collidingKeys(tb testing.TB, first string, n int) []netip.Prefix {
	tb.Helper()
	p := mustPrefix(tb, first)
	slot := cacheSlot(0, keyAddr(p))
	keys := []netip.Prefix{p}
	for a := uint32(11 << 24); len(keys) < n && a < 127<<24; a += 256 { // 11.0.0.0-126.255.255.0
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], a)
		q := netip.PrefixFrom(netip.AddrFrom4(b), 24)
		if q != p && cacheSlot(0, keyAddr(q)) == slot {
			keys = append(keys, q)
		}
	}
	if len(keys) < n {
		tb.Fatalf("found %d keys in the cache slot of %s, want %d", len(keys), first, n)
	}
	return keys
}

// host7 is the address .7 of a remote /24.
func host7(p netip.Prefix) string {
	b := p.Addr().As4()
	b[3] = 7
	return netip.AddrFrom4(b).String()
}

// step is one packet of a sequence and the counters it adds to its key.
type step struct {
	frame []byte
	want  outcome
}

// expectTotals is what a sequence of steps adds up to per key.
func expectTotals(steps []step) map[netip.Addr]bpf.CounterRemoteCounters {
	totals := make(map[netip.Addr]bpf.CounterRemoteCounters)
	for _, s := range steps {
		k := keyAddr(s.want.key)
		c := totals[k]
		c.Packets[s.want.dir]++
		c.Bytes[s.want.dir] += uint64(len(s.frame))
		c.ClassPackets[s.want.class]++
		totals[k] = c
	}
	return totals
}

// TestCounterCacheEviction sends packets of keys that share a cache slot,
// on one CPU, so that each takes the slot from the other: every packet and
// byte must survive the moves into the counter map, whether the key is new
// there or already in it.
func TestCounterCacheEviction(t *testing.T) {
	objs := loadCounter(t, defaultConfig, nil)
	setFixtureTables(t, objs)
	keys := collidingKeys(t, remote4Key, 2)
	b := func(ls ...gopacket.SerializableLayer) []byte { return build(t, ls...) }
	k1, k2 := keys[0], keys[1]
	steps := []step{
		{b(eth(ipv4), ip4(host7(k1), local4, pTCP), tcp(portHTTPS, portEphemeral), payload(10)), remote(k1.String(), in, classTCP)},
		{b(eth(ipv4), ip4(local4, host7(k1), pUDP), udp(portEphemeral, portWireGuard), payload(90)), remote(k1.String(), out, classTunnel)},
		{b(eth(ipv4), ip4(host7(k2), local4, pICMP), icmp4(), payload(30)), remote(k2.String(), in, classICMP)},
		{b(eth(ipv4), ip4(host7(k1), local4, pTCP), tcp(portHTTPS, portEphemeral), payload(200)), remote(k1.String(), in, classTCP)},
		{b(eth(ipv4), ip4(local4, host7(k2), pESP), payload(70)), remote(k2.String(), out, classTunnel)},
	}
	want := expectTotals(steps)

	for _, h := range hooks {
		t.Run(h.name, func(t *testing.T) {
			onCPU(t, allowedCPUs(t)[0], func() {
				for _, s := range steps {
					if _, err := h.run(objs, s.frame); err != nil {
						t.Fatal(err)
					}
				}
			})
			inMap := newTally(t, objs) // the counter map alone
			got := takeTally(t, objs)
			got.checkInvariant(t)
			if seen := got.globals[0][bpf.CounterGlobalCounterGLOBAL_SEEN]; seen != uint64(len(steps)) {
				t.Errorf("seen = %d, want %d", seen, len(steps))
			}
			if len(got.remotes[0]) != len(want) {
				t.Errorf("counted %s, want keys %v", describe(got, 0), keys)
			}
			for k, w := range want {
				if c := got.remotes[0][k]; c != w {
					t.Errorf("%s: packets %v bytes %v classes %v, want packets %v bytes %v classes %v",
						k, c.Packets, c.Bytes, c.ClassPackets, w.Packets, w.Bytes, w.ClassPackets)
				}
				if _, ok := inMap.remotes[0][k]; !ok {
					t.Errorf("%s was never moved into the counter map", k)
				}
			}
		})
	}
}

// TestCounterPerCPU counts one key on two CPUs: each holds it in its own
// cache slot, and the two add up.
func TestCounterPerCPU(t *testing.T) {
	cpus := allowedCPUs(t)
	if len(cpus) < 2 {
		t.Skip("needs two CPUs")
	}
	objs := loadCounter(t, defaultConfig, nil)
	setFixtureTables(t, objs)
	frame := frameCaseByName(t, "ipv4/tcp/in")
	want := remote(remote4Key, in, classTCP)
	slot := cacheSlot(0, keyAddr(want.key))

	for _, h := range hooks {
		t.Run(h.name, func(t *testing.T) {
			for _, cpu := range cpus[:2] {
				onCPU(t, cpu, func() {
					if _, err := h.run(objs, frame); err != nil {
						t.Fatal(err)
					}
				})
			}
			var entries []bpf.CounterCacheEntry
			if err := objs.Cache.Lookup(slot, &entries); err != nil {
				t.Fatal(err)
			}
			used := 0
			for _, e := range entries {
				if e.Used != 0 {
					used++
				}
			}
			if used != 2 {
				t.Errorf("slot %d is used on %d CPUs, want 2", slot, used)
			}
			got := takeTally(t, objs)
			got.checkInvariant(t)
			c := got.remotes[0][keyAddr(want.key)]
			if c.Packets[in] != 2 || c.Bytes[in] != 2*uint64(len(frame)) || c.ClassPackets[classTCP] != 2 {
				t.Errorf("counters = %+v, want 2 packets of %d bytes", c, len(frame))
			}
		})
	}
}

// TestCounterOverflow fills a counter map of two keys through one cache
// slot: a key moved out of the slot that no longer fits is counted as
// overflow (its packets; its bytes are lost), and every packet is counted
// once.
func TestCounterOverflow(t *testing.T) {
	const capacity = 2
	objs := loadCounter(t, defaultConfig, func(spec *ebpf.CollectionSpec) {
		spec.Maps[bpf.CounterMapCountersEven].MaxEntries = capacity
		spec.Maps[bpf.CounterMapCountersOdd].MaxEntries = capacity
	})
	setFixtureTables(t, objs)
	keys := collidingKeys(t, remote4Key, 4)
	frame := func(k netip.Prefix) []byte {
		return build(t, eth(ipv4), ip4(host7(k), local4, pUDP), udp(portDNS, portEphemeral))
	}
	// k1 k2 k3 k4 k1 k1 on one CPU: k2 moves k1 into the map, k3 moves k2, k4
	// finds the map full for k3, the second k1 finds it full for k4, and the
	// last k1 stays in the slot.
	sequence := []netip.Prefix{keys[0], keys[1], keys[2], keys[3], keys[0], keys[0]}
	wantPackets := map[netip.Addr]uint64{keyAddr(keys[0]): 3, keyAddr(keys[1]): 1}
	const wantOverflow = 2

	for _, h := range hooks {
		t.Run(h.name, func(t *testing.T) {
			onCPU(t, allowedCPUs(t)[0], func() {
				for _, k := range sequence {
					if _, err := h.run(objs, frame(k)); err != nil {
						t.Fatal(err)
					}
				}
			})
			got := takeTally(t, objs)
			got.checkInvariant(t)
			if n := got.globals[0][overflow]; n != wantOverflow {
				t.Errorf("overflow = %d, want %d (%s)", n, wantOverflow, describe(got, 0))
			}
			if len(got.remotes[0]) != len(wantPackets) {
				t.Errorf("counted %s, want keys %s and %s", describe(got, 0), keys[0], keys[1])
			}
			for k, n := range wantPackets {
				if c := got.remotes[0][k]; c.Packets[in] != n || c.Bytes[in] != n*uint64(len(frame(keys[0]))) {
					t.Errorf("%s: packets %v bytes %v, want %d packets", k, c.Packets, c.Bytes, n)
				}
			}
		})
	}
}

// TestCounterEmptyProgram checks the benchmark floor: it passes and counts nothing.
func TestCounterEmptyProgram(t *testing.T) {
	objs := loadCounter(t, defaultConfig, nil)
	resetCounters(t, objs)
	frame := frameCaseByName(t, "ipv4/tcp/in")
	verdict, err := objs.PeerwatchEmpty.Run(&ebpf.RunOptions{Data: frame})
	if err != nil {
		t.Fatal(err)
	}
	if verdict != xdpPass {
		t.Errorf("verdict = %d, want %d", verdict, xdpPass)
	}
	if got := describe(readTally(t, objs), 0); got != "nothing" {
		t.Errorf("empty program counted %s", got)
	}
}
