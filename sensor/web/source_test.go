package web

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/peerwatch/peerwatch/sensor/summary"
	"github.com/peerwatch/peerwatch/sensor/traffic"
)

// t0 is the tests' now.
var t0 = time.Date(2026, 3, 14, 12, 0, 0, 0, time.UTC)

func clock() time.Time { return t0 }

// fakeSource is an in-memory Source: summaries built by hand, per level.
type fakeSource struct {
	mu       sync.Mutex
	health   Health
	levels   map[string][]*summary.Summary
	active   []Alert
	recent   []Alert
	tables   []Labels
	err      error // returned by Latest, Window and Series
	noData   bool  // Window answers ErrNoData
	windowOf string
}

func (f *fakeSource) Health() Health {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.health
}

func (f *fakeSource) Latest() (*summary.Summary, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	iv := f.levels["interval"]
	if len(iv) == 0 {
		return nil, nil
	}
	return iv[len(iv)-1], nil
}

// Window merges the summaries of one level (1m unless set) inside [from, to].
func (f *fakeSource) Window(from, to time.Time) (*summary.Summary, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	if f.noData {
		return nil, fmt.Errorf("window: %w", ErrNoData)
	}
	level := f.windowOf
	if level == "" {
		level = "1m"
	}
	w := &summary.Summary{Schema: summary.SchemaVersion, Sensor: f.health.Sensor}
	for _, s := range f.levels[level] {
		if !s.Start.Before(from) && !s.End.After(to) {
			w.Merge(clone(s))
		}
	}
	return w, nil
}

func (f *fakeSource) Series(level string, from, to time.Time) ([]*summary.Summary, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	var out []*summary.Summary
	for _, s := range f.levels[level] {
		if !s.Start.Before(from) && s.Start.Before(to) {
			out = append(out, s)
		}
	}
	return out, nil
}

func (f *fakeSource) Alerts() (active, recent []Alert) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.active, f.recent
}

func (f *fakeSource) Lookup(addr netip.Addr) (Labels, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	best := -1
	for i, l := range f.tables {
		if l.Prefix.Contains(addr) && (best < 0 || l.Prefix.Bits() > f.tables[best].Prefix.Bits()) {
			best = i
		}
	}
	if best < 0 {
		return Labels{}, false
	}
	return f.tables[best], true
}

// add appends an interval (and its own 1m summary) as the datapath would.
func (f *fakeSource) add(s *summary.Summary) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.levels["interval"] = append(f.levels["interval"], s)
	f.levels["1m"] = append(f.levels["1m"], s)
}

func clone(s *summary.Summary) *summary.Summary {
	c := *s
	c.Prefixes = slices.Clone(s.Prefixes)
	c.Countries = slices.Clone(s.Countries)
	c.ASes = slices.Clone(s.ASes)
	c.Watch = slices.Clone(s.Watch)
	return &c
}

// remoteSpec is a remote prefix of the fixture and how it talks.
type remoteSpec struct {
	prefix  string
	country string
	asn     uint32
	asName  string
	pps     float64    // packets per second, both directions, at scale 1
	in      float64    // share of packets that come in
	sizeIn  uint64     // bytes per packet in
	sizeOut uint64     // bytes per packet out
	classes [5]float64 // share of packets per class (tcp, udp, icmp, tunnel, other)
	watch   []string   // watch lists it matches
}

