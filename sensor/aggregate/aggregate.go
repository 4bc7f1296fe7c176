// Package aggregate turns a drained interval of remote keys into a summary:
// it resolves each key to the prefixes of the loaded tables, labels it with
// country and origin AS, matches it against the watch lists, and sums.
//
// Resolution is exact because the datapath's keys never straddle a table
// boundary (see docs/datapath.md): every key lies inside one prefix of
// each table.
package aggregate

import (
	"net/netip"
	"slices"

	"github.com/peerwatch/peerwatch/sensor/datapath"
	"github.com/peerwatch/peerwatch/sensor/prefixes"
	"github.com/peerwatch/peerwatch/sensor/summary"
	"github.com/peerwatch/peerwatch/sensor/traffic"
)

// WatchList is a named set of countries, ASes and prefixes whose traffic is
// counted on its own.
type WatchList struct {
	Name      string
	Countries []string
	ASNs      []uint32
	Prefixes  []netip.Prefix
}

func (w *WatchList) matches(key netip.Addr, l Labels) bool {
	if l.Country != "" && slices.Contains(w.Countries, l.Country) {
		return true
	}
	if l.ASN != 0 && slices.Contains(w.ASNs, l.ASN) {
		return true
	}
	for _, p := range w.Prefixes {
		if p.Contains(key) {
			return true
		}
	}
	return false
}

// Summarizer makes summaries of intervals.
type Summarizer struct {
	watch              []WatchList
	v4KeyLen, v6KeyLen int
	topN               int
}

// New returns a Summarizer. The key lengths are the datapath's, used for
// traffic that no table places; topN bounds the prefixes of a summary.
func New(watch []WatchList, v4KeyLen, v6KeyLen, topN int) *Summarizer {
	return &Summarizer{watch: watch, v4KeyLen: v4KeyLen, v6KeyLen: v6KeyLen, topN: topN}
}

// WatchTable is a table of the watch lists' prefixes, to load into the
// datapath with the others so that no key straddles a watched prefix.
func WatchTable(lists []WatchList) *prefixes.Table {
	b := prefixes.NewTable("watch")
	for _, w := range lists {
		for _, p := range w.Prefixes {
			_ = b.Add(prefixes.Entry{Prefix: p.Masked()}) // a prefix in two lists is one boundary
		}
	}
	t, _ := b.Build()
	return t
}

// Labels are what the tables say of an address: its remote prefix (the
// longest table prefix that holds it, from Table) and the first country and
// AS that a table knows.
type Labels struct {
	Prefix  netip.Prefix
	Table   string
	Country string
	ASN     uint32
	ASName  string
}

// Resolve looks an address up in every table. Prefix is invalid when no
// table holds it.
func Resolve(tables []*prefixes.Table, addr netip.Addr) Labels {
	var l Labels
	for _, t := range tables {
		e, ok := t.Lookup(addr)
		if !ok {
			continue
		}
		if !l.Prefix.IsValid() || e.Prefix.Bits() > l.Prefix.Bits() {
			l.Prefix, l.Table = e.Prefix, t.Name()
		}
		if l.Country == "" {
			l.Country = e.Country
		}
		if l.ASN == 0 && e.ASN != 0 {
			l.ASN, l.ASName = e.ASN, e.ASName
		}
	}
	return l
}

// resolve is Resolve for a counting key: keys no table holds keep their
// fixed-length block.
func (s *Summarizer) resolve(tables []*prefixes.Table, key netip.Addr) Labels {
	l := Resolve(tables, key)
	if !l.Prefix.IsValid() {
		bits := s.v4KeyLen
		if key.Is6() {
			bits = s.v6KeyLen
		}
		l.Prefix = netip.PrefixFrom(key, bits).Masked()
	}
	return l
}

// Summarize resolves one interval. Sensor and Seq are left to the caller.
func (s *Summarizer) Summarize(iv *datapath.Interval) *summary.Summary {
	var tables []*prefixes.Table
	if iv.Tables != nil {
		tables = iv.Tables.Prefix
	}
	sum := &summary.Summary{
		Schema:  summary.SchemaVersion,
		Start:   iv.Start,
		End:     iv.End,
		Globals: iv.Globals,
	}
	byPrefix := map[netip.Prefix]*summary.PrefixCount{}
	byCountry := map[string]*traffic.Counters{}
	byAS := map[uint32]*summary.ASCount{}
	watch := make([]traffic.Counters, len(s.watch))
	for _, r := range iv.Remote {
		l := s.resolve(tables, r.Key)
		sum.Remote.Add(r.Counters)
		p := byPrefix[l.Prefix]
		if p == nil {
			p = &summary.PrefixCount{Prefix: l.Prefix, Country: l.Country, ASN: l.ASN, ASName: l.ASName}
			byPrefix[l.Prefix] = p
		}
		p.Counters.Add(r.Counters)
		c := byCountry[l.Country]
		if c == nil {
			c = &traffic.Counters{}
			byCountry[l.Country] = c
		}
		c.Add(r.Counters)
		a := byAS[l.ASN]
		if a == nil {
			a = &summary.ASCount{ASN: l.ASN, ASName: l.ASName}
			byAS[l.ASN] = a
		}
		a.Counters.Add(r.Counters)
		for i := range s.watch {
			if s.watch[i].matches(r.Key, l) {
				watch[i].Add(r.Counters)
			}
		}
	}
	for _, p := range byPrefix {
		sum.Prefixes = append(sum.Prefixes, *p)
	}
	for cc, c := range byCountry {
		sum.Countries = append(sum.Countries, summary.CountryCount{Country: cc, Counters: *c})
	}
	for _, a := range byAS {
		sum.ASes = append(sum.ASes, *a)
	}
	for i, w := range s.watch {
		sum.Watch = append(sum.Watch, summary.WatchCount{List: w.Name, Counters: watch[i]})
	}
	sum.Sort()
	sum.TopN(s.topN)
	return sum
}
