package summary

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/peerwatch/peerwatch/sensor/traffic"
)

// TestRollupMatchesMerge adds the same summaries to a Rollup and with
// Merge: with no bound both give the same summary; with a bound the totals
// stay exact and at most 2×MaxPrefixes prefixes are kept.
func TestRollupMatchesMerge(t *testing.T) {
	var r Rollup
	bounded := Rollup{MaxPrefixes: 30}
	merged := &Summary{Schema: SchemaVersion}
	for i := range 20 {
		s := generated(40, uint64(i))
		s.Seq = uint64(i + 1)
		s.Start = time.Unix(1_700_000_000+int64(i)*10, 0)
		s.End = s.Start.Add(10 * time.Second)
		r.Add(s)
		bounded.Add(s)
		merged.Merge(s)
		if n := bounded.index.len(); n > 60 || i > 0 && n < 30 {
			t.Fatalf("after %d summaries the bounded rollup holds %d prefixes", i+1, bounded.index.len())
		}
	}
	merged.Sensor = ""
	got := r.Summary(0)
	assertEqual(t, got, merged)
	if r.Len() != 20 {
		t.Errorf("Len %d, want 20", r.Len())
	}

	b := bounded.Summary(25)
	if err := b.Check(); err != nil {
		t.Fatal(err)
	}
	if b.Remote != merged.Remote || b.Globals != merged.Globals || len(b.Prefixes) != 25 {
		t.Fatalf("bounded: remote %+v globals %+v, %d prefixes; want %+v %+v, 25", b.Remote, b.Globals, len(b.Prefixes), merged.Remote, merged.Globals)
	}
	for _, c := range merged.Countries {
		if got := bounded.Country(c.Country); got != c.Counters {
			t.Errorf("country %q: %+v, want %+v", c.Country, got, c.Counters)
		}
	}
	for _, a := range merged.ASes {
		if got := bounded.AS(a.ASN); got != a.Counters {
			t.Errorf("AS %d: %+v, want %+v", a.ASN, got, a.Counters)
		}
	}
}

// TestRollupPruneTies: when many prefixes tie at the cut, the first by
// address stay, exactly MaxPrefixes of them.
func TestRollupPruneTies(t *testing.T) {
	r := Rollup{MaxPrefixes: 3}
	s := generated(10, 1)
	for i := range s.Prefixes {
		s.Prefixes[i].Counters = s.Prefixes[0].Counters
	}
	// Put the counters right: every prefix has the first one's.
	s.Remote, s.Other = traffic.Counters{}, traffic.Counters{}
	s.Countries, s.ASes, s.Watch = nil, nil, nil
	for _, p := range s.Prefixes {
		s.Remote.Add(p.Counters)
	}
	r.Add(s)
	if r.index.len() != 3 {
		t.Fatalf("%d prefixes kept, want 3", r.index.len())
	}
	want := r.Summary(0)
	sorted := append([]PrefixCount(nil), s.Prefixes...)
	slices.SortFunc(sorted, prefixOrder)
	for i, p := range want.Prefixes {
		if p.Prefix != sorted[i].Prefix {
			t.Errorf("kept %s at %d, want %s", p.Prefix, i, sorted[i].Prefix)
		}
	}
	if got := want.Other.Total() + 3*s.Prefixes[0].Total(); got != s.Remote.Total() {
		t.Errorf("other + kept = %d packets, want %d", got, s.Remote.Total())
	}
}

