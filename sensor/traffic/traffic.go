// Package traffic holds the counters that every part of the sensor shares:
// directions, protocol classes, per-key counters and the global buckets.
// It is plain data, so that the store, the web pages and the uplink use it
// without importing the datapath.
package traffic

import "fmt"

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

// Counters of one remote key, prefix, country or AS, or of a sum of them.
type Counters struct {
	Packets [2]uint64          `json:"packets"` // by Direction: [in, out]
	Bytes   [2]uint64          `json:"bytes"`   // by Direction; frame bytes as seen at the hook
	Class   [NumClasses]uint64 `json:"class"`   // packets: [tcp, udp, icmp, tunnel, other]
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
