package datapath

import (
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/google/gopacket/layers"

	"github.com/peerwatch/peerwatch/internal/testutil"
	"github.com/peerwatch/peerwatch/sensor/prefixes"
)

// Tier 3: the program attached to a veth in network namespaces the test
// makes, counting real packets sent through the link.

// lab is a peering link between two namespaces: the peer sends on pw-peer,
// the sensor counts on pw-sensor.
type lab struct {
	peer, sensor *testutil.Namespace
	fromPeer     *testutil.Sender // frames arrive at pw-sensor's ingress
	fromSensor   *testutil.Sender // frames leave through pw-sensor's egress
}

func newLab(t *testing.T) *lab {
	t.Helper()
	l := &lab{peer: testutil.NewNamespace(t), sensor: testutil.NewNamespace(t)}
	testutil.Veth(t, l.peer, "pw-peer", l.sensor, "pw-sensor")
	l.fromPeer = testutil.NewSender(t, l.peer, "pw-peer")
	l.fromSensor = testutil.NewSender(t, l.sensor, "pw-sensor")
	return l
}

func (l *lab) attach(t *testing.T, d *Datapath, hook Hook) Mode {
	t.Helper()
	var mode Mode
	err := l.sensor.Do(func() (err error) {
		mode, err = d.Attach("pw-sensor", hook)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return mode
}

// labTables has local prefixes and a country table with /24s and /48s that
// more specific prefixes split.
func labTables(t *testing.T) *Tables {
	country := table(t, "country", map[string]string{
		"198.51.100.0/24":        "AA",
		"198.51.100.128/26":      "BB", // splits 198.51.100.0/24
		"198.51.100.200/32":      "CC",
		"203.0.113.0/24":         "DD",
		"2001:db8:100::/40":      "EE",
		"2001:db8:100:8000::/49": "FF", // splits 2001:db8:100::/48
		"2001:db8:200::/48":      "GG",
	})
	return &Tables{Local: pfxs("192.0.2.0/24", "2001:db8:1::/48"), Prefix: []*prefixes.Table{country}}
}

// labTraffic is a known mix: for each remote address, some packets in each
// direction, TCP, UDP and tunnels, IPv4 and IPv6.
type labTraffic struct {
	frames [][]byte
	remote []netip.Addr // remote address of each frame
}

func makeTraffic(t *testing.T, rounds int) labTraffic {
	local4, local6 := netip.MustParseAddr("192.0.2.7"), netip.MustParseAddr("2001:db8:1::7")
	remotes := []string{
		"198.51.100.1", "198.51.100.127", "198.51.100.129", "198.51.100.190", "198.51.100.200",
		"198.51.100.201", "203.0.113.9", "192.0.2.200", // the last is local: both-local
		"2001:db8:100::1", "2001:db8:100:8000::1", "2001:db8:100:ffff::1", "2001:db8:1ff::1",
		"2001:db8:200:1::1", "2001:db8:300::1", // the last is in no table prefix
	}
	var tr labTraffic
	for r := range rounds {
		for i, s := range remotes {
			remote := netip.MustParseAddr(s)
			local := local4
			if remote.Is6() {
				local = local6
			}
			f := testutil.Frame{Src: remote, Dst: local, Proto: layers.IPProtocolTCP, SrcPort: 443, DstPort: 40000, Payload: i}
			switch (r + i) % 3 {
			case 1:
				f = testutil.Frame{Src: local, Dst: remote, Proto: layers.IPProtocolUDP, SrcPort: 5000, DstPort: 53}
			case 2:
				f = testutil.Frame{Src: local, Dst: remote, Proto: layers.IPProtocolUDP, SrcPort: 4500, DstPort: 4500}
			}
			tr.frames = append(tr.frames, f.Bytes(t))
			tr.remote = append(tr.remote, remote)
		}
	}
	return tr
}

// perPrefix resolves counts to the country table: prefix -> packets.
func perPrefix(tables *Tables, keys map[netip.Addr]uint64) map[netip.Prefix]uint64 {
	out := map[netip.Prefix]uint64{}
	for k, n := range keys {
		e, _ := tables.Prefix[0].Lookup(k)
		out[e.Prefix] += n
	}
	return out
}

// collect drains until want packets were seen (or a deadline passes) and
// returns the globals and the packets per remote key.
func collect(t *testing.T, d *Datapath, want uint64) (Globals, map[netip.Addr]uint64) {
	t.Helper()
	var g Globals
	keys := map[netip.Addr]uint64{}
	deadline := time.Now().Add(10 * time.Second)
	for {
		ivs, err := d.Drain()
		if err != nil {
			t.Fatal(err)
		}
		for _, iv := range ivs {
			if err := iv.Check(); err != nil {
				t.Fatal(err)
			}
			g.Add(iv.Globals)
			for _, r := range iv.Remote {
				keys[r.Key] += r.Total()
			}
		}
		if g.Seen >= want || time.Now().After(deadline) {
			return g, keys
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestNetnsExactCounts(t *testing.T) {
	for _, hook := range []Hook{HookXDP, HookXDPGeneric, HookTC, HookTCNetlink} {
		t.Run(string(hook), func(t *testing.T) {
			l := newLab(t)
			d := openTest(t, Config{PinDir: testutil.PinDir(t)})
			tables := labTables(t)
			if err := d.SetTables(tables); err != nil {
				t.Fatal(err)
			}
			mode := l.attach(t, d, hook)
			t.Logf("attached as %s", mode)
			collect(t, d, 0) // start from a clean interval

			in := makeTraffic(t, 50)
			if err := l.fromPeer.SendPaced(in.frames, 64); err != nil {
				t.Fatal(err)
			}
			sent := in
			if hook == HookTC || hook == HookTCNetlink { // TC sees egress too
				out := makeTraffic(t, 20)
				if err := l.fromSensor.SendPaced(out.frames, 64); err != nil {
					t.Fatal(err)
				}
				sent.frames = append(sent.frames, out.frames...)
				sent.remote = append(sent.remote, out.remote...)
			}
			g, keys := collect(t, d, uint64(len(sent.frames)))

			wantKeys := map[netip.Addr]uint64{}
			var bothLocal uint64
			for _, r := range sent.remote {
				if tables.Local[0].Contains(r) {
					bothLocal++
					continue
				}
				wantKeys[r]++
			}
			if g.Seen != uint64(len(sent.frames)) || g.BothLocal != bothLocal || g.Buckets() != bothLocal {
				t.Fatalf("seen %d (buckets %+v), sent %d with %d both-local", g.Seen, g, len(sent.frames), bothLocal)
			}
			got, want := perPrefix(tables, keys), perPrefix(tables, wantKeys)
			for p, n := range want {
				if got[p] != n {
					t.Errorf("prefix %v: counted %d, sent %d", p, got[p], n)
				}
			}
			if len(got) != len(want) {
				t.Errorf("counted prefixes %v, sent to %v", got, want)
			}
			t.Logf("%d packets sent, %d counted on %d prefixes", len(sent.frames), g.Seen, len(got))
		})
	}
}

// sendInBackground sends frames paced until done, and returns the number sent.
func sendInBackground(t *testing.T, s *testutil.Sender, frames [][]byte) func() int {
	var wg sync.WaitGroup
	var n int
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i, f := range frames {
			if err := s.Send(f); err != nil {
				t.Errorf("send: %v", err)
				return
			}
			n++
			if i%32 == 31 {
				time.Sleep(200 * time.Microsecond)
			}
		}
	}()
	return func() int { wg.Wait(); return n }
}

// TestNetnsTableSwapUnderTraffic replaces the tables again and again while
// packets flow: no packet is lost or counted twice.
func TestNetnsTableSwapUnderTraffic(t *testing.T) {
	l := newLab(t)
	d := openTest(t, Config{PinDir: testutil.PinDir(t)})
	a := labTables(t)
	b := &Tables{Local: a.Local, Prefix: []*prefixes.Table{table(t, "other", map[string]string{
		"198.51.0.0/16": "XX", "198.51.100.64/27": "YY", "2001:db8::/32": "ZZ", "2001:db8:100:4000::/50": "WW",
	})}}
	if err := d.SetTables(a); err != nil {
		t.Fatal(err)
	}
	l.attach(t, d, HookXDPGeneric)
	collect(t, d, 0)

	tr := makeTraffic(t, 2000)
	wait := sendInBackground(t, l.fromPeer, tr.frames)
	var g Globals
	swaps := 0
	done := make(chan int)
	go func() { done <- wait() }()
	sent := -1
	for sent < 0 {
		select {
		case sent = <-done:
		default:
			next := a
			if swaps%2 == 0 {
				next = b
			}
			if err := d.SetTables(next); err != nil {
				t.Fatal(err)
			}
			swaps++
			time.Sleep(5 * time.Millisecond)
		}
	}
	var remote uint64
	deadline := time.Now().Add(10 * time.Second)
	for g.Seen < uint64(sent) && time.Now().Before(deadline) {
		ivs, err := d.Drain()
		if err != nil {
			t.Fatal(err)
		}
		for _, iv := range ivs {
			if err := iv.Check(); err != nil {
				t.Fatal(err)
			}
			g.Add(iv.Globals)
			for _, r := range iv.Remote {
				remote += r.Total()
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if g.Seen != uint64(sent) || remote+g.Buckets() != uint64(sent) {
		t.Fatalf("sent %d, seen %d, remote %d + buckets %d", sent, g.Seen, remote, g.Buckets())
	}
	t.Logf("%d packets, %d table swaps, all counted once", sent, swaps)
}

// TestNetnsRestartUnderTraffic closes the Go side and opens it again from
// the pins while packets flow: the program stays attached, and the counts of
// both runs add up to what was sent.
func TestNetnsRestartUnderTraffic(t *testing.T) {
	l := newLab(t)
	dir := testutil.PinDir(t)
	tables := labTables(t)
	for _, hook := range []Hook{HookXDP, HookTC} {
		t.Run(string(hook), func(t *testing.T) {
			d1, err := Open(Config{PinDir: dir}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := d1.SetTables(tables); err != nil {
				t.Fatal(err)
			}
			l.attach(t, d1, hook)
			collect(t, d1, 0)
			seenGen := map[uint64]bool{}
			var seen uint64
			account := func(ivs []*Interval) {
				for _, iv := range ivs {
					if seenGen[iv.Generation] {
						continue // a recovered interval this test already has
					}
					seenGen[iv.Generation] = true
					seen += iv.Globals.Seen
				}
			}

			tr := makeTraffic(t, 300)
			wait := sendInBackground(t, l.fromPeer, tr.frames)
			time.Sleep(20 * time.Millisecond)
			ivs, err := d1.Drain()
			if err != nil {
				t.Fatal(err)
			}
			account(ivs)
			if err := d1.Close(); err != nil { // the program keeps counting
				t.Fatal(err)
			}
			time.Sleep(20 * time.Millisecond)
			d2, err := Open(Config{PinDir: dir}, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer d2.Remove()
			if err := d2.SetTables(tables); err != nil {
				t.Fatal(err)
			}
			l.attach(t, d2, hook) // takes over the pinned link
			sent := wait()
			deadline := time.Now().Add(10 * time.Second)
			for seen < uint64(sent) && time.Now().Before(deadline) {
				ivs, err := d2.Drain()
				if err != nil {
					t.Fatal(err)
				}
				account(ivs)
				time.Sleep(20 * time.Millisecond)
			}
			if seen != uint64(sent) {
				t.Fatalf("sent %d, counted %d across the restart", sent, seen)
			}
		})
	}
}
