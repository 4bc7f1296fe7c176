package web

import (
	"fmt"
	"net/http"
	"net/netip"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/peerwatch/peerwatch/sensor/summary"
	"github.com/peerwatch/peerwatch/sensor/traffic"
)

// countryTotals sums the countries of summaries by label and direction, as
// the collector labels them.
func countryTotals(ss ...*summary.Summary) map[string][2]uint64 {
	m := map[string][2]uint64{}
	for _, s := range ss {
		for _, c := range s.Countries {
			label := c.Country
			if label == "" {
				label = "unknown"
			}
			v := m[label]
			v[0] += c.Packets[traffic.In]
			v[1] += c.Packets[traffic.Out]
			m[label] = v
		}
	}
	return m
}

func watchTotals(ss ...*summary.Summary) map[string][2]uint64 {
	m := map[string][2]uint64{}
	for _, s := range ss {
		for _, w := range s.Watch {
			v := m[w.List]
			v[0] += w.Packets[traffic.In]
			v[1] += w.Packets[traffic.Out]
			m[w.List] = v
		}
	}
	return m
}

func exposition(name, help, typ string, labels map[string][2]uint64, label string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		for d, dir := range []string{"in", "out"} {
			// The text format's comparison wants the labels sorted by name.
			if label < "direction" {
				fmt.Fprintf(&b, "%s{%s=%q,direction=%q} %d\n", name, label, k, dir, labels[k][d])
			} else {
				fmt.Fprintf(&b, "%s{direction=%q,%s=%q} %d\n", name, dir, label, k, labels[k][d])
			}
		}
	}
	return b.String()
}

const (
	countryHelp = `Remote packets by country and direction, counted from this process's first scrape of the store; the first 50 countries to be labelled keep their label, the rest are summed as "other"; "unknown" is traffic no table places.`
	watchHelp   = `Packets that matched a watch list, by direction, counted like peerwatch_country_packets_total.`
)

