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
// after the PUBACK: docs/broker.md) is lost with it, and shows as a gap.
// So: nothing doubled, the totals are exactly those of the summaries
// received, every summary not received is a gap, and at most a few (those
// in flight at the kill) are missing.
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
	sent := map[string]map[uint64]*summary.Summary{}
	for _, id := range ids {
		queues[id], _ = sensorUplink(t, broker, id)
		sent[id] = map[uint64]*summary.Summary{}
	}
	now := time.Now().UTC()
	const total, killAt, maxLost = 60, 20, 3
	for seq := uint64(1); seq <= total; seq++ {
		for _, id := range ids {
			one := &summary.Summary{}
			enqueue(t, queues[id], one, id, seq, now.Add(-time.Duration(total+1-seq)*time.Minute))
			sent[id][seq] = one
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
	waitFor(t, "the last summaries and empty outboxes", 60*time.Second, func() bool {
		s := sensorsByID(t, api)
		for _, id := range ids {
			if s[id].LastSeq != total || queues[id].OutboxLen() != 0 {
				return false
			}
		}
		return true
	})
	time.Sleep(time.Second) // redeliveries of the broker's saved queue
	var want summary.Summary
	for id, s := range sensorsByID(t, api) {
		lost := map[uint64]bool{}
		for _, g := range s.Gaps {
			for seq := g.First; seq <= g.Last; seq++ {
				lost[seq] = true
			}
		}
		for seq, one := range sent[id] {
			if !lost[seq] {
				want.Merge(one)
			}
		}
		if s.Summaries+uint64(len(lost)) != total || len(lost) > maxLost {
			t.Errorf("sensor %s: %d summaries and %d lost (gaps %v); want %d in all, at most %d lost", id, s.Summaries, len(lost), s.Gaps, total, maxLost)
		}
		t.Logf("sensor %s: %d summaries, %d lost with the broker %v, %d duplicates dropped", id, s.Summaries, len(lost), s.Gaps, s.Duplicates)
	}
	var top TopResponse
	getJSON(t, api+"/top?by=country&window=2h", &top)
	if top.Remote != want.Remote || top.Globals != want.Globals {
		t.Errorf("totals %+v %+v, want %+v %+v (the summaries received, each once)", top.Remote, top.Globals, want.Remote, want.Globals)
	}
}
