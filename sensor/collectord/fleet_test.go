package collectord

import (
	"context"
	"encoding/json"
	"math"
	"net/netip"
	"testing"
	"time"

	"github.com/peerwatch/peerwatch/internal/testutil"
	"github.com/peerwatch/peerwatch/sensor/collector"
	"github.com/peerwatch/peerwatch/sensor/summary"
	"github.com/peerwatch/peerwatch/sensor/traffic"
	"github.com/peerwatch/peerwatch/sensor/uplink"
	"github.com/peerwatch/peerwatch/sensor/watch"
)

// A fleet of four sensors at New Zealand peering points, for the dashboard,
// series, alerts and metrics tests: each publishes over real MQTT (the
// uplink, from an in-memory outbox) one-minute summaries of the last 55
// minutes (and of the hour before, which the minute level no longer keeps),
// hourly ones of the two days before and daily ones of the month before. chc-ix-01 never sends seqs 30 to 32; dud-ix-01 shuts down
// cleanly (status offline) once its summaries are delivered.

// talker is a remote prefix of the fixture and its traffic per minute at a
// sensor of weight 100.
type talker struct {
	prefix  string
	country string
	asn     uint32
	asName  string
	in      uint64 // packets in per minute
	outPct  uint64 // packets out, percent of in
	size    uint64 // bytes per packet in
	tunnel  uint64 // percent of packets that are tunnel/VPN
}

var talkers = []talker{
	{"142.250.0.0/15", "US", 15169, "GOOGLE", 920_000, 28, 1180, 0},
	{"2a03:2880::/29", "IE", 32934, "FACEBOOK", 530_000, 35, 1050, 0},
	{"104.16.0.0/13", "US", 13335, "CLOUDFLARENET", 410_000, 43, 980, 0},
	{"23.32.0.0/11", "NL", 20940, "AKAMAI-ASN1", 280_000, 25, 1300, 0},
	{"52.84.0.0/15", "US", 16509, "AMAZON-02", 200_000, 39, 1100, 1},
	{"122.56.0.0/14", "NZ", 4648, "Spark New Zealand", 95_000, 100, 700, 12},
	{"203.97.0.0/16", "NZ", 9500, "Vodafone NZ", 61_000, 90, 650, 8},
	{"1.128.0.0/11", "AU", 1221, "Telstra", 48_000, 80, 820, 3},
	{"95.108.128.0/17", "RU", 13238, "YANDEX", 35_000, 67, 1350, 0},
	{"111.0.0.0/10", "CN", 9808, "China Mobile", 26_000, 82, 800, 2},
	{"185.220.100.0/22", "DE", 205100, "F3 Netze", 10_500, 100, 600, 4},
	{"175.45.176.0/24", "KP", 131279, "Ryugyong-dong", 2_900, 122, 520, 35},
	{"175.45.177.0/24", "KP", 131279, "Ryugyong-dong", 1_300, 118, 480, 31},
}

// fleetSensor is one sensor of the fixture: what it sees of each talker
// (percent), its board, and the seqs it never sends.
type fleetSensor struct {
	id, board string
	weight    []uint64 // by talker
	skip      [2]uint64
	offline   bool
}

var fleetSensors = []fleetSensor{
	{id: "akl-ix-01", board: "nanopi-r6s", weight: []uint64{100, 100, 100, 100, 100, 60, 55, 100, 100, 100, 100, 100, 100}},
	{id: "wlg-ix-01", board: "rpi5", weight: []uint64{55, 48, 40, 35, 50, 100, 100, 20, 15, 30, 45, 23, 0}},
	{id: "chc-ix-01", board: "rpi4", weight: []uint64{30, 22, 25, 20, 18, 80, 70, 12, 0, 6, 0, 0, 0}, skip: [2]uint64{30, 32}},
	{id: "dud-ix-01", board: "generic-arm64", weight: []uint64{12, 9, 10, 8, 6, 40, 30, 4, 0, 0, 0, 9, 0}, offline: true},
}

