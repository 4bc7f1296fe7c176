package testutil

import (
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// Frame describes a test packet: addresses, transport and ports. The zero
// transport is UDP.
type Frame struct {
	Src, Dst         netip.Addr
	Proto            layers.IPProtocol
	SrcPort, DstPort uint16
	Payload          int // bytes of payload after the transport header
	SrcMAC, DstMAC   net.HardwareAddr
}

var (
	defaultSrcMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 1}
	defaultDstMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 2}
)

// Bytes serializes the frame with lengths and checksums filled in.
func (f Frame) Bytes(tb testing.TB) []byte {
	tb.Helper()
	eth := &layers.Ethernet{SrcMAC: f.SrcMAC, DstMAC: f.DstMAC}
	if eth.SrcMAC == nil {
		eth.SrcMAC = defaultSrcMAC
	}
	if eth.DstMAC == nil {
		eth.DstMAC = defaultDstMAC
	}
	proto := f.Proto
	if proto == 0 {
		proto = layers.IPProtocolUDP
	}
	var ip gopacket.NetworkLayer
	var stack []gopacket.SerializableLayer
	if f.Src.Is4() {
		eth.EthernetType = layers.EthernetTypeIPv4
		v4 := &layers.IPv4{Version: 4, TTL: 64, Protocol: proto, SrcIP: f.Src.AsSlice(), DstIP: f.Dst.AsSlice()}
		ip, stack = v4, []gopacket.SerializableLayer{eth, v4}
	} else {
		eth.EthernetType = layers.EthernetTypeIPv6
		v6 := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: proto, SrcIP: f.Src.AsSlice(), DstIP: f.Dst.AsSlice()}
		ip, stack = v6, []gopacket.SerializableLayer{eth, v6}
	}
	switch proto {
	case layers.IPProtocolUDP:
		udp := &layers.UDP{SrcPort: layers.UDPPort(f.SrcPort), DstPort: layers.UDPPort(f.DstPort)}
		_ = udp.SetNetworkLayerForChecksum(ip)
		stack = append(stack, udp)
	case layers.IPProtocolTCP:
		tcp := &layers.TCP{SrcPort: layers.TCPPort(f.SrcPort), DstPort: layers.TCPPort(f.DstPort), SYN: true, Window: 1024}
		_ = tcp.SetNetworkLayerForChecksum(ip)
		stack = append(stack, tcp)
	}
	stack = append(stack, gopacket.Payload(make([]byte, f.Payload)))
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, stack...); err != nil {
		tb.Fatalf("serialize %+v: %v", f, err)
	}
	return buf.Bytes()
}
