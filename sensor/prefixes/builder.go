package prefixes

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
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
// the first one added keeps its labels and Add returns ErrDuplicatePrefix. Add panics if called
// after Build.
func (b *TableBuilder) Add(e Entry) error {
	if b.seen == nil {
		panic("prefixes: TableBuilder.Add called after Build")
	}
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
	b.seen, b.labelIndex = nil, nil // let the collector have them while the table is built
	t := &Table{name: b.name, labels: slices.Clone(b.labels)}
	for i, recs := range b.records {
		slices.SortFunc(recs, func(x, y record) int {
			if c := x.addr.cmp(y.addr); c != 0 {
				return c
			}
			return int(x.bits) - int(y.bits) // the shorter (covering) prefix first
		})
		t.records[i] = slices.Clone(recs) // without the spare capacity left by append
		b.records[i] = nil
	}
	n4, n6 := 0, 0 // count the intervals first, to allocate them exactly
	flatten(t.records[0], IPv4.bits(), func(uint128, uint128, int32) { n4++ })
	flatten(t.records[1], IPv6.bits(), func(uint128, uint128, int32) { n6++ })
	t.v4, t.v6 = makeIntervals[uint32](n4), makeIntervals[uint128](n6)
	flatten(t.records[0], IPv4.bits(), func(start, end uint128, i int32) {
		t.v4.add(uint32(start.lo), uint32(end.lo), i)
	})
	flatten(t.records[1], IPv6.bits(), func(start, end uint128, i int32) {
		t.v6.add(start, end, i)
	})
	st := b.stats
	st.Entries4, st.Entries6 = len(t.records[0]), len(t.records[1])
	st.Intervals4, st.Intervals6 = n4, n6
	st.Labels = len(t.labels)
	*b = TableBuilder{}
	return t, st
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