// wave is the time of day's share of traffic, in percent: 55 to 100.
func wave(t time.Time) uint64 {
	h := float64(t.UTC().Hour()) + float64(t.UTC().Minute())/60
	return uint64(math.Round(77.5 + 22.5*math.Sin((h-14)/24*2*math.Pi)))
}

// fleetSummary is a consistent summary of what sensor s saw from start to
// end (a whole number of minutes).
func fleetSummary(tb testing.TB, s fleetSensor, seq uint64, start, end time.Time) *summary.Summary {
	tb.Helper()
	minutes := uint64(end.Sub(start) / time.Minute)
	sum := &summary.Summary{Schema: summary.SchemaVersion, Sensor: s.id, Seq: seq, Start: start, End: end}
	w := wave(start.Add(end.Sub(start) / 2))
	for i, tk := range talkers {
		in := tk.in * s.weight[i] / 100 * w / 100 * minutes
		// A wobble of the sensor's own, so that the curves differ.
		in += in / 50 * ((seq*7 + uint64(i)*3) % 5)
		if in == 0 {
			continue
		}
		out := in * tk.outPct / 100
		var c traffic.Counters
		c.Packets = [2]uint64{in, out}
		c.Bytes = [2]uint64{in * tk.size, out * 96}
		all := in + out
		c.Class[traffic.Tunnel] = all * tk.tunnel / 100
		c.Class[traffic.ICMP] = all / 200
		c.Class[traffic.Other] = all / 1000
		c.Class[traffic.UDP] = (all - c.Class[traffic.Tunnel] - c.Class[traffic.ICMP] - c.Class[traffic.Other]) / 4
		c.Class[traffic.TCP] = all - c.Class[traffic.Tunnel] - c.Class[traffic.ICMP] - c.Class[traffic.Other] - c.Class[traffic.UDP]
		sum.Prefixes = append(sum.Prefixes, summary.PrefixCount{Prefix: netip.MustParsePrefix(tk.prefix), Country: tk.country, ASN: tk.asn, ASName: tk.asName, Counters: c})
	}
	// Traffic no table places: a little of everything, in Other.
	sum.Other.Packets = [2]uint64{900 * minutes * w / 100, 700 * minutes * w / 100}
	sum.Other.Bytes = [2]uint64{sum.Other.Packets[0] * 400, sum.Other.Packets[1] * 90}
	sum.Other.Class[traffic.UDP] = sum.Other.Total()
	countries := map[string]traffic.Counters{"": sum.Other}
	ases := map[uint32]summary.ASCount{0: {Counters: sum.Other}}
	sum.Remote = sum.Other
	for _, p := range sum.Prefixes {
		sum.Remote.Add(p.Counters)
		c := countries[p.Country]
		c.Add(p.Counters)
		countries[p.Country] = c
		a := ases[p.ASN]
		a.ASN, a.ASName = p.ASN, p.ASName
		a.Add(p.Counters)
		ases[p.ASN] = a
	}
	for cc, c := range countries {
		sum.Countries = append(sum.Countries, summary.CountryCount{Country: cc, Counters: c})
	}
	for _, a := range ases {
		sum.ASes = append(sum.ASes, a)
	}
	sum.Globals = traffic.Globals{NonIP: 40 * minutes, Malformed: minutes / 30, BothLocal: 2100 * minutes}
	sum.Globals.Seen = sum.Remote.Total() + sum.Globals.Buckets()
	sum.Sort()
	if err := sum.Check(); err != nil {
		tb.Fatal(err)
	}
	return sum
}

// fleet is what the fixture published, for the tests' expectations.
type fleet struct {
	brokerAddr string
	api        string // base URL of the API, .../api/v1
	base       string // base URL of the dashboard
	now        time.Time
	// recent are the one-minute summaries of the last 55 minutes, merged:
	// all of them, and each sensor's.
	recent   summary.Summary
	bySensor map[string]*summary.Summary
	// summaries are how many each sensor sent, lastSeq its last seq.
	summaries, lastSeq map[string]uint64
}

