package prefixes

import (
	"errors"
	"fmt"
	"iter"
	"net/netip"
	"slices"
	"strings"
)

// Family is an address family: IPv4 or IPv6.
type Family int

// The address families, numbered as in "IPv4" and "IPv6".
const (
	IPv4 Family = 4
	IPv6 Family = 6
)

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

// TableBuilder collects the entries of a Table. Its zero value is not usable; call NewTable.
type TableBuilder struct {
	name       string
	records    [2][]record // by familyIndex
	labels     []label
	labelIndex map[label]int32
	seen       map[prefixKey]struct{}
	stats      Stats
}

// record is an entry as a table stores it: a third of the size of an Entry, with the labels
// kept once in Table.labels however many prefixes share them.
type record struct {
	addr  uint128 // first address of the prefix
	bits  uint8   // prefix length
	label int32   // index into labels
}

// label is the labels of an Entry.
type label struct {
	country string
	asn     uint32
	asName  string
}

// prefixKey identifies a prefix in the duplicate check.
type prefixKey struct {
	addr uint128
	bits uint8
	v4   bool // so that 10.0.0.0/8 and ::a00:0/8 differ
}

// Stats describes what Build made of the added entries.
type Stats struct {
	Entries4, Entries6     int // entries in the table
	Intervals4, Intervals6 int // disjoint address intervals after flattening nested prefixes
	Labels                 int // distinct label sets (country, ASN, AS name)
	Duplicates             int // entries not added because the same prefix was already there
	Invalid                int // entries not added because their prefix was invalid
}

// NewTable starts a table with the given name (for example "country" or "asn").
func NewTable(name string) *TableBuilder {
	return &TableBuilder{
		name:       name,
		labelIndex: make(map[label]int32),
		seen:       make(map[prefixKey]struct{}),
	}
}

// Add adds an entry. The prefix is masked to its length and an IPv4-mapped IPv6 prefix
// (::ffff:a.b.c.d/96 and longer) becomes IPv4. A prefix already in the table is not added again:
// the first one added keeps its labels and Add returns ErrDuplicatePrefix.
func (b *TableBuilder) Add(e Entry) error {
	p := e.Prefix
	if !p.IsValid() {
		b.stats.Invalid++
		return fmt.Errorf("%v: %w", p, ErrInvalidPrefix)
	}
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	p = p.Masked()
	f := familyOf(p.Addr())
	key := prefixKey{addrValue(p.Addr()), uint8(p.Bits()), f == IPv4}
	if _, dup := b.seen[key]; dup {
		b.stats.Duplicates++
		return fmt.Errorf("%v: %w", p, ErrDuplicatePrefix)
	}
	b.seen[key] = struct{}{}
	r := record{addr: key.addr, bits: key.bits, label: b.label(e)}
	b.records[familyIndex(f)] = append(b.records[familyIndex(f)], r)
	return nil
}

// label returns the index of e's labels, adding them if they are new. New labels are copied so
// that a label cut from a longer string (a whole line, say) does not keep it in memory.
func (b *TableBuilder) label(e Entry) int32 {
	l := label{e.Country, e.ASN, e.ASName}
	if i, ok := b.labelIndex[l]; ok {
		return i
	}
	l.country, l.asName = strings.Clone(l.country), strings.Clone(l.asName)
	i := int32(len(b.labels))
	b.labels = append(b.labels, l)
	b.labelIndex[l] = i
	return i
}

// Build sorts and flattens the entries into a Table. The builder must not be used afterwards.
func (b *TableBuilder) Build() (*Table, Stats) {
	t := &Table{name: b.name, labels: slices.Clone(b.labels)}
	for i, recs := range b.records {
		slices.SortFunc(recs, func(x, y record) int {
			if c := x.addr.cmp(y.addr); c != 0 {
				return c
			}
			return int(x.bits) - int(y.bits) // the shorter (covering) prefix first
		})
		t.records[i] = slices.Clone(recs) // without the spare capacity left by append
	}
	var spans4 []span4
	flatten(t.records[0], IPv4.bits(), func(start, end uint128, i int32) {
		spans4 = append(spans4, span4{uint32(start.lo), uint32(end.lo), i})
	})
	var spans6 []span6
	flatten(t.records[1], IPv6.bits(), func(start, end uint128, i int32) {
		spans6 = append(spans6, span6{start, end, i})
	})
	t.spans4, t.spans6 = slices.Clone(spans4), slices.Clone(spans6)
	st := b.stats
	st.Entries4, st.Entries6 = len(t.records[0]), len(t.records[1])
	st.Intervals4, st.Intervals6 = len(t.spans4), len(t.spans6)
	st.Labels = len(t.labels)
	*b = TableBuilder{}
	return t, st
}

