package collector

import (
	"cmp"
	"hash/fnv"
	"slices"
	"time"

	"github.com/peerwatch/peerwatch/sensor/summary"
	"github.com/peerwatch/peerwatch/sensor/traffic"
)

// Per-sensor views: what each sensor saw of each country and of its top
// ASes (MaxSeenASes per summary) in one window, for WhoSees and per-sensor
// series. At 10,000 sensors a window holds millions of such counters, so:
//
//   - each sensor's counters are two slices sorted by key (countries and
//     ASes apart), not maps: adding a summary or sealing a minute into the
//     hour is a linear merge of sorted slices;
//   - a SensorView is never changed once a window holds it; an update
//     builds a new one and swaps the pointer (copy on write). So a seal or
//     a checkpoint takes, under the collector's lock, only a copy of a
//     window's pointers, and merges or encodes them outside it;
//   - sensors are numbered in order of arrival (Collector.ids), and a
//     window keeps its views in a slice indexed by that number;
//   - each sensor belongs to one of ViewShards shards (by a hash of its
//     id), the unit in which the store writes views: a checkpoint writes
//     the shards that changed.

// Seen is one key's counters (a country or an ASN) in a SensorView.
type Seen[K cmp.Ordered] struct {
	Key K
	traffic.Counters
}

// SensorView is one sensor's traffic per country and per origin AS in one
// window, both sorted by key without repeats. A window never changes a
// SensorView it holds: it makes a new one. Countries are keyed by
// summary.CountryCode, in the order of the codes' strings: a number
// compares faster than a string, and views without pointers are not
// scanned by the garbage collector.
type SensorView struct {
	Sensor    string
	Countries []Seen[uint16]
	ASes      []Seen[uint32]
}

// ViewShards is the number of shards of a window's per-sensor views.
const ViewShards = 256

// ViewShard is the shard of the sensor id: a hash, so that it is the same
// across restarts and collectors whatever the order the sensors came in.
func ViewShard(id string) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(id))
	return int(h.Sum32() % ViewShards)
}

// Bounds of one sensor's view of one window, whatever its sensor sends:
// the store must read back what the collector holds. Countries are two
// capital letters or "" (summary.ValidCountry). A view holds at most
// MaxViewASes ASes: once full, ASes it does not hold yet are left out of
// it (a sensor's per-AS counts are a lower bound for ASes outside its top
// MaxSeenASes anyway; the fleet-wide AS totals count every AS). A sensor
// sending its top 100 of ever new ASes every 10 s would reach it in half
// an hour; real ones see a few thousand origin ASes a day.
const (
	MaxViewCountries = summary.CountryCodes
	MaxViewASes      = 20_000
)

// mergeSeen returns the sorted union of a and b, the counters of a key in
// both added, with at most limit keys: keys of b that a lacks are left out
// once the union would pass it (a itself holds at most limit). Neither is
// changed.
func mergeSeen[K cmp.Ordered](a, b []Seen[K], limit int) []Seen[K] {
	out := make([]Seen[K], 0, min(len(a)+len(b), max(limit, len(a))))
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		switch cmp.Compare(a[i].Key, b[j].Key) {
		case -1:
			out = append(out, a[i])
			i++
		case 1:
			if len(out)+len(a)-i < limit { // room for it and the rest of a
				out = append(out, b[j])
			}
			j++
		default:
			e := a[i]
			e.Add(b[j].Counters)
			out = append(out, e)
			i++
			j++
		}
	}
	out = append(out, a[i:]...)
	rest := b[j:]
	return append(out, rest[:min(len(rest), max(limit-len(out), 0))]...)
}

// mergeViews returns a new view with the counters of a and b (either may
// be nil, not both).
func mergeViews(a, b *SensorView) *SensorView {
	switch {
	case a == nil:
		return b
	case b == nil:
		return a
	}
	return &SensorView{Sensor: a.Sensor, Countries: mergeSeen(a.Countries, b.Countries, MaxViewCountries), ASes: mergeSeen(a.ASes, b.ASes, MaxViewASes)}
}

