package collectord

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/peerwatch/peerwatch/internal/testutil"
	"github.com/peerwatch/peerwatch/sensor/collector"
	"github.com/peerwatch/peerwatch/sensor/store"
	"github.com/peerwatch/peerwatch/sensor/summary"
	"github.com/peerwatch/peerwatch/sensor/traffic"
	"github.com/peerwatch/peerwatch/sensor/uplink"
)

// memQueue is an in-memory outbox for uplink.Uplink.
type memQueue struct {
	mu    sync.Mutex
	items []store.OutboxItem
}

func (q *memQueue) Outbox(limit int) ([]store.OutboxItem, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return slices.Clone(q.items[:min(limit, len(q.items))]), nil
}

func (q *memQueue) Ack(seq uint64) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.items = slices.DeleteFunc(q.items, func(it store.OutboxItem) bool { return it.Seq == seq })
	return nil
}

func (q *memQueue) OutboxLen() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}

func (q *memQueue) Enqueue(topic string, payload []byte, seq uint64) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	// Idempotent by seq and in seq order, as the store's outbox.
	if slices.ContainsFunc(q.items, func(it store.OutboxItem) bool { return it.Seq == seq }) {
		return nil
	}
	defer slices.SortStableFunc(q.items, func(a, b store.OutboxItem) int { return cmp.Compare(a.Seq, b.Seq) })
	q.items = append(q.items, store.OutboxItem{Seq: seq, Topic: topic, Payload: payload, Enqueued: time.Now().UTC()})
	return nil
}

var _ uplink.Queue = (*memQueue)(nil)

func testLog(tb testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.DiscardHandler)
}

func counters(in, out uint64) traffic.Counters {
	var c traffic.Counters
	c.Packets = [2]uint64{in, out}
	c.Bytes = [2]uint64{in * 100, out * 120}
	c.Class[0] = in + out // all TCP
	return c
}

// testSummary builds a consistent summary: KP and NZ traffic over three
// prefixes (one of them folded into Other), plus some non-IP packets.
func testSummary(tb testing.TB, sensor string, seq uint64, end time.Time) *summary.Summary {
	tb.Helper()
	k := seq + uint64(len(sensor))
	kp1, kp2, nz := counters(k, 2*k), counters(3, 1), counters(5*k, k)
	other := counters(1, 1)
	var remote, kp traffic.Counters
	for _, c := range []traffic.Counters{kp1, kp2, nz, other} {
		remote.Add(c)
	}
	kp.Add(kp1)
	kp.Add(kp2)
	nzAll := nz
	nzAll.Add(other)
	s := &summary.Summary{
		Sensor: sensor, Seq: seq, Start: end.Add(-time.Minute), End: end,
		Globals: traffic.Globals{NonIP: seq, Seen: remote.Total() + seq},
		Remote:  remote,
		Prefixes: []summary.PrefixCount{
			{Prefix: netip.MustParsePrefix("175.45.176.0/24"), Country: "KP", ASN: 131279, Counters: kp1},
			{Prefix: netip.MustParsePrefix("175.45.177.0/24"), Country: "KP", ASN: 131279, Counters: kp2},
			{Prefix: netip.MustParsePrefix("203.97.0.0/16"), Country: "NZ", ASN: 9500, Counters: nz},
		},
		Other:     other,
		Countries: []summary.CountryCount{{Country: "KP", Counters: kp}, {Country: "NZ", Counters: nzAll}},
		ASes:      []summary.ASCount{{ASN: 9500, Counters: nzAll}, {ASN: 131279, Counters: kp}},
	}
	if err := s.Check(); err != nil {
		tb.Fatal(err)
	}
	return s
}

func getJSON(tb testing.TB, url string, v any) {
	tb.Helper()
	resp, err := http.Get(url)
	if err != nil {
		tb.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		tb.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		tb.Fatalf("GET %s: %v", url, err)
	}
}

