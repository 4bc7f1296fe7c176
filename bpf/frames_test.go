package bpf_test

// Frames for the BPF tests, built with gopacket, and the fixture tables they
// are counted against.

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/peerwatch/peerwatch/bpf"
)

// The fixture tables of table set 0 (documentation and benchmarking ranges).
//
//	local IPv4       192.0.2.0/24, 10.0.0.0/16 (256 /24s over 4 bitmap words)
//	partly local     198.18.7.0/24: hosts 0-63 local (cell 0), 64-255 remote (cell 64)
//	split remote     203.0.113.0/24: cells 0-127, 128-191, 192-255;
//	                 203.0.100.0/24: cells 0-31, 32-255; 203.0.120.0/24: 0-3, 4-255
//	local IPv6       2001:db8::/32 (whole /32), 2a02:1234:5600::/56 (in the trie)
//	split remote     2001:470:1::/48 counted by /64
//
// Table set 1 holds only 198.51.100.0/24 and 2001:4860::/32 as local, and
// splits 203.0.113.0/24 into cells 0-15 and 16-255.
const (
	remote4 = "198.51.100.7" // key 198.51.100.0/24
	other4  = "203.0.113.9"  // remote, split: cell 0-127
	local4  = "192.0.2.10"
	local4b = "10.0.255.1"

	remote6 = "2001:4860:1:2::8888" // key 2001:4860:1::/48
	other6  = "2001:4860:2::1"
	local6  = "2001:db8:1::10"
	local6b = "2a02:1234:5600:ff::1"

	remote4Key = "198.51.100.0/24"
	remote6Key = "2001:4860:1::/48"
)

func setFixtureTables(tb testing.TB, objs *bpf.CounterObjects) {
	tb.Helper()
	setLocalV4(tb, objs, 0, "192.0.2.0/24")
	setLocalV4(tb, objs, 0, "10.0.0.0/16")
	var firstQuarter []uint8
	for h := range uint8(64) {
		firstQuarter = append(firstQuarter, h)
	}
	setSplitV4(tb, objs, 0, "198.18.7.0/24", []uint8{0, 64}, firstQuarter)
	setSplitV4(tb, objs, 0, "203.0.113.0/24", []uint8{0, 128, 192}, nil)
	// Two more split /24s in the bitmap word of 203.0.113.0/24 (203.0.64.0/18),
	// above and below it: entries are found by their rank in the word.
	setSplitV4(tb, objs, 0, "203.0.120.0/24", []uint8{0, 4}, nil)
	setSplitV4(tb, objs, 0, "203.0.100.0/24", []uint8{0, 32}, nil)
	setLocalV6Net32(tb, objs, 0, "2001:db8::/32")
	setLocalV6Prefix(tb, objs, 0, "2a02:1234:5600::/56")
	setSplitV6(tb, objs, 0, "2001:470:1::/48", 64)

	setLocalV4(tb, objs, 1, "198.51.100.0/24")
	setLocalV6Net32(tb, objs, 1, "2001:4860::/32")
	setSplitV4(tb, objs, 1, "203.0.113.0/24", []uint8{0, 16}, nil)
}

// --- layers ------------------------------------------------------------

var (
	macA = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0a}
	macB = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0b}
)

func eth(t layers.EthernetType) *layers.Ethernet {
	return &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: t}
}

func vlan(id uint16, next layers.EthernetType) *layers.Dot1Q {
	return &layers.Dot1Q{VLANIdentifier: id, Type: next}
}

func ip4(src, dst string, proto layers.IPProtocol) *layers.IPv4 {
	return &layers.IPv4{
		Version: 4, TTL: 64, Protocol: proto,
		SrcIP: net.IP(netip.MustParseAddr(src).AsSlice()),
		DstIP: net.IP(netip.MustParseAddr(dst).AsSlice()),
	}
}

func ip6(src, dst string, next layers.IPProtocol) *layers.IPv6 {
	return &layers.IPv6{
		Version: 6, HopLimit: 64, NextHeader: next,
		SrcIP: net.IP(netip.MustParseAddr(src).AsSlice()),
		DstIP: net.IP(netip.MustParseAddr(dst).AsSlice()),
	}
}

