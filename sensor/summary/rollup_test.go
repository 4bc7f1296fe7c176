package summary

import (
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
		if n := len(bounded.prefixes); n > 60 || i > 0 && n < 30 {
			t.Fatalf("after %d summaries the bounded rollup holds %d prefixes", i+1, len(bounded.prefixes))
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
	if len(r.prefixes) != 3 {
		t.Fatalf("%d prefixes kept, want 3", len(r.prefixes))
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
