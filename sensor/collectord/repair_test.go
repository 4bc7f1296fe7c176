package collectord

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/peerwatch/peerwatch/internal/testutil"
	"github.com/peerwatch/peerwatch/sensor/collector"
	"github.com/peerwatch/peerwatch/sensor/store"
	"github.com/peerwatch/peerwatch/sensor/summary"
	"github.com/peerwatch/peerwatch/sensor/uplink"
)

// repairSensor is a sensor for the gap-repair tests, with a real store
// (sensor/store) as sensord has: the summaries it made are Put there (raw
// records), its outbox is the store's, and its uplink answers the
// collector's resend requests from the store (uplink.StoreSource, as
// sensord does). The test decides which summaries the outbox gets.
type repairSensor struct {
	id      string
	q       *store.Store
	lookups atomic.Int64
	start   time.Time

	mu       sync.Mutex
	payloads map[uint64][]byte
	made     map[uint64]*summary.Summary
}

func newRepairSensor(tb testing.TB, broker, id string) *repairSensor {
	tb.Helper()
	st, err := store.Open(filepath.Join(tb.TempDir(), "sensor.db"), store.Options{Sync: store.SyncNever}, testLog(tb))
	if err != nil {
		tb.Fatal(err)
	}
	r := &repairSensor{id: id, q: st, payloads: map[uint64][]byte{}, made: map[uint64]*summary.Summary{},
		start: time.Now().UTC().Add(-2 * time.Hour)}
	source := uplink.StoreSource(st, summary.EncodeOptions{})
	up := uplink.New(uplink.Config{Broker: "tcp://" + broker, SensorID: id, Version: "v-test",
		Poll: 50 * time.Millisecond, MaxBackoff: 300 * time.Millisecond, PublishTimeout: 2 * time.Second,
		Resend: func(seq uint64) ([]byte, error) { r.lookups.Add(1); return source(seq) }}, st, testLog(tb))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = up.Run(ctx); close(done) }()
	tb.Cleanup(func() { cancel(); <-done; _ = st.Close() })
	return r
}

// make makes the summaries from to to (one a minute) and stores them,
// unless stored is false: then the store never had them (or lost them: a
// new disk, a cleared store), but the test may still send them.
func (r *repairSensor) make(tb testing.TB, from, to uint64, stored bool) {
	tb.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for seq := from; seq <= to; seq++ {
		s := testSummary(tb, r.id, seq, r.start.Add(time.Duration(seq)*time.Minute))
		s.Schema = summary.SchemaVersion
		if stored {
			if ok, err := r.q.Put(s, store.Origin{Instance: 1, Generation: seq}); err != nil || !ok {
				tb.Fatalf("put %d: %v, %v", seq, ok, err)
			}
		}
		r.made[seq], r.payloads[seq] = s, encode(tb, s)
	}
}

// send puts the summaries from to to in the outbox, as sensord does after
// Put.
func (r *repairSensor) send(tb testing.TB, from, to uint64) {
	tb.Helper()
	for seq := from; seq <= to; seq++ {
		r.mu.Lock()
		p := r.payloads[seq]
		r.mu.Unlock()
		if err := r.q.Enqueue(uplink.Topic("", r.id, uplink.KindSummary), p, seq); err != nil {
			tb.Fatal(err)
		}
	}
}

// total is the merge of the summaries made, except those in skip.
func (r *repairSensor) total(skip ...uint64) summary.Summary {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out summary.Summary
	for seq, s := range r.made {
		if !slices.Contains(skip, seq) {
			out.Merge(s)
		}
	}
	return out
}

func checkTotals(tb testing.TB, api string, want summary.Summary) {
	tb.Helper()
	var top TopResponse
	getJSON(tb, api+"/top?by=country&window=7d", &top)
	if top.Remote != want.Remote || top.Globals != want.Globals {
		tb.Errorf("totals %+v %+v, want %+v %+v (every summary once)", top.Remote, top.Globals, want.Remote, want.Globals)
	}
}

