package collectord

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/peerwatch/peerwatch/internal/testutil"
	"github.com/peerwatch/peerwatch/sensor/store"
	"github.com/peerwatch/peerwatch/sensor/summary"
	"github.com/peerwatch/peerwatch/sensor/uplink"
)

// TestOutboxOverflowReported: while collectord (and its embedded broker)
// is away, a sensor's outbox of 8 overflows; the summaries it dropped are
// gaps at the collector, and the collector knows their number from the
// summaries that did arrive: drops are counted and reported, not silent.
func TestOutboxOverflowReported(t *testing.T) {
	broker := testutil.FreeAddr(t)
	cfg := Config{EmbeddedBroker: broker, DataDir: t.TempDir(), FlushInterval: 200 * time.Millisecond}
	_, api, stop := runDaemon(t, cfg)

	st, err := store.Open(filepath.Join(t.TempDir(), "sensord.db"), store.Options{MaxOutbox: 8, Sync: store.SyncNever}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	up := uplink.New(uplink.Config{Broker: "tcp://" + broker, SensorID: "s1", Poll: 50 * time.Millisecond,
		MaxBackoff: 300 * time.Millisecond, PublishTimeout: 2 * time.Second}, st, testLog(t))
	go func() { _ = up.Run(t.Context()) }()

	now := time.Now().UTC()
	var delivered summary.Summary // what should reach the collector
	const total, before = 30, 5
	put := func(i uint64) *summary.Summary {
		s := testSummary(t, "s1", 0, now.Add(-time.Duration(total+2-i)*time.Minute))
		s.Schema = summary.SchemaVersion
		if _, err := st.Put(s, store.Origin{Instance: 1, Generation: i}); err != nil {
			t.Fatal(err)
		}
		p, err := summary.Encode(s, summary.EncodeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Enqueue(uplink.Topic("", "s1", uplink.KindSummary), p, s.Seq); err != nil {
			t.Fatal(err)
		}
		up.Notify()
		return s
	}
	for i := uint64(1); i <= before; i++ {
		delivered.Merge(put(i))
	}
	waitFor(t, "the first summaries", 15*time.Second, func() bool { return sensorsByID(t, api)["s1"].Summaries == before })
	// The collector takes a summary before the broker's PUBACK reaches the
	// sensor: wait for the outbox to be empty too, or the last one stays in
	// it and the count of drops below is one more.
	waitFor(t, "the first summaries acknowledged", 15*time.Second, func() bool { return st.OutboxLen() == 0 })
	stop()
	var away []*summary.Summary
	for i := uint64(before + 1); i <= total; i++ {
		away = append(away, put(i))
	}
	dropped := uint64(len(away) - 8) // the outbox keeps the last 8
	for _, s := range away[dropped:] {
		delivered.Merge(s)
	}
	if got := st.Stats().OutboxDropped; got != dropped {
		t.Fatalf("the sensor's store dropped %d, want %d", got, dropped)
	}

	_, api2, _ := runDaemon(t, cfg)
	waitFor(t, "the outbox sent", 20*time.Second, func() bool { return st.OutboxLen() == 0 })
	// The last drop (at the last Enqueue) is reported by the next summary.
	delivered.Merge(put(total + 1))
	waitFor(t, "the outbox's summaries", 20*time.Second, func() bool { return sensorsByID(t, api2)["s1"].LastSeq == total+1 })
	s := sensorsByID(t, api2)["s1"]
	var missing uint64
	for _, g := range s.Gaps {
		missing += g.Last - g.First + 1
	}
	if s.Summaries != before+9 || missing != dropped || s.OutboxDropped != dropped {
		t.Fatalf("collector: %d summaries, %d missing in gaps %v, outbox_dropped %d; want %d, %d, %d",
			s.Summaries, missing, s.Gaps, s.OutboxDropped, before+9, dropped, dropped)
	}
	var top TopResponse
	getJSON(t, api2+"/top?by=country&window=1h", &top)
	if top.Remote != delivered.Remote {
		t.Errorf("totals %+v, want %+v (the summaries not dropped)", top.Remote, delivered.Remote)
	}
	_, value := scrape(t, strings.TrimSuffix(api2, "/api/v1"))
	if v, ok := value("peerwatch_collector_sensor_outbox_dropped_total", "sensor", "s1"); !ok || v != float64(dropped) {
		t.Errorf("/metrics: outbox_dropped of s1 %v (%v), want %d", v, ok, dropped)
	}
}
