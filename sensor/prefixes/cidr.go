package prefixes

import (
	"errors"
	"fmt"
	"net/netip"
)

// Errors returned by RangeToPrefixes.
var (
	ErrFamilyMismatch = errors.New("start and end are not of the same address family")
	ErrStartAfterEnd  = errors.New("start after end")
)

// RangeToPrefixes returns the minimal list of CIDR prefixes that exactly covers the inclusive
// range first..last, in ascending order. IPv4-mapped IPv6 addresses are treated as IPv4. The
// range must not mix families and first must not be after last.
func RangeToPrefixes(first, last netip.Addr) ([]netip.Prefix, error) {
	first, last = first.Unmap(), last.Unmap()
	if !first.IsValid() || !last.IsValid() {
		return nil, fmt.Errorf("range %v-%v: invalid address", first, last)
	}
	f := familyOf(first)
	if f != familyOf(last) {
		return nil, fmt.Errorf("range %v-%v: %w", first, last, ErrFamilyMismatch)
	}
	if last.Less(first) {
		return nil, fmt.Errorf("range %v-%v: %w", first, last, ErrStartAfterEnd)
	}
	return appendRangePrefixes(nil, f, addrValue(first), addrValue(last)), nil
}

// appendRangePrefixes appends the minimal CIDR cover of lo..hi (lo <= hi) to dst. Each step takes
// the largest block that starts at lo (limited by lo's alignment) and does not pass hi.
func appendRangePrefixes(dst []netip.Prefix, f Family, lo, hi uint128) []netip.Prefix {
	width := f.bits()
	for {
		host := min(lo.trailingZeros(), width)
		if span := hi.sub(lo); span != maxUint128 { // span+1 addresses; all ones means the whole IPv6 space
			host = min(host, span.addOne().bitLen()-1)
		}
		dst = append(dst, netip.PrefixFrom(addrOf(f, lo), width-host))
		end := lo.or(hostMask(host))
		if end == hi {
			return dst
		}
		lo = end.addOne()
	}
}
