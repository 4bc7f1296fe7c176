package prefixes

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestRangeToPrefixes(t *testing.T) {
	tests := []struct {
		first, last string
		want        string // space-separated prefixes
	}{
		{"0.0.0.0", "255.255.255.255", "0.0.0.0/0"},
		{"::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "::/0"},
		{"0.0.0.0", "0.0.0.0", "0.0.0.0/32"},
		{"255.255.255.255", "255.255.255.255", "255.255.255.255/32"},
		{"192.0.2.7", "192.0.2.7", "192.0.2.7/32"},
		{"::", "::", "::/128"},
		{"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128"},
		{"175.45.176.0", "175.45.179.255", "175.45.176.0/22"},
		{"1.0.1.0", "1.0.3.255", "1.0.1.0/24 1.0.2.0/23"},
		{"0.0.0.1", "255.255.255.255", "0.0.0.1/32 0.0.0.2/31 0.0.0.4/30 0.0.0.8/29 0.0.0.16/28 0.0.0.32/27 " +
			"0.0.0.64/26 0.0.0.128/25 0.0.1.0/24 0.0.2.0/23 0.0.4.0/22 0.0.8.0/21 0.0.16.0/20 0.0.32.0/19 " +
			"0.0.64.0/18 0.0.128.0/17 0.1.0.0/16 0.2.0.0/15 0.4.0.0/14 0.8.0.0/13 0.16.0.0/12 0.32.0.0/11 " +
			"0.64.0.0/10 0.128.0.0/9 1.0.0.0/8 2.0.0.0/7 4.0.0.0/6 8.0.0.0/5 16.0.0.0/4 32.0.0.0/3 " +
			"64.0.0.0/2 128.0.0.0/1"},
		{"0.0.0.0", "255.255.255.254", "0.0.0.0/1 128.0.0.0/2 192.0.0.0/3 224.0.0.0/4 240.0.0.0/5 248.0.0.0/6 " +
			"252.0.0.0/7 254.0.0.0/8 255.0.0.0/9 255.128.0.0/10 255.192.0.0/11 255.224.0.0/12 255.240.0.0/13 " +
			"255.248.0.0/14 255.252.0.0/15 255.254.0.0/16 255.255.0.0/17 255.255.128.0/18 255.255.192.0/19 " +
			"255.255.224.0/20 255.255.240.0/21 255.255.248.0/22 255.255.252.0/23 255.255.254.0/24 " +
			"255.255.255.0/25 255.255.255.128/26 255.255.255.192/27 255.255.255.224/28 255.255.255.240/29 " +
			"255.255.255.248/30 255.255.255.252/31 255.255.255.254/32"},
		{"2001:200::", "2001:218:2000:51:ffff:ffff:ffff:ffff",
			"2001:200::/28 2001:210::/29 2001:218::/35 2001:218:2000::/58 2001:218:2000:40::/60 2001:218:2000:50::/63"},
		{"::1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", ""}, // checked by count below: 254 prefixes
		{"::ffff:10.0.0.0", "::ffff:10.0.0.255", "10.0.0.0/24"},
		{"2001:db8::", "2001:db8::1:0", "2001:db8::/112 2001:db8::1:0/128"},
		{"0:0:0:1::", "0:0:0:2::", "0:0:0:1::/64 0:0:0:2::/128"},
		{"::ffff:ffff:ffff:ffff", "0:0:0:1::", "::ffff:ffff:ffff:ffff/128 0:0:0:1::/128"}, // carry into the high word
	}
	for _, tt := range tests {
		t.Run(tt.first+"-"+tt.last, func(t *testing.T) {
			got, err := RangeToPrefixes(netip.MustParseAddr(tt.first), netip.MustParseAddr(tt.last))
			if err != nil {
				t.Fatal(err)
			}
			if tt.want == "" {
				if len(got) != 254 {
					t.Errorf("got %d prefixes, want 254", len(got))
				}
				return
			}
			var want []netip.Prefix
			for _, s := range strings.Fields(tt.want) {
				want = append(want, netip.MustParsePrefix(s))
			}
			if !slices.Equal(got, want) {
				t.Errorf("got  %v\nwant %v", got, want)
			}
		})
	}
}

func TestRangeToPrefixesErrors(t *testing.T) {
	tests := []struct {
		first, last netip.Addr
		want        error
	}{
		{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.0"), ErrStartAfterEnd},
		{netip.MustParseAddr("::2"), netip.MustParseAddr("::1"), ErrStartAfterEnd},
		{netip.MustParseAddr("10.0.0.0"), netip.MustParseAddr("::1"), ErrFamilyMismatch},
		{netip.MustParseAddr("::1"), netip.MustParseAddr("10.0.0.0"), ErrFamilyMismatch},
		{netip.MustParseAddr("::ffff:255.255.255.255"), netip.MustParseAddr("::1:0:0:0"), ErrFamilyMismatch}, // 4in6 is IPv4
		{netip.Addr{}, netip.MustParseAddr("10.0.0.0"), nil},
	}
	for _, tt := range tests {
		_, err := RangeToPrefixes(tt.first, tt.last)
		if err == nil || tt.want != nil && !errors.Is(err, tt.want) {
			t.Errorf("RangeToPrefixes(%v, %v) error = %v, want %v", tt.first, tt.last, err, tt.want)
		}
	}
}

// TestRangeToPrefixesProperties converts random ranges, biased towards aligned and edge values,
// and checks that the prefixes are ascending, disjoint, cover exactly the range and are minimal.
func TestRangeToPrefixesProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, f := range []Family{IPv4, IPv6} {
		for range 20000 {
			a, b := randomValue(rng, f), randomValue(rng, f)
			if b.less(a) {
				a, b = b, a
			}
			first, last := addrOf(f, a), addrOf(f, b)
			got, err := RangeToPrefixes(first, last)
			if err != nil {
				t.Fatal(err)
			}
			checkCover(t, f, a, b, got)
		}
	}
}

func checkCover(t *testing.T, f Family, first, last uint128, got []netip.Prefix) {
	t.Helper()
	next := first // the next address the cover must start at
	for i, p := range got {
		if familyOf(p.Addr()) != f || p.Masked() != p {
			t.Fatalf("%v-%v: prefix %v is not a masked %v prefix", addrOf(f, first), addrOf(f, last), p, f)
		}
		lo, hi := prefixBounds(p)
		if lo != next {
			t.Fatalf("%v-%v: prefix %d %v starts at %v, want %v", addrOf(f, first), addrOf(f, last), i, p, addrOf(f, lo), addrOf(f, next))
		}
		if i > 0 && mergeable(got[i-1], p) {
			t.Fatalf("%v-%v: %v and %v could be one prefix", addrOf(f, first), addrOf(f, last), got[i-1], p)
		}
		if hi == last {
			if i != len(got)-1 {
				t.Fatalf("%v-%v: prefixes after the end: %v", addrOf(f, first), addrOf(f, last), got[i+1:])
			}
			return
		}
		next = hi.addOne()
	}
	t.Fatalf("%v-%v: cover %v stops before the end", addrOf(f, first), addrOf(f, last), got)
}

// mergeable reports whether two adjacent prefixes are the two halves of one aligned prefix. A
// minimal cover has no such pair (and, with ascending adjacent prefixes, that is also sufficient:
// greedy largest-aligned-block covers are optimal).
func mergeable(a, b netip.Prefix) bool {
	if a.Bits() != b.Bits() || a.Bits() == 0 {
		return false
	}
	parent := netip.PrefixFrom(a.Addr(), a.Bits()-1).Masked()
	return parent.Addr() == a.Addr() && parent.Contains(b.Addr())
}

func prefixBounds(p netip.Prefix) (lo, hi uint128) {
	lo = addrValue(p.Addr())
	return lo, lo.or(hostMask(p.Addr().BitLen() - p.Bits()))
}

// randomValue returns a random address of family f, often with many trailing zeros or ones so
// that alignment edges are exercised.
func randomValue(rng *rand.Rand, f Family) uint128 {
	u := uint128{rng.Uint64(), rng.Uint64()}
	if f == IPv4 {
		u = uint128{lo: u.lo & 0xffffffff}
	}
	host := rng.IntN(f.bits() + 1)
	switch rng.IntN(4) {
	case 0: // clear the host part
		m := hostMask(host)
		u = uint128{u.hi &^ m.hi, u.lo &^ m.lo}
	case 1: // set the host part
		u = u.or(hostMask(host))
	case 2: // narrow: only low bits random, to get short ranges between nearby values
		if rng.IntN(2) == 0 {
			m := hostMask(rng.IntN(12))
			u = uint128{m.hi & u.hi, m.lo & u.lo}.or(uint128{0x20010db800000000, 0})
			if f == IPv4 {
				u = uint128{lo: 0xc0000200 | u.lo&0xfff}
			}
		}
	}
	return u
}