// repaired waits until the collector holds seqs 1 to last of the sensor,
// with no gap.
func repaired(tb testing.TB, api, id string, last uint64, d time.Duration) collector.SensorState {
	tb.Helper()
	var s collector.SensorState
	waitFor(tb, fmt.Sprintf("%s's %d summaries, no gap", id, last), d, func() bool {
		s = sensorsByID(tb, api)[id]
		return s.LastSeq == last && s.Summaries+s.LostSeqs == last && len(s.Gaps) == 0
	})
	return s
}

// TestGapRepairEmbedded: the collector misses summaries that the broker
// acknowledged (the sensor's outbox let them go: here they never reach the
// broker at all), asks the sensor for them, and gets them from its store:
// every summary once, no gap, the totals of all of them.
func TestGapRepairEmbedded(t *testing.T) {
	broker := testutil.FreeAddr(t)
	d, api, _ := runDaemon(t, Config{EmbeddedBroker: broker, DataDir: t.TempDir(), ResendGrace: 200 * time.Millisecond, ResendRetry: 2 * time.Second})
	s := newRepairSensor(t, broker, "s1")
	s.make(t, 1, 20, true)
	s.send(t, 1, 4)
	s.send(t, 8, 11)
	s.send(t, 13, 20)
	got := repaired(t, api, "s1", 20, 15*time.Second)
	if got.Summaries != 20 || got.Duplicates != 0 || got.Repaired != 4 || got.LostSeqs != 0 {
		t.Errorf("s1: %+v; want 20 summaries, 4 of them repaired, no duplicate, none lost", got)
	}
	checkTotals(t, api, s.total())
	waitFor(t, "the request and its clearing", 5*time.Second, func() bool { return d.ResendPublished() >= 2 })
	t.Logf("s1: %d summaries, %d repaired, %d lookups at the sensor, %d requests published", got.Summaries, got.Repaired, s.lookups.Load(), d.ResendPublished())
}

