package summary

import (
	"net/netip"
	"slices"

	"github.com/peerwatch/peerwatch/internal/quickselect"
	"github.com/peerwatch/peerwatch/sensor/traffic"
)

// Rollup adds up many summaries, as Merge does, at a cost that does not
// grow with what it already holds: the collector adds every sensor's
// summary to several windows, and rebuilding a merged list for each would
// cost more than decoding.
//
// It keeps at most 2×MaxPrefixes prefixes: when it holds more, the
// MaxPrefixes largest stay and the others go to Other, so totals stay
// exact but a prefix pushed out does not come back. A zero Rollup keeps
// every prefix.
type Rollup struct {
	// MaxPrefixes bounds the prefixes kept, as above; 0 keeps all.
	MaxPrefixes int

	head Summary // everything but the lists
	n    int     // summaries added
	// The prefixes kept are entries, found by prefix through index; the
	// slots of prefixes pruned are listed in free (and false in used)
	// until a new prefix takes them. Entries in a slice rather
	// than one allocation per prefix: a window takes in and prunes
	// thousands of prefixes a second.
	index     map[netip.Prefix]int32
	entries   []PrefixCount
	used      []bool // by entry
	free      []int32
	countries map[string]*traffic.Counters
	asIndex   map[uint32]int32 // into ases
	ases      []ASCount
	watch     map[string]*traffic.Counters
	totals    []uint64 // prune's scratch
}

// Add adds s; s is not kept or modified.
func (r *Rollup) Add(s *Summary) {
	if r.n == 0 {
		r.index = make(map[netip.Prefix]int32, len(s.Prefixes))
		r.countries = make(map[string]*traffic.Counters, len(s.Countries))
		r.asIndex = make(map[uint32]int32, len(s.ASes))
		r.watch = make(map[string]*traffic.Counters, len(s.Watch))
	}
	r.n++
	r.head.mergeHead(s)
	for i := range s.Prefixes {
		p := &s.Prefixes[i]
		if j, ok := r.index[p.Prefix]; ok {
			r.entries[j].Counters.Add(p.Counters)
			continue
		}
		var j int32
		if n := len(r.free); n > 0 {
			j, r.free = r.free[n-1], r.free[:n-1]
			r.entries[j], r.used[j] = *p, true
		} else {
			j = int32(len(r.entries))
			r.entries, r.used = append(r.entries, *p), append(r.used, true)
		}
		r.index[p.Prefix] = j
	}
	for i := range s.Countries {
		addTo(r.countries, s.Countries[i].Country, s.Countries[i].Counters)
	}
	for i := range s.ASes {
		a := &s.ASes[i]
		if j, ok := r.asIndex[a.ASN]; ok {
			r.ases[j].Counters.Add(a.Counters)
			continue
		}
		r.asIndex[a.ASN] = int32(len(r.ases))
		r.ases = append(r.ases, *a)
	}
	for i := range s.Watch {
		addTo(r.watch, s.Watch[i].List, s.Watch[i].Counters)
	}
	if r.MaxPrefixes > 0 && len(r.index) > 2*r.MaxPrefixes {
		r.prune()
	}
}

func addTo[K comparable](m map[K]*traffic.Counters, k K, c traffic.Counters) {
	if e := m[k]; e != nil {
		e.Add(c)
		return
	}
	m[k] = &c
}

// remove moves entry j into Other and frees its slot.
func (r *Rollup) remove(j int32) {
	e := &r.entries[j]
	r.head.Other.Add(e.Counters)
	delete(r.index, e.Prefix)
	*e, r.used[j] = PrefixCount{}, false
	r.free = append(r.free, j)
}

// prune keeps the MaxPrefixes largest prefixes and moves the others into
// Other. It finds the MaxPrefixes-th largest total by selection over the
// totals alone, which costs far less than sorting anything; among prefixes
// tied at that total, the first by address stay, as in Summary.Sort.
func (r *Rollup) prune() {
	totals := r.totals[:0]
	for i := range r.entries {
		if r.used[i] {
			totals = append(totals, r.entries[i].Total())
		}
	}
	r.totals = totals
	threshold := quickselect.Nth(totals, len(totals)-r.MaxPrefixes)
	above := 0 // kept for sure: more than the threshold
	for _, t := range totals {
		if t > threshold {
			above++
		}
	}
	var tied []int32
	for i := range r.entries {
		if !r.used[i] {
			continue
		}
		switch t := r.entries[i].Total(); {
		case t < threshold:
			r.remove(int32(i))
		case t == threshold:
			tied = append(tied, int32(i))
		}
	}
	if keep := r.MaxPrefixes - above; len(tied) > keep {
		slices.SortFunc(tied, func(a, b int32) int { return prefixOrder(r.entries[a], r.entries[b]) })
		for _, j := range tied[keep:] {
			r.remove(j)
		}
	}
}

func (r *Rollup) sortedPrefixes() []PrefixCount {
	out := make([]PrefixCount, 0, len(r.index))
	for i := range r.entries {
		if r.used[i] {
			out = append(out, r.entries[i])
		}
	}
	slices.SortFunc(out, prefixOrder)
	return out
}

// Len is the number of summaries added.
func (r *Rollup) Len() int { return r.n }

// Remote is the sum of the remote traffic added.
func (r *Rollup) Remote() traffic.Counters { return r.head.Remote }

// Country is the traffic of one country ("" for traffic no table places).
func (r *Rollup) Country(cc string) traffic.Counters {
	if e := r.countries[cc]; e != nil {
		return *e
	}
	return traffic.Counters{}
}

// Prefix is the traffic of one remote prefix, as far as the prefixes kept
// hold it (zero when it is not among them).
func (r *Rollup) Prefix(p netip.Prefix) traffic.Counters {
	if j, ok := r.index[p]; ok {
		return r.entries[j].Counters
	}
	return traffic.Counters{}
}

// AS is the traffic of one origin AS (0 for traffic no table places).
func (r *Rollup) AS(asn uint32) traffic.Counters {
	if j, ok := r.asIndex[asn]; ok {
		return r.ases[j].Counters
	}
	return traffic.Counters{}
}

// Summary returns the sum of what was added, sorted, with at most n
// prefixes (all when n <= 0; the others in Other). Sensor is empty.
func (r *Rollup) Summary(n int) *Summary {
	s := r.head
	s.Schema = SchemaVersion
	s.Sensor = ""
	s.Prefixes = r.sortedPrefixes()
	for cc, c := range r.countries {
		s.Countries = append(s.Countries, CountryCount{Country: cc, Counters: *c})
	}
	s.ASes = slices.Clone(r.ases)
	for l, c := range r.watch {
		s.Watch = append(s.Watch, WatchCount{List: l, Counters: *c})
	}
	s.Sort()
	if n > 0 {
		s.TopN(n)
	}
	return &s
}
