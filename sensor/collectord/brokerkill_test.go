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
// same port and persistence file. The sensors' outboxes keep what the
// broker did not acknowledge, and resend it; what the broker acknowledged
// but had neither delivered nor saved (it saves on every change here, but
// after the PUBACK: docs/broker.md) is lost with it and shows as a gap,
// which gap repair closes from the sensors' stores. So: every summary
// arrives exactly once, no gap is left, nothing is lost, and the totals
// are those of every summary sent.
func TestMosquittoKilled(t *testing.T) {
	testutil.RequireMosquitto(t)
	dir := testutil.SharedTempDir(t)
	broker := testutil.FreeAddr(t)
	_, port, _ := net.SplitHostPort(broker)
	conf := fmt.Sprintf("listener %s 127.0.0.1\nallow_anonymous true\nlog_dest stderr\n"+
		"persistence true\npersistence_location %s/\nautosave_interval 1\nautosave_on_changes true\nmax_queued_messages 10000\n", port, dir)
	kill := testutil.StartMosquitto(t, dir, conf, broker)

	cfg := Config{Broker: "tcp://" + broker, ClientID: "collectord-kill", DataDir: t.TempDir(), FlushInterval: 200 * time.Millisecond,
		ResendGrace: 500 * time.Millisecond, ResendRetry: 3 * time.Second}
	_, api, _ := runDaemon(t, cfg)
	ids := []string{"s1", "s2", "s3"}
	sensors := map[string]*repairSensor{}
	for _, id := range ids {
		sensors[id] = newRepairSensor(t, broker, id)
	}
	const total, killAt = 60, 20
	for _, id := range ids {
		sensors[id].make(t, 1, total, true)
	}
	for seq := uint64(1); seq <= total; seq++ {
		for _, id := range ids {
			sensors[id].send(t, seq, seq)
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
	var want summary.Summary
	for _, id := range ids {
		got := repaired(t, api, id, total, 60*time.Second)
		if got.Summaries != total || got.LostSeqs != 0 || len(got.Gaps) != 0 {
			t.Errorf("sensor %s: %+v; want %d summaries, no gap, none lost", id, got, total)
		}
		waitFor(t, id+"'s empty outbox", 10*time.Second, func() bool { return sensors[id].q.OutboxLen() == 0 })
		all := sensors[id].total()
		want.Merge(&all)
		t.Logf("sensor %s: %d summaries, %d of them repaired (lost with the broker), %d duplicates dropped", id, got.Summaries, got.Repaired, got.Duplicates)
	}
	time.Sleep(time.Second) // redeliveries of the broker's saved queue: duplicates, which must not count
	checkTotals(t, api, want)
	for id, s := range sensorsByID(t, api) {
		if s.Summaries != total {
			t.Errorf("sensor %s: %d summaries after the redeliveries, want %d", id, s.Summaries, total)
		}
	}
}
