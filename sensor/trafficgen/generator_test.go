package trafficgen

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/peerwatch/peerwatch/sensor/prefixes"
	"github.com/peerwatch/peerwatch/sensor/traffic"
)

// fixtureTables is a small country table and AS table over real prefixes
// of the countries of the default mix and a few others.
func fixtureTables(t *testing.T) []*prefixes.Table {
	t.Helper()
	country := prefixes.NewTable("country")
	for _, e := range []struct{ p, cc string }{
		{"175.45.176.0/22", "KP"},
		{"1.0.1.0/24", "CN"}, {"1.0.2.0/23", "CN"}, {"240e::/20", "CN"},
		{"1.6.0.0/15", "IN"}, {"2401:4900::/32", "IN"},
		{"202.36.0.0/16", "NZ"}, {"202.36.128.0/24", "AU"}, // a nested prefix of another country
		{"2404:138::/32", "NZ"},
		{"175.136.0.0/13", "MY"},
		{"8.8.8.0/24", "US"}, {"2001:4860::/32", "US"},
		{"193.0.0.0/21", "NL"},
	} {
		if err := country.Add(prefixes.Entry{Prefix: netip.MustParsePrefix(e.p), Country: e.cc}); err != nil {
			t.Fatal(err)
		}
	}
	asn := prefixes.NewTable("asn")
	for _, e := range []struct {
		p   string
		asn uint32
	}{
		{"175.45.176.0/22", 131279}, {"8.8.8.0/24", 15169}, {"1.0.2.0/24", 4134}, {"202.36.0.0/17", 9790},
	} {
		if err := asn.Add(prefixes.Entry{Prefix: netip.MustParsePrefix(e.p), ASN: e.asn}); err != nil {
			t.Fatal(err)
		}
	}
	c, _ := country.Build()
	a, _ := asn.Build()
	return []*prefixes.Table{c, a}
}

var testLocal = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8:1::/48")}

// classify is what docs/datapath.md says the sensor does with a frame,
// written independently of the generator: the test's oracle.
func classify(t *testing.T, frame []byte) (src, dst netip.Addr, c traffic.Class) {
	t.Helper()
	pkt := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
	var proto layers.IPProtocol
	switch ip := pkt.NetworkLayer().(type) {
	case *layers.IPv4:
		src, _ = netip.AddrFromSlice(ip.SrcIP)
		dst, _ = netip.AddrFromSlice(ip.DstIP)
		proto = ip.Protocol
		if int(ip.Length)+ethHeaderLen > len(frame) {
			t.Fatalf("IPv4 length %d beyond the frame of %d bytes", ip.Length, len(frame))
		}
		if checksum(frame[ethHeaderLen:ethHeaderLen+ipv4Len], 0) != 0 {
			t.Errorf("IPv4 header checksum wrong: % x", frame[:ethHeaderLen+ipv4Len])
		}
	case *layers.IPv6:
		src, _ = netip.AddrFromSlice(ip.SrcIP)
		dst, _ = netip.AddrFromSlice(ip.DstIP)
		proto = ip.NextHeader
	default:
		t.Fatalf("not IP: %v", pkt)
	}
	tunnelPort := func(a, b uint16) bool {
		for _, p := range []uint16{51820, 1194, 500, 4500} {
			if a == p || b == p {
				return true
			}
		}
		return false
	}
	switch proto {
	case layers.IPProtocolTCP:
		tcp := pkt.Layer(layers.LayerTypeTCP).(*layers.TCP)
		if uint16(tcp.SrcPort) == 1194 || uint16(tcp.DstPort) == 1194 {
			return src, dst, traffic.Tunnel
		}
		return src, dst, traffic.TCP
	case layers.IPProtocolUDP:
		udp := pkt.Layer(layers.LayerTypeUDP).(*layers.UDP)
		if tunnelPort(uint16(udp.SrcPort), uint16(udp.DstPort)) {
			return src, dst, traffic.Tunnel
		}
		return src, dst, traffic.UDP
	case layers.IPProtocolICMPv4, layers.IPProtocolICMPv6:
		return src, dst, traffic.ICMP
	case 47, 50, 51, 4, 41:
		return src, dst, traffic.Tunnel
	}
	return src, dst, traffic.Other
}

// transportChecksumOK checks the TCP, UDP and ICMP checksums.
func transportChecksumOK(frame []byte, p *Packet) bool {
	off := ethHeaderLen + ipv4Len
	if p.Src.Is6() {
		off = ethHeaderLen + ipv6Len
	}
	ipLen := int(binary.BigEndian.Uint16(frame[ethHeaderLen+2:]))
	end := ethHeaderLen + ipLen
	if p.Src.Is6() {
		end = off + int(binary.BigEndian.Uint16(frame[ethHeaderLen+4:]))
	}
	l4 := frame[off:end]
	switch p.Proto {
	case protoTCP, protoUDP, protoICMPv6:
		return checksum(l4, pseudoHeader(p.Src, p.Dst, p.Proto, len(l4))) == 0
	case protoICMP:
		return checksum(l4, 0) == 0
	}
	return true
}