func waitFor(tb testing.TB, what string, d time.Duration, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestFleetEmbeddedBroker(t *testing.T) {
	brokerAddr := testutil.FreeAddr(t)
	_, api := startDaemon(t, Config{EmbeddedBroker: brokerAddr})

	// Three sensors, ten summaries each, ending in the last half hour.
	now := time.Now().UTC()
	var want summary.Summary
	wantKP := map[string]uint64{}
	for i := 1; i <= 3; i++ {
		id := fmt.Sprintf("s%d", i)
		q := &memQueue{}
		for seq := uint64(1); seq <= 10; seq++ {
			s := testSummary(t, id, seq, now.Add(-time.Duration(31-3*seq)*time.Minute))
			want.Merge(s)
			wantKP[id] += s.Countries[0].Total()
			payload, err := summary.Encode(s, summary.EncodeOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if err := q.Enqueue(uplink.Topic("", id, uplink.KindSummary), payload, seq); err != nil {
				t.Fatal(err)
			}
		}
		up := uplink.New(uplink.Config{Broker: "tcp://" + brokerAddr, SensorID: id, Version: "v-test", Board: "testboard",
			Poll: 100 * time.Millisecond, MaxBackoff: 300 * time.Millisecond, PublishTimeout: 2 * time.Second}, q, testLog(t))
		uctx, ucancel := context.WithCancel(context.Background())
		udone := make(chan struct{})
		go func() { _ = up.Run(uctx); close(udone) }()
		t.Cleanup(func() { ucancel(); <-udone })
	}

	var top TopResponse
	waitFor(t, "fleet totals", 15*time.Second, func() bool {
		getJSON(t, api+"/top?by=country&window=1h", &top)
		return top.Remote == want.Remote && top.Globals == want.Globals
	})
	var countries []summary.CountryCount
	raw, _ := json.Marshal(top.Items)
	if err := json.Unmarshal(raw, &countries); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(countries, want.Countries) {
		t.Errorf("countries %+v, want %+v", countries, want.Countries)
	}
	for _, by := range []string{"as", "prefix"} {
		var r TopResponse
		getJSON(t, api+"/top?by="+by+"&window=1h", &r)
		if r.Remote != want.Remote {
			t.Errorf("by=%s: remote %+v, want %+v", by, r.Remote, want.Remote)
		}
	}

	var sensors struct{ Sensors []collector.SensorState }
	waitFor(t, "three sensors online", 10*time.Second, func() bool {
		getJSON(t, api+"/sensors", &sensors)
		if len(sensors.Sensors) != 3 {
			return false
		}
		for _, s := range sensors.Sensors {
			if !s.Online || s.Summaries != 10 {
				return false
			}
		}
		return true
	})
	for i, s := range sensors.Sensors {
		if wantID := fmt.Sprintf("s%d", i+1); s.ID != wantID || s.Version != "v-test" {
			t.Errorf("sensor %d: %+v, want id %s version v-test", i, s, wantID)
		}
	}

	var who struct{ Sensors []collector.SensorCount }
	getJSON(t, api+"/whosees?country=KP&window=1h", &who)
	if len(who.Sensors) != 3 {
		t.Fatalf("whosees KP: %+v, want 3 sensors", who.Sensors)
	}
	for _, sc := range who.Sensors {
		if sc.Total() != wantKP[sc.Sensor] {
			t.Errorf("whosees KP %s: %d packets, want %d", sc.Sensor, sc.Total(), wantKP[sc.Sensor])
		}
	}

	// A forged summary: on s1's topic, but the payload says s2.
	forged, err := summary.Encode(testSummary(t, "s2", 99, now.Add(-time.Minute)), summary.EncodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tcp://" + brokerAddr).SetClientID("forger").SetAutoReconnect(false))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("forger connect: %v", tok.Error())
	}
	defer c.Disconnect(100)
	if tok := c.Publish(uplink.Topic("", "s1", uplink.KindSummary), 1, false, forged); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("forged publish: %v", tok.Error())
	}
	var rejects struct{ Rejects map[string]uint64 }
	waitFor(t, "the forged summary rejected", 10*time.Second, func() bool {
		getJSON(t, api+"/rejects", &rejects)
		return rejects.Rejects[collector.ReasonSensorMismatch] == 1
	})
	getJSON(t, api+"/top?by=country&window=1h", &top)
	if top.Remote != want.Remote {
		t.Errorf("after the forged summary: remote %+v, want %+v", top.Remote, want.Remote)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"embedded", Config{EmbeddedBroker: ":1883"}, true},
		{"external shared", Config{Broker: "tcp://b:1883", ShareGroup: "collectors"}, true},
		{"none", Config{}, false},
		{"both", Config{EmbeddedBroker: ":1883", Broker: "tcp://b:1883"}, false},
		{"share without broker", Config{EmbeddedBroker: ":1883", ShareGroup: "g"}, false},
		{"share with slash", Config{Broker: "tcp://b:1883", ShareGroup: "a/b"}, false},
		{"bad url", Config{Broker: "b:1883"}, false},
		{"tls", Config{Broker: "mqtts://b:8883"}, true},
		{"websocket", Config{Broker: "ws://b:80"}, true},
		{"wildcard prefix", Config{Broker: "tcp://b:1883", TopicPrefix: "pw/#"}, false},
	} {
		if err := tc.cfg.Validate(); (err == nil) != tc.ok {
			t.Errorf("%s: Validate() = %v, want ok %v", tc.name, err, tc.ok)
		}
	}
	if f := (Config{Broker: "tcp://b:1883"}).Filters(); !slices.Equal(f, []string{"peerwatch/+/+"}) {
		t.Errorf("Filters() = %q", f)
	}
	want := []string{"$share/g/peerwatch/+/summary", "$share/g/peerwatch/+/alert", "$share/g/peerwatch/+/lost", "peerwatch/+/status"}
	if f := (Config{Broker: "tcp://b:1883", ShareGroup: "g"}).Filters(); !slices.Equal(f, want) {
		t.Errorf("Filters() with a share group = %q, want %q", f, want)
	}
}