// peering is a peering link's mix: big content networks first, the watched
// ones small. With topN 12 the last two prefixes end up in "other".
var peering = []remoteSpec{
	{prefix: "142.250.0.0/15", country: "US", asn: 15169, asName: "GOOGLE", pps: 520e3, in: 0.78, sizeIn: 1180, sizeOut: 110, classes: [5]float64{0.55, 0.44, 0.005, 0, 0.005}},
	{prefix: "2a03:2880::/29", country: "IE", asn: 32934, asName: "FACEBOOK", pps: 310e3, in: 0.74, sizeIn: 1050, sizeOut: 120, classes: [5]float64{0.62, 0.37, 0.01, 0, 0}},
	{prefix: "104.16.0.0/13", country: "US", asn: 13335, asName: "CLOUDFLARENET", pps: 240e3, in: 0.7, sizeIn: 980, sizeOut: 140, classes: [5]float64{0.7, 0.29, 0.01, 0, 0}},
	{prefix: "23.32.0.0/11", country: "NL", asn: 20940, asName: "AKAMAI-ASN1", pps: 150e3, in: 0.8, sizeIn: 1300, sizeOut: 90, classes: [5]float64{0.96, 0.03, 0.01, 0, 0}},
	{prefix: "52.84.0.0/15", country: "US", asn: 16509, asName: "AMAZON-02", pps: 120e3, in: 0.72, sizeIn: 1200, sizeOut: 100, classes: [5]float64{0.9, 0.09, 0.01, 0, 0}},
	{prefix: "122.56.0.0/14", country: "NZ", asn: 4648, asName: "Spark New Zealand", pps: 80e3, in: 0.5, sizeIn: 700, sizeOut: 650, classes: [5]float64{0.6, 0.25, 0.01, 0.12, 0.02}},
	{prefix: "2001:4860::/32", country: "US", asn: 15169, asName: "GOOGLE", pps: 60e3, in: 0.76, sizeIn: 1150, sizeOut: 110, classes: [5]float64{0.5, 0.49, 0.01, 0, 0}},
	{prefix: "95.108.128.0/17", country: "RU", asn: 13238, asName: "YANDEX", pps: 25e3, in: 0.6, sizeIn: 900, sizeOut: 200, classes: [5]float64{0.85, 0.14, 0.01, 0, 0}},
	{prefix: "111.0.0.0/10", country: "CN", asn: 9808, asName: "China Mobile", pps: 20e3, in: 0.55, sizeIn: 800, sizeOut: 300, classes: [5]float64{0.7, 0.25, 0.02, 0.02, 0.01}},
	{prefix: "185.220.100.0/22", country: "DE", asn: 205100, asName: "F3 Netze", pps: 9e3, in: 0.5, sizeIn: 600, sizeOut: 600, classes: [5]float64{0.9, 0.05, 0.01, 0.04, 0}, watch: []string{"tor-exits"}},
	{prefix: "198.51.100.0/24", pps: 4e3, in: 0.5, sizeIn: 400, sizeOut: 400, classes: [5]float64{0.3, 0.6, 0.1, 0, 0}},
	{prefix: "175.45.176.0/22", country: "KP", asn: 131279, asName: "Ryugyong-dong", pps: 3e3, in: 0.45, sizeIn: 520, sizeOut: 480, classes: [5]float64{0.4, 0.2, 0.05, 0.35, 0}, watch: []string{"kp"}},
	{prefix: "210.52.109.0/24", country: "CN", asn: 4837, asName: "CHINA169-BACKBONE", pps: 1.5e3, in: 0.5, sizeIn: 500, sizeOut: 500, classes: [5]float64{0.5, 0.3, 0.1, 0.1, 0}, watch: []string{"kp-transit"}},
	{prefix: "2001:db8:1::/48", pps: 1e3, in: 0.5, sizeIn: 300, sizeOut: 300, classes: [5]float64{0.2, 0.7, 0.1, 0, 0}},
}

const fixtureTopN = 12