func TestGeneratorFramesMatchTheSensorsRules(t *testing.T) {
	tables := fixtureTables(t)
	for _, profile := range Profiles {
		t.Run(string(profile), func(t *testing.T) {
			g, err := New(Options{Profile: profile, Seed: 7, Local: testLocal, IPv6: 0.3, Country: "KP", Talkers: 40}, tables...)
			if err != nil {
				t.Fatal(err)
			}
			var tally Tally
			var buf []byte
			var classes [traffic.NumClasses]int
			v6 := 0
			const n = 20000
			for range n {
				p, l := g.Next()
				buf = p.Frame(buf[:0], PeerMAC, LocalMAC)
				if len(buf) < MinFrame || len(buf) > MaxIPLen+ethHeaderLen {
					t.Fatalf("frame of %d bytes: %+v", len(buf), p)
				}
				src, dst, c := classify(t, buf)
				if src != p.Src || dst != p.Dst || c != p.Class {
					t.Fatalf("frame says %v -> %v class %v; the packet %v -> %v class %v (%+v)", src, dst, c, p.Src, p.Dst, p.Class, p)
				}
				if !transportChecksumOK(buf, &p) {
					t.Fatalf("bad transport checksum: %+v", p)
				}
				local, remote := p.Dst, p.Src
				if p.Direction == traffic.Out {
					local, remote = p.Src, p.Dst
				}
				if !inAny(testLocal, local) || inAny(testLocal, remote) || p.Remote != remote {
					t.Fatalf("direction %v but local %v, remote %v (Remote %v)", p.Direction, local, remote, p.Remote)
				}
				if !l.Prefix.Contains(remote) {
					t.Fatalf("labels of %v name prefix %v", remote, l.Prefix)
				}
				switch profile {
				case Burst:
					if l.Country != "KP" || p.Direction != traffic.In {
						t.Fatalf("burst packet from %v (%q), direction %v", remote, l.Country, p.Direction)
					}
				case Spoofed:
					if p.Direction != traffic.In {
						t.Fatalf("spoofed packet in direction %v", p.Direction)
					}
				}
				if remote.Is6() {
					v6++
				}
				classes[c]++
				tally.Add(&p, l, len(buf))
			}
			r := tally.Report()
			if r.Sent.Total() != n {
				t.Errorf("report: %d packets, sent %d", r.Sent.Total(), n)
			}
			var byPrefix, byCountry, byAS traffic.Counters
			for _, p := range r.Prefixes {
				byPrefix.Add(p.Counters)
			}
			for _, c := range r.Countries {
				byCountry.Add(c.Counters)
			}
			for _, a := range r.ASes {
				byAS.Add(a.Counters)
			}
			if byPrefix != r.Sent || byCountry != r.Sent || byAS != r.Sent {
				t.Errorf("report does not add up: sent %+v, prefixes %+v, countries %+v, ASes %+v", r.Sent, byPrefix, byCountry, byAS)
			}
			for c, k := range classes {
				if r.Sent.Class[c] != uint64(k) {
					t.Errorf("class %v: report %d, frames %d", traffic.Class(c), r.Sent.Class[c], k)
				}
			}
			if profile != Burst && (v6 == 0 || v6 == n) { // KP has no IPv6 space
				t.Errorf("%d of %d packets IPv6, want some of each family", v6, n)
			}
			t.Logf("%s: classes %v, IPv6 %d, %d prefixes, %d countries", profile, classes, v6, len(r.Prefixes), len(r.Countries))
		})
	}
}

