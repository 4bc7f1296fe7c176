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
	if key.Sensor != "" {
		return c.sensorSeriesLocked(l, from, to, key), true
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

// sensorSeriesLocked is Series of one sensor's traffic of a country or an
// AS: a point for each window that keeps its per-sensor views (a window
// past the level's ViewRetention has no point).
func (c *Collector) sensorSeriesLocked(l *level, from, to time.Time, key SeriesKey) []SeriesPoint {
	points := []SeriesPoint{}
	n, known := c.numbers[key.Sensor]
	for _, set := range c.viewSetsLocked(l, from, to) {
		start := set.start.Truncate(l.width)
		last := len(points) - 1
		if last < 0 || !points[last].Start.Equal(start) {
			points = append(points, SeriesPoint{Start: start})
			last++
		}
		if !known {
			continue
		}
		if v := viewAt(set.bySensor, n); v != nil {
			cnt, _ := key.seen(v)
			points[last].Add(cnt)
		}
	}
	return points
}

// seen returns the counters of the key (a country or an AS) in a view.
func (k SeriesKey) seen(v *SensorView) (traffic.Counters, bool) {
	if k.By == ByAS {
		return find(v.ASes, k.ASN)
	}
	key, ok := countryKey(k.Country)
	if !ok {
		return traffic.Counters{}, false
	}
	return find(v.Countries, key)
}

// WhoSeesAt returns how much traffic of a country (key.By ByCountry) or an
// origin AS (ByAS) each sensor saw in the windows of the named level that
// start in [from, to), most packets first: the same windows as Window
// reads, but only those that keep their per-sensor views (ViewsFrom).
// ok is false when the level is unknown or the key is neither.
func (c *Collector) WhoSeesAt(levelName string, key SeriesKey, from, to time.Time) (seen []SensorCount, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.levelLocked(levelName)
	if l == nil || (key.By != ByCountry && key.By != ByAS) {
		return nil, false
	}
	return c.seenLocked(l, from, to, key), true
}

// ViewsFrom is the start of the oldest window of the named level that
// keeps its per-sensor views (Options.ViewRetention): WhoSees and
// per-sensor series count nothing before it. It is zero when every window
// the level keeps has them, before the first message, or when the level
// is unknown.
func (c *Collector) ViewsFrom(levelName string) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.levelLocked(levelName)
	if l == nil || c.clock.IsZero() || l.viewKeep >= l.keep {
		return time.Time{}
	}
	return l.viewHorizon(c.clock)
}

// whoSeesLocked is seenLocked on the finest level that still keeps the
// views of the window of from, or the coarsest level.
func (c *Collector) whoSeesLocked(from, to time.Time, key SeriesKey) []SensorCount {
	if len(c.levels) == 0 {
		return nil
	}
	l := c.levels[len(c.levels)-1]
	for _, cand := range c.levels {
		if !from.UTC().Truncate(cand.width).Before(cand.viewHorizon(c.clock)) {
			l = cand
			break
		}
	}
	return c.seenLocked(l, from.UTC().Truncate(l.width), to, key)
}

// viewSet is the per-sensor views of one window, by sensor number.
type viewSet struct {
	start    time.Time
	bySensor []*SensorView
}

// viewSetsLocked returns the per-sensor views of the windows that
// windowsLocked returns, oldest first, without the windows whose views
// are gone, and with, for a coarser level, the views of the finest
// windows that a seal job is merging into it (bucket.pending).
func (c *Collector) viewSetsLocked(l *level, from, to time.Time) []viewSet {
	var out []viewSet
	for _, b := range c.windowsLocked(l, from, to) {
		if b.seen != nil {
			out = append(out, viewSet{b.started, b.seen.bySensor})
		}
	}
	if l != c.levels[0] {
		for start, b := range c.levels[0].buckets {
			into := l.buckets[start.Truncate(l.width)]
			if b.pending != nil && into != nil && into.seen != nil && // not past the views' retention
				!into.started.Before(from) && into.started.Before(to) {
				out = append(out, viewSet{start, b.pending})
			}
		}
	}
	slices.SortFunc(out, func(a, b viewSet) int { return a.start.Compare(b.start) })
	return out
}

// seenLocked sums, per sensor, the traffic of key in each window of l that
// starts in [from, to) (viewSetsLocked), most packets first.
func (c *Collector) seenLocked(l *level, from, to time.Time, key SeriesKey) []SensorCount {
	var sums []traffic.Counters // by sensor number
	var saw []bool
	for _, set := range c.viewSetsLocked(l, from, to) {
		for n, v := range set.bySensor {
			if v == nil {
				continue
			}
			cnt, ok := key.seen(v)
			if !ok {
				continue
			}
			if sums == nil {
				sums, saw = make([]traffic.Counters, len(c.ids)), make([]bool, len(c.ids))
			}
			sums[n].Add(cnt)
			saw[n] = true
		}
	}
	out := []SensorCount{}
	for n, ok := range saw {
		if ok {
			out = append(out, SensorCount{Sensor: c.ids[n], Counters: sums[n]})
		}
	}
	slices.SortFunc(out, func(a, b SensorCount) int {
		return cmp.Or(cmp.Compare(b.Total(), a.Total()), cmp.Compare(a.Sensor, b.Sensor))
	})
	return out
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
