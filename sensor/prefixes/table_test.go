package prefixes

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// buildTable builds a table from "prefix=country" strings.
func buildTable(t testing.TB, specs ...string) *Table {
	t.Helper()
	b := NewTable("test")
	for _, s := range specs {
		p, cc, _ := strings.Cut(s, "=")
		if err := b.Add(Entry{Prefix: netip.MustParsePrefix(p), Country: cc}); err != nil {
			t.Fatal(err)
		}
	}
	tbl, _ := b.Build()
	return tbl
}

func TestLookupNested(t *testing.T) {
	tbl := buildTable(t,
		"10.1.2.128/25=C", "10.0.0.0/8=A", "10.1.0.0/16=B", // added out of order on purpose
		"2001:db8::/32=X", "2001:db8:1::/48=Y", "2001:db8:1::1/128=Z",
	)
	tests := []struct {
		addr   string
		want   string // country, "" for no match
		prefix string
	}{
		{"10.0.0.0", "A", "10.0.0.0/8"},
		{"10.0.255.255", "A", "10.0.0.0/8"},
		{"10.1.0.0", "B", "10.1.0.0/16"},
		{"10.1.2.127", "B", "10.1.0.0/16"},
		{"10.1.2.128", "C", "10.1.2.128/25"},
		{"10.1.2.255", "C", "10.1.2.128/25"},
		{"10.1.3.0", "B", "10.1.0.0/16"},
		{"10.1.255.255", "B", "10.1.0.0/16"},
		{"10.2.0.0", "A", "10.0.0.0/8"},
		{"10.255.255.255", "A", "10.0.0.0/8"},
		{"::ffff:10.1.2.200", "C", "10.1.2.128/25"}, // 4in6 looks up as IPv4
		{"9.255.255.255", "", ""},
		{"11.0.0.0", "", ""},
		{"0.0.0.0", "", ""},
		{"255.255.255.255", "", ""},
		{"2001:db8::", "X", "2001:db8::/32"},
		{"2001:db8:1::", "Y", "2001:db8:1::/48"},
		{"2001:db8:1::1", "Z", "2001:db8:1::1/128"},
		{"2001:db8:1::2", "Y", "2001:db8:1::/48"},
		{"2001:db8:2::", "X", "2001:db8::/32"},
		{"2001:db9::", "", ""},
		{"::a01:203", "", ""}, // the IPv6 address with 10.1.2.3's bits is not IPv4
	}
	for _, tt := range tests {
		got, ok := tbl.Lookup(netip.MustParseAddr(tt.addr))
		if ok != (tt.want != "") || got.Country != tt.want || ok && got.Prefix.String() != tt.prefix {
			t.Errorf("Lookup(%s) = %v %q %v, want %q %s", tt.addr, got.Prefix, got.Country, ok, tt.want, tt.prefix)
		}
	}
	if _, ok := tbl.Lookup(netip.Addr{}); ok {
		t.Error("Lookup(invalid address) matched")
	}
}

