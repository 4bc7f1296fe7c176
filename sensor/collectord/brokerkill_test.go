package collectord

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/peerwatch/peerwatch/internal/testutil"
	"github.com/peerwatch/peerwatch/sensor/summary"
)

// TestMosquittoKilled kills mosquitto with SIGKILL while three sensors
// stream summaries to collectord through it, and starts it again on the
// same port and persistence file: every summary arrives exactly once and
// the totals are the sensors'. The sensors' outboxes keep what the broker
// did not acknowledge; what it acknowledged but had not yet delivered
// survives in its persistence file only if it was saved, hence autosave
// on every change here (docs/broker.md discusses the interval).
func TestMosquittoKilled(t *testing.T) {
	testutil.RequireMosquitto(t)
	dir := testutil.SharedTempDir(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	broker := l.Addr().String()
	l.Close()
	_, port, _ := net.SplitHostPort(broker)
	conf := fmt.Sprintf("listener %s 127.0.0.1\nallow_anonymous true\nlog_dest stderr\n"+
		"persistence true\npersistence_location %s/\nautosave_interval 1\nautosave_on_changes true\nmax_queued_messages 10000\n", port, dir)
	kill := testutil.StartMosquitto(t, dir, conf, broker)

	cfg := Config{Broker: "tcp://" + broker, ClientID: "collectord-kill", DataDir: t.TempDir(), FlushInterval: 200 * time.Millisecond}
	_, api, _ := runDaemon(t, cfg)
	ids := []string{"s1", "s2", "s3"}
	queues := map[string]*memQueue{}
	for _, id := range ids {
		queues[id], _ = sensorUplink(t, broker, id)
	}
	now := time.Now().UTC()
	var want summary.Summary
	const total, killAt = 60, 20
	for seq := uint64(1); seq <= total; seq++ {
		for _, id := range ids {
			enqueue(t, queues[id], &want, id, seq, now.Add(-time.Duration(total+1-seq)*time.Minute))
		}
		if seq == killAt {
			// Mid-stream: the first summaries are through, the later
			// ones on their way.
			waitFor(t, "a first part at the collector", 15*time.Second, func() bool {
				for _, s := range sensorsByID(t, api) {
					if s.Summaries >= killAt/2 {
						return true
					}
				}
				return false
			})
			kill()
			t.Logf("killed mosquitto at seq %d: %+v", seq, sensorsByID(t, api)["s1"])
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // the uplinks and the subscriber notice
	testutil.StartMosquitto(t, dir, conf, broker)
	waitFor(t, "every summary after the restart", 60*time.Second, func() bool {
		s := sensorsByID(t, api)
		for _, id := range ids {
			if s[id].Summaries != total {
				return false
			}
		}
		return true
	})
	for id, s := range sensorsByID(t, api) {
		if s.LastSeq != total || len(s.Gaps) != 0 {
			t.Errorf("sensor %s: last seq %d, gaps %v; want %d, none", id, s.LastSeq, s.Gaps, total)
		}
		t.Logf("sensor %s: %d summaries, %d duplicates dropped", id, s.Summaries, s.Duplicates)
	}
	var top TopResponse
	getJSON(t, api+"/top?by=country&window=2h", &top)
	if top.Remote != want.Remote || top.Globals != want.Globals {
		t.Errorf("totals %+v %+v, want %+v %+v", top.Remote, top.Globals, want.Remote, want.Globals)
	}
}