// Table answers longest-prefix-match over a set of labelled prefixes. Each family is kept as a
// sorted list of disjoint address intervals, each pointing at the longest prefix that covers it,
// so a lookup is one binary search. A Table is read-only and safe for concurrent use.
type Table struct {
	name    string
	labels  []label
	records [2][]record // by familyIndex; sorted by address, then shorter prefix first
	spans4  []span4
	spans6  []span6
}

// span4 and span6 are intervals [start, end] whose longest match is records[family][entry].
type span4 struct {
	start, end uint32
	entry      int32
}

type span6 struct {
	start, end uint128
	entry      int32
}

func familyIndex(f Family) int {
	if f == IPv4 {
		return 0
	}
	return 1
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
// does. IPv4-mapped IPv6 addresses are looked up as IPv4. It does not allocate.
func (t *Table) Lookup(addr netip.Addr) (Entry, bool) {
	addr = addr.Unmap()
	switch {
	case addr.Is4():
		b := addr.As4()
		a := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
		s := t.spans4
		lo, hi := 0, len(s) // find the first span starting after a
		for lo < hi {
			m := int(uint(lo+hi) >> 1)
			if s[m].start <= a {
				lo = m + 1
			} else {
				hi = m
			}
		}
		if lo == 0 || s[lo-1].end < a {
			return Entry{}, false
		}
		return t.entry(IPv4, s[lo-1].entry), true
	case addr.Is6():
		a := addrValue(addr)
		s := t.spans6
		lo, hi := 0, len(s)
		for lo < hi {
			m := int(uint(lo+hi) >> 1)
			if !a.less(s[m].start) {
				lo = m + 1
			} else {
				hi = m
			}
		}
		if lo == 0 || s[lo-1].end.less(a) {
			return Entry{}, false
		}
		return t.entry(IPv6, s[lo-1].entry), true
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
		for i := range t.intervals(f) {
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

func (t *Table) intervals(f Family) int {
	if f == IPv4 {
		return len(t.spans4)
	}
	if f == IPv6 {
		return len(t.spans6)
	}
	return 0
}

func (t *Table) interval(f Family, i int) (start, end uint128) {
	if f == IPv4 {
		return uint128{lo: uint64(t.spans4[i].start)}, uint128{lo: uint64(t.spans4[i].end)}
	}
	return t.spans6[i].start, t.spans6[i].end
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

// flatten turns sorted, nested-or-disjoint prefixes of width-bit addresses into sorted disjoint
// intervals, each passed to emit with the index of the longest prefix that covers it. It walks the
// prefixes in order and keeps the chain of prefixes that contain the current address on a stack.
func flatten(recs []record, width int, emit func(start, end uint128, i int32)) {
	var (
		stack []int32 // indexes of the prefixes containing next, outermost first
		next  uint128 // first address not yet put in an interval
		top   = hostMask(width)
		ends  = func(i int32) uint128 { return recs[i].addr.or(hostMask(width - int(recs[i].bits))) }
		part  = func(start, end uint128, i int32) {
			if !end.less(start) {
				emit(start, end, i)
			}
		}
	)
	for i, r := range recs {
		for len(stack) > 0 { // close the prefixes that end before this one starts
			last := stack[len(stack)-1]
			end := ends(last)
			if !end.less(r.addr) {
				break
			}
			part(next, end, last)
			next = end.addOne() // cannot wrap: end < r.addr
			stack = stack[:len(stack)-1]
		}
		if len(stack) > 0 && next.less(r.addr) { // the part of the enclosing prefix before this one
			part(next, r.addr.sub(uint128{lo: 1}), stack[len(stack)-1])
		}
		stack = append(stack, int32(i))
		next = r.addr
	}
	for len(stack) > 0 {
		last := stack[len(stack)-1]
		end := ends(last)
		part(next, end, last)
		if end == top {
			return // the enclosing prefixes end at the top of the address space too
		}
		next = end.addOne()
		stack = stack[:len(stack)-1]
	}
}
