package collectord

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/peerwatch/peerwatch/sensor/collector"
	"github.com/peerwatch/peerwatch/sensor/version"
)

// MaxSensorLabels bounds the sensors that get per-sensor metrics (the first
// ones by id); the fleet-wide metrics count every sensor.
const MaxSensorLabels = 2000

// metricsHandler serves /metrics: the collector's metrics, read from it at
// each scrape, and Go's and the process's.
func (d *Daemon) metricsHandler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(newFleetMetrics(d), collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(d.log.Handler(), slog.LevelError),
		ErrorHandling: promhttp.ContinueOnError,
		Registry:      reg,
	})
}

// fleetMetrics reads the collector on each scrape; it starts no goroutine.
// Names follow the sensor's (sensor/web/metrics.go) under
// peerwatch_collector_.
type fleetMetrics struct {
	d *Daemon

	rejects, accepted, handled                                       *prometheus.Desc
	known, online, labelled                                          *prometheus.Desc
	up, summaries, duplicates, outboxDropped, gaps, missing, lastSeq *prometheus.Desc
	lag, lastSeen, lastEnd, sensorRejects                            *prometheus.Desc
	alerts, build, brokerRefusals                                    *prometheus.Desc
	lost, repaired, resendRequests                                   *prometheus.Desc
	// Of the store (fleetstore.Stats); only with --data-dir.
	storeBytes, viewFiles, viewBytes, journalRecords, journalSegments, journalBytes *prometheus.Desc
	journaled, journalWrites, journalErrors, flushes, flushErrors, shrinks          *prometheus.Desc
	lastFlush, lastFlushSeconds, lastFlushBytes, replayed, journalCut               *prometheus.Desc
}

func newFleetMetrics(d *Daemon) *fleetMetrics {
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("peerwatch_collector_"+name, help, labels, nil)
	}
	return &fleetMetrics{
		d:              d,
		rejects:        desc("rejects_total", "Messages refused since the collector started, by reason (topic, version, too_large, malformed, inconsistent, sensor_mismatch, duplicate, clock).", "reason"),
		accepted:       desc("messages_accepted_total", "Messages accepted since the collector started, by kind (summary, status, alert, lost).", "kind"),
		handled:        desc("messages_total", "Messages handled since the collector started: accepted and refused."),
		known:          desc("sensors", "Sensors heard from since the collector started."),
		online:         desc("sensors_online", "Sensors whose last status message says online."),
		labelled:       desc("sensors_labelled", "Sensors with per-sensor metrics: the first 2000 by id."),
		up:             desc("sensor_online", "1 when the sensor's last status message says online (its last will says offline), else 0.", "sensor"),
		summaries:      desc("sensor_summaries_total", "Summaries accepted from the sensor.", "sensor"),
		duplicates:     desc("sensor_duplicates_total", "Summaries (same sequence number) and alerts (same id and event) received again from the sensor and dropped.", "sensor"),
		outboxDropped:  desc("sensor_outbox_dropped_total", "Summaries the sensor's outbox dropped unsent because it was full, as the sensor reports it.", "sensor"),
		gaps:           desc("sensor_gaps", "Ranges of sequence numbers below the sensor's highest that were not received (yet); at most 1000 are tracked.", "sensor"),
		missing:        desc("sensor_missing_summaries", "Summaries in the sensor's gaps: sequence numbers not received (yet); those older than --resend-grace are asked for again.", "sensor"),
		lost:           desc("sensor_lost_summaries", "Summaries lost for good: missing, and the sensor said it no longer holds them (at most 1000 ranges are tracked).", "sensor"),
		repaired:       desc("sensor_repaired_summaries_total", "Summaries that arrived into a gap: late, or sent again on the collector's request.", "sensor"),
		resendRequests: desc("resend_requests_published_total", "Resend requests (and their clearings) the collector published to the sensors' resend topics since start."),
		lastSeq:        desc("sensor_last_seq", "The highest sequence number received from the sensor.", "sensor"),
		lag:            desc("sensor_lag_seconds", "How far the end of the sensor's latest summary is behind the collector's clock.", "sensor"),
		lastSeen:       desc("sensor_last_seen_timestamp_seconds", "Unix time of the sensor's last message of any kind, refused ones included.", "sensor"),
		lastEnd:        desc("sensor_last_summary_end_timestamp_seconds", "Unix time of the end of the sensor's latest accepted summary.", "sensor"),
		sensorRejects:  desc("sensor_rejects_total", "Messages on the sensor's topics refused, by reason.", "sensor", "reason"),
		alerts:         desc("alerts", "Alert messages the collector keeps (at most 1000)."),
		build:          desc("build_info", "The collector's version; always 1.", "version"),
		brokerRefusals: desc("broker_refusals_total", "What the embedded broker's authentication refused since start, by kind (connect, publish, subscribe); "+
			"only with an embedded broker.", "kind"),

		storeBytes:       desc("store_file_bytes", "Size of the store file (collectord.db)."),
		viewFiles:        desc("store_view_files", "View files: the windows' per-sensor views (collectord.db.views)."),
		viewBytes:        desc("store_view_bytes", "Size of the view files."),
		journalRecords:   desc("journal_records", "Records in the journal's segments: messages received since the last flush."),
		journalSegments:  desc("journal_segments", "The journal's segment files."),
		journalBytes:     desc("journal_bytes", "Size of the journal's segment files."),
		journaled:        desc("journal_records_written_total", "Journal records written since start: accepted summaries and alerts."),
		journalWrites:    desc("journal_writes_total", "Journal writes since start (one fsync each with --sync always)."),
		journalErrors:    desc("journal_errors_total", "Journal records whose write failed since start (not acknowledged; the broker sends them again)."),
		flushes:          desc("flushes_total", "Flushes of the collector's state to the store since start."),
		flushErrors:      desc("flush_errors_total", "Flushes that failed since start (the next one writes everything)."),
		shrinks:          desc("store_rewrites_total", "Rewrites of the store file without its garbage since start."),
		lastFlush:        desc("last_flush_timestamp_seconds", "Unix time the last successful flush ended."),
		lastFlushSeconds: desc("last_flush_duration_seconds", "Duration of the last successful flush."),
		lastFlushBytes:   desc("last_flush_bytes", "Bytes the last successful flush wrote: its checkpoint record and view files."),
		replayed:         desc("journal_replayed_at_start", "Journal records applied at start (received after the last flush before the stop)."),
		journalCut:       desc("journal_cut_bytes_at_start", "Bytes cut off the ends of journal segments at start: a write cut short by a crash, or damage (the log says which)."),
	}
}