func TestRejectLogRateLimited(t *testing.T) {
	var buf syncBuffer
	d, err := New(Config{EmbeddedBroker: ":0"}, slog.New(slog.NewTextHandler(&buf, nil)))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	d.now = func() time.Time { return now }
	for range 5 {
		d.handle("peerwatch/s1/bogus/x", nil)
	}
	d.handle("peerwatch/s1/summary", []byte("{"))
	now = now.Add(RejectLogInterval)
	d.handle("peerwatch/s1/bogus/x", nil)
	if n := buf.count("rejected message"); n != 3 {
		t.Errorf("%d reject lines, want 3 (topic twice, malformed once):\n%s", n, buf.String())
	}
	if got := d.Collector().Rejects()[collector.ReasonTopic]; got != 6 {
		t.Errorf("topic rejects %d, want 6", got)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b = append(s.b, p...)
	return len(p), nil
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return string(s.b)
}

func (s *syncBuffer) count(sub string) int {
	return strings.Count(s.String(), sub)
}

// startDaemon runs a daemon until the test ends; it returns the API's base URL.
func startDaemon(tb testing.TB, cfg Config) (*Daemon, string) {
	tb.Helper()
	d, api, _ := runDaemon(tb, cfg)
	return d, api
}

// TestExternalBrokerSharedSubscription runs one collectord as the broker and
// a second one subscribed to it over the network with a share group.
func TestExternalBrokerSharedSubscription(t *testing.T) {
	brokerAddr := testutil.FreeAddr(t)
	startDaemon(t, Config{EmbeddedBroker: brokerAddr})
	// startDaemon waits for the subscription: messages published before it
	// are not delivered to it.
	_, api := startDaemon(t, Config{Broker: "tcp://" + brokerAddr, ShareGroup: "collectors"})

	q := &memQueue{}
	now := time.Now().UTC()
	var want summary.Summary
	for seq := uint64(1); seq <= 3; seq++ {
		s := testSummary(t, "s1", seq, now.Add(-time.Duration(seq)*time.Minute))
		want.Merge(s)
		payload, err := summary.Encode(s, summary.EncodeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := q.Enqueue(uplink.Topic("", "s1", uplink.KindSummary), payload, seq); err != nil {
			t.Fatal(err)
		}
	}
	up := uplink.New(uplink.Config{Broker: "tcp://" + brokerAddr, SensorID: "s1",
		Poll: 100 * time.Millisecond, MaxBackoff: 300 * time.Millisecond, PublishTimeout: 2 * time.Second}, q, testLog(t))
	uctx, ucancel := context.WithCancel(context.Background())
	udone := make(chan struct{})
	go func() { _ = up.Run(uctx); close(udone) }()
	t.Cleanup(func() { ucancel(); <-udone })

	waitFor(t, "the subscriber's totals", 15*time.Second, func() bool {
		var top TopResponse
		getJSON(t, api+"/top?by=prefix&window=1h", &top)
		return top.Remote == want.Remote && top.Globals == want.Globals
	})
}

func TestAPIErrors(t *testing.T) {
	d, err := New(Config{EmbeddedBroker: ":0"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := d.Handler()
	for _, path := range []string{
		"/api/v1/top?by=city", "/api/v1/top?window=-1h", "/api/v1/top?window=90d", "/api/v1/whosees",
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != http.StatusBadRequest {
			t.Errorf("GET %s: %d, want 400", path, rec.Code)
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/top?by=as&window=7d", nil))
	if rec.Code != http.StatusOK {
		t.Errorf("GET top 7d: %d %s", rec.Code, rec.Body)
	}
}