func TestMetrics(t *testing.T) {
	f := newFixture(t)
	reg := prometheus.NewRegistry()
	now := t0
	h := newHandler(f, Options{Registry: reg, Now: func() time.Time { return now }})
	hl := f.health

	want := fmt.Sprintf(`# HELP peerwatch_packets_total Packets exchanged with remote addresses since the sensor started, by direction (in: remote to local).
# TYPE peerwatch_packets_total counter
peerwatch_packets_total{direction="in"} %d
peerwatch_packets_total{direction="out"} %d
# HELP peerwatch_bytes_total Bytes (frames as seen at the hook) exchanged with remote addresses since the sensor started, by direction.
# TYPE peerwatch_bytes_total counter
peerwatch_bytes_total{direction="in"} %d
peerwatch_bytes_total{direction="out"} %d
# HELP peerwatch_class_packets_total Remote packets since the sensor started, by protocol class (tcp, udp, icmp, tunnel, other).
# TYPE peerwatch_class_packets_total counter
peerwatch_class_packets_total{class="tcp"} %d
peerwatch_class_packets_total{class="udp"} %d
peerwatch_class_packets_total{class="icmp"} %d
peerwatch_class_packets_total{class="tunnel"} %d
peerwatch_class_packets_total{class="other"} %d
# HELP peerwatch_global_packets_total Packets in the global buckets since the sensor started: seen is every packet; seen = remote + the other buckets.
# TYPE peerwatch_global_packets_total counter
peerwatch_global_packets_total{bucket="seen"} %d
peerwatch_global_packets_total{bucket="non_ip"} %d
peerwatch_global_packets_total{bucket="malformed"} %d
peerwatch_global_packets_total{bucket="both_local"} %d
peerwatch_global_packets_total{bucket="neither_local"} %d
peerwatch_global_packets_total{bucket="overflow"} 0
# HELP peerwatch_drain_duration_seconds How long the last drain of the kernel counters took.
# TYPE peerwatch_drain_duration_seconds gauge
peerwatch_drain_duration_seconds 0.0032
# HELP peerwatch_last_drain_timestamp_seconds Unix time of the end of the last drain.
# TYPE peerwatch_last_drain_timestamp_seconds gauge
peerwatch_last_drain_timestamp_seconds 1.7734895977e+09
# HELP peerwatch_drain_interval_seconds Configured interval between drains.
# TYPE peerwatch_drain_interval_seconds gauge
peerwatch_drain_interval_seconds 10
# HELP peerwatch_store_bytes Size of the embedded store on disk.
# TYPE peerwatch_store_bytes gauge
peerwatch_store_bytes 1.96083712e+08
# HELP peerwatch_store_max_bytes Bound of the embedded store's size; 0 when unbounded.
# TYPE peerwatch_store_max_bytes gauge
peerwatch_store_max_bytes 5.36870912e+08
# HELP peerwatch_store_evicted_total Summaries evicted from the store to keep it under its bound, since the sensor started.
# TYPE peerwatch_store_evicted_total counter
peerwatch_store_evicted_total 1234
# HELP peerwatch_interface_up 1 when the counter program is attached to the interface and counts, else 0.
# TYPE peerwatch_interface_up gauge
peerwatch_interface_up{interface="eth0",mode="xdp-native"} 1
peerwatch_interface_up{interface="eth1",mode="tcx"} 1
peerwatch_interface_up{interface="eth2",mode="xdp-generic"} 0
# HELP peerwatch_invariant_ok 1 when the last interval reconciled (seen = remote + buckets), else 0.
# TYPE peerwatch_invariant_ok gauge
peerwatch_invariant_ok 1
# HELP peerwatch_uplink_outbox Summaries in the outbox, waiting for the broker's acknowledgement.
# TYPE peerwatch_uplink_outbox gauge
peerwatch_uplink_outbox 3
# HELP peerwatch_build_info The sensor's version, board and kernel; always 1.
# TYPE peerwatch_build_info gauge
peerwatch_build_info{board="nanopi-r6s",kernel="6.12.20-arm64",sensor="akl-ix-01",version="0.4.1"} 1
# HELP peerwatch_start_time_seconds Unix time the sensor started.
# TYPE peerwatch_start_time_seconds gauge
peerwatch_start_time_seconds %d
`,
		hl.Remote.Packets[0], hl.Remote.Packets[1], hl.Remote.Bytes[0], hl.Remote.Bytes[1],
		hl.Remote.Class[0], hl.Remote.Class[1], hl.Remote.Class[2], hl.Remote.Class[3], hl.Remote.Class[4],
		hl.Totals.Seen, hl.Totals.NonIP, hl.Totals.Malformed, hl.Totals.BothLocal, hl.Totals.NeitherLocal,
		hl.Started.Unix())
	names := []string{"peerwatch_packets_total", "peerwatch_bytes_total", "peerwatch_class_packets_total", "peerwatch_global_packets_total",
		"peerwatch_drain_duration_seconds", "peerwatch_last_drain_timestamp_seconds", "peerwatch_drain_interval_seconds",
		"peerwatch_store_bytes", "peerwatch_store_max_bytes", "peerwatch_store_evicted_total", "peerwatch_interface_up",
		"peerwatch_invariant_ok", "peerwatch_uplink_outbox", "peerwatch_build_info", "peerwatch_start_time_seconds"}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), names...); err != nil {
		t.Fatal(err)
	}

	// Countries and watch lists: seeded from the window since start (here
	// the fixture's day of minutes), with "other" empty: 9 countries fit.
	days := f.levels["1m"]
	countries := countryTotals(days...)
	countries["other"] = [2]uint64{}
	watch := watchTotals(days...)
	if len(countries) != 10 || countries["KP"][0] == 0 || countries["unknown"][0] == 0 || len(watch) != 3 {
		t.Fatalf("fixture: countries %v, watch %v", countries, watch)
	}
	wantLabelled := exposition("peerwatch_country_packets_total", countryHelp, "counter", countries, "country") +
		exposition("peerwatch_watch_packets_total", watchHelp, "counter", watch, "list")
	if err := testutil.GatherAndCompare(reg, strings.NewReader(wantLabelled), "peerwatch_country_packets_total", "peerwatch_watch_packets_total"); err != nil {
		t.Fatal(err)
	}

	// A new interval is added exactly once, however often Prometheus scrapes.
	next := interval(peering, t0, 10*time.Second, 1.3, fixtureTopN)
	mustCheck(t, next)
	f.add(next)
	now = t0.Add(11 * time.Second)
	for range 3 {
		countries = countryTotals(append(days[:len(days):len(days)], next)...)
		countries["other"] = [2]uint64{}
		watch = watchTotals(append(days[:len(days):len(days)], next)...)
		wantLabelled = exposition("peerwatch_country_packets_total", countryHelp, "counter", countries, "country") +
			exposition("peerwatch_watch_packets_total", watchHelp, "counter", watch, "list")
		if err := testutil.GatherAndCompare(reg, strings.NewReader(wantLabelled), "peerwatch_country_packets_total", "peerwatch_watch_packets_total"); err != nil {
			t.Fatal(err)
		}
	}

	// A broken invariant, an interface gone.
	f.mu.Lock()
	f.health.Invariant = fmt.Errorf("%w: seen 10 != remote 9 + buckets 0", summary.ErrInconsistent)
	f.health.Interfaces[0].State = "missing"
	f.mu.Unlock()
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`# HELP peerwatch_invariant_ok 1 when the last interval reconciled (seen = remote + buckets), else 0.
# TYPE peerwatch_invariant_ok gauge
peerwatch_invariant_ok 0
`), "peerwatch_invariant_ok"); err != nil {
		t.Error(err)
	}

	// And over HTTP, in the text format.
	res, body := do(t, h, http.MethodGet, "/metrics")
	if res.StatusCode != http.StatusOK || !strings.Contains(body, `peerwatch_interface_up{interface="eth0",mode="xdp-native"} 0`) ||
		!strings.Contains(body, `peerwatch_country_packets_total{country="KP",direction="in"}`) {
		t.Errorf("/metrics: %d\n%s", res.StatusCode, body)
	}
}