// Describe implements prometheus.Collector.
func (m *fleetMetrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.rejects, m.accepted, m.handled, m.known, m.online, m.labelled,
		m.up, m.summaries, m.duplicates, m.outboxDropped, m.gaps, m.missing, m.lastSeq, m.lag, m.lastSeen, m.lastEnd,
		m.sensorRejects, m.alerts, m.build, m.brokerRefusals, m.lost, m.repaired, m.resendRequests,
		m.storeBytes, m.viewFiles, m.viewBytes, m.journalRecords, m.journalSegments, m.journalBytes,
		m.journaled, m.journalWrites, m.journalErrors, m.flushes, m.flushErrors, m.shrinks,
		m.lastFlush, m.lastFlushSeconds, m.lastFlushBytes, m.replayed, m.journalCut} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (m *fleetMetrics) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	col := m.d.col
	var handled uint64
	for reason, n := range col.Rejects() {
		counter(m.rejects, n, reason)
		handled += n
	}
	for kind, n := range col.Accepted() {
		counter(m.accepted, n, kind)
		handled += n
	}
	counter(m.handled, handled)

	sensors := col.Sensors(m.d.now()) // by id
	online := 0
	for _, s := range sensors {
		if s.Online {
			online++
		}
	}
	gauge(m.known, float64(len(sensors)))
	gauge(m.online, float64(online))
	labelled := sensors[:min(len(sensors), MaxSensorLabels)]
	gauge(m.labelled, float64(len(labelled)))
	for _, s := range labelled {
		gauge(m.up, boolFloat(s.Online), s.ID)
		counter(m.summaries, s.Summaries, s.ID)
		counter(m.duplicates, s.Duplicates, s.ID)
		counter(m.outboxDropped, s.OutboxDropped, s.ID)
		gauge(m.gaps, float64(len(s.Gaps)), s.ID)
		gauge(m.missing, float64(missing(s.Gaps)), s.ID)
		gauge(m.lost, float64(s.LostSeqs), s.ID)
		counter(m.repaired, s.Repaired, s.ID)
		gauge(m.lastSeq, float64(s.LastSeq), s.ID)
		if !s.LastEnd.IsZero() {
			gauge(m.lag, s.Lag.Seconds(), s.ID)
			gauge(m.lastEnd, unixSeconds(s.LastEnd), s.ID)
		}
		if !s.LastSeen.IsZero() {
			gauge(m.lastSeen, unixSeconds(s.LastSeen), s.ID)
		}
		for reason, n := range s.Rejects {
			counter(m.sensorRejects, n, s.ID, reason)
		}
	}
	gauge(m.alerts, float64(len(col.Alerts(collector.DefaultMaxAlerts))))
	counter(m.resendRequests, m.d.ResendPublished())
	gauge(m.build, 1, version.Version)
	if m.d.cfg.EmbeddedBroker != "" {
		st := m.d.BrokerRefusals()
		counter(m.brokerRefusals, st.ConnectsRefused, "connect")
		counter(m.brokerRefusals, st.PublishesDenied, "publish")
		counter(m.brokerRefusals, st.SubscribesDenied, "subscribe")
	}
	if st, ok := m.d.StoreStats(); ok {
		gauge(m.storeBytes, float64(st.FileSize))
		gauge(m.viewFiles, float64(st.ViewFiles))
		gauge(m.viewBytes, float64(st.ViewBytes))
		gauge(m.journalRecords, float64(st.JournalDepth))
		gauge(m.journalSegments, float64(st.JournalFiles))
		gauge(m.journalBytes, float64(st.JournalBytes))
		counter(m.journaled, st.Journaled)
		counter(m.journalWrites, st.JournalBatches)
		counter(m.journalErrors, st.JournalErrors)
		counter(m.flushes, st.Flushes)
		counter(m.flushErrors, st.FlushErrors)
		counter(m.shrinks, st.Shrinks)
		if !st.LastFlush.IsZero() {
			gauge(m.lastFlush, unixSeconds(st.LastFlush))
			gauge(m.lastFlushSeconds, st.LastFlushTook.Seconds())
			gauge(m.lastFlushBytes, float64(st.LastFlushBytes))
		}
		gauge(m.replayed, float64(st.Replayed))
		gauge(m.journalCut, float64(st.JournalCut))
	}
}

// missing is the number of sequence numbers in the gaps.
func missing(gaps []collector.SeqRange) uint64 {
	var n uint64
	for _, g := range gaps {
		n += g.Last - g.First + 1
	}
	return n
}

func unixSeconds(t time.Time) float64 {
	return float64(t.UnixNano()) / 1e9
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
