// Package testsum makes realistic summaries for tests and benchmarks: the
// interval of a busy peering link, with n remote prefixes drawn from a
// larger population, and countries and ASes that reconcile exactly.
package testsum

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"time"

	"github.com/peerwatch/peerwatch/sensor/summary"
	"github.com/peerwatch/peerwatch/sensor/traffic"
)

// Interval is the length of the summaries' intervals.
const Interval = 10 * time.Second

// Big returns the summary of sensor for seq, the interval that ends at end:
// n /24 prefixes out of 4n (so that sensors and intervals overlap but
// differ), about 200 countries and up to 2000 ASes, seeded by seed. It
// passes summary.Check.
func Big(sensor string, seq uint64, end time.Time, seed uint64, n int) *summary.Summary {
	rng := rand.New(rand.NewPCG(seed, 3))
	s := &summary.Summary{Schema: summary.SchemaVersion, Sensor: sensor, Seq: seq, Start: end.Add(-Interval).UTC(), End: end.UTC()}
	countries := map[string]*summary.CountryCount{}
	ases := map[uint32]*summary.ASCount{}
	for _, k := range rng.Perm(4 * n)[:n] {
		var c traffic.Counters
		c.Packets = traffic.ByDirection{rng.Uint64N(1e6) + 1, rng.Uint64N(1e6)}
		c.Bytes = traffic.ByDirection{c.Packets[0] * 700, c.Packets[1] * 300}
		c.Class[traffic.TCP] = c.Total()
		country := fmt.Sprintf("%c%c", 'A'+k%20, 'A'+k/20%10)
		asn := uint32(64512 + k%2000)
		s.Prefixes = append(s.Prefixes, summary.PrefixCount{
			Prefix:  netip.PrefixFrom(netip.AddrFrom4([4]byte{10 + byte(k>>16), byte(k >> 8), byte(k), 0}), 24),
			Country: country, ASN: asn, ASName: fmt.Sprintf("AS-NAME-%d", asn), Counters: c,
		})
		s.Remote.Add(c)
		if countries[country] == nil {
			countries[country] = &summary.CountryCount{Country: country}
		}
		countries[country].Add(c)
		if ases[asn] == nil {
			ases[asn] = &summary.ASCount{ASN: asn, ASName: fmt.Sprintf("AS-NAME-%d", asn)}
		}
		ases[asn].Add(c)
	}
	for _, c := range countries {
		s.Countries = append(s.Countries, *c)
	}
	for _, a := range ases {
		s.ASes = append(s.ASes, *a)
	}
	s.Globals.Seen = s.Remote.Total()
	s.Sort()
	return s
}
