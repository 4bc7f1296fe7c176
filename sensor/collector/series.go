package collector

import (
	"cmp"
	"maps"
	"net/netip"
	"slices"
	"time"

	"github.com/peerwatch/peerwatch/sensor/traffic"
)

// What a series follows (SeriesKey.By).
const (
	ByTotal   = "total"
	ByCountry = "country"
	ByAS      = "as"
	ByPrefix  = "prefix"
)

// SeriesKey is what a series follows: all the fleet's remote traffic
// (ByTotal), one country ("" is traffic no table places), one origin AS (0
// likewise) or one remote prefix. With Sensor set, a country's or an AS's
// series is that sensor's traffic alone (the windows keep per-sensor
// counters of countries and ASes only).
type SeriesKey struct {
	By      string
	Country string
	ASN     uint32
	Prefix  netip.Prefix
	Sensor  string
}

// SeriesPoint is the fleet's traffic of a key in one window of a level.
type SeriesPoint struct {
	Start time.Time // the window's start, UTC
	traffic.Counters
}

// Series returns, for each window of the level (as named by LevelName) that
// starts in [from, to) and holds at least one summary, the traffic of key in
// it, oldest first. A window in which the key had no traffic is a point of
// zeros; a window without any summary has no point. ok is false when the
// level is unknown, or Sensor is set with a key other than a country or an
// AS.
//
// Countries and ASes are exact. A prefix is exact while it stays among the
// TopN prefixes of the window; the traffic it had before it entered them,
// or after it left them, is in the window's Other.
func (c *Collector) Series(levelName string, from, to time.Time, key SeriesKey) (points []SeriesPoint, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.levelLocked(levelName)
	if l == nil || (key.Sensor != "" && key.By != ByCountry && key.By != ByAS) {
		return nil, false
	}
	// On a coarser level, the finest level's windows that are not sealed
	// yet (not added to the coarser levels) come as well: add them to
	// their window of the level. The buckets come oldest first.
	for _, b := range c.windowsLocked(l, from, to) {
		start := b.started.Truncate(l.width)
		n := len(points)
		if n == 0 || !points[n-1].Start.Equal(start) {
			points = append(points, SeriesPoint{Start: start})
			n++
		}
		points[n-1].Add(key.counters(b))
	}
	if points == nil {
		points = []SeriesPoint{}
	}
	return points, true
}

// Width is the width of the windows of the named level; 0 when unknown.
func (c *Collector) Width(levelName string) time.Duration {
	width, _ := c.Retention(levelName)
	return width
}

// Retention is the width of the windows of the named level and how many
// of them it keeps, the current one included; zeros when unknown. The
// levels do not change after New.
func (c *Collector) Retention(levelName string) (width time.Duration, keep int) {
	if l := c.levelLocked(levelName); l != nil {
		return l.width, l.keep
	}
	return 0, 0
}

func (k SeriesKey) counters(b *bucket) traffic.Counters {
	if k.Sensor != "" {
		var c *traffic.Counters
		switch k.By {
		case ByCountry:
			c = b.bySeen[k.Country][k.Sensor]
		case ByAS:
			c = b.byAS[k.ASN][k.Sensor]
		}
		if c == nil {
			return traffic.Counters{}
		}
		return *c
	}
	switch k.By {
	case ByCountry:
		return b.sum.Country(k.Country)
	case ByAS:
		return b.sum.AS(k.ASN)
	case ByPrefix:
		return b.sum.Prefix(k.Prefix)
	}
	return b.sum.Remote()
}

// WhoSeesAt returns how much traffic of a country (key.By ByCountry) or an
// origin AS (ByAS) each sensor saw in the windows of the named level that
// start in [from, to), most packets first: the same windows as Window
// reads. ok is false when the level is unknown or the key is neither.
func (c *Collector) WhoSeesAt(levelName string, key SeriesKey, from, to time.Time) (seen []SensorCount, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.levelLocked(levelName)
	if l == nil {
		return nil, false
	}
	switch key.By {
	case ByCountry:
		return c.seenLocked(l, from, to, func(b *bucket) map[string]*traffic.Counters { return b.bySeen[key.Country] }), true
	case ByAS:
		return c.seenLocked(l, from, to, func(b *bucket) map[string]*traffic.Counters { return b.byAS[key.ASN] }), true
	}
	return nil, false
}

// whoSeesLocked is seenLocked on the finest level that still keeps the
// window of from, or the coarsest level.
func (c *Collector) whoSeesLocked(from, to time.Time, pick func(*bucket) map[string]*traffic.Counters) []SensorCount {
	if len(c.levels) == 0 {
		return nil
	}
	l := c.levels[len(c.levels)-1]
	for _, cand := range c.levels {
		if !from.UTC().Truncate(cand.width).Before(cand.horizon(c.clock)) {
			l = cand
			break
		}
	}
	return c.seenLocked(l, from.UTC().Truncate(l.width), to, pick)
}

// seenLocked sums, per sensor, what pick returns of each window of l that
// starts in [from, to) (with the finest level's unsealed windows, as
// windowsLocked gives them), most packets first.
func (c *Collector) seenLocked(l *level, from, to time.Time, pick func(*bucket) map[string]*traffic.Counters) []SensorCount {
	sums := make(map[string]*traffic.Counters)
	for _, b := range c.windowsLocked(l, from, to) {
		for id, n := range pick(b) {
			if sums[id] == nil {
				sums[id] = new(traffic.Counters)
			}
			sums[id].Add(*n)
		}
	}
	out := make([]SensorCount, 0, len(sums))
	for id, n := range sums {
		out = append(out, SensorCount{Sensor: id, Counters: *n})
	}
	slices.SortFunc(out, func(a, b SensorCount) int {
		return cmp.Or(cmp.Compare(b.Total(), a.Total()), cmp.Compare(a.Sensor, b.Sensor))
	})
	return out
}

// addSeen adds one sensor's counters of a key to a bucket's per-key,
// per-sensor map; new entries come from slab.
func addSeen[K comparable](m map[K]map[string]*traffic.Counters, key K, sensor string, c traffic.Counters, slab *counterSlab) {
	bySensor := m[key]
	if bySensor == nil {
		bySensor = make(map[string]*traffic.Counters)
		m[key] = bySensor
	}
	e := bySensor[sensor]
	if e == nil {
		e = slab.new()
		bySensor[sensor] = e
	}
	e.Add(c)
}

// counterSlab hands out Counters from chunks: a window's per-sensor views
// take hundreds of new entries per summary, and they all live as long as
// the window.
type counterSlab []traffic.Counters

const slabChunk = 256

func (s *counterSlab) new() *traffic.Counters {
	if len(*s) == cap(*s) {
		*s = make([]traffic.Counters, 0, slabChunk)
	}
	*s = (*s)[:len(*s)+1]
	return &(*s)[len(*s)-1]
}

// Accepted counts the messages accepted since start, by kind ("summary",
// "status", "alert"); every kind is present.
func (c *Collector) Accepted() map[string]uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]uint64{"summary": 0, "status": 0, "alert": 0}
	maps.Copy(out, c.accepted)
	return out
}