func tcp(sport, dport uint16) *layers.TCP {
	return &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), SYN: true, Window: 65535}
}

func udp(sport, dport uint16) *layers.UDP {
	return &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
}

func icmp4() *layers.ICMPv4 {
	return &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: 1, Seq: 1}
}

func icmp6() *layers.ICMPv6 {
	return &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeEchoRequest, 0)}
}

func payload(n int) gopacket.Payload {
	p := make(gopacket.Payload, n)
	for i := range p {
		p[i] = byte(i)
	}
	return p
}

// portsPayload is the payload of a non-first fragment whose first four bytes
// look like the ports sport and dport: the program must not read them.
func portsPayload(sport, dport uint16) gopacket.Payload {
	p := payload(32)
	binary.BigEndian.PutUint16(p[0:], sport)
	binary.BigEndian.PutUint16(p[2:], dport)
	return p
}

// ipv4WithOptions is an IPv4 header for UDP with 8 bytes of options (a
// router alert and four NOPs: IHL 7).
func ipv4WithOptions(src, dst string) *layers.IPv4 {
	ip := ip4(src, dst, pUDP)
	ip.Options = []layers.IPv4Option{
		{OptionType: 148, OptionLength: 4, OptionData: []byte{0, 0}},
		{OptionType: 1}, {OptionType: 1}, {OptionType: 1}, {OptionType: 1},
	}
	return ip
}

// hopByHop is a hop-by-hop options header of 8*units bytes, filled with one
// PadN option (gopacket's serializer pads only headers that need no padding).
func hopByHop(next layers.IPProtocol, units int) *layers.IPv6HopByHop {
	h := &layers.IPv6HopByHop{Options: []*layers.IPv6HopByHopOption{padN(units)}}
	h.NextHeader = next
	return h
}

// destOpts is a destination options header of 8*units bytes.
func destOpts(next layers.IPProtocol, units int) *layers.IPv6Destination {
	d := &layers.IPv6Destination{Options: []*layers.IPv6DestinationOption{(*layers.IPv6DestinationOption)(padN(units))}}
	d.NextHeader = next
	return d
}

func padN(units int) *layers.IPv6HopByHopOption {
	n := 8*units - 4
	return &layers.IPv6HopByHopOption{OptionType: 1, OptionLength: uint8(n), OptionData: make([]byte, n)}
}

// routing is a type 0 routing header with no segments left, serialized by
// hand: gopacket has no serializer for it.
func routing(next layers.IPProtocol) gopacket.Payload {
	return gopacket.Payload{byte(next), 0, 0, 0, 0, 0, 0, 0}
}

// rawExt is an options-style extension header (hop-by-hop, routing or
// destination options: next header, length in 8-octet units past the first)
// of 8*units bytes, serialized by hand.
func rawExt(next layers.IPProtocol, units int) gopacket.Payload {
	p := make(gopacket.Payload, 8*units)
	p[0], p[1] = byte(next), byte(units-1)
	return p
}

// fragment is an IPv6 fragment header, serialized by hand: gopacket has no
// serializer for it. offset is in 8-octet units.
func fragment(next layers.IPProtocol, offset uint16, more bool) gopacket.Payload {
	p := gopacket.Payload{byte(next), 0, 0, 0, 0, 0, 0x12, 0x34}
	fo := offset << 3
	if more {
		fo |= 1
	}
	binary.BigEndian.PutUint16(p[2:], fo)
	return p
}