// rollupInput is a summary of n prefixes out of a universe of 4n (IPv4 and
// IPv6), with small counters so that many totals tie, for the comparison
// with the reference Rollup.
func rollupInput(rng *rand.Rand, n int, seq uint64) *Summary {
	s := &Summary{Schema: SchemaVersion, Sensor: "s", Seq: seq, Start: time.Unix(1_700_000_000+int64(seq)*10, 0).UTC()}
	s.End = s.Start.Add(10 * time.Second)
	for _, k := range rng.Perm(4 * n)[:n] {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(k >> 8), byte(k), 0}), 24)
		if k%5 == 0 {
			p = netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0xd, 0xb8, byte(k >> 8), byte(k)}), 48)
		}
		var c traffic.Counters
		c.Packets = traffic.ByDirection{rng.Uint64N(4), rng.Uint64N(3)}
		c.Bytes = traffic.ByDirection{c.Packets[0] * 100, c.Packets[1] * 60}
		c.Class[traffic.UDP] = c.Total()
		asn := uint32(k % 7)
		s.Prefixes = append(s.Prefixes, PrefixCount{Prefix: p, Country: fmt.Sprintf("C%d", k%5), ASN: asn, ASName: fmt.Sprintf("AS%d-%d", asn, seq), Counters: c})
		// Country codes, "" among them, and strings that are none,
		// which Rollup keeps apart.
		cc := fmt.Sprintf("C%d-%d", k%5, k)
		switch k % 4 {
		case 0:
			cc = fmt.Sprintf("%c%c", 'A'+k%26, 'A'+k/26%26)
		case 1:
			cc = ""
		}
		s.Countries = append(s.Countries, CountryCount{Country: cc, Counters: c})
		s.ASes = append(s.ASes, ASCount{ASN: uint32(k), ASName: fmt.Sprintf("AS%d-%d", k, seq), Counters: c})
		s.Remote.Add(c)
	}
	s.Watch = []WatchCount{{List: fmt.Sprintf("w%d", seq%3), Counters: s.Remote}}
	s.Globals.Seen = s.Remote.Total()
	return s
}

// TestRollupMatchesReference adds the same summaries to Rollup and to the
// implementation it replaced (rollup_ref_test.go): after every summary,
// both hold the same prefixes, and give the same Summary, to the counter
// and the label, whatever the bound and however many totals tie.
func TestRollupMatchesReference(t *testing.T) {
	for _, tc := range []struct{ max, n, summaries int }{
		{0, 50, 30}, {1, 5, 50}, {3, 10, 100}, {30, 40, 200}, {100, 100, 100}, {1000, 1000, 20},
	} {
		t.Run(fmt.Sprintf("max %d, %d prefixes", tc.max, tc.n), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(tc.max), uint64(tc.n)))
			got, want := Rollup{MaxPrefixes: tc.max}, refRollup{MaxPrefixes: tc.max}
			for i := range tc.summaries {
				s := rollupInput(rng, tc.n, uint64(i+1))
				got.Add(s)
				want.Add(s)
				if got.index.len() != len(want.prefixes) {
					t.Fatalf("after %d summaries: %d prefixes kept, want %d", i+1, got.index.len(), len(want.prefixes))
				}
				if i%7 == 0 || i == tc.summaries-1 {
					assertEqual(t, got.Summary(0), want.Summary(0))
					assertEqual(t, got.Summary(tc.max/2+1), want.Summary(tc.max/2+1))
				}
			}
			for _, p := range want.Summary(0).Prefixes {
				if g := got.Prefix(p.Prefix); g != p.Counters {
					t.Errorf("Prefix(%s) = %+v, want %+v", p.Prefix, g, p.Counters)
				}
			}
			for _, c := range want.Summary(0).Countries {
				if g := got.Country(c.Country); g != c.Counters {
					t.Errorf("Country(%q) = %+v, want %+v", c.Country, g, c.Counters)
				}
			}
			if got.AS(3) != want.AS(3) || got.Country("C1-1") != want.Country("C1-1") || got.Len() != want.Len() || got.Remote() != want.Remote() {
				t.Error("AS, Country, Len or Remote differ")
			}
			if tc.max > 0 {
				// Exact totals: what is kept plus Other is all that was added.
				s := got.Summary(0)
				if err := s.Check(); err != nil {
					t.Error(err)
				}
			}
		})
	}
}
