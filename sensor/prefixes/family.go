package prefixes

import (
	"fmt"
	"net/netip"
)

// Family is an address family: IPv4 or IPv6.
type Family int

// The address families, numbered as in "IPv4" and "IPv6".
const (
	IPv4 Family = 4
	IPv6 Family = 6
)

// String returns "IPv4" or "IPv6".
func (f Family) String() string {
	switch f {
	case IPv4:
		return "IPv4"
	case IPv6:
		return "IPv6"
	}
	return fmt.Sprintf("Family(%d)", int(f))
}

// bits is the address length of the family.
func (f Family) bits() int {
	if f == IPv4 {
		return 32
	}
	return 128
}

// familyOf returns the family of an unmapped, valid address.
func familyOf(a netip.Addr) Family {
	if a.Is4() {
		return IPv4
	}
	return IPv6
}

// familyIndex is where family f is kept in per-family arrays.
func familyIndex(f Family) int {
	if f == IPv4 {
		return 0
	}
	return 1
}
