package summary

import (
	"errors"
	"math"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/peerwatch/peerwatch/sensor/traffic"
)

func counters(in, out uint64) traffic.Counters {
	return traffic.Counters{Packets: [2]uint64{in, out}, Bytes: [2]uint64{in * 100, out * 100}, Class: [traffic.NumClasses]uint64{traffic.TCP: in + out}}
}

// sample builds a consistent summary: prefixes p1 and p2, countries and ASes
// that sum to the same remote total.
func sample(start time.Time, a, b uint64) *Summary {
	remote := counters(a, b)
	s := &Summary{
		Schema: SchemaVersion, Sensor: "s1", Start: start, End: start.Add(10 * time.Second),
		Globals:   traffic.Globals{Seen: a + b + 1, NonIP: 1},
		Remote:    remote,
		Prefixes:  []PrefixCount{{Prefix: netip.MustParsePrefix("198.51.100.0/24"), Country: "NZ", Counters: counters(a, 0)}, {Prefix: netip.MustParsePrefix("203.0.113.0/24"), Counters: counters(0, b)}},
		Countries: []CountryCount{{Country: "NZ", Counters: counters(a, 0)}, {Country: "", Counters: counters(0, b)}},
		ASes:      []ASCount{{ASN: 0, Counters: remote}},
	}
	s.Sort()
	return s
}

func TestCheck(t *testing.T) {
	s := sample(time.Unix(0, 0), 3, 4)
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
	s.Globals.Seen++
	if err := s.Check(); !errors.Is(err, ErrInconsistent) {
		t.Errorf("seen off by one: %v", err)
	}
	s = sample(time.Unix(0, 0), 3, 4)
	s.Countries[0].Packets[0]++
	if err := s.Check(); !errors.Is(err, ErrInconsistent) {
		t.Errorf("countries off by one: %v", err)
	}

	// Two made-up prefixes whose counts add to 2^64 wrap to zero: the sums
	// would still match Remote without overflow checks.
	s = sample(time.Unix(0, 0), 3, 4)
	wrap := traffic.Counters{Packets: traffic.ByDirection{math.MaxUint64}, Class: traffic.ByClass{math.MaxUint64}}
	one := traffic.Counters{Packets: traffic.ByDirection{1}, Class: traffic.ByClass{1}}
	s.Prefixes = append(s.Prefixes,
		PrefixCount{Prefix: netip.MustParsePrefix("192.0.2.0/24"), Counters: wrap},
		PrefixCount{Prefix: netip.MustParsePrefix("198.51.100.0/24"), Counters: one})
	if err := s.Check(); !errors.Is(err, ErrInconsistent) || !strings.Contains(err.Error(), "overflows") {
		t.Errorf("prefix sum wrapping around 2^64: %v", err)
	}
	s = sample(time.Unix(0, 0), 3, 4)
	s.Globals.Malformed = math.MaxUint64
	s.Globals.NonIP++
	if err := s.Check(); !errors.Is(err, ErrInconsistent) {
		t.Errorf("buckets wrapping around 2^64: %v", err)
	}
}

func TestMergeAndTopN(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	r := sample(t0, 3, 4)
	r.Merge(sample(t0.Add(10*time.Second), 5, 1))
	if err := r.Check(); err != nil {
		t.Fatal(err)
	}
	if r.Start != t0 || r.End != t0.Add(20*time.Second) {
		t.Errorf("window %v-%v", r.Start, r.End)
	}
	if len(r.Prefixes) != 2 || r.Prefixes[0].Total() != 8 || r.Prefixes[1].Total() != 5 {
		t.Errorf("merged prefixes %+v", r.Prefixes)
	}
	r.TopN(1)
	if err := r.Check(); err != nil {
		t.Fatalf("after TopN: %v", err)
	}
	if len(r.Prefixes) != 1 || r.Other.Total() != 5 {
		t.Errorf("top 1: %+v, other %d", r.Prefixes, r.Other.Total())
	}
}