// interval builds a consistent summary of the mix over [start, start+d) at
// the given scale: integer counters, exact aggregates, top N prefixes with
// the rest in Other, global buckets so that seen = remote + buckets.
func interval(specs []remoteSpec, start time.Time, d time.Duration, scale float64, topN int) *summary.Summary {
	s := &summary.Summary{Schema: summary.SchemaVersion, Sensor: "akl-ix-01", Start: start, End: start.Add(d)}
	countries := map[string]*summary.CountryCount{}
	ases := map[uint32]*summary.ASCount{}
	watch := map[string]*summary.WatchCount{}
	for _, sp := range specs {
		total := uint64(math.Round(sp.pps * scale * d.Seconds()))
		if total == 0 {
			continue
		}
		var c traffic.Counters
		c.Packets[traffic.In] = uint64(math.Round(float64(total) * sp.in))
		c.Packets[traffic.Out] = total - c.Packets[traffic.In]
		c.Bytes[traffic.In] = c.Packets[traffic.In] * sp.sizeIn
		c.Bytes[traffic.Out] = c.Packets[traffic.Out] * sp.sizeOut
		left := total
		for cl := range traffic.NumClasses - 1 {
			n := min(left, uint64(math.Round(float64(total)*sp.classes[cl])))
			c.Class[cl] = n
			left -= n
		}
		c.Class[traffic.Other] += left
		s.Remote.Add(c)
		s.Prefixes = append(s.Prefixes, summary.PrefixCount{Prefix: netip.MustParsePrefix(sp.prefix), Country: sp.country, ASN: sp.asn, ASName: sp.asName, Counters: c})
		if countries[sp.country] == nil {
			countries[sp.country] = &summary.CountryCount{Country: sp.country}
		}
		countries[sp.country].Add(c)
		if ases[sp.asn] == nil {
			ases[sp.asn] = &summary.ASCount{ASN: sp.asn, ASName: sp.asName}
		}
		ases[sp.asn].Add(c)
		for _, l := range sp.watch {
			if watch[l] == nil {
				watch[l] = &summary.WatchCount{List: l}
			}
			watch[l].Add(c)
		}
	}
	for _, c := range countries {
		s.Countries = append(s.Countries, *c)
	}
	for _, a := range ases {
		s.ASes = append(s.ASes, *a)
	}
	for _, w := range watch {
		s.Watch = append(s.Watch, *w)
	}
	remote := s.Remote.Total()
	s.Globals = traffic.Globals{NonIP: remote / 2000, Malformed: remote / 3_000_000, BothLocal: remote / 400, NeitherLocal: remote / 5000}
	s.Globals.Seen = remote + s.Globals.Buckets()
	s.Sort()
	s.TopN(topN)
	return s
}

// scaleAt is the fixture's traffic shape: a daily wave with some noise.
func scaleAt(t time.Time) float64 {
	day := float64(t.Unix()%86400) / 86400
	h := uint64(t.Unix()/10) * 0x9e3779b97f4a7c15
	noise := float64(h>>40)/float64(1<<24)*0.05 - 0.025
	return 0.75 + 0.35*math.Sin(2*math.Pi*(day-0.3)) + noise
}

func mustCheck(tb testing.TB, ss ...*summary.Summary) {
	tb.Helper()
	for _, s := range ss {
		if err := s.Check(); err != nil {
			tb.Fatalf("fixture summary %s: %v", s.Start, err)
		}
	}
}

// fixtureHealth is a sensor at a peering point, 9 days up.
func fixtureHealth() Health {
	return Health{
		Version: "0.4.1", Board: "nanopi-r6s", Kernel: "6.12.20-arm64", Sensor: "akl-ix-01",
		Started: t0.Add(-(9*24*time.Hour + 4*time.Hour + 12*time.Minute)),
		Interfaces: []Interface{
			{Name: "eth0", Mode: "xdp-native", State: "attached"},
			{Name: "eth1", Mode: "tcx", State: "attached"},
			{Name: "eth2", Mode: "xdp-generic", State: "down", Err: "carrier lost 2026-03-14 09:12 UTC"},
		},
		LastDrain:     t0.Add(-2300 * time.Millisecond),
		DrainInterval: 10 * time.Second,
		DrainDuration: 3200 * time.Microsecond,
		Store:         StoreHealth{Path: "/var/lib/peerwatch/store.db", Size: 187 << 20, MaxSize: 512 << 20, Evicted: 1234},
		Uplink:        UplinkHealth{State: "connected", Outbox: 3},
	}
}

