package prefixes

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
)

// uint128 is an address as a number: IPv6 uses all 128 bits, IPv4 the low 32.
type uint128 struct{ hi, lo uint64 }

var maxUint128 = uint128{^uint64(0), ^uint64(0)}

// addrValue returns the address as a number; a must be unmapped.
func addrValue(a netip.Addr) uint128 {
	if a.Is4() {
		b := a.As4()
		return uint128{lo: uint64(binary.BigEndian.Uint32(b[:]))}
	}
	b := a.As16()
	return uint128{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

// addrOf is the inverse of addrValue for family f.
func addrOf(f Family, u uint128) netip.Addr {
	if f == IPv4 {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], uint32(u.lo))
		return netip.AddrFrom4(b)
	}
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], u.hi)
	binary.BigEndian.PutUint64(b[8:], u.lo)
	return netip.AddrFrom16(b)
}

// hostMask returns a number with the low n bits set (0 <= n <= 128).
func hostMask(n int) uint128 {
	switch {
	case n >= 64:
		return uint128{(1 << (n - 64)) - 1, ^uint64(0)} // 1<<64 is 0 in Go, so n=128 gives all ones
	default:
		return uint128{0, (1 << n) - 1}
	}
}

func (u uint128) cmp(v uint128) int {
	switch {
	case u.hi < v.hi || u.hi == v.hi && u.lo < v.lo:
		return -1
	case u == v:
		return 0
	default:
		return 1
	}
}

func (u uint128) less(v uint128) bool { return u.cmp(v) < 0 }

func (u uint128) or(v uint128) uint128 { return uint128{u.hi | v.hi, u.lo | v.lo} }

func (u uint128) sub(v uint128) uint128 {
	lo, borrow := bits.Sub64(u.lo, v.lo, 0)
	hi, _ := bits.Sub64(u.hi, v.hi, borrow)
	return uint128{hi, lo}
}

// addOne returns u+1; it wraps to zero at the top.
func (u uint128) addOne() uint128 {
	lo, carry := bits.Add64(u.lo, 1, 0)
	return uint128{u.hi + carry, lo}
}

func (u uint128) trailingZeros() int {
	if u.lo != 0 {
		return bits.TrailingZeros64(u.lo)
	}
	return 64 + bits.TrailingZeros64(u.hi) // 128 for zero
}

func (u uint128) bitLen() int {
	if u.hi != 0 {
		return 64 + bits.Len64(u.hi)
	}
	return bits.Len64(u.lo)
}
