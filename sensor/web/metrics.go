package web

import (
	"cmp"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/peerwatch/peerwatch/sensor/summary"
	"github.com/peerwatch/peerwatch/sensor/traffic"
)

// Bounds of the labelled metrics: the countries (and watch lists) beyond
// them are summed under the label "other".
const (
	maxCountryLabels = 50
	maxWatchLabels   = 100
	otherLabel       = "other"
	unknownCountry   = "unknown" // traffic no table places
)

func metricsHandler(reg *prometheus.Registry, log *slog.Logger) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(log.Handler(), slog.LevelError),
		ErrorHandling: promhttp.ContinueOnError,
		Registry:      reg,
	})
}

// collector reads the Source on each scrape; it starts no goroutine.
//
// The per-country and per-watch-list counters are not in Health: the
// collector seeds them on its first scrape from the window since the sensor
// started and then adds each new interval of the store's "interval" level.
// To keep every series monotonic with bounded cardinality, the first 50
// countries to get a label (the biggest of the seed, then the biggest of
// later intervals) keep it; the others are summed under "other".
type collector struct {
	src Source
	now func() time.Time
	log *slog.Logger

	mu        sync.Mutex // serializes scrapes' updates of the fields below
	seeded    bool
	through   time.Time // end of the last interval counted
	countries boundedCounts
	watch     boundedCounts
	warnLog   limiter

	packets, bytes, class, global      *prometheus.Desc
	country, watchPackets              *prometheus.Desc
	drainDuration, lastDrain, interval *prometheus.Desc
	storeBytes, storeMax, evicted      *prometheus.Desc
	storeWriteOK, storeWriteErrors     *prometheus.Desc
	storeUnstored, storeDropped        *prometheus.Desc
	storeRecovered                     *prometheus.Desc
	ifaceUp, invariantOK, outbox       *prometheus.Desc
	build, started                     *prometheus.Desc
}