func TestLookupEdges(t *testing.T) {
	tests := []struct {
		name  string
		specs []string
		addrs map[string]string
	}{
		{"default routes", []string{"0.0.0.0/0=A", "::/0=B"},
			map[string]string{"0.0.0.0": "A", "255.255.255.255": "A", "::": "B", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff": "B"}},
		{"nested at the bottom", []string{"0.0.0.0/0=A", "0.0.0.0/1=B", "0.0.0.0/32=C", "::/0=D", "::/128=E"},
			map[string]string{"0.0.0.0": "C", "0.0.0.1": "B", "127.255.255.255": "B", "128.0.0.0": "A", "::": "E", "::1": "D"}},
		{"nested at the top", []string{"0.0.0.0/0=A", "255.255.255.255/32=B", "255.0.0.0/8=C", "::/0=D", "ffff::/16=E",
			"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128=F"},
			map[string]string{"254.255.255.255": "A", "255.0.0.0": "C", "255.255.255.254": "C", "255.255.255.255": "B",
				"fffe::": "D", "ffff::": "E", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe": "E", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff": "F"}},
		{"adjacent", []string{"10.0.0.0/24=A", "10.0.1.0/24=B"},
			map[string]string{"9.255.255.255": "", "10.0.0.255": "A", "10.0.1.0": "B", "10.0.2.0": ""}},
		{"empty", nil, map[string]string{"10.0.0.0": "", "::": ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tbl := buildTable(t, tt.specs...)
			for a, want := range tt.addrs {
				got, ok := tbl.Lookup(netip.MustParseAddr(a))
				if ok != (want != "") || got.Country != want {
					t.Errorf("Lookup(%s) = %q %v, want %q", a, got.Country, ok, want)
				}
			}
		})
	}
}

func TestAdd(t *testing.T) {
	b := NewTable("test")
	add := func(p string, cc string) error {
		return b.Add(Entry{Prefix: netip.MustParsePrefix(p), Country: cc})
	}
	if err := add("10.0.0.0/8", "A"); err != nil {
		t.Fatal(err)
	}
	if err := add("10.0.0.0/8", "B"); !errors.Is(err, ErrDuplicatePrefix) {
		t.Errorf("exact duplicate: error %v, want ErrDuplicatePrefix", err)
	}
	if err := add("10.1.2.3/8", "B"); !errors.Is(err, ErrDuplicatePrefix) {
		t.Errorf("duplicate with host bits: error %v, want ErrDuplicatePrefix", err)
	}
	if err := add("::ffff:10.0.0.0/104", "B"); !errors.Is(err, ErrDuplicatePrefix) {
		t.Errorf("4in6 duplicate: error %v, want ErrDuplicatePrefix", err)
	}
	if err := add("::a00:0/104", "C"); err != nil { // same bits, IPv6: not a duplicate
		t.Errorf("IPv6 prefix with IPv4 bits: %v", err)
	}
	if err := b.Add(Entry{}); !errors.Is(err, ErrInvalidPrefix) {
		t.Errorf("invalid prefix: error %v, want ErrInvalidPrefix", err)
	}
	if err := add("::ffff:192.0.2.0/120", "D"); err != nil {
		t.Fatal(err)
	}
	tbl, st := b.Build()
	want := Stats{Entries4: 2, Entries6: 1, Intervals4: 2, Intervals6: 1, Labels: 3, Duplicates: 3, Invalid: 1}
	if st != want {
		t.Errorf("stats %+v, want %+v", st, want)
	}
	if e, _ := tbl.Lookup(netip.MustParseAddr("10.9.9.9")); e.Country != "A" {
		t.Errorf("first of duplicates should win, got %q", e.Country)
	}
	var got []string
	for _, e := range tbl.Entries() {
		got = append(got, e.Prefix.String())
	}
	if want := []string{"10.0.0.0/8", "192.0.2.0/24", "::a00:0/104"}; !slices.Equal(got, want) {
		t.Errorf("Entries() = %v, want %v", got, want)
	}
	if v4, v6 := tbl.Len(); v4 != 2 || v6 != 1 {
		t.Errorf("Len() = %d, %d, want 2, 1", v4, v6)
	}
}

func TestLookupDoesNotAllocate(t *testing.T) {
	tbl := buildTable(t, "10.0.0.0/8=A", "10.1.0.0/16=B", "2001:db8::/32=X")
	a4, a6 := netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("2001:db8::1")
	if n := testing.AllocsPerRun(100, func() { tbl.Lookup(a4); tbl.Lookup(a6) }); n != 0 {
		t.Errorf("Lookup allocates %v times", n)
	}
}

// TestLookupAgainstLinearScan compares Lookup with a linear longest-match scan over random small
// tables with much nesting, for both families.
func TestLookupAgainstLinearScan(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, f := range []Family{IPv4, IPv6} {
		for round := range 300 {
			b := NewTable("random")
			var added []Entry
			for i := range 1 + rng.IntN(40) {
				e := Entry{Prefix: randomPrefix(rng, f), ASN: uint32(i + 1)}
				if b.Add(e) == nil {
					added = append(added, e)
				}
			}
			tbl, st := b.Build()
			if st.Entries4+st.Entries6 != len(added) {
				t.Fatalf("round %d: %d entries, added %d", round, st.Entries4+st.Entries6, len(added))
			}
			probes := make([]netip.Addr, 0, 300)
			for _, e := range added { // the edges of every prefix and their neighbours
				lo, hi := prefixBounds(e.Prefix)
				probes = append(probes, addrOf(f, lo), addrOf(f, hi), addrOf(f, lo).Prev(), addrOf(f, hi).Next())
			}
			for range 100 {
				probes = append(probes, addrOf(f, randomValue(rng, f)))
			}
			for _, a := range probes {
				if !a.IsValid() || a.Is4In6() { // 4in6 addresses look up as IPv4, tested elsewhere
					continue
				}
				want, wantOK := linearLookup(added, a)
				got, ok := tbl.Lookup(a)
				if ok != wantOK || got != want {
					t.Fatalf("round %d: Lookup(%v) = %v %v, want %v %v\ntable %v", round, a, got, ok, want, wantOK, added)
				}
			}
			checkBoundaries(t, tbl, f, added)
		}
	}
}

// randomPrefix returns a random prefix inside a small region, so that random prefixes nest.
func randomPrefix(rng *rand.Rand, f Family) netip.Prefix {
	width := f.bits()
	base := addrOf(f, uint128{0x20010db800000000, 0})
	if f == IPv4 {
		base = netip.MustParseAddr("192.0.0.0")
	}
	if rng.IntN(20) == 0 { // now and then a prefix touching the bottom or top of the space
		a := addrOf(f, uint128{})
		if rng.IntN(2) == 0 {
			a = addrOf(f, maxUint128)
		}
		return netip.PrefixFrom(a, rng.IntN(width+1)).Masked()
	}
	v := addrValue(base).or(uint128{lo: rng.Uint64() & 0xfff})
	return netip.PrefixFrom(addrOf(f, v), width-12+rng.IntN(13)).Masked()
}

func linearLookup(entries []Entry, a netip.Addr) (Entry, bool) {
	best, found := Entry{}, false
	for _, e := range entries {
		if e.Prefix.Contains(a) && (!found || e.Prefix.Bits() > best.Prefix.Bits()) {
			best, found = e, true
		}
	}
	return best, found
}

// checkBoundaries checks that Boundaries yields exactly the addresses where the linear scan's
// answer differs from the one for the address before, in ascending order. It only looks at the
// edges of the prefixes, which is where any change must happen.
func checkBoundaries(t *testing.T, tbl *Table, f Family, entries []Entry) {
	t.Helper()
	var want []netip.Addr
	for _, e := range entries {
		lo, hi := prefixBounds(e.Prefix)
		want = append(want, addrOf(f, lo))
		if hi != hostMask(f.bits()) {
			want = append(want, addrOf(f, hi.addOne()))
		}
	}
	slices.SortFunc(want, netip.Addr.Compare)
	want = slices.Compact(want)
	want = slices.DeleteFunc(want, func(a netip.Addr) bool { // keep the addresses where the answer changes
		cur, curOK := linearLookup(entries, a)
		if !a.Prev().IsValid() {
			return !curOK
		}
		prev, prevOK := linearLookup(entries, a.Prev())
		return cur == prev && curOK == prevOK
	})
	got := slices.Collect(tbl.Boundaries(f))
	if !slices.Equal(got, want) {
		t.Fatalf("Boundaries(%v) = %v\nwant %v\ntable %v", f, got, want, entries)
	}
}

func TestBoundaries(t *testing.T) {
	tests := []struct {
		name  string
		specs []string
		f     Family
		want  string
	}{
		{"nested", []string{"10.0.0.0/8", "10.1.0.0/16", "10.1.2.128/25"}, IPv4,
			"10.0.0.0 10.1.0.0 10.1.2.128 10.1.3.0 10.2.0.0 11.0.0.0"},
		{"adjacent", []string{"10.0.0.0/24", "10.0.1.0/24"}, IPv4, "10.0.0.0 10.0.1.0 10.0.2.0"},
		{"same start", []string{"10.0.0.0/8", "10.0.0.0/16"}, IPv4, "10.0.0.0 10.1.0.0 11.0.0.0"},
		{"same end", []string{"10.0.0.0/8", "10.255.0.0/16"}, IPv4, "10.0.0.0 10.255.0.0 11.0.0.0"},
		{"whole space", []string{"0.0.0.0/0"}, IPv4, "0.0.0.0"},
		{"top", []string{"255.255.255.0/24", "255.255.255.255/32"}, IPv4, "255.255.255.0 255.255.255.255"},
		{"other family", []string{"10.0.0.0/8"}, IPv6, ""},
		{"IPv6", []string{"2001:db8::/32", "2001:db8:1::/48", "::/0"}, IPv6,
			":: 2001:db8:: 2001:db8:1:: 2001:db8:2:: 2001:db9::"},
		{"IPv6 top", []string{"ffff:ffff:ffff:ffff::/64"}, IPv6, "ffff:ffff:ffff:ffff::"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := slices.Collect(buildTable(t, tt.specs...).Boundaries(tt.f))
			if s := addrString(got); s != tt.want {
				t.Errorf("got  %s\nwant %s", s, tt.want)
			}
		})
	}
}

func TestBoundariesStopEarly(t *testing.T) {
	tbl := buildTable(t, "10.0.0.0/8", "10.1.0.0/16")
	n := 0
	for range tbl.Boundaries(IPv4) {
		n++
		if n == 2 {
			break
		}
	}
	if n != 2 {
		t.Errorf("got %d boundaries before break, want 2", n)
	}
}

func TestMergeBoundaries(t *testing.T) {
	country := buildTable(t, "10.0.0.0/8=A", "10.1.0.0/16=B", "2001:db8::/32=X")
	asn := buildTable(t, "10.0.0.0/9", "10.1.0.0/24", "192.0.2.0/24")
	tests := []struct {
		f      Family
		tables []*Table
		want   string
	}{
		{IPv4, []*Table{country, asn}, "10.0.0.0 10.1.0.0 10.1.1.0 10.2.0.0 10.128.0.0 11.0.0.0 192.0.2.0 192.0.3.0"},
		{IPv4, []*Table{country}, "10.0.0.0 10.1.0.0 10.2.0.0 11.0.0.0"},
		{IPv6, []*Table{country, asn}, "2001:db8:: 2001:db9::"},
		{IPv6, nil, ""},
	}
	for _, tt := range tests {
		if got := addrString(MergeBoundaries(tt.f, tt.tables...)); got != tt.want {
			t.Errorf("MergeBoundaries(%v, %d tables)\ngot  %s\nwant %s", tt.f, len(tt.tables), got, tt.want)
		}
	}
}

func addrString(addrs []netip.Addr) string {
	s := make([]string, len(addrs))
	for i, a := range addrs {
		s[i] = a.String()
	}
	return strings.Join(s, " ")
}

func BenchmarkLookupSynthetic(b *testing.B) {
	rng := rand.New(rand.NewPCG(5, 6))
	tb := NewTable("synthetic")
	for range 500_000 {
		v := uint128{lo: uint64(rng.Uint32())}
		tb.Add(Entry{Prefix: netip.PrefixFrom(addrOf(IPv4, v), 16+rng.IntN(17)).Masked(), Country: "AA"})
	}
	tbl, _ := tb.Build()
	benchmarkLookup(b, tbl, randomAddrs(rng, IPv4))
}

// randomAddrs returns addresses spread evenly over family f's space (for IPv6, over 2000::/3,
// where the global unicast prefixes are).
func randomAddrs(rng *rand.Rand, f Family) []netip.Addr {
	addrs := make([]netip.Addr, 1<<16)
	for i := range addrs {
		v := uint128{rng.Uint64(), rng.Uint64()}
		if f == IPv6 {
			v.hi = 0x2000000000000000 | v.hi>>3
		}
		addrs[i] = addrOf(f, v)
	}
	return addrs
}

// addrsInTable returns random addresses inside randomly chosen prefixes of the table: traffic
// spread over the prefixes rather than over the address space.
func addrsInTable(rng *rand.Rand, tbl *Table, f Family) []netip.Addr {
	recs := tbl.records[familyIndex(f)]
	addrs := make([]netip.Addr, 1<<16)
	for i := range addrs {
		r := recs[rng.IntN(len(recs))]
		host := hostMask(f.bits() - int(r.bits))
		v := uint128{rng.Uint64() & host.hi, rng.Uint64() & host.lo}
		addrs[i] = addrOf(f, r.addr.or(v))
	}
	return addrs
}

// benchmarkLookup looks up the addresses in turn.
func benchmarkLookup(b *testing.B, tbl *Table, addrs []netip.Addr) {
	b.ReportAllocs()
	hits, n := 0, 0
	for ; b.Loop(); n++ {
		if _, ok := tbl.Lookup(addrs[n%len(addrs)]); ok {
			hits++
		}
	}
	b.ReportMetric(float64(hits)/float64(n), "hits/op")
}

func TestAddAfterBuildPanics(t *testing.T) {
	b := NewTable("test")
	b.Build()
	defer func() {
		if recover() == nil {
			t.Error("Add after Build did not panic")
		}
	}()
	b.Add(Entry{Prefix: pfx("10.0.0.0/8")})
}
