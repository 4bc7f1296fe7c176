package collectord

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/peerwatch/peerwatch/internal/testutil"
	"github.com/peerwatch/peerwatch/sensor/collector"
	"github.com/peerwatch/peerwatch/sensor/summary"
	"github.com/peerwatch/peerwatch/sensor/uplink"
)

// runDaemon runs a daemon until stop is called (or the test ends); it
// returns the API's base URL.
func runDaemon(tb testing.TB, cfg Config) (d *Daemon, api string, stop func()) {
	tb.Helper()
	d, err := New(cfg, testLog(tb))
	if err != nil {
		tb.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx, ln) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		testutil.WaitReturn(tb, "Run", done)
	}
	tb.Cleanup(stop)
	// Generous: a broker with a backlog for the collector's session may
	// send much of it before the SUBACK.
	waitFor(tb, "the subscription", 5*time.Minute, d.Subscribed)
	return d, "http://" + ln.Addr().String() + "/api/v1", stop
}

// sensorUplink runs an uplink for sensor id from an in-memory outbox until
// the returned stop (or the end of the test).
func sensorUplink(tb testing.TB, broker, id string) (*memQueue, func()) {
	tb.Helper()
	q := &memQueue{}
	up := uplink.New(uplink.Config{Broker: "tcp://" + broker, SensorID: id, Version: "v-test",
		Poll: 50 * time.Millisecond, MaxBackoff: 300 * time.Millisecond, PublishTimeout: 2 * time.Second}, q, testLog(tb))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = up.Run(ctx); close(done) }()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
	}
	tb.Cleanup(stop)
	return q, stop
}

