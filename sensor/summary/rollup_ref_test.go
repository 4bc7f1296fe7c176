package summary

import (
	"net/netip"
	"slices"

	"github.com/peerwatch/peerwatch/sensor/traffic"
)

// refRollup is Rollup as it was before it kept its prefixes in a slice
// and pruned by selection (commit "summary.Rollup: ..."): the reference
// that TestRollupMatchesReference holds the new one to, result for result.
type refRollup struct {
	// MaxPrefixes bounds the prefixes kept, as above; 0 keeps all.
	MaxPrefixes int

	head      Summary // everything but the lists
	n         int     // summaries added
	prefixes  map[netip.Prefix]*PrefixCount
	countries map[string]*traffic.Counters
	ases      map[uint32]*ASCount
	watch     map[string]*traffic.Counters
}

// Add adds s; s is not kept or modified.
func (r *refRollup) Add(s *Summary) {
	if r.n == 0 {
		r.prefixes = make(map[netip.Prefix]*PrefixCount, len(s.Prefixes))
		r.countries = make(map[string]*traffic.Counters, len(s.Countries))
		r.ases = make(map[uint32]*ASCount, len(s.ASes))
		r.watch = make(map[string]*traffic.Counters, len(s.Watch))
	}
	r.n++
	r.head.mergeHead(s)
	for _, p := range s.Prefixes {
		if e := r.prefixes[p.Prefix]; e != nil {
			e.Counters.Add(p.Counters)
			continue
		}
		e := p
		r.prefixes[p.Prefix] = &e
	}
	for _, c := range s.Countries {
		refAddTo(r.countries, c.Country, c.Counters)
	}
	for _, a := range s.ASes {
		if e := r.ases[a.ASN]; e != nil {
			e.Counters.Add(a.Counters)
			continue
		}
		e := a
		r.ases[a.ASN] = &e
	}
	for _, w := range s.Watch {
		refAddTo(r.watch, w.List, w.Counters)
	}
	if r.MaxPrefixes > 0 && len(r.prefixes) > 2*r.MaxPrefixes {
		r.prune()
	}
}

func refAddTo[K comparable](m map[K]*traffic.Counters, k K, c traffic.Counters) {
	if e := m[k]; e != nil {
		e.Add(c)
		return
	}
	m[k] = &c
}

// prune keeps the MaxPrefixes largest prefixes and moves the others into
// Other. It finds the MaxPrefixes-th largest total by sorting the totals
// alone, which costs far less than sorting the entries; among prefixes tied
// at that total, the first by address stay, as in Summary.Sort.
func (r *refRollup) prune() {
	totals := make([]uint64, 0, len(r.prefixes))
	for _, p := range r.prefixes {
		totals = append(totals, p.Total())
	}
	slices.Sort(totals)
	threshold := totals[len(totals)-r.MaxPrefixes]
	above := 0 // kept for sure: more than the threshold
	for _, t := range totals {
		if t > threshold {
			above++
		}
	}
	var tied []PrefixCount
	for k, p := range r.prefixes {
		switch t := p.Total(); {
		case t < threshold:
			r.head.Other.Add(p.Counters)
			delete(r.prefixes, k)
		case t == threshold:
			tied = append(tied, *p)
		}
	}
	if keep := r.MaxPrefixes - above; len(tied) > keep {
		slices.SortFunc(tied, prefixOrder)
		for _, p := range tied[keep:] {
			r.head.Other.Add(p.Counters)
			delete(r.prefixes, p.Prefix)
		}
	}
}

func (r *refRollup) sortedPrefixes() []PrefixCount {
	out := make([]PrefixCount, 0, len(r.prefixes))
	for _, p := range r.prefixes {
		out = append(out, *p)
	}
	slices.SortFunc(out, prefixOrder)
	return out
}

// Len is the number of summaries added.
func (r *refRollup) Len() int { return r.n }

// Remote is the sum of the remote traffic added.
func (r *refRollup) Remote() traffic.Counters { return r.head.Remote }

// Country is the traffic of one country ("" for traffic no table places).
func (r *refRollup) Country(cc string) traffic.Counters {
	if e := r.countries[cc]; e != nil {
		return *e
	}
	return traffic.Counters{}
}

// Prefix is the traffic of one remote prefix, as far as the prefixes kept
// hold it (zero when it is not among them).
func (r *refRollup) Prefix(p netip.Prefix) traffic.Counters {
	if e := r.prefixes[p]; e != nil {
		return e.Counters
	}
	return traffic.Counters{}
}

// AS is the traffic of one origin AS (0 for traffic no table places).
func (r *refRollup) AS(asn uint32) traffic.Counters {
	if e := r.ases[asn]; e != nil {
		return e.Counters
	}
	return traffic.Counters{}
}

// Summary returns the sum of what was added, sorted, with at most n
// prefixes (all when n <= 0; the others in Other). Sensor is empty.
func (r *refRollup) Summary(n int) *Summary {
	s := r.head
	s.Schema = SchemaVersion
	s.Sensor = ""
	s.Prefixes = r.sortedPrefixes()
	for cc, c := range r.countries {
		s.Countries = append(s.Countries, CountryCount{Country: cc, Counters: *c})
	}
	for _, a := range r.ases {
		s.ASes = append(s.ASes, *a)
	}
	for l, c := range r.watch {
		s.Watch = append(s.Watch, WatchCount{List: l, Counters: *c})
	}
	s.Sort()
	if n > 0 {
		s.TopN(n)
	}
	return &s
}