// newFixture is the sensor of most tests: a week of hourly summaries, a day
// of minutes, an hour of 10 s intervals, alerts and a prefix table.
func newFixture(tb testing.TB) *fakeSource {
	tb.Helper()
	f := &fakeSource{health: fixtureHealth(), levels: map[string][]*summary.Summary{}}
	step := 10 * time.Second
	for t := t0.Add(-time.Hour); t.Before(t0); t = t.Add(step) {
		f.levels["interval"] = append(f.levels["interval"], interval(peering, t, step, scaleAt(t), fixtureTopN))
	}
	for t := t0.Add(-24 * time.Hour); t.Before(t0); t = t.Add(time.Minute) {
		var m *summary.Summary
		if t.Before(t0.Add(-time.Hour)) {
			m = interval(peering, t, time.Minute, scaleAt(t), fixtureTopN)
		} else {
			m = &summary.Summary{Schema: summary.SchemaVersion, Sensor: "akl-ix-01"}
			for _, iv := range f.levels["interval"] {
				if !iv.Start.Before(t) && iv.Start.Before(t.Add(time.Minute)) {
					m.Merge(clone(iv))
				}
			}
			m.TopN(fixtureTopN)
		}
		f.levels["1m"] = append(f.levels["1m"], m)
	}
	for t := t0.Add(-7 * 24 * time.Hour); t.Before(t0); t = t.Add(time.Hour) {
		f.levels["1h"] = append(f.levels["1h"], interval(peering, t, time.Hour, scaleAt(t), fixtureTopN))
	}
	for _, level := range levels {
		mustCheck(tb, f.levels[level]...)
	}
	for _, s := range f.levels["1h"] {
		f.health.Totals.Add(s.Globals)
		f.health.Remote.Add(s.Remote)
	}
	for _, sp := range peering {
		if sp.country != "" || sp.asn != 0 {
			f.tables = append(f.tables, Labels{Prefix: netip.MustParsePrefix(sp.prefix), Country: sp.country, ASN: sp.asn, ASName: sp.asName, Table: "ipdb"})
		}
	}
	f.active = []Alert{{
		ID: "kp-1741952", List: "kp", Reason: "3.4 kpps over a 7-day baseline of 410 pps (8.3×)",
		Start: t0.Add(-28 * time.Minute), PeakPPS: 3412.5, PeakBPS: 13.9e6, Packets: 5_418_220, Bytes: 2_712_004_118,
		Prefixes: []netip.Prefix{netip.MustParsePrefix("175.45.176.0/22")},
	}}
	f.recent = []Alert{
		{
			ID: "tor-1741930", List: "tor-exits", Reason: "12 kpps over a baseline of 8.8 kpps (1.4×)",
			Start: t0.Add(-5 * time.Hour), End: t0.Add(-4*time.Hour - 20*time.Minute), PeakPPS: 12_204, PeakBPS: 58.6e6, Packets: 25_118_400, Bytes: 15_071_040_000,
			Prefixes: []netip.Prefix{netip.MustParsePrefix("185.220.100.0/22"), netip.MustParsePrefix("185.220.101.0/24"), netip.MustParsePrefix("185.220.102.0/24"), netip.MustParsePrefix("185.220.103.0/24")},
		},
		{
			ID: "kpt-1741800", List: "kp-transit", Reason: "new prefix: 210.52.109.0/24 not seen in the baseline",
			Start: t0.Add(-26 * time.Hour), End: t0.Add(-25 * time.Hour), PeakPPS: 2100, PeakBPS: 8.4e6, Packets: 3_900_000, Bytes: 1_950_000_000,
			Prefixes: []netip.Prefix{netip.MustParsePrefix("210.52.109.0/24")},
		},
	}
	return f
}

// newFreshSource is a sensor that has just started: no interval yet.
func newFreshSource() *fakeSource {
	return &fakeSource{
		health: Health{
			Version: "0.4.1", Sensor: "lab-1", Started: t0.Add(-4 * time.Second), DrainInterval: 10 * time.Second,
			Interfaces: []Interface{{Name: "veth0", Mode: "xdp-generic", State: "attached"}},
			Uplink:     UplinkHealth{State: "disabled"},
		},
		levels: map[string][]*summary.Summary{},
		noData: true,
	}
}

var errStoreDown = errors.New("store: database is closed")

func TestFixtureConsistent(t *testing.T) {
	f := newFixture(t)
	w, err := f.Window(t0.Add(-time.Hour), t0)
	if err != nil {
		t.Fatal(err)
	}
	mustCheck(t, w)
	var sum traffic.Counters
	for _, s := range f.levels["interval"] {
		sum.Add(s.Remote)
	}
	if sum != w.Remote {
		t.Errorf("the last hour's 1m window %+v != its intervals %+v", w.Remote, sum)
	}
}