// enqueue puts the summary (id, seq) in q and adds it to want.
func enqueue(tb testing.TB, q *memQueue, want *summary.Summary, id string, seq uint64, end time.Time) {
	tb.Helper()
	s := testSummary(tb, id, seq, end)
	want.Merge(s)
	p, err := summary.Encode(s, summary.EncodeOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	if err := q.Enqueue(uplink.Topic("", id, uplink.KindSummary), p, seq); err != nil {
		tb.Fatal(err)
	}
}

// publish sends one message with a plain paho client.
func publish(tb testing.TB, broker, topic string, payload []byte) {
	tb.Helper()
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tcp://" + broker).SetClientID("test-publisher").SetAutoReconnect(false))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		tb.Fatalf("connect: %v", tok.Error())
	}
	defer c.Disconnect(100)
	if tok := c.Publish(topic, 1, false, payload); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		tb.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

// snapshot is everything the collector answers, at a fixed now.
func snapshot(tb testing.TB, c *collector.Collector, now time.Time) string {
	tb.Helper()
	v := map[string]any{"sensors": c.Sensors(now), "rejects": c.Rejects(), "alerts": c.Alerts(collector.DefaultMaxAlerts)}
	for _, l := range c.Levels() {
		v[l] = c.Window(l, now.Add(-40*24*time.Hour), now.Add(time.Hour))
	}
	v["whosees"] = c.WhoSees("KP", now.Add(-time.Hour), now.Add(time.Hour))
	b, err := json.MarshalIndent(v, "", " ")
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

func sensorsByID(tb testing.TB, api string) map[string]collector.SensorState {
	tb.Helper()
	var resp struct{ Sensors []collector.SensorState }
	getJSON(tb, api+"/sensors", &resp)
	out := map[string]collector.SensorState{}
	for _, s := range resp.Sensors {
		out[s.ID] = s
	}
	return out
}

// TestRestartKeepsState (graceful restart): the totals, sensors, gaps,
// alerts and rejects are the same after a restart, and a summary sent
// again after it is a duplicate.
func TestRestartKeepsState(t *testing.T) {
	dir, broker := t.TempDir(), testutil.FreeAddr(t)
	// Only the flush at shutdown: the restart must not depend on the timer.
	cfg := Config{EmbeddedBroker: broker, DataDir: dir, FlushInterval: time.Hour, Sync: "never"}
	d, api, stop := runDaemon(t, cfg)

	now := time.Now().UTC()
	var want summary.Summary
	q1, stop1 := sensorUplink(t, broker, "s1")
	q2, stop2 := sensorUplink(t, broker, "s2")
	for seq := uint64(1); seq <= 8; seq++ {
		end := now.Add(-time.Duration(20-seq) * time.Minute)
		enqueue(t, q1, &want, "s1", seq, end)
		if seq != 4 {
			enqueue(t, q2, &want, "s2", seq, end)
		}
	}
	publish(t, broker, "peerwatch/s1/alert", []byte(`{"sensor":"s1","event":"start","alert":{"id":"kp@1","list":"kp"}}`))
	publish(t, broker, "peerwatch/s2/summary", []byte(`{"schema":1`)) // malformed
	waitFor(t, "16 summaries", 15*time.Second, func() bool {
		s := sensorsByID(t, api)
		return s["s1"].Summaries == 8 && s["s2"].Summaries == 7 && q1.OutboxLen() == 0 && q2.OutboxLen() == 0
	})
	stop1()
	stop2()
	waitFor(t, "the sensors offline", 10*time.Second, func() bool {
		s := sensorsByID(t, api)
		return !s["s1"].Online && !s["s2"].Online
	})
	before := snapshot(t, d.Collector(), now)
	if s := sensorsByID(t, api)["s2"]; len(s.Gaps) != 1 || s.Gaps[0] != (collector.SeqRange{First: 4, Last: 4}) {
		t.Fatalf("s2 gaps %v, want 4-4", s.Gaps)
	}
	stop()

	d2, api2, _ := runDaemon(t, cfg)
	if after := snapshot(t, d2.Collector(), now); after != before {
		t.Fatalf("state after the restart:\n%s\nbefore:\n%s", after, before)
	}
	st, ok := d2.StoreStats()
	if !ok || st.Replayed != 0 || st.JournalDepth != 0 || st.Aside != "" {
		t.Errorf("store stats after a graceful restart %+v: want no journal left", st)
	}
	var top TopResponse
	getJSON(t, api2+"/top?by=prefix&window=1h", &top)
	if top.Remote != want.Remote || top.Globals != want.Globals {
		t.Errorf("totals after the restart %+v %+v, want %+v %+v", top.Remote, top.Globals, want.Remote, want.Globals)
	}

	// s1 seq 5 again: a duplicate; s2 seq 4: fills the gap.
	dup := testSummary(t, "s1", 5, now.Add(-15*time.Minute))
	p, _ := summary.Encode(dup, summary.EncodeOptions{})
	publish(t, broker, "peerwatch/s1/summary", p)
	var gap summary.Summary
	late := testSummary(t, "s2", 4, now.Add(-16*time.Minute))
	gap.Merge(late)
	p, _ = summary.Encode(late, summary.EncodeOptions{})
	publish(t, broker, "peerwatch/s2/summary", p)
	waitFor(t, "the duplicate and the gap", 10*time.Second, func() bool {
		s := sensorsByID(t, api2)
		return s["s1"].Duplicates == 1 && s["s2"].Summaries == 8
	})
	want.Merge(late)
	getJSON(t, api2+"/top?by=prefix&window=1h", &top)
	if top.Remote != want.Remote {
		t.Errorf("totals %+v, want %+v (the duplicate not counted, the gap's summary counted)", top.Remote, want.Remote)
	}
	if s := sensorsByID(t, api2)["s2"]; len(s.Gaps) != 0 {
		t.Errorf("s2 gaps %v after its seq 4 arrived", s.Gaps)
	}
}

// TestMosquittoPersistentSession: collectord is down while the sensors keep
// publishing to mosquitto; the broker queues the summaries for the
// persistent session, and after the restart every one arrives exactly once.
func TestMosquittoPersistentSession(t *testing.T) {
	// max_queued_messages bounds what the broker keeps for an offline
	// collector (1000 by default): docs/collectord.md.
	broker := testutil.Mosquitto(t, "max_queued_messages 10000\n")
	cfg := Config{Broker: "tcp://" + broker, ClientID: "collectord-test", DataDir: t.TempDir(), FlushInterval: 200 * time.Millisecond}
	_, api, stop := runDaemon(t, cfg)

	now := time.Now().UTC()
	ids := []string{"s1", "s2", "s3"}
	var want summary.Summary
	queues := map[string]*memQueue{}
	for _, id := range ids {
		queues[id], _ = sensorUplink(t, broker, id)
	}
	const before, total = 5, 40
	for seq := uint64(1); seq <= total; seq++ {
		if seq == before+1 {
			waitFor(t, "the first summaries", 15*time.Second, func() bool {
				s := sensorsByID(t, api)
				for _, id := range ids {
					if s[id].Summaries != before {
						return false
					}
				}
				return true
			})
			stop() // collectord away; the sensors keep publishing
		}
		for _, id := range ids {
			enqueue(t, queues[id], &want, id, seq, now.Add(-time.Duration(total+1-seq)*time.Minute))
		}
	}
	waitFor(t, "mosquitto to acknowledge every summary", 15*time.Second, func() bool {
		for _, q := range queues {
			if q.OutboxLen() > 0 {
				return false
			}
		}
		return true
	})

	d2, api2, _ := runDaemon(t, cfg)
	waitFor(t, "every summary", 20*time.Second, func() bool {
		s := sensorsByID(t, api2)
		for _, id := range ids {
			if s[id].Summaries != total {
				return false
			}
		}
		return true
	})
	for id, s := range sensorsByID(t, api2) {
		if s.LastSeq != total || len(s.Gaps) != 0 {
			t.Errorf("sensor %s: last seq %d, gaps %v; want %d, none", id, s.LastSeq, s.Gaps, total)
		}
		t.Logf("sensor %s: %d summaries, %d duplicates dropped", id, s.Summaries, s.Duplicates)
	}
	var top TopResponse
	getJSON(t, api2+"/top?by=country&window=1h", &top)
	if top.Remote != want.Remote || top.Globals != want.Globals {
		t.Errorf("totals %+v %+v, want %+v %+v", top.Remote, top.Globals, want.Remote, want.Globals)
	}
	st, _ := d2.StoreStats()
	t.Logf("store after the restart: %+v", st)
}

// TestJournalFailureWithholdsAck: when the journal write fails, the
// embedded broker's hook rejects the packet, so mochi sends no PUBACK and
// the sensor keeps the summary in its outbox; messages of other topics
// pass untouched.
func TestJournalFailureWithholdsAck(t *testing.T) {
	d, err := New(Config{EmbeddedBroker: ":0", DataDir: t.TempDir(), Sync: "never"}, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	h := &collectHook{d: d, prefix: "peerwatch/"}
	s := testSummary(t, "s1", 1, time.Now().UTC())
	p, err := summary.Encode(s, summary.EncodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pk := packets.Packet{TopicName: "peerwatch/s1/summary", Payload: p}
	if _, err := h.OnPublish(nil, pk); err != nil {
		t.Fatalf("journaled summary: %v", err)
	}
	if st, _ := d.StoreStats(); st.Journaled != 1 {
		t.Errorf("%d journaled, want 1", st.Journaled)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	pk.Payload, _ = summary.Encode(testSummary(t, "s1", 2, time.Now().UTC()), summary.EncodeOptions{})
	if _, err := h.OnPublish(nil, pk); !errors.Is(err, packets.ErrRejectPacket) {
		t.Errorf("summary with a failing journal: %v, want ErrRejectPacket", err)
	}
	for _, topic := range []string{"other/topic", "peerwatch/s1/summary/x", "peerwatch/s1"} {
		if _, err := h.OnPublish(nil, packets.Packet{TopicName: topic}); err != nil {
			t.Errorf("topic %s: %v, want it passed", topic, err)
		}
	}
	if got := d.Collector().Rejects()[collector.ReasonTopic]; got != 0 {
		t.Errorf("%d topic rejects: other topics must not reach the collector", got)
	}
}

func TestPersistConfig(t *testing.T) {
	keep, err := ParseKeep("1m=120, 1d=60")
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{EmbeddedBroker: ":1883", Keep: keep}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if got := FormatKeep(cfg.Levels()); got != "1m=120,1h=48,1d=60" {
		t.Errorf("levels %s, want 1m=120,1h=48,1d=60", got)
	}
	if got := FormatKeep(Config{}.Levels()); got != "1m=60,1h=48,1d=30" {
		t.Errorf("default levels %s", got)
	}
	// Per-sensor views: the defaults, and never more windows than kept.
	if got := FormatKeepPerSensor(Config{}.Levels()); got != "1m=60,1h=48,1d=30" {
		t.Errorf("default per-sensor levels %s", got)
	}
	if got := FormatKeepPerSensor(Config{Keep: map[string]int{"1m": 5}, KeepPerSensor: map[string]int{"1m": 30, "1d": 7}}.Levels()); got != "1m=5,1h=48,1d=7" {
		t.Errorf("per-sensor levels %s, want 1m=5,1h=48,1d=7", got)
	}
	for _, bad := range []string{"1m", "1m=x", "=5"} {
		if _, err := ParseKeep(bad); err == nil {
			t.Errorf("ParseKeep(%q): no error", bad)
		}
	}
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{EmbeddedBroker: ":1883", Keep: map[string]int{"5m": 3}}, "keep 5m: unknown level"},
		{Config{EmbeddedBroker: ":1883", Keep: map[string]int{"1h": 0}}, "keep 1h=0"},
		{Config{EmbeddedBroker: ":1883", Keep: map[string]int{"1d": MaxKeep + 1}}, "keep 1d=100001"},
		{Config{EmbeddedBroker: ":1883", KeepPerSensor: map[string]int{"1h": 0}}, "keep per sensor 1h=0"},
		{Config{EmbeddedBroker: ":1883", Sync: "sometimes"}, `sync "sometimes"`},
		{Config{EmbeddedBroker: ":1883", FlushInterval: -time.Second}, "flush interval -1s"},
	} {
		if err := tc.cfg.Validate(); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%+v) = %v, want ErrConfig naming %q", tc.cfg, err, tc.want)
		}
	}
	// A data dir that cannot be created is named in the error.
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{EmbeddedBroker: ":0", DataDir: filepath.Join(file, "sub")}, nil); err == nil || !strings.Contains(err.Error(), "data dir "+file) {
		t.Errorf("New with a data dir under a file: %v", err)
	}
}