// TestGapRepairLost: the sensor no longer has some of the summaries the
// collector misses; it says so, the collector shows them as lost (API and
// /metrics), not as gaps, and asks for them no more.
func TestGapRepairLost(t *testing.T) {
	broker := testutil.FreeAddr(t)
	d, api, _ := runDaemon(t, Config{EmbeddedBroker: broker, ResendGrace: 100 * time.Millisecond, ResendRetry: 300 * time.Millisecond})
	s := newRepairSensor(t, broker, "s2")
	s.make(t, 1, 1, true)
	s.make(t, 2, 4, false) // its store does not have them (a new disk, say)
	s.make(t, 5, 10, true)
	s.send(t, 1, 1)
	s.send(t, 6, 10) // 5 it still has
	got := repaired(t, api, "s2", 10, 15*time.Second)
	if got.Summaries != 7 || got.LostSeqs != 3 || fmt.Sprint(got.Lost) != "[{2 4}]" || got.Repaired != 1 {
		t.Errorf("s2: %+v; want 7 summaries (5 repaired), 2-4 lost", got)
	}
	checkTotals(t, api, s.total(2, 3, 4))
	_, metric := scrape(t, api[:len(api)-len("/api/v1")])
	if v, _ := metric("peerwatch_collector_sensor_lost_summaries", "sensor", "s2"); v != 3 {
		t.Errorf("/metrics: %v lost summaries of s2, want 3", v)
	}
	if v, _ := metric("peerwatch_collector_sensor_missing_summaries", "sensor", "s2"); v != 0 {
		t.Errorf("/metrics: %v missing summaries of s2, want 0", v)
	}
	resp, err := http.Get(api[:len(api)-len("/api/v1")] + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := `id="lost-count"><span class="num" title="3 summaries lost for good">3</span> lost for good`; !strings.Contains(string(page), want) {
		t.Errorf("the dashboard does not say %s", want)
	}
	// Not asked again: once the request is cleared, several retry
	// intervals pass without a request or a lookup.
	waitFor(t, "the request and its clearing", 5*time.Second, func() bool { return d.ResendPublished() >= 2 })
	lookups, published := s.lookups.Load(), d.ResendPublished()
	time.Sleep(time.Second) // nothing may happen: no condition to poll
	if s.lookups.Load() != lookups || d.ResendPublished() != published {
		t.Errorf("after the lost report: lookups %d -> %d, requests %d -> %d; want no more", lookups, s.lookups.Load(), published, d.ResendPublished())
	}
	t.Logf("s2: %d lookups at the sensor (4 asked: 2-5), %d requests published", lookups, published)
}

// TestGapRepairMosquitto: collectord is away while the sensor publishes,
// and mosquitto (without persistence) restarts meanwhile: what the broker
// queued for collectord's session and what the sensor published before
// collectord subscribed again is gone. The next summary shows the gap, and
// the sensor sends it all again from its store.
func TestGapRepairMosquitto(t *testing.T) {
	testutil.RequireMosquitto(t)
	dir := testutil.SharedTempDir(t)
	broker := testutil.FreeAddr(t)
	_, port, _ := net.SplitHostPort(broker)
	conf := fmt.Sprintf("listener %s 127.0.0.1\nallow_anonymous true\nlog_dest stderr\npersistence false\n", port)
	kill := testutil.StartMosquitto(t, dir, conf, broker)

	cfg := Config{Broker: "tcp://" + broker, ClientID: "collectord-repair", DataDir: t.TempDir(), FlushInterval: 200 * time.Millisecond,
		ResendGrace: 300 * time.Millisecond, ResendRetry: 2 * time.Second}
	_, api, stop := runDaemon(t, cfg)
	s := newRepairSensor(t, broker, "s1")
	s.make(t, 1, 31, true)
	s.send(t, 1, 10)
	waitFor(t, "the first 10", 15*time.Second, func() bool { return sensorsByID(t, api)["s1"].Summaries == 10 })
	stop()
	s.send(t, 11, 20) // queued by mosquitto for collectord's session
	waitFor(t, "the sensor's outbox empty", 15*time.Second, func() bool { return s.q.OutboxLen() == 0 })
	kill()
	testutil.StartMosquitto(t, dir, conf, broker) // the queue is gone
	s.send(t, 21, 30)                             // to nobody
	waitFor(t, "the sensor's outbox empty again", 15*time.Second, func() bool { return s.q.OutboxLen() == 0 })
	_, api, _ = runDaemon(t, cfg)
	s.send(t, 31, 31)
	got := repaired(t, api, "s1", 31, 30*time.Second)
	if got.Summaries != 31 || got.Repaired != 20 || got.LostSeqs != 0 {
		t.Errorf("s1: %+v; want 31 summaries, 20 of them repaired, none lost", got)
	}
	checkTotals(t, api, s.total())
	t.Logf("s1: %d summaries, %d repaired, %d duplicates dropped", got.Summaries, got.Repaired, got.Duplicates)
}

// TestGapRepairConfig: gap repair is on by default, off with
// --no-gap-repair and with a share group (each collector sees part of
// every sensor's summaries); the grace and the retry take their defaults.
func TestGapRepairConfig(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want bool
	}{
		{Config{EmbeddedBroker: "127.0.0.1:0"}, true},
		{Config{Broker: "tcp://127.0.0.1:1"}, true},
		{Config{EmbeddedBroker: "127.0.0.1:0", NoGapRepair: true}, false},
		{Config{Broker: "tcp://127.0.0.1:1", ShareGroup: "collectors"}, false},
	} {
		d, err := New(tc.cfg, testLog(t))
		if err != nil {
			t.Fatal(err)
		}
		if got := d.RepairEnabled(); got != tc.want {
			t.Errorf("%+v: gap repair %v, want %v", tc.cfg, got, tc.want)
		}
		if d.cfg.ResendGrace != DefaultResendGrace || d.cfg.ResendRetry != DefaultResendRetry {
			t.Errorf("grace %v retry %v, want the defaults", d.cfg.ResendGrace, d.cfg.ResendRetry)
		}
		_ = d.Close()
	}
	if err := (Config{EmbeddedBroker: ":0", ResendRetry: -time.Second}).Validate(); err == nil || !strings.Contains(err.Error(), "resend retry -1s") {
		t.Errorf("negative retry: %v", err)
	}
	d, err := New(Config{EmbeddedBroker: ":0", ResendGrace: -1}, nil)
	if err != nil || d.cfg.ResendGrace != 0 {
		t.Errorf("negative grace: %v, %v; want 0 (ask at once)", err, d.cfg.ResendGrace)
	}
}