// viewScratch is memory that summaryView reuses (under the collector's lock).
type viewScratch struct {
	totals    []uint64
	countries []Seen[uint16]
	ases      []Seen[uint32]
}

// summaryView merges what the summary of sensor id adds to the view old
// (nil for none) into a new view: its countries, and its MaxSeenASes
// largest ASes.
func summaryView(old *SensorView, id string, sum *summary.Summary, s *viewScratch) *SensorView {
	s.countries = s.countries[:0]
	for i := range sum.Countries {
		// Decode checked every code.
		if key, ok := countryKey(sum.Countries[i].Country); ok {
			s.countries = append(s.countries, Seen[uint16]{Key: key, Counters: sum.Countries[i].Counters})
		}
	}
	s.ases = s.ases[:0]
	eachTopAS(sum.ASes, MaxSeenASes, &s.totals, func(a *summary.ASCount) {
		s.ases = append(s.ases, Seen[uint32]{Key: a.ASN, Counters: a.Counters})
	})
	// A summary's countries and ASes are distinct (summary.Decode checks
	// it), so sorted they are a valid view.
	slices.SortFunc(s.countries, func(a, b Seen[uint16]) int { return cmp.Compare(a.Key, b.Key) })
	slices.SortFunc(s.ases, func(a, b Seen[uint32]) int { return cmp.Compare(a.Key, b.Key) })
	if old == nil {
		old = &SensorView{Sensor: id}
	}
	return &SensorView{Sensor: id, Countries: mergeSeen(old.Countries, s.countries, MaxViewCountries), ASes: mergeSeen(old.ASes, s.ases, MaxViewASes)}
}

// countryKey is the key of country cc in a view: its summary.CountryCode;
// false for a string that is not a country code.
func countryKey(cc string) (uint16, bool) {
	code := summary.CountryCode(cc)
	return uint16(max(code, 0)), code >= 0
}

// find returns the counters of key in a sorted view slice.
func find[K cmp.Ordered](s []Seen[K], key K) (traffic.Counters, bool) {
	i, ok := slices.BinarySearchFunc(s, key, func(e Seen[K], k K) int { return cmp.Compare(e.Key, k) })
	if !ok {
		return traffic.Counters{}, false
	}
	return s[i].Counters, true
}

// views are the per-sensor views of one window.
type views struct {
	// bySensor is indexed by the collector's sensor number; nil where
	// the sensor sent nothing to the window.
	bySensor []*SensorView
	// dirty: the shards changed since the last Checkpoint.
	dirty [ViewShards]bool
}

// get returns the view of sensor n, nil when none.
func (v *views) get(n int) *SensorView { return viewAt(v.bySensor, n) }

// set replaces the view of sensor n (in shard).
func (v *views) set(n, shard int, sv *SensorView) {
	if n >= len(v.bySensor) {
		v.bySensor = append(v.bySensor, make([]*SensorView, n+1-len(v.bySensor))...)
	}
	v.bySensor[n] = sv
	v.dirty[shard] = true
}

// sensorNumberLocked returns the number of sensor id, given at its first
// view.
func (c *Collector) sensorNumberLocked(id string) int {
	n, ok := c.numbers[id]
	if !ok {
		n = len(c.ids)
		c.numbers[id] = n
		c.ids = append(c.ids, id)
		c.shards = append(c.shards, uint8(ViewShard(id)))
	}
	return n
}

// RewriteViews marks every shard of the per-sensor views of the window of
// the level at start as changed, so that the next Checkpoint gives all of
// the window's views: for a store that would otherwise read them from too
// many pieces. A window that is not kept, or whose views are gone, is
// left as it is.
func (c *Collector) RewriteViews(level string, start time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, l := range c.levels {
		if l.name != level {
			continue
		}
		for s, b := range l.buckets {
			if s.Equal(start) && b.seen != nil {
				b.dirty = true
				for i := range b.seen.dirty {
					b.seen.dirty[i] = true
				}
			}
		}
	}
}