// build serializes ls with lengths and checksums computed.
func build(tb testing.TB, ls ...gopacket.SerializableLayer) []byte {
	tb.Helper()
	var network gopacket.NetworkLayer
	for _, l := range ls {
		switch l := l.(type) {
		case *layers.IPv4:
			network = l
		case *layers.IPv6:
			network = l
		case *layers.TCP:
			_ = l.SetNetworkLayerForChecksum(network)
		case *layers.UDP:
			_ = l.SetNetworkLayerForChecksum(network)
		case *layers.ICMPv6:
			_ = l.SetNetworkLayerForChecksum(network)
		}
	}
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, ls...); err != nil {
		tb.Fatalf("serialize frame: %v", err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

// patch returns a copy of frame with bytes at off replaced.
func patch(frame []byte, off int, b ...byte) []byte {
	f := append([]byte(nil), frame...)
	copy(f[off:], b)
	return f
}

// --- cases -------------------------------------------------------------

// frameCase is one frame and where the program must count it with the
// fixture tables in set 0 and the default configuration.
type frameCase struct {
	name  string
	frame []byte
	want  outcome
}

// knownBugs names the bug in the C program that makes a case fail today; the
// case stays in the table as that bug's failing test. Tests of something
// other than classification leave these cases out.
var knownBugs = map[string]string{
	"ipv6/ext-header-cut-before-icmpv6": bugTruncatedExtHeader,
}

// bugTruncatedExtHeader is the bug that a truncated last IPv6 extension
// header is not malformed unless TCP or UDP ports follow it.
const bugTruncatedExtHeader = "parse_ipv6 (bpf/parse.h) does not check that the last extension header it " +
	"steps over is within the frame: a truncated one before ICMPv6, GRE, ESP... is counted, not malformed"

const (
	ipv4  = layers.EthernetTypeIPv4
	ipv6  = layers.EthernetTypeIPv6
	q8021 = layers.EthernetTypeDot1Q
	qinq  = layers.EthernetTypeQinQ

	pTCP    = layers.IPProtocolTCP
	pUDP    = layers.IPProtocolUDP
	pICMP   = layers.IPProtocolICMPv4
	pICMPv6 = layers.IPProtocolICMPv6
	pGRE    = layers.IPProtocolGRE
	pESP    = layers.IPProtocolESP
	pAH     = layers.IPProtocolAH
	pIPIP   = layers.IPProtocolIPv4
	pIPv6   = layers.IPProtocolIPv6
	pHop    = layers.IPProtocolIPv6HopByHop
	pRoute  = layers.IPProtocolIPv6Routing
	pFrag   = layers.IPProtocolIPv6Fragment
	pDest   = layers.IPProtocolIPv6Destination
	pSCTP   = layers.IPProtocolSCTP
	pNoNext = layers.IPProtocolNoNextHeader
)

// Well-known ports of the tunnel classes and plain ones.
const (
	portWireGuard = 51820
	portOpenVPN   = 1194
	portIKE       = 500
	portNATT      = 4500
	portHTTPS     = 443
	portDNS       = 53
	portEphemeral = 50000
)

func v4Tunnel(proto layers.IPProtocol, rest ...gopacket.SerializableLayer) []gopacket.SerializableLayer {
	return append([]gopacket.SerializableLayer{eth(ipv4), ip4(remote4, local4, proto)}, rest...)
}

func v6Tunnel(next layers.IPProtocol, rest ...gopacket.SerializableLayer) []gopacket.SerializableLayer {
	return append([]gopacket.SerializableLayer{eth(ipv6), ip6(local6, remote6, next)}, rest...)
}

// frameCases are the table cases. Frames under 60 bytes are padded by
// gopacket's Ethernet serializer, so truncated frames are cut from longer
// ones.
func frameCases(tb testing.TB) []frameCase {
	tb.Helper()
	b := func(ls ...gopacket.SerializableLayer) []byte { return build(tb, ls...) }

	udp4Full := b(eth(ipv4), ip4(remote4, local4, pUDP), udp(portDNS, portEphemeral), payload(40))
	udp6Hop := b(eth(ipv6), ip6(remote6, local6, pHop), hopByHop(pUDP, 1), udp(portDNS, portEphemeral), payload(40))
	icmp6Hop := b(eth(ipv6), ip6(remote6, local6, pHop), rawExt(pICMPv6, 2), icmp6(), payload(16))
	ip4Opts := ipv4WithOptions(remote4, local4)
	ip4FirstFrag := ip4(remote4, local4, pUDP)
	ip4FirstFrag.Flags = layers.IPv4MoreFragments
	ip4LaterFrag := func(proto layers.IPProtocol, more bool) *layers.IPv4 {
		ip := ip4(remote4, local4, proto)
		ip.FragOffset = 185 // 1480 bytes
		if more {
			ip.Flags = layers.IPv4MoreFragments
		}
		return ip
	}
	arp := &layers.ARP{
		AddrType: layers.LinkTypeEthernet, Protocol: ipv4, HwAddressSize: 6, ProtAddressSize: 4,
		Operation: layers.ARPRequest, SourceHwAddress: macA, SourceProtAddress: net.ParseIP(local4).To4(),
		DstHwAddress: make([]byte, 6), DstProtAddress: net.ParseIP(remote4).To4(),
	}
	garbage := make([]byte, 128)
	for i := range garbage {
		garbage[i] = byte(i*167 + 13) // deterministic noise
	}

	return []frameCase{
		// Plain IPv4 and IPv6, both directions.
		{"ipv4/tcp/in", b(eth(ipv4), ip4(remote4, local4, pTCP), tcp(portHTTPS, portEphemeral), payload(100)), remote(remote4Key, in, classTCP)},
		{"ipv4/tcp/out", b(eth(ipv4), ip4(local4, remote4, pTCP), tcp(portEphemeral, portHTTPS)), remote(remote4Key, out, classTCP)},
		{"ipv4/udp/in", b(eth(ipv4), ip4(remote4, local4, pUDP), udp(portDNS, portEphemeral), payload(60)), remote(remote4Key, in, classUDP)},
		{"ipv4/udp/out", b(eth(ipv4), ip4(local4, remote4, pUDP), udp(portEphemeral, portDNS), payload(30)), remote(remote4Key, out, classUDP)},
		{"ipv4/icmp/in", b(eth(ipv4), ip4(remote4, local4, pICMP), icmp4(), payload(56)), remote(remote4Key, in, classICMP)},
		{"ipv4/icmp/out", b(eth(ipv4), ip4(local4, remote4, pICMP), icmp4(), payload(56)), remote(remote4Key, out, classICMP)},
		{"ipv4/sctp/other", b(eth(ipv4), ip4(remote4, local4, pSCTP), payload(48)), remote(remote4Key, in, classOther)},
		{"ipv4/local-in-/16", b(eth(ipv4), ip4(local4b, remote4, pTCP), tcp(portEphemeral, portHTTPS)), remote(remote4Key, out, classTCP)},
		{"ipv4/jumbo-ish", b(eth(ipv4), ip4(remote4, local4, pUDP), udp(portDNS, portEphemeral), payload(maxTestFrame-42)), remote(remote4Key, in, classUDP)},
		{"ipv6/tcp/in", b(eth(ipv6), ip6(remote6, local6, pTCP), tcp(portHTTPS, portEphemeral), payload(100)), remote(remote6Key, in, classTCP)},
		{"ipv6/tcp/out", b(eth(ipv6), ip6(local6, remote6, pTCP), tcp(portEphemeral, portHTTPS)), remote(remote6Key, out, classTCP)},
		{"ipv6/udp/in", b(eth(ipv6), ip6(remote6, local6, pUDP), udp(portDNS, portEphemeral), payload(60)), remote(remote6Key, in, classUDP)},
		{"ipv6/udp/out", b(eth(ipv6), ip6(local6, remote6, pUDP), udp(portEphemeral, portDNS)), remote(remote6Key, out, classUDP)},
		{"ipv6/icmpv6/in", b(eth(ipv6), ip6(remote6, local6, pICMPv6), icmp6(), payload(20)), remote(remote6Key, in, classICMP)},
		{"ipv6/icmpv6/out", b(eth(ipv6), ip6(local6, remote6, pICMPv6), icmp6(), payload(20)), remote(remote6Key, out, classICMP)},
		{"ipv6/sctp/other", b(eth(ipv6), ip6(remote6, local6, pSCTP), payload(48)), remote(remote6Key, in, classOther)},
		{"ipv6/no-next-header/other", b(eth(ipv6), ip6(local6, remote6, pNoNext)), remote(remote6Key, out, classOther)},

		// VLAN tags.
		{"vlan/802.1q/ipv4", b(eth(q8021), vlan(100, ipv4), ip4(remote4, local4, pTCP), tcp(portHTTPS, portEphemeral)), remote(remote4Key, in, classTCP)},
		{"vlan/802.1q/ipv6", b(eth(q8021), vlan(100, ipv6), ip6(local6, remote6, pUDP), udp(portEphemeral, portDNS)), remote(remote6Key, out, classUDP)},
		{"vlan/qinq/ipv4", b(eth(qinq), vlan(10, q8021), vlan(100, ipv4), ip4(local4, remote4, pUDP), udp(portEphemeral, portWireGuard)), remote(remote4Key, out, classTunnel)},
		{"vlan/qinq/ipv6", b(eth(qinq), vlan(10, q8021), vlan(100, ipv6), ip6(remote6, local6, pICMPv6), icmp6()), remote(remote6Key, in, classICMP)},
		{"vlan/802.1q-802.1q/ipv4", b(eth(q8021), vlan(10, q8021), vlan(100, ipv4), ip4(remote4, local4, pICMP), icmp4()), remote(remote4Key, in, classICMP)},
		{"vlan/triple-tag", b(eth(qinq), vlan(10, q8021), vlan(100, q8021), vlan(200, ipv4), ip4(remote4, local4, pTCP), tcp(portHTTPS, portEphemeral)), bucket(nonIP)},
		{"vlan/802.1q/arp", b(eth(q8021), vlan(100, layers.EthernetTypeARP), arp), bucket(nonIP)},

		// IPv4 options and fragments.
		{"ipv4/options/udp", b(eth(ipv4), ip4Opts, udp(portDNS, portEphemeral), payload(20)), remote(remote4Key, in, classUDP)},
		{"ipv4/options/nat-t-port-after-options", b(eth(ipv4), ip4Opts, udp(portEphemeral, portNATT), payload(20)), remote(remote4Key, in, classTunnel)},
		{"ipv4/ihl-15-options-present", patch(udp4Full, 14, 0x4f), remote(remote4Key, in, classUDP)}, // ports read at offset 60: payload bytes
		{"ipv4/first-fragment/wireguard", b(eth(ipv4), ip4FirstFrag, udp(portEphemeral, portWireGuard), payload(64)), remote(remote4Key, in, classTunnel)},
		{"ipv4/non-first-fragment/udp-4500-is-udp", b(eth(ipv4), ip4LaterFrag(pUDP, true), portsPayload(portNATT, portNATT)), remote(remote4Key, in, classUDP)},
		{"ipv4/last-fragment/tcp-1194-is-tcp", b(eth(ipv4), ip4LaterFrag(pTCP, false), portsPayload(portOpenVPN, portOpenVPN)), remote(remote4Key, in, classTCP)},
		{"ipv4/non-first-fragment/no-l4-bytes", b(eth(ipv4), ip4LaterFrag(pUDP, true))[:34], remote(remote4Key, in, classUDP)},

		// Malformed IPv4.
		{"ipv4/ihl-4", patch(udp4Full, 14, 0x44), bucket(malformed)},
		{"ipv4/ihl-0", patch(udp4Full, 14, 0x40), bucket(malformed)},
		{"ipv4/options-past-end", patch(udp4Full, 14, 0x4f)[:14+40], bucket(malformed)},
		{"ipv4/version-6", patch(udp4Full, 14, 0x65), bucket(malformed)},
		{"ipv4/truncated-header", udp4Full[:14+19], bucket(malformed)},
		{"ipv4/truncated-udp-ports", udp4Full[:14+20+3], bucket(malformed)},
		{"ipv4/udp-ports-only", udp4Full[:14+20+4], remote(remote4Key, in, classUDP)},

		// IPv6 extension headers.
		{"ipv6/hbh-routing-dstopts/tcp", b(eth(ipv6), ip6(remote6, local6, pHop), hopByHop(pRoute, 1), routing(pDest), destOpts(pTCP, 2), tcp(portHTTPS, portEphemeral)), remote(remote6Key, in, classTCP)},
		{"ipv6/hbh/ike-port-after-ext", b(eth(ipv6), ip6(local6, remote6, pHop), hopByHop(pUDP, 3), udp(portIKE, portIKE), payload(40)), remote(remote6Key, out, classTunnel)},
		{"ipv6/dstopts/icmpv6", b(eth(ipv6), ip6(remote6, local6, pDest), destOpts(pICMPv6, 1), icmp6()), remote(remote6Key, in, classICMP)},
		{"ipv6/first-fragment/nat-t", b(eth(ipv6), ip6(remote6, local6, pFrag), fragment(pUDP, 0, true), udp(portNATT, portNATT), payload(64)), remote(remote6Key, in, classTunnel)},
		{"ipv6/non-first-fragment/udp-4500-is-udp", b(eth(ipv6), ip6(remote6, local6, pFrag), fragment(pUDP, 181, true), portsPayload(portNATT, portNATT)), remote(remote6Key, in, classUDP)},
		{"ipv6/last-fragment/no-l4-bytes", b(eth(ipv6), ip6(remote6, local6, pFrag), fragment(pTCP, 181, false)), remote(remote6Key, in, classTCP)},
		{"ipv6/dstopts-then-first-fragment/openvpn-tcp", b(eth(ipv6), ip6(local6, remote6, pDest), rawExt(pFrag, 1), fragment(pTCP, 0, true), tcp(portEphemeral, portOpenVPN)), remote(remote6Key, out, classTunnel)},
		{"ipv6/non-first-fragment-then-dstopts/other", b(eth(ipv6), ip6(remote6, local6, pFrag), fragment(pDest, 181, true), payload(32)), remote(remote6Key, in, classOther)},
		{"ipv6/chain-6/tcp", b(eth(ipv6), ip6(remote6, local6, pHop),
			rawExt(pDest, 1), rawExt(pRoute, 2), fragment(pDest, 0, false), rawExt(pRoute, 1), rawExt(pDest, 3), rawExt(pTCP, 1),
			tcp(portHTTPS, portEphemeral)), remote(remote6Key, in, classTCP)},
		{"ipv6/chain-7", b(eth(ipv6), ip6(remote6, local6, pHop),
			rawExt(pDest, 1), rawExt(pRoute, 2), fragment(pDest, 0, false), rawExt(pRoute, 1), rawExt(pDest, 3), rawExt(pDest, 1), rawExt(pTCP, 1),
			tcp(portHTTPS, portEphemeral)), bucket(malformed)},
		{"ipv6/chain-7-ending-in-non-first-fragment", b(eth(ipv6), ip6(remote6, local6, pHop),
			rawExt(pDest, 1), rawExt(pRoute, 2), rawExt(pDest, 1), rawExt(pRoute, 1), rawExt(pDest, 3), rawExt(pFrag, 1), fragment(pUDP, 99, true),
			payload(8)), bucket(malformed)},

		// Malformed IPv6.
		{"ipv6/version-4", patch(udp6Hop, 14, 0x45), bucket(malformed)},
		{"ipv6/truncated-header", udp6Hop[:14+39], bucket(malformed)},
		{"ipv6/truncated-ext-header-before-udp", udp6Hop[:14+40+7], bucket(malformed)},
		{"ipv6/truncated-udp-ports-after-ext", udp6Hop[:14+40+8+3], bucket(malformed)},
		{"ipv6/ext-header-cut-before-icmpv6", icmp6Hop[:14+40+8], bucket(malformed)},
		{"ipv6/truncated-fragment-header", b(eth(ipv6), ip6(remote6, local6, pFrag), fragment(pUDP, 181, true), payload(32))[:14+40+7], bucket(malformed)},

		// Tunnels.
		{"tunnel/gre/ipv4", b(append(v4Tunnel(pGRE, &layers.GRE{Protocol: ipv4}), ip4("10.9.9.9", "10.8.8.8", pUDP), udp(1, 2))...), remote(remote4Key, in, classTunnel)},
		{"tunnel/gre/ipv6", b(append(v6Tunnel(pGRE, &layers.GRE{Protocol: ipv6}), ip6("fd00::1", "fd00::2", pUDP), udp(1, 2))...), remote(remote6Key, out, classTunnel)},
		{"tunnel/esp/ipv4", b(v4Tunnel(pESP, payload(64))...), remote(remote4Key, in, classTunnel)},
		{"tunnel/esp/ipv6", b(v6Tunnel(pESP, payload(64))...), remote(remote6Key, out, classTunnel)},
		{"tunnel/ah/ipv4", b(v4Tunnel(pAH, payload(64))...), remote(remote4Key, in, classTunnel)},
		{"tunnel/ah/ipv6", b(v6Tunnel(pAH, payload(64))...), remote(remote6Key, out, classTunnel)},
		{"tunnel/ipip", b(append(v4Tunnel(pIPIP), ip4("10.9.9.9", "10.8.8.8", pTCP), tcp(1, 2))...), remote(remote4Key, in, classTunnel)},
		{"tunnel/6in4", b(append(v4Tunnel(pIPv6), ip6("fd00::1", "fd00::2", pTCP), tcp(1, 2))...), remote(remote4Key, in, classTunnel)},
		{"tunnel/4in6", b(append(v6Tunnel(pIPIP), ip4("10.9.9.9", "10.8.8.8", pTCP), tcp(1, 2))...), remote(remote6Key, out, classTunnel)},
		{"tunnel/6in6", b(append(v6Tunnel(pIPv6), ip6("fd00::1", "fd00::2", pTCP), tcp(1, 2))...), remote(remote6Key, out, classTunnel)},
		{"tunnel/wireguard/dport", b(v4Tunnel(pUDP, udp(portEphemeral, portWireGuard), payload(32))...), remote(remote4Key, in, classTunnel)},
		{"tunnel/wireguard/sport", b(v4Tunnel(pUDP, udp(portWireGuard, portEphemeral), payload(32))...), remote(remote4Key, in, classTunnel)},
		{"tunnel/wireguard/ipv6", b(v6Tunnel(pUDP, udp(portWireGuard, portWireGuard), payload(32))...), remote(remote6Key, out, classTunnel)},
		{"tunnel/openvpn/udp", b(v4Tunnel(pUDP, udp(portEphemeral, portOpenVPN), payload(32))...), remote(remote4Key, in, classTunnel)},
		{"tunnel/openvpn/tcp-dport", b(v4Tunnel(pTCP, tcp(portEphemeral, portOpenVPN))...), remote(remote4Key, in, classTunnel)},
		{"tunnel/openvpn/tcp-sport", b(v6Tunnel(pTCP, tcp(portOpenVPN, portEphemeral))...), remote(remote6Key, out, classTunnel)},
		{"tunnel/ike", b(v4Tunnel(pUDP, udp(portIKE, portIKE), payload(32))...), remote(remote4Key, in, classTunnel)},
		{"tunnel/nat-t", b(v4Tunnel(pUDP, udp(portNATT, portEphemeral), payload(32))...), remote(remote4Key, in, classTunnel)},
		{"tcp/port-500-is-tcp", b(v4Tunnel(pTCP, tcp(portEphemeral, portIKE))...), remote(remote4Key, in, classTCP)},
		{"tcp/port-4500-is-tcp", b(v4Tunnel(pTCP, tcp(portNATT, portEphemeral))...), remote(remote4Key, in, classTCP)},
		{"tcp/port-51820-is-tcp", b(v6Tunnel(pTCP, tcp(portEphemeral, portWireGuard))...), remote(remote6Key, out, classTCP)},

		// Not IP.
		{"non-ip/arp", b(eth(layers.EthernetTypeARP), arp), bucket(nonIP)},
		{"non-ip/lldp", b(eth(layers.EthernetTypeLinkLayerDiscovery), payload(40)), bucket(nonIP)},
		{"non-ip/802.3-length", b(&layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeLLC, Length: 46}, payload(46)), bucket(nonIP)},
		{"ipv4/ethernet-header-only", udp4Full[:14], bucket(malformed)},
		{"non-ip/zeros", make([]byte, 60), bucket(nonIP)},
		{"garbage/noise", garbage, bucket(nonIP)},
		{"garbage/ipv4-ethertype", patch(garbage, 12, 0x08, 0x00), bucket(malformed)},
		{"garbage/ipv6-ethertype", patch(garbage, 12, 0x86, 0xdd), bucket(malformed)},
		{"garbage/short", garbage[:9], bucket(malformed)},
		{"empty", nil, bucket(malformed)},

		// Direction and keys.
		{"ipv4/both-local", b(eth(ipv4), ip4(local4, local4b, pTCP), tcp(portEphemeral, portHTTPS)), bucket(bothLocal)},
		{"ipv4/neither-local", b(eth(ipv4), ip4(remote4, other4, pTCP), tcp(portEphemeral, portHTTPS)), bucket(neitherLocal)},
		{"ipv6/both-local", b(eth(ipv6), ip6(local6, local6b, pTCP), tcp(portEphemeral, portHTTPS)), bucket(bothLocal)},
		{"ipv6/neither-local", b(eth(ipv6), ip6(remote6, other6, pUDP), udp(portEphemeral, portDNS)), bucket(neitherLocal)},
		{"ipv6/local-/56-in-trie", b(eth(ipv6), ip6(remote6, local6b, pTCP), tcp(portHTTPS, portEphemeral)), remote(remote6Key, in, classTCP)},
		{"ipv6/outside-local-/56-same-/32", b(eth(ipv6), ip6("2a02:1234:5700::1", local6, pTCP), tcp(portHTTPS, portEphemeral)), remote("2a02:1234:5700::/48", in, classTCP)},
		{"ipv6/outside-local-/56-same-/48", b(eth(ipv6), ip6(local6, "2a02:1234:5600:100::1", pTCP), tcp(portEphemeral, portHTTPS)), remote("2a02:1234:5600::/48", out, classTCP)},
		{"ipv4/split-/24/cell-0-127", b(eth(ipv4), ip4(other4, local4, pUDP), udp(portDNS, portEphemeral)), remote("203.0.113.0/25", in, classUDP)},
		{"ipv4/split-/24/cell-128-191", b(eth(ipv4), ip4(local4, "203.0.113.191", pUDP), udp(portEphemeral, portDNS)), remote("203.0.113.128/26", out, classUDP)},
		{"ipv4/split-/24/cell-192-255", b(eth(ipv4), ip4("203.0.113.192", local4, pUDP), udp(portDNS, portEphemeral)), remote("203.0.113.192/26", in, classUDP)},
		{"ipv4/split-/24/rank-0-in-word", b(eth(ipv4), ip4("203.0.100.40", local4, pUDP), udp(portDNS, portEphemeral)), remote("203.0.100.32/27", in, classUDP)},
		{"ipv4/split-/24/rank-2-in-word", b(eth(ipv4), ip4(local4, "203.0.120.3", pUDP), udp(portEphemeral, portDNS)), remote("203.0.120.0/30", out, classUDP)},
		{"ipv4/unsplit-/24-in-word-with-splits", b(eth(ipv4), ip4("203.0.121.3", local4, pUDP), udp(portDNS, portEphemeral)), remote("203.0.121.0/24", in, classUDP)},
		{"ipv4/partly-local-/24/local-host", b(eth(ipv4), ip4("198.18.7.63", remote4, pTCP), tcp(portEphemeral, portHTTPS)), remote(remote4Key, out, classTCP)},
		{"ipv4/partly-local-/24/remote-host", b(eth(ipv4), ip4("198.18.7.64", local4, pTCP), tcp(portHTTPS, portEphemeral)), remote("198.18.7.64/26", in, classTCP)},
		{"ipv4/partly-local-/24/within", b(eth(ipv4), ip4("198.18.7.1", "198.18.7.255", pTCP), tcp(portEphemeral, portHTTPS)), remote("198.18.7.64/26", out, classTCP)},
		{"ipv4/partly-local-/24/both-local", b(eth(ipv4), ip4("198.18.7.1", local4, pTCP), tcp(portEphemeral, portHTTPS)), bucket(bothLocal)},
		{"ipv6/split-/48/by-/64", b(eth(ipv6), ip6("2001:470:1:abcd::1", local6, pUDP), udp(portDNS, portEphemeral)), remote("2001:470:1:abcd::/64", in, classUDP)},
		{"ipv6/split-/48/out", b(eth(ipv6), ip6(local6b, "2001:470:1:ffff:1::1", pUDP), udp(portEphemeral, portDNS)), remote("2001:470:1:ffff::/64", out, classUDP)},
		{"ipv6/unsplit-/48-in-split-/32", b(eth(ipv6), ip6("2001:470:2:abcd::1", local6, pUDP), udp(portDNS, portEphemeral)), remote("2001:470:2::/48", in, classUDP)},
		{"ipv6/ipv4-mapped-is-not-ipv4", b(eth(ipv6), ip6("::ffff:198.51.100.7", local6, pUDP), udp(portDNS, portEphemeral)), remote("::/48", in, classUDP)},
	}
}