func inAny(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func TestGeneratorPeeringMix(t *testing.T) {
	g, err := New(Options{Profile: Peering, Seed: 1, Local: testLocal, Talkers: 200}, fixtureTables(t)...)
	if err != nil {
		t.Fatal(err)
	}
	var tally Tally
	const n = 50000
	for range n {
		p, l := g.Next()
		tally.Add(&p, l, 100)
	}
	r := tally.Report()
	share := map[string]float64{}
	for _, c := range r.Countries {
		share[c.Country] = float64(c.Total()) / n * 100
	}
	// DefaultMix: CN 22, IN 16, NZ 10, MY 8, KP 2, the rest 42 (US, NL and
	// AU here; an address in NZ's space that the table places in AU is
	// never one of NZ's).
	for cc, want := range map[string]float64{"CN": 22, "IN": 16, "NZ": 10, "MY": 8, "KP": 2} {
		if got := share[cc]; got < want*0.8 || got > want*1.2 {
			t.Errorf("%s: %.1f%% of packets, want about %v%%", cc, got, want)
		}
	}
	if rest := share["US"] + share["NL"] + share["AU"]; rest < 42*0.8 || rest > 42*1.2 {
		t.Errorf("rest of the world: %.1f%%, want about 42%%", rest)
	}
	if share[""] != 0 {
		t.Errorf("%.1f%% of packets from no country: the mix has none", share[""])
	}
	in := float64(r.Sent.Packets[traffic.In]) / n
	if in < 0.5 || in > 0.6 {
		t.Errorf("%.2f of packets in, want about 0.55", in)
	}
}

func TestGeneratorDeterministic(t *testing.T) {
	tables := fixtureTables(t)
	frames := func(seed uint64) []byte {
		g, err := New(Options{Profile: Peering, Seed: seed, Local: testLocal, IPv6: 0.25}, tables...)
		if err != nil {
			t.Fatal(err)
		}
		var all []byte
		for range 2000 {
			p, _ := g.Next()
			all = p.Frame(all, PeerMAC, LocalMAC)
		}
		return all
	}
	a, b, c := frames(42), frames(42), frames(43)
	if !bytes.Equal(a, b) {
		t.Error("the same seed gave different frames")
	}
	if bytes.Equal(a, c) {
		t.Error("seeds 42 and 43 gave the same frames")
	}
}

func TestGeneratorErrors(t *testing.T) {
	tables := fixtureTables(t)
	for _, tc := range []struct {
		opt  Options
		want string
	}{
		{Options{Profile: "flood", Local: testLocal}, `unknown profile "flood" (want peering, spoofed, burst)`},
		{Options{Profile: Peering}, "no local IPv4 prefix"},
		{Options{Profile: Burst, Local: testLocal, Country: "ZZ"}, "burst: the country table has no prefix of ZZ"},
		{Options{Profile: Burst, Local: testLocal, Country: "Korea"}, `burst: "Korea" is not a two-letter country code`},
		{Options{Profile: Peering, Local: testLocal, Mix: []Share{{"FR", 1}}}, "mix: the country table has no IPv4 prefix of FR"},
		{Options{Profile: Peering, Local: testLocal, IPv6: 2}, "ipv6 share 2 is not between 0 and 1"},
		{Options{Profile: Peering, Local: testLocal, V4KeyLen: 33}, "v4 key length 33 is not between 1 and 32"},
		{Options{Profile: Peering, Local: testLocal, V6KeyLen: -1}, "v6 key length -1 is not between 1 and 128"},
		{Options{Profile: Peering, Local: testLocal, Talkers: 100001}, "talkers 100001 is not between 1 and 100000"},
	} {
		_, err := New(tc.opt, tables...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v): %v, want %q", tc.opt, err, tc.want)
		}
	}
	if _, err := New(Options{Profile: Peering, Local: testLocal}); err == nil {
		t.Error("New without tables: no error")
	}
}

func TestParseMix(t *testing.T) {
	mix, err := ParseMix("cn=22, IN=16,*=40.5")
	if err != nil || len(mix) != 3 || mix[0] != (Share{"CN", 22}) || mix[2] != (Share{"*", 40.5}) {
		t.Errorf("ParseMix: %v %v", mix, err)
	}
	for in, want := range map[string]string{
		"CN":          `mix item "CN": want COUNTRY=WEIGHT`,
		"CN=1,CN=2":   "CN is named twice",
		"CHN=1":       `"CHN" is not a two-letter country code or *`,
		"CN=-1":       `weight "-1" is not a positive number`,
		"CN=x":        `weight "x" is not a positive number`,
		"CN=1,,IN=2":  `mix item "": want COUNTRY=WEIGHT`,
		"CN=Inf,IN=1": `weight "Inf" is not a positive number`,
	} {
		if _, err := ParseMix(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseMix(%q): %v, want %q", in, err, want)
		}
	}
}

// TestPeeringRestOfWorldIPv6Only: a country of the rest of the world (*)
// with IPv6 space only gets IPv6 talkers, where it used to fail the
// generator ("no IPv4 prefix of AN" with 1,000 talkers on the real table).
func TestPeeringRestOfWorldIPv6Only(t *testing.T) {
	country := prefixes.NewTable("country")
	for _, e := range []struct{ p, cc string }{{"1.0.1.0/24", "CN"}, {"2a0e:1d80::/32", "AN"}} {
		if err := country.Add(prefixes.Entry{Prefix: netip.MustParsePrefix(e.p), Country: e.cc}); err != nil {
			t.Fatal(err)
		}
	}
	c, _ := country.Build()
	g, err := New(Options{Profile: Peering, Local: testLocal, Talkers: 20, Mix: []Share{{"CN", 1}, {"*", 1}}}, c)
	if err != nil {
		t.Fatal(err)
	}
	v6 := 0
	for _, tk := range g.talkers {
		if tk.addr.Is6() {
			v6++
			if tk.labels.Country != "AN" {
				t.Errorf("IPv6 talker %v in %q, want AN", tk.addr, tk.labels.Country)
			}
		}
	}
	if v6 != 10 {
		t.Errorf("%d IPv6 talkers, want the 10 of *", v6)
	}
}