// TestPubackAfterJournal guards the order this package relies on (mochi
// v2.7.9, server.go processPublish): the OnPublish hook, which journals,
// runs before mochi sends the PUBACK to the sensor. While the hook is held,
// the sensor has no PUBACK; once it returns, the summary is journaled and
// then acknowledged.
func TestPubackAfterJournal(t *testing.T) {
	broker := testutil.FreeAddr(t)
	d, err := New(Config{EmbeddedBroker: broker, DataDir: t.TempDir(), Sync: "never"}, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	entered, release := make(chan struct{}, 1), make(chan struct{})
	d.now = func() time.Time {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-release
		return time.Now()
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx, ln) }()
	defer func() { cancel(); <-done }()
	waitFor(t, "the broker", 10*time.Second, d.Subscribed)

	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tcp://" + broker).SetClientID("s1-test").SetAutoReconnect(false))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer c.Disconnect(100)
	p, err := summary.Encode(testSummary(t, "s1", 1, time.Now().UTC()), summary.EncodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tok := c.Publish("peerwatch/s1/summary", 1, false, p)
	<-entered // the hook is running
	if tok.WaitTimeout(300 * time.Millisecond) {
		t.Fatalf("PUBACK while the hook had not journaled the summary (err %v)", tok.Error())
	}
	if st, _ := d.StoreStats(); st.Journaled != 0 {
		t.Fatalf("journaled %d before the hook went on", st.Journaled)
	}
	close(release)
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("no PUBACK after the hook returned: %v", tok.Error())
	}
	if st, _ := d.StoreStats(); st.Journaled != 1 {
		t.Errorf("journaled %d at the PUBACK, want 1", st.Journaled)
	}
}