// startFleet runs a collectord with an embedded broker and the fixture's
// four sensors, and waits until the collector has every message.
func startFleet(t *testing.T) *fleet {
	t.Helper()
	addr := testutil.FreeAddr(t)
	return startFleetOn(t, addr, Config{EmbeddedBroker: addr})
}

// startFleetOn is startFleet with the sensors publishing to the broker at
// brokerAddr, and collectord configured by cfg.
func startFleetOn(t *testing.T, brokerAddr string, cfg Config) *fleet {
	t.Helper()
	f := &fleet{brokerAddr: brokerAddr, bySensor: map[string]*summary.Summary{}}
	_, f.api = startDaemon(t, cfg)
	f.base = f.api[:len(f.api)-len("/api/v1")]
	f.now = time.Now().UTC()
	minute := f.now.Truncate(time.Minute)
	hour := f.now.Add(-61 * time.Minute).Truncate(time.Hour)
	day := f.now.Add(-49 * time.Hour).Truncate(24 * time.Hour)

	wantSummaries := map[string]uint64{}
	f.summaries, f.lastSeq = wantSummaries, map[string]uint64{}
	uplinks := map[string]*uplink.Uplink{}
	for _, s := range fleetSensors {
		q := &memQueue{}
		seq := uint64(0)
		enqueue := func(start, end time.Time, recent bool) {
			seq++
			if seq >= s.skip[0] && seq <= s.skip[1] && s.skip[0] > 0 {
				return
			}
			sum := fleetSummary(t, s, seq, start, end)
			if recent {
				f.recent.Merge(sum)
				if f.bySensor[s.id] == nil {
					f.bySensor[s.id] = &summary.Summary{}
				}
				f.bySensor[s.id].Merge(sum)
			}
			payload, err := summary.Encode(sum, summary.EncodeOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if err := q.Enqueue(uplink.Topic("", s.id, uplink.KindSummary), payload, seq); err != nil {
				t.Fatal(err)
			}
			wantSummaries[s.id]++
		}
		// A summary is placed in the window of its end: a day that ends at
		// midnight counts in the next day's window, so the days end one
		// day before the hours begin, and the hours one hour before the
		// minutes.
		for d := 27; d >= 1; d-- { // oldest first
			end := day.Add(-time.Duration(d) * 24 * time.Hour)
			enqueue(end.Add(-24*time.Hour), end, false)
		}
		for h := 46; h >= 1; h-- {
			end := hour.Add(-time.Duration(h) * time.Hour)
			enqueue(end.Add(-time.Hour), end, false)
		}
		// Minutes the minute level no longer keeps: in the hour level only.
		for end := hour.Add(time.Minute); !end.After(minute.Add(-62 * time.Minute)); end = end.Add(time.Minute) {
			enqueue(end.Add(-time.Minute), end, false)
		}
		for m := 55; m >= 1; m-- {
			end := minute.Add(-time.Duration(m-1) * time.Minute)
			enqueue(end.Add(-time.Minute), end, true)
		}
		f.lastSeq[s.id] = seq
		up := uplink.New(uplink.Config{Broker: "tcp://" + f.brokerAddr, SensorID: s.id, Version: "0.4.1", Board: s.board,
			Poll: 50 * time.Millisecond, MaxBackoff: 300 * time.Millisecond, PublishTimeout: 5 * time.Second}, q, testLog(t))
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { _ = up.Run(ctx); close(done) }()
		stop := func() { cancel(); <-done }
		if s.offline {
			waitFor(t, s.id+"'s outbox delivered", 30*time.Second, func() bool { return q.OutboxLen() == 0 })
			stop()
		} else {
			t.Cleanup(stop)
		}
		uplinks[s.id] = up
	}
	f.publishAlerts(t, "wlg-ix-01", uplinks["wlg-ix-01"])
	f.publishAlerts(t, "akl-ix-01", uplinks["akl-ix-01"])
	waitFor(t, "every summary and status", 30*time.Second, func() bool {
		var sensors struct{ Sensors []collector.SensorState }
		getJSON(t, f.api+"/sensors", &sensors)
		if len(sensors.Sensors) != len(fleetSensors) {
			return false
		}
		for _, st := range sensors.Sensors {
			offline := st.ID == "dud-ix-01"
			if st.Summaries != wantSummaries[st.ID] || st.Online == offline || st.Version != "0.4.1" {
				return false
			}
		}
		var alerts struct{ Alerts []collector.Alert }
		getJSON(t, f.api+"/alerts?limit=1000", &alerts)
		return len(alerts.Alerts) == 4
	})
	return f
}

// publishAlerts sends the sensor's alerts through its uplink: wlg-ix-01
// an alert on tor exits that started and ended; akl-ix-01 one on the KP
// ranges, still active. akl's waits for wlg's, so that it is the newest.
func (f *fleet) publishAlerts(t *testing.T, id string, up *uplink.Uplink) {
	t.Helper()
	send := func(event string, a watch.Alert) {
		b, err := json.Marshal(struct {
			Sensor string      `json:"sensor"`
			Event  string      `json:"event"`
			Alert  watch.Alert `json:"alert"`
		}{id, event, a})
		if err != nil {
			t.Fatal(err)
		}
		if err := up.PublishAlert(b); err != nil {
			t.Fatal(err)
		}
	}
	start := f.now.Truncate(time.Minute).Add(-42 * time.Minute)
	switch id {
	case "wlg-ix-01":
		a := watch.Alert{ID: "tor-exits@" + start.Format(time.RFC3339), List: "tor-exits", Reason: "12.2 kpps over a baseline of 8.8 kpps (1.4×)",
			Start: start, PeakPPS: 12204, PeakBPS: 58.6e6, Packets: 2_511_840, Bytes: 1_507_104_000,
			Prefixes: []watch.PrefixShare{{Prefix: netip.MustParsePrefix("185.220.100.0/22"), Country: "DE", ASN: 205100, Packets: 2_511_840}}}
		send("started", a)
		a.End, a.Packets = start.Add(18*time.Minute), 4_102_300
		send("ended", a)
	case "akl-ix-01":
		var alerts struct{ Alerts []collector.Alert }
		waitFor(t, "wlg-ix-01's alerts", 30*time.Second, func() bool {
			getJSON(t, f.api+"/alerts", &alerts)
			return len(alerts.Alerts) == 2
		})
		old := start.Add(-3 * time.Hour)
		send("ended", watch.Alert{ID: "kp-transit@" + old.Format(time.RFC3339), List: "kp-transit", Reason: "new prefix: 175.45.178.0/24 not seen in the baseline",
			Start: old, End: old.Add(time.Hour), PeakPPS: 2100, PeakBPS: 8.4e6, Packets: 3_900_000, Bytes: 1_900_000_000,
			Prefixes: []watch.PrefixShare{{Prefix: netip.MustParsePrefix("175.45.178.0/24"), Country: "KP", ASN: 131279, Packets: 3_900_000}}})
		send("started", watch.Alert{ID: "kp@" + start.Format(time.RFC3339), List: "kp", Reason: "3.4 kpps over a 7-day baseline of 410 pps (8.3×)",
			Start: start.Add(10 * time.Minute), PeakPPS: 3412.5, PeakBPS: 13.9e6, Packets: 5_418_220, Bytes: 2_712_004_118,
			Prefixes: []watch.PrefixShare{
				{Prefix: netip.MustParsePrefix("175.45.176.0/24"), Country: "KP", ASN: 131279, Packets: 3_800_000},
				{Prefix: netip.MustParsePrefix("175.45.177.0/24"), Country: "KP", ASN: 131279, Packets: 1_618_220},
			}})
	}
}

// countryOf is a country's counters in a summary.
func countryOf(s *summary.Summary, cc string) traffic.Counters {
	for _, c := range s.Countries {
		if c.Country == cc {
			return c.Counters
		}
	}
	return traffic.Counters{}
}
