// Package traffic holds the counters that every part of the sensor shares:
// directions, protocol classes, per-key counters and the global buckets.
// It is plain data, so that the store, the web pages and the uplink use it
// without importing the datapath.
package traffic

import (
	"fmt"
	"math/bits"
)

// Direction of a packet seen from the operator's network.
type Direction int

// Directions index Counters.Packets and Counters.Bytes. Their values are the
// kernel's (bpf/types.h); a datapath test checks that they agree.
const (
	In  Direction = 0 // remote to local
	Out Direction = 1 // local to remote
)

func (d Direction) String() string {
	switch d {
	case In:
		return "in"
	case Out:
		return "out"
	}
	return fmt.Sprintf("direction(%d)", int(d))
}

// Class is a packet's protocol class.
type Class int

// Classes index Counters.Class, with the kernel's values.
const (
	TCP    Class = 0
	UDP    Class = 1
	ICMP   Class = 2 // ICMP and ICMPv6
	Tunnel Class = 3 // GRE, ESP, AH, IP-in-IP, WireGuard, OpenVPN, IKE, NAT-T
	Other  Class = 4
	// NumClasses is the number of classes.
	NumClasses = 5
)

var classNames = [NumClasses]string{"tcp", "udp", "icmp", "tunnel", "other"}

func (c Class) String() string {
	if c < 0 || int(c) >= NumClasses {
		return fmt.Sprintf("class(%d)", int(c))
	}
	return classNames[c]
}

// ByDirection holds one count per Direction. As JSON it is an array of
// exactly two unsigned integers; unlike a plain Go array, decoding refuses
// more or fewer elements instead of dropping or zero-filling them.
type ByDirection [2]uint64

// ByClass holds one count per Class; as JSON exactly NumClasses unsigned
// integers.
type ByClass [NumClasses]uint64

// UnmarshalJSON decodes exactly two unsigned integers.
func (d *ByDirection) UnmarshalJSON(b []byte) error { return decodeCounts(b, d[:]) }

// UnmarshalJSON decodes exactly NumClasses unsigned integers.
func (c *ByClass) UnmarshalJSON(b []byte) error { return decodeCounts(b, c[:]) }

// decodeCounts parses a JSON array of exactly len(dst) integers in
// [0, 2^64) into dst, without allocating: summaries carry thousands.
func decodeCounts(b []byte, dst []uint64) error {
	i := skipSpace(b, 0)
	if i == len(b) || b[i] != '[' {
		return fmt.Errorf("want an array of %d counts", len(dst))
	}
	i++
	for n := range dst {
		i = skipSpace(b, i)
		j, v := i, uint64(0)
		for ; j < len(b) && b[j] >= '0' && b[j] <= '9'; j++ {
			hi, lo := bits.Mul64(v, 10)
			var carry uint64
			v, carry = bits.Add64(lo, uint64(b[j]-'0'), 0)
			if hi != 0 || carry != 0 {
				return fmt.Errorf("count %d: does not fit in 64 bits", n)
			}
		}
		if j == i || (b[i] == '0' && j-i > 1) {
			return fmt.Errorf("count %d: want an unsigned integer", n)
		}
		dst[n] = v
		i = skipSpace(b, j)
		want := byte(',')
		if n == len(dst)-1 {
			want = ']'
		}
		if i == len(b) || b[i] != want {
			return fmt.Errorf("want an array of exactly %d unsigned integers", len(dst))
		}
		i++
	}
	if skipSpace(b, i) != len(b) {
		return fmt.Errorf("data after the array of %d counts", len(dst))
	}
	return nil
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// Counters of one remote key, prefix, country or AS, or of a sum of them.
type Counters struct {
	Packets ByDirection `json:"packets"` // [in, out]
	Bytes   ByDirection `json:"bytes"`   // [in, out]; frame bytes as seen at the hook
	Class   ByClass     `json:"class"`   // packets: [tcp, udp, icmp, tunnel, other]
}

// Add adds o to c.
func (c *Counters) Add(o Counters) {
	for i := range c.Packets {
		c.Packets[i] += o.Packets[i]
		c.Bytes[i] += o.Bytes[i]
	}
	for i := range c.Class {
		c.Class[i] += o.Class[i]
	}
}

// Total is the number of packets in both directions.
func (c Counters) Total() uint64 { return c.Packets[In] + c.Packets[Out] }

// TotalBytes is the number of bytes in both directions.
func (c Counters) TotalBytes() uint64 { return c.Bytes[In] + c.Bytes[Out] }

// Globals are the counters that do not belong to a remote key.
type Globals struct {
	Seen         uint64 `json:"seen"`          // every packet the program saw
	NonIP        uint64 `json:"non_ip"`        // not IPv4/IPv6, or more than two VLAN tags
	Malformed    uint64 `json:"malformed"`     // truncated or invalid headers
	BothLocal    uint64 `json:"both_local"`    // both addresses local
	NeitherLocal uint64 `json:"neither_local"` // neither address local (transit)
	Overflow     uint64 `json:"overflow"`      // remote key did not fit in the counter map
}

// Add adds o to g.
func (g *Globals) Add(o Globals) {
	g.Seen += o.Seen
	g.NonIP += o.NonIP
	g.Malformed += o.Malformed
	g.BothLocal += o.BothLocal
	g.NeitherLocal += o.NeitherLocal
	g.Overflow += o.Overflow
}

// Buckets is the number of packets counted in a global bucket.
func (g Globals) Buckets() uint64 {
	return g.NonIP + g.Malformed + g.BothLocal + g.NeitherLocal + g.Overflow
}