func newCollector(src Source, now func() time.Time, log *slog.Logger) *collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("peerwatch_"+name, help, labels, nil)
	}
	return &collector{
		src: src, now: now, log: log,
		warnLog:   limiter{every: time.Minute},
		countries: boundedCounts{max: maxCountryLabels, alwaysOther: true},
		watch:     boundedCounts{max: maxWatchLabels},

		packets: d("packets_total", "Packets exchanged with remote addresses since the sensor started, by direction (in: remote to local).", "direction"),
		bytes:   d("bytes_total", "Bytes (frames as seen at the hook) exchanged with remote addresses since the sensor started, by direction.", "direction"),
		class:   d("class_packets_total", "Remote packets since the sensor started, by protocol class (tcp, udp, icmp, tunnel, other).", "class"),
		global:  d("global_packets_total", "Packets in the global buckets since the sensor started: seen is every packet; seen = remote + the other buckets.", "bucket"),
		country: d("country_packets_total", "Remote packets by country and direction, counted from this process's first scrape of the store; "+
			"the first 50 countries to be labelled keep their label, the rest are summed as \"other\"; \"unknown\" is traffic no table places.", "country", "direction"),
		watchPackets:  d("watch_packets_total", "Packets that matched a watch list, by direction, counted like peerwatch_country_packets_total.", "list", "direction"),
		drainDuration: d("drain_duration_seconds", "How long the last drain of the kernel counters took."),
		lastDrain:     d("last_drain_timestamp_seconds", "Unix time of the end of the last drain."),
		interval:      d("drain_interval_seconds", "Configured interval between drains."),
		storeBytes:    d("store_bytes", "Size of the embedded store on disk."),
		storeMax:      d("store_max_bytes", "Bound of the embedded store's size; 0 when unbounded."),
		evicted:       d("store_evicted_total", "Summaries evicted from the store to keep it under its bound, since the sensor started."),
		storeWriteOK: d("store_write_ok", "1 when the last write of an interval to the store succeeded (or none failed yet), "+
			"0 while writes fail (a full or read-only data partition)."),
		storeWriteErrors: d("store_write_errors_total", "Failed writes of an interval to the store since the sensor started."),
		storeUnstored:    d("store_unstored_intervals", "Intervals drained but held in memory until the store takes them."),
		storeDropped:     d("store_unstored_dropped_total", "Intervals given up because too many waited for the store: their counts are lost."),
		storeRecovered:   d("store_recovered", "1 when a damaged store file was moved aside at start (see the status page), else 0."),
		ifaceUp:          d("interface_up", "1 when the counter program is attached to the interface and counts, else 0.", "interface", "mode"),
		invariantOK:      d("invariant_ok", "1 when the last interval reconciled (seen = remote + buckets), else 0."),
		outbox:           d("uplink_outbox", "Summaries in the outbox, waiting for the broker's acknowledgement."),
		build:            d("build_info", "The sensor's version, board and kernel; always 1.", "version", "board", "kernel", "sensor"),
		started:          d("start_time_seconds", "Unix time the sensor started."),
	}
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.packets, c.bytes, c.class, c.global, c.country, c.watchPackets,
		c.drainDuration, c.lastDrain, c.interval, c.storeBytes, c.storeMax, c.evicted,
		c.storeWriteOK, c.storeWriteErrors, c.storeUnstored, c.storeDropped, c.storeRecovered, c.ifaceUp, c.invariantOK, c.outbox, c.build, c.started} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	h := c.src.Health()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for _, dir := range []traffic.Direction{traffic.In, traffic.Out} {
		counter(c.packets, h.Remote.Packets[dir], dir.String())
		counter(c.bytes, h.Remote.Bytes[dir], dir.String())
	}
	for cl := range traffic.Class(traffic.NumClasses) {
		counter(c.class, h.Remote.Class[cl], cl.String())
	}
	g := h.Totals
	for _, b := range []struct {
		name string
		v    uint64
	}{{"seen", g.Seen}, {"non_ip", g.NonIP}, {"malformed", g.Malformed}, {"both_local", g.BothLocal}, {"neither_local", g.NeitherLocal}, {"overflow", g.Overflow}} {
		counter(c.global, b.v, b.name)
	}
	gauge(c.drainDuration, h.DrainDuration.Seconds())
	if !h.LastDrain.IsZero() {
		gauge(c.lastDrain, float64(h.LastDrain.Unix())+float64(h.LastDrain.Nanosecond())/1e9)
	}
	gauge(c.interval, h.DrainInterval.Seconds())
	gauge(c.storeBytes, float64(h.Store.Size))
	gauge(c.storeMax, float64(h.Store.MaxSize))
	counter(c.evicted, h.Store.Evicted)
	gauge(c.storeWriteOK, boolFloat(h.Store.WriteError == ""))
	counter(c.storeWriteErrors, h.Store.WriteErrors)
	gauge(c.storeUnstored, float64(h.Store.Unstored))
	counter(c.storeDropped, h.Store.UnstoredDropped)
	gauge(c.storeRecovered, boolFloat(h.Store.Recovered != ""))
	for _, i := range h.Interfaces {
		gauge(c.ifaceUp, boolFloat(i.State == Attached), i.Name, i.Mode)
	}
	gauge(c.invariantOK, boolFloat(h.Invariant == nil))
	gauge(c.outbox, float64(h.Uplink.Outbox))
	gauge(c.build, 1, h.Version, h.Board, h.Kernel, h.Sensor)
	if !h.Started.IsZero() {
		gauge(c.started, float64(h.Started.Unix()))
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	c.update(h)
	if !c.seeded {
		// Nothing rather than zeros: a zero that later jumps to the seed
		// would read as a burst of traffic.
		return
	}
	c.countries.collect(func(label string, v [2]uint64) {
		counter(c.country, v[traffic.In], label, "in")
		counter(c.country, v[traffic.Out], label, "out")
	})
	c.watch.collect(func(label string, v [2]uint64) {
		counter(c.watchPackets, v[traffic.In], label, "in")
		counter(c.watchPackets, v[traffic.Out], label, "out")
	})
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// update adds the intervals drained since the last scrape (c.mu held).
func (c *collector) update(h Health) {
	now := c.now()
	if !c.seeded {
		from := h.Started
		if from.IsZero() || now.Sub(from) > maxSpan {
			from = now.Add(-maxSpan)
		}
		w, err := c.src.Window(from, now)
		if err != nil && !errors.Is(err, ErrNoData) {
			c.warn("seed the country and watch-list metrics", err)
			return
		}
		c.seeded, c.through = true, from
		if hasData(w) {
			c.add(w)
		}
	}
	ss, err := c.src.Series("interval", c.through, now)
	if err != nil && !errors.Is(err, ErrNoData) {
		c.warn("read the new intervals for the country and watch-list metrics", err)
		return
	}
	for _, s := range ss {
		if s != nil && s.End.After(c.through) {
			c.add(s)
		}
	}
}

// add counts a summary, biggest countries first so that they get the labels.
func (c *collector) add(s *summary.Summary) {
	countries := slices.Clone(s.Countries)
	slices.SortStableFunc(countries, func(a, b summary.CountryCount) int { return cmp.Compare(b.Total(), a.Total()) })
	for _, cc := range countries {
		label := cc.Country
		if label == "" {
			label = unknownCountry
		}
		c.countries.add(label, cc.Counters)
	}
	for _, w := range s.Watch {
		c.watch.add(w.List, w.Counters)
	}
	if s.End.After(c.through) {
		c.through = s.End
	}
}

// warn logs a scrape's error at most once a minute.
func (c *collector) warn(msg string, err error) {
	if ok, n := c.warnLog.allow(c.now()); ok {
		c.log.Warn(msg, "err", err, "suppressed", n)
	}
}

// boundedCounts are packets by label and direction, for at most max labels;
// the labels that come later are summed under "other".
type boundedCounts struct {
	max         int
	alwaysOther bool // export "other" before the labels run out
	byLabel     map[string]*[2]uint64
	other       [2]uint64
}

func (b *boundedCounts) add(label string, c traffic.Counters) {
	p := &b.other
	if label != otherLabel {
		var ok bool
		if p, ok = b.byLabel[label]; !ok {
			if len(b.byLabel) < b.max {
				if b.byLabel == nil {
					b.byLabel = make(map[string]*[2]uint64)
				}
				p = new([2]uint64)
				b.byLabel[label] = p
			} else {
				p = &b.other
			}
		}
	}
	p[traffic.In] += c.Packets[traffic.In]
	p[traffic.Out] += c.Packets[traffic.Out]
}

// collect calls fn for each label, and for "other" once the labels run out
// (or always, with alwaysOther). A label, once exported, stays.
func (b *boundedCounts) collect(fn func(label string, v [2]uint64)) {
	for label, v := range b.byLabel {
		fn(label, *v)
	}
	if b.alwaysOther || len(b.byLabel) >= b.max || b.other != [2]uint64{} {
		fn(otherLabel, b.other)
	}
}
