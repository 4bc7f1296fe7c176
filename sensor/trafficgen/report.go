package trafficgen

import (
	"cmp"
	"net/netip"
	"slices"
	"time"

	"github.com/peerwatch/peerwatch/sensor/aggregate"
	"github.com/peerwatch/peerwatch/sensor/summary"
	"github.com/peerwatch/peerwatch/sensor/traffic"
)

// Report is what a run sent: every packet once under its remote prefix
// (resolved as sensord resolves it), its country and its AS, in the same
// shape as a sensord summary, so that a test compares like with like.
// Bytes are whole frames without FCS, as the sensor counts them.
type Report struct {
	Site      string                 `json:"site,omitempty"`
	Streams   []StreamReport         `json:"streams"`
	Start     time.Time              `json:"start"`
	End       time.Time              `json:"end"`
	Sent      traffic.Counters       `json:"sent"`
	Prefixes  []summary.PrefixCount  `json:"prefixes"`
	Countries []summary.CountryCount `json:"countries"`
	ASes      []summary.ASCount      `json:"ases"`
}

// StreamReport is what one stream of a run sent: the steady mix, or an
// attack.
type StreamReport struct {
	Profile Profile          `json:"profile"`
	Seed    uint64           `json:"seed"`
	Sent    traffic.Counters `json:"sent"`
}

// Tally counts packets into a Report. Its zero value is ready to use.
type Tally struct {
	sent      traffic.Counters
	prefixes  map[netip.Prefix]*summary.PrefixCount
	countries map[string]*traffic.Counters
	ases      map[uint32]*summary.ASCount
}

// Add counts one sent frame of frameLen bytes.
func (t *Tally) Add(p *Packet, l aggregate.Labels, frameLen int) {
	if t.prefixes == nil {
		t.prefixes = map[netip.Prefix]*summary.PrefixCount{}
		t.countries = map[string]*traffic.Counters{}
		t.ases = map[uint32]*summary.ASCount{}
	}
	var c traffic.Counters
	c.Packets[p.Direction] = 1
	c.Bytes[p.Direction] = uint64(frameLen)
	c.Class[p.Class] = 1
	t.sent.Add(c)
	pc := t.prefixes[l.Prefix]
	if pc == nil {
		pc = &summary.PrefixCount{Prefix: l.Prefix, Country: l.Country, ASN: l.ASN, ASName: l.ASName}
		t.prefixes[l.Prefix] = pc
	}
	pc.Counters.Add(c)
	cc := t.countries[l.Country]
	if cc == nil {
		cc = &traffic.Counters{}
		t.countries[l.Country] = cc
	}
	cc.Add(c)
	as := t.ases[l.ASN]
	if as == nil {
		as = &summary.ASCount{ASN: l.ASN, ASName: l.ASName}
		t.ases[l.ASN] = as
	}
	as.Counters.Add(c)
}

// Sent is the total so far.
func (t *Tally) Sent() traffic.Counters { return t.sent }

// Report returns the counts, largest first.
func (t *Tally) Report() Report {
	r := Report{Sent: t.sent, Prefixes: []summary.PrefixCount{}, Countries: []summary.CountryCount{}, ASes: []summary.ASCount{}}
	for _, p := range t.prefixes {
		r.Prefixes = append(r.Prefixes, *p)
	}
	for cc, c := range t.countries {
		r.Countries = append(r.Countries, summary.CountryCount{Country: cc, Counters: *c})
	}
	for _, a := range t.ases {
		r.ASes = append(r.ASes, *a)
	}
	slices.SortFunc(r.Prefixes, func(a, b summary.PrefixCount) int {
		return cmp.Or(cmp.Compare(b.Total(), a.Total()), a.Prefix.Addr().Compare(b.Prefix.Addr()), cmp.Compare(a.Prefix.Bits(), b.Prefix.Bits()))
	})
	slices.SortFunc(r.Countries, func(a, b summary.CountryCount) int {
		return cmp.Or(cmp.Compare(b.Total(), a.Total()), cmp.Compare(a.Country, b.Country))
	})
	slices.SortFunc(r.ASes, func(a, b summary.ASCount) int {
		return cmp.Or(cmp.Compare(b.Total(), a.Total()), cmp.Compare(a.ASN, b.ASN))
	})
	return r
}