// TestStoreMetrics: /metrics reports the store as its files are: the
// journal records written, the flushes, and the view files with their
// exact size on the disk.
func TestStoreMetrics(t *testing.T) {
	broker := testutil.FreeAddr(t)
	dir := t.TempDir()
	cfg := Config{EmbeddedBroker: broker, DataDir: dir, FlushInterval: time.Hour}
	d, api, _ := runDaemon(t, cfg)
	q, _ := sensorUplink(t, broker, "s1")
	var want summary.Summary
	now := time.Now().UTC().Truncate(time.Minute)
	for seq := uint64(1); seq <= 5; seq++ {
		enqueue(t, q, &want, "s1", seq, now.Add(time.Duration(seq-5)*10*time.Second))
	}
	waitFor(t, "every summary journaled", 10*time.Second, func() bool {
		st, _ := d.StoreStats()
		return st.Journaled == 5
	})
	if err := d.flush(); err != nil {
		t.Fatal(err)
	}
	var files, size int64
	entries, err := os.ReadDir(filepath.Join(dir, "collectord.db.views"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		files++
		size += fi.Size()
	}
	_, value := scrape(t, strings.TrimSuffix(api, "/api/v1"))
	for _, tc := range []struct {
		name string
		want float64
	}{
		{"peerwatch_collector_journal_records_written_total", 5},
		{"peerwatch_collector_journal_errors_total", 0},
		{"peerwatch_collector_flushes_total", 1},
		{"peerwatch_collector_flush_errors_total", 0},
		{"peerwatch_collector_journal_records", 0}, // the flush deleted them
		{"peerwatch_collector_store_view_files", float64(files)},
		{"peerwatch_collector_store_view_bytes", float64(size)},
	} {
		if got, ok := value(tc.name); !ok || got != tc.want {
			t.Errorf("%s = %v (present %v), want %v", tc.name, got, ok, tc.want)
		}
	}
	if files == 0 {
		t.Error("no view files after the flush")
	}
	if got, ok := value("peerwatch_collector_last_flush_timestamp_seconds"); !ok || got < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Errorf("last flush at %v (present %v)", got, ok)
	}
}
