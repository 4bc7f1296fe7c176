package trafficgen

import (
	"encoding/binary"
	"net"
	"net/netip"

	"github.com/peerwatch/peerwatch/sensor/traffic"
)

// IP protocol numbers the generator writes.
const (
	protoICMP   = 1
	protoIPIP   = 4
	protoTCP    = 6
	protoUDP    = 17
	protoIPv6   = 41
	protoGRE    = 47
	protoESP    = 50
	protoAH     = 51
	protoICMPv6 = 58
	protoSCTP   = 132
)

// Frame sizes.
const (
	ethHeaderLen = 14
	ipv4Len      = 20
	ipv6Len      = 40
	// MinFrame is the shortest Ethernet frame without its FCS: shorter frames
	// are padded, as a NIC pads them on the wire.
	MinFrame = 60
	// MaxIPLen is the largest IP packet: the lab's links have the default
	// MTU of 1500.
	MaxIPLen = 1500
)

// Packet is one packet the generator chose: addresses, direction, protocol
// and sizes. Frame writes it out.
type Packet struct {
	Src, Dst netip.Addr
	// Remote is the remote address of the two (Src for In, Dst for Out).
	Remote    netip.Addr
	Direction traffic.Direction
	Class     traffic.Class // the class the sensor must count it in
	Proto     uint8         // IP protocol (next header)
	// SrcPort and DstPort for TCP and UDP.
	SrcPort, DstPort uint16
	// Payload is the number of bytes after the transport header (for ICMP the
	// echo data; for tunnels the encapsulated bytes).
	Payload int
}

// Frame appends the packet as an Ethernet frame from srcMAC to dstMAC, with
// lengths and checksums filled in and padded to MinFrame, and returns the
// extended buffer.
func (p *Packet) Frame(b []byte, srcMAC, dstMAC net.HardwareAddr) []byte {
	start := len(b)
	b = append(b, dstMAC[:6]...)
	b = append(b, srcMAC[:6]...)
	v4 := p.Src.Is4()
	if v4 {
		b = binary.BigEndian.AppendUint16(b, 0x0800)
	} else {
		b = binary.BigEndian.AppendUint16(b, 0x86dd)
	}
	ipStart := len(b)
	l4 := p.transport()
	if v4 {
		b = append(b, 0x45, 0)
		b = binary.BigEndian.AppendUint16(b, uint16(ipv4Len+len(l4)))
		b = append(b, 0, 0, 0x40, 0) // id 0, don't fragment
		b = append(b, 64, p.Proto, 0, 0)
		s, d := p.Src.As4(), p.Dst.As4()
		b = append(b, s[:]...)
		b = append(b, d[:]...)
		binary.BigEndian.PutUint16(b[ipStart+10:], checksum(b[ipStart:ipStart+ipv4Len], 0))
	} else {
		b = append(b, 0x60, 0, 0, 0)
		b = binary.BigEndian.AppendUint16(b, uint16(len(l4)))
		b = append(b, p.Proto, 64)
		s, d := p.Src.As16(), p.Dst.As16()
		b = append(b, s[:]...)
		b = append(b, d[:]...)
	}
	l4Start := len(b)
	b = append(b, l4...)
	if off := p.checksumOffset(); off >= 0 {
		sum := uint32(0)
		if p.Proto != protoICMP { // ICMPv4 has no pseudo-header
			sum = pseudoHeader(p.Src, p.Dst, p.Proto, len(l4))
		}
		c := checksum(b[l4Start:], sum)
		if c == 0 && p.Proto == protoUDP {
			c = 0xffff
		}
		binary.BigEndian.PutUint16(b[l4Start+off:], c)
	}
	for len(b)-start < MinFrame {
		b = append(b, 0)
	}
	return b
}

