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
	index   prefixIndex
	entries []PrefixCount
	used    []bool // by entry
	free    []int32
	// countries in order of arrival, found through countryAt (index + 1,
	// by CountryCode) or, for a code no summary that passed Check holds,
	// oddCountries.
	countries    []CountryCount
	countryAt    [CountryCodes]int32
	oddCountries map[string]int32
	asIndex      map[uint32]int32 // into ases
	ases         []ASCount
	watch        map[string]*traffic.Counters
	totals       []uint64 // prune's scratch
}

// Add adds s; s is not kept or modified.
func (r *Rollup) Add(s *Summary) {
	if r.n == 0 {
		r.index.v4 = make(map[uint64]int32, len(s.Prefixes))
		r.asIndex = make(map[uint32]int32, len(s.ASes))
		r.watch = make(map[string]*traffic.Counters, len(s.Watch))
	}
	r.n++
	r.head.mergeHead(s)
	for i := range s.Prefixes {
		p := &s.Prefixes[i]
		if j, ok := r.index.get(p.Prefix); ok {
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
		r.index.set(p.Prefix, j)
	}
	for i := range s.Countries {
		c := &s.Countries[i]
		code := CountryCode(c.Country)
		if j, ok := r.countryIndex(code, c.Country); ok {
			r.countries[j].Add(c.Counters)
			continue
		}
		j := int32(len(r.countries))
		r.countries = append(r.countries, *c)
		if code >= 0 {
			r.countryAt[code] = j + 1
		} else {
			if r.oddCountries == nil {
				r.oddCountries = make(map[string]int32)
			}
			r.oddCountries[c.Country] = j
		}
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
	if r.MaxPrefixes > 0 && r.index.len() > 2*r.MaxPrefixes {
		r.prune()
	}
}

// prefixIndex finds a Rollup's entries by prefix: IPv4 prefixes, nearly
// all of them, by prefixKey in a map of integers, which costs a fraction
// of a map of netip.Prefix (a struct with a pointer, hashed field by
// field); the others by prefix.
type prefixIndex struct {
	v4 map[uint64]int32
	v6 map[netip.Prefix]int32
}

func (x *prefixIndex) get(p netip.Prefix) (int32, bool) {
	if k, ok := prefixKey(p); ok {
		j, ok := x.v4[k]
		return j, ok
	}
	j, ok := x.v6[p]
	return j, ok
}

func (x *prefixIndex) set(p netip.Prefix, j int32) {
	if k, ok := prefixKey(p); ok {
		if x.v4 == nil {
			x.v4 = make(map[uint64]int32)
		}
		x.v4[k] = j
		return
	}
	if x.v6 == nil {
		x.v6 = make(map[netip.Prefix]int32)
	}
	x.v6[p] = j
}

func (x *prefixIndex) clear() {
	clear(x.v4)
	clear(x.v6)
}

func (x *prefixIndex) len() int { return len(x.v4) + len(x.v6) }

// countryIndex is the index of country cc, numbered code by CountryCode,
// in r.countries.
func (r *Rollup) countryIndex(code int, cc string) (int32, bool) {
	if code >= 0 {
		return r.countryAt[code] - 1, r.countryAt[code] > 0
	}
	j, ok := r.oddCountries[cc]
	return j, ok
}

func addTo[K comparable](m map[K]*traffic.Counters, k K, c traffic.Counters) {
	if e := m[k]; e != nil {
		e.Add(c)
		return
	}
	m[k] = &c
}

// remove moves entry j into Other and frees its slot; prune then
// rebuilds the index.
func (r *Rollup) remove(j int32) {
	r.head.Other.Add(r.entries[j].Counters)
	r.entries[j], r.used[j] = PrefixCount{}, false
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
	// Most of the index goes: a new one costs less than deleting from
	// it, and does not slow later lookups with the marks deletes leave.
	r.index.clear()
	for i := range r.entries {
		if r.used[i] {
			r.index.set(r.entries[i].Prefix, int32(i))
		}
	}
}

func (r *Rollup) sortedPrefixes() []PrefixCount {
	out := make([]PrefixCount, 0, r.index.len())
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
	if j, ok := r.countryIndex(CountryCode(cc), cc); ok {
		return r.countries[j].Counters
	}
	return traffic.Counters{}
}

// Prefix is the traffic of one remote prefix, as far as the prefixes kept
// hold it (zero when it is not among them).
func (r *Rollup) Prefix(p netip.Prefix) traffic.Counters {
	if j, ok := r.index.get(p); ok {
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
	s.Countries = slices.Clone(r.countries)
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
