package prefixes

import (
	"errors"
	"iter"
	"net/netip"
	"slices"
)

// Entry is one prefix of a table with its labels.
type Entry struct {
	Prefix  netip.Prefix
	Country string // ISO 3166-1 alpha-2 code, empty if unknown
	ASN     uint32 // origin AS number, 0 if none
	ASName  string // name of the origin AS, may be empty
}

// Errors returned by (*TableBuilder).Add.
var (
	ErrInvalidPrefix   = errors.New("invalid prefix")
	ErrDuplicatePrefix = errors.New("duplicate prefix")
)

// Table answers longest-prefix-match over a set of labelled prefixes. Each family is kept as a
// sorted list of disjoint address intervals, each pointing at the longest prefix that covers it,
// so a lookup is one binary search. A Table is read-only and safe for concurrent use.
type Table struct {
	name    string
	labels  []label
	records [2][]record // by familyIndex; sorted by address, then shorter prefix first
	v4      intervals[uint32]
	v6      intervals[uint128]
}

// intervals are sorted, disjoint address intervals: the i-th is [start[i], end[i]] and its
// longest match is records[family][match[i]]. The starts are a slice of their own so that the
// binary search reads a compact array.
type intervals[A uint32 | uint128] struct {
	start, end []A
	match      []int32
}

// add appends the interval [start, end] with its longest match.
func (iv *intervals[A]) add(start, end A, match int32) {
	iv.start = append(iv.start, start)
	iv.end = append(iv.end, end)
	iv.match = append(iv.match, match)
}

// makeIntervals returns empty intervals with room for n.
func makeIntervals[A uint32 | uint128](n int) intervals[A] {
	return intervals[A]{make([]A, 0, n), make([]A, 0, n), make([]int32, 0, n)}
}

// Name returns the name given to NewTable.
func (t *Table) Name() string { return t.name }

// Len returns the number of IPv4 and IPv6 entries.
func (t *Table) Len() (v4, v6 int) { return len(t.records[0]), len(t.records[1]) }

// Entries returns a new slice of all entries: IPv4 first, each family sorted by address with a
// covering prefix before the prefixes nested in it.
func (t *Table) Entries() []Entry {
	all := make([]Entry, 0, len(t.records[0])+len(t.records[1]))
	for _, f := range []Family{IPv4, IPv6} {
		for i := range t.records[familyIndex(f)] {
			all = append(all, t.entry(f, int32(i)))
		}
	}
	return all
}

// entry returns the i-th entry of family f.
func (t *Table) entry(f Family, i int32) Entry {
	r := t.records[familyIndex(f)][i]
	l := t.labels[r.label]
	return Entry{Prefix: netip.PrefixFrom(addrOf(f, r.addr), int(r.bits)), Country: l.country, ASN: l.asn, ASName: l.asName}
}

// Lookup returns the entry with the longest prefix that contains addr, and false if no prefix
// does. It does not allocate. IPv4-mapped IPv6 addresses are looked up as IPv4, so an IPv6 prefix
// that covers ::ffff:0:0/96 (such as ::/0) never matches them.
func (t *Table) Lookup(addr netip.Addr) (Entry, bool) {
	addr = addr.Unmap()
	switch {
	case addr.Is4():
		b := addr.As4()
		a := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
		s := t.v4.start
		lo, hi := 0, len(s) // find the first interval starting after a
		for lo < hi {
			m := int(uint(lo+hi) >> 1)
			if s[m] <= a {
				lo = m + 1
			} else {
				hi = m
			}
		}
		if lo == 0 || t.v4.end[lo-1] < a {
			return Entry{}, false
		}
		return t.entry(IPv4, t.v4.match[lo-1]), true
	case addr.Is6():
		a := addrValue(addr)
		s := t.v6.start
		lo, hi := 0, len(s)
		for lo < hi {
			m := int(uint(lo+hi) >> 1)
			if !a.less(s[m]) {
				lo = m + 1
			} else {
				hi = m
			}
		}
		if lo == 0 || t.v6.end[lo-1].less(a) {
			return Entry{}, false
		}
		return t.entry(IPv6, t.v6.match[lo-1]), true
	}
	return Entry{}, false
}

// Boundaries yields, in ascending order, every address of family f at which the result of
// Lookup changes: the first address of each interval and the address just after its end (unless
// the interval ends at the top of the address space). Between two consecutive boundaries every
// address has the same longest match, or none.
func (t *Table) Boundaries(f Family) iter.Seq[netip.Addr] {
	return func(yield func(netip.Addr) bool) {
		var prev uint128
		first := true
		emit := func(u uint128) bool {
			if !first && u == prev {
				return true
			}
			first, prev = false, u
			return yield(addrOf(f, u))
		}
		top := hostMask(f.bits())
		for i := range t.intervalCount(f) {
			start, end := t.interval(f, i)
			if !emit(start) {
				return
			}
			if end != top && !emit(end.addOne()) {
				return
			}
		}
	}
}

// intervalCount returns the number of intervals of family f.
func (t *Table) intervalCount(f Family) int {
	if f == IPv4 {
		return len(t.v4.start)
	}
	if f == IPv6 {
		return len(t.v6.start)
	}
	return 0
}

// interval returns the i-th interval of family f.
func (t *Table) interval(f Family, i int) (start, end uint128) {
	if f == IPv4 {
		return uint128{lo: uint64(t.v4.start[i])}, uint128{lo: uint64(t.v4.end[i])}
	}
	return t.v6.start[i], t.v6.end[i]
}

// MergeBoundaries returns the boundaries of all the tables for family f, sorted and without
// repeats. They cut the address space into the largest pieces inside which no table's longest
// match changes.
func MergeBoundaries(f Family, tables ...*Table) []netip.Addr {
	var all []netip.Addr
	for _, t := range tables {
		all = slices.AppendSeq(all, t.Boundaries(f))
	}
	slices.SortFunc(all, netip.Addr.Compare)
	return slices.Compact(all)
}