// manyCountries is a mix of 80 countries, the first the biggest.
func manyCountries(n int) []remoteSpec {
	var specs []remoteSpec
	for i := range n {
		specs = append(specs, remoteSpec{
			prefix:  netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i), 0, 0}), 16).String(),
			country: fmt.Sprintf("%c%c", 'A'+i/26, 'A'+i%26), asn: uint32(64512 + i),
			pps: float64(1000 * (n - i)), in: 0.5, sizeIn: 500, sizeOut: 100, classes: [5]float64{1},
		})
	}
	return specs
}

func TestMetricsCountriesBounded(t *testing.T) {
	specs := manyCountries(80)
	f := &fakeSource{health: fixtureHealth(), levels: map[string][]*summary.Summary{}}
	f.health.Started = t0.Add(-time.Hour)
	for m := t0.Add(-time.Hour); m.Before(t0); m = m.Add(time.Minute) {
		s := interval(specs, m, time.Minute, 1, 20)
		mustCheck(t, s)
		f.levels["1m"] = append(f.levels["1m"], s)
	}
	reg := prometheus.NewRegistry()
	now := t0
	newHandler(f, Options{Registry: reg, Now: func() time.Time { return now }})

	labels := func() map[string][2]uint64 {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		got := map[string][2]uint64{}
		for _, mf := range mfs {
			if mf.GetName() != "peerwatch_country_packets_total" {
				continue
			}
			for _, m := range mf.GetMetric() {
				var country, dir string
				for _, l := range m.GetLabel() {
					switch l.GetName() {
					case "country":
						country = l.GetValue()
					case "direction":
						dir = l.GetValue()
					}
				}
				v := got[country]
				if dir == "in" {
					v[0] = uint64(m.GetCounter().GetValue())
				} else {
					v[1] = uint64(m.GetCounter().GetValue())
				}
				got[country] = v
			}
		}
		return got
	}

	got := labels()
	all := countryTotals(f.levels["1m"]...)
	if len(got) != maxCountryLabels+1 {
		t.Fatalf("%d country labels, want %d", len(got), maxCountryLabels+1)
	}
	var other [2]uint64
	for i, sp := range specs {
		v, ok := got[sp.country]
		if i < maxCountryLabels && (!ok || v != all[sp.country]) {
			t.Errorf("%s: %v (labelled %v), want %v", sp.country, v, ok, all[sp.country])
		}
		if i >= maxCountryLabels {
			if ok {
				t.Errorf("%s has a label; it is not among the 50 biggest", sp.country)
			}
			other[0] += all[sp.country][0]
			other[1] += all[sp.country][1]
		}
	}
	if got["other"] != other {
		t.Errorf("other %v, want %v", got["other"], other)
	}

	// A new and big country later joins "other": the labels stay bounded
	// and every series only grows.
	late := append(manyCountries(80), remoteSpec{prefix: "10.200.0.0/16", country: "ZZ", pps: 1e6, in: 0.5, sizeIn: 100, sizeOut: 100, classes: [5]float64{1}})
	next := interval(late, t0, 10*time.Second, 1, 20)
	mustCheck(t, next)
	f.add(next)
	now = t0.Add(10 * time.Second)
	got2 := labels()
	if len(got2) != maxCountryLabels+1 {
		t.Fatalf("%d country labels after a new country, want %d", len(got2), maxCountryLabels+1)
	}
	if _, ok := got2["ZZ"]; ok {
		t.Error("ZZ got a label")
	}
	if zz := countryTotals(next)["ZZ"]; got2["other"][0] != other[0]+zz[0]+sumRest(next, got)[0] {
		t.Errorf("other in %d, want %d + ZZ %d + the rest", got2["other"][0], other[0], zz[0])
	}
	for label, v := range got {
		if got2[label][0] < v[0] || got2[label][1] < v[1] {
			t.Errorf("%s went down: %v -> %v", label, v, got2[label])
		}
	}
}

