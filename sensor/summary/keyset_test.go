package summary

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"testing"
)

// TestKeySet compares the set with a map over runs of random keys with
// repeats, reused across generations and sizes, and across the wrap of
// its generation counter.
func TestKeySet(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var s keySet
	for round := range 300 {
		n := rng.IntN(3000)
		if round == 200 {
			s.gen = ^uint32(0) // the next reset wraps
		}
		s.reset(n)
		want := map[uint64]bool{}
		for range n {
			k := rng.Uint64N(uint64(n) + 1) // about a third repeat
			if got := s.add(k); got != !want[k] {
				t.Fatalf("round %d: add(%d) = %v, want %v", round, k, got, !want[k])
			}
			want[k] = true
		}
	}
}

// TestDuplicatePrefixes: a summary that lists a prefix twice is refused,
// IPv4 or IPv6, adjacent or far apart, with a Decoder reused across them;
// the same prefix lengths on other addresses, and one address at two
// lengths, are not duplicates.
func TestDuplicatePrefixes(t *testing.T) {
	d := NewDecoder(Limits{})
	for _, tc := range []struct {
		name   string
		a, b   string
		refuse bool
	}{
		{"ipv4", "198.51.100.0/24", "198.51.100.0/24", true},
		{"ipv6", "2001:db8::/48", "2001:db8::/48", true},
		{"ipv4 two lengths", "198.51.0.0/16", "198.51.0.0/24", false},
		{"ipv4 and ipv4-mapped ipv6", "198.51.100.0/24", "::ffff:198.51.100.0/120", false},
		{"ipv6 two lengths", "2001:db8::/32", "2001:db8::/48", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := generated(200, 9)
			s.Prefixes[3].Prefix = netip.MustParsePrefix(tc.a)
			s.Prefixes[150].Prefix = netip.MustParsePrefix(tc.b)
			_, err := d.Decode(encodeBinary(s))
			_, plainErr := Decode(encodeBinary(s), Limits{})
			if refused := err != nil; refused != tc.refuse || refused != (plainErr != nil) || (refused && !errors.Is(err, ErrMalformed)) {
				t.Errorf("Decoder: %v; Decode: %v; want refused: %v", err, plainErr, tc.refuse)
			}
		})
	}
}