// transport returns the bytes after the IP header, checksum zero.
func (p *Packet) transport() []byte {
	var h []byte
	switch p.Proto {
	case protoTCP:
		h = make([]byte, 20, 20+p.Payload)
		binary.BigEndian.PutUint16(h[0:], p.SrcPort)
		binary.BigEndian.PutUint16(h[2:], p.DstPort)
		binary.BigEndian.PutUint32(h[4:], uint32(p.SrcPort)<<16|uint32(p.DstPort)) // sequence
		h[12] = 5 << 4                                                             // data offset
		if p.Payload == 0 {
			h[13] = 0x02 // SYN
		} else {
			h[13] = 0x18 // PSH, ACK
		}
		binary.BigEndian.PutUint16(h[14:], 64240) // window
	case protoUDP:
		h = make([]byte, 8, 8+p.Payload)
		binary.BigEndian.PutUint16(h[0:], p.SrcPort)
		binary.BigEndian.PutUint16(h[2:], p.DstPort)
		binary.BigEndian.PutUint16(h[4:], uint16(8+p.Payload))
	case protoICMP, protoICMPv6:
		h = make([]byte, 8, 8+p.Payload)
		h[0] = 8 // echo request
		if p.Proto == protoICMPv6 {
			h[0] = 128
		}
		binary.BigEndian.PutUint16(h[4:], p.SrcPort) // identifier
		binary.BigEndian.PutUint16(h[6:], p.DstPort) // sequence
	case protoGRE:
		h = make([]byte, 4, 4+p.Payload)
		binary.BigEndian.PutUint16(h[2:], 0x0800) // carries IPv4
	case protoESP:
		h = make([]byte, 8, 8+p.Payload)
		binary.BigEndian.PutUint32(h[0:], 0x1000|uint32(p.SrcPort)) // SPI
		binary.BigEndian.PutUint32(h[4:], uint32(p.DstPort))        // sequence
	case protoAH:
		h = make([]byte, 12, 12+p.Payload)
		h[0] = protoTCP
		h[1] = 1                                                    // length: (12 / 4) - 2
		binary.BigEndian.PutUint32(h[4:], 0x2000|uint32(p.SrcPort)) // SPI
	case protoIPIP, protoIPv6:
		// The encapsulated header's first byte says its version; the rest
		// is opaque to the sensor.
		n := ipv4Len
		h = make([]byte, n, n+p.Payload)
		h[0] = 0x45
		if p.Proto == protoIPv6 {
			h = make([]byte, ipv6Len, ipv6Len+p.Payload)
			h[0] = 0x60
		}
	default: // SCTP and any other protocol: a common header
		h = make([]byte, 12, 12+p.Payload)
		binary.BigEndian.PutUint16(h[0:], p.SrcPort)
		binary.BigEndian.PutUint16(h[2:], p.DstPort)
	}
	for i := range p.Payload {
		h = append(h, byte(i))
	}
	return h
}

// checksumOffset is the offset of the transport checksum, or -1.
func (p *Packet) checksumOffset() int {
	switch p.Proto {
	case protoTCP:
		return 16
	case protoUDP:
		return 6
	case protoICMP, protoICMPv6:
		return 2
	}
	return -1
}

// pseudoHeader is the partial sum of the TCP/UDP/ICMPv6 pseudo-header.
func pseudoHeader(src, dst netip.Addr, proto uint8, length int) uint32 {
	var sum uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(b[i])<<8 | uint32(b[i+1])
		}
	}
	add(src.AsSlice())
	add(dst.AsSlice())
	sum += uint32(proto) + uint32(length)
	return sum
}

// checksum is the Internet checksum of b, starting from a partial sum.
func checksum(b []byte, sum uint32) uint16 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// headerLen is the length of the IP and transport headers of p without
// payload, so that the generator keeps packets within MaxIPLen.
func (p *Packet) headerLen() int {
	n := ipv4Len
	if p.Src.Is6() {
		n = ipv6Len
	}
	switch p.Proto {
	case protoTCP:
		return n + 20
	case protoUDP, protoICMP, protoICMPv6, protoESP:
		return n + 8
	case protoGRE:
		return n + 4
	case protoIPIP:
		return n + ipv4Len
	case protoIPv6:
		return n + ipv6Len
	}
	return n + 12
}