// sumRest is the traffic of next's countries that have no label in got
// (ZZ excluded).
func sumRest(next *summary.Summary, got map[string][2]uint64) [2]uint64 {
	var r [2]uint64
	for _, c := range next.Countries {
		if _, ok := got[c.Country]; !ok && c.Country != "ZZ" {
			r[0] += c.Packets[traffic.In]
			r[1] += c.Packets[traffic.Out]
		}
	}
	return r
}

// A store that fails leaves the datapath's metrics and comes back.
func TestMetricsSourceError(t *testing.T) {
	f := newFixture(t)
	f.err = errStoreDown
	reg := prometheus.NewRegistry()
	newHandler(f, Options{Registry: reg})
	if n, err := testutil.GatherAndCount(reg, "peerwatch_packets_total", "peerwatch_country_packets_total"); err != nil || n != 2 {
		t.Errorf("with a failing store: %d series (%v), want the 2 of packets_total", n, err)
	}
	f.mu.Lock()
	f.err = nil
	f.mu.Unlock()
	if n, err := testutil.GatherAndCount(reg, "peerwatch_country_packets_total"); err != nil || n != 20 {
		t.Errorf("after the store came back: %d country series (%v), want 20", n, err)
	}
}

func TestLimiter(t *testing.T) {
	l := limiter{every: time.Minute}
	for i, tc := range []struct {
		at         time.Duration
		ok         bool
		suppressed int
	}{{0, true, 0}, {time.Second, false, 0}, {59 * time.Second, false, 0}, {time.Minute, true, 2}, {61 * time.Second, false, 0}} {
		if ok, n := l.allow(t0.Add(tc.at)); ok != tc.ok || n != tc.suppressed {
			t.Errorf("%d: %v %d, want %v %d", i, ok, n, tc.ok, tc.suppressed)
		}
	}
}
