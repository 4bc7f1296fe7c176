package uplink

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/peerwatch/peerwatch/internal/testutil"
	"github.com/peerwatch/peerwatch/sensor/store"
	"github.com/peerwatch/peerwatch/sensor/summary"
)

// heldUpTo is a ResendSource that holds the summaries "summary <seq>" up
// to last and counts the lookups.
func heldUpTo(last uint64, lookups *atomic.Int64) ResendSource {
	return func(seq uint64) ([]byte, error) {
		lookups.Add(1)
		if seq > last {
			return nil, fmt.Errorf("interval %d: %w", seq, store.ErrNoData)
		}
		return fmt.Appendf(nil, "summary %d", seq), nil
	}
}

func resendRequest(tb testing.TB, id string, rs ...summary.SeqRange) []byte {
	tb.Helper()
	b, err := summary.EncodeResendRequest(&summary.ResendRequest{Sensor: id, Missing: rs})
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func (c *collector) payloads(topic string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, m := range c.msgs {
		if m.topic == topic {
			out = append(out, m.payload)
		}
	}
	return out
}

// TestResendRequest (embedded broker): the uplink serves the retained
// request on its resend topic: the summaries it holds go out again, in
// order, the others are reported lost once; the same request delivered
// again by a reconnect is not served twice; requests that are malformed or
// name another sensor are refused; the rate limit holds.
func TestResendRequest(t *testing.T) {
	addr := testutil.FreeAddr(t)
	col := &collector{}
	srv, _ := startMochi(t, addr, col)
	st := openStore(t)
	enqueueRange(t, st, 1, 10)
	var lookups atomic.Int64
	cfg := testConfig(addr)
	cfg.Resend = heldUpTo(10, &lookups)
	up, stop := startUplink(t, cfg, st)
	waitFor(t, "the first 10", 10*time.Second, func() bool { return len(col.seqs(t)) == 10 })

	resendTopic := Topic("", testSensor, KindResend)
	if err := srv.Publish(resendTopic, resendRequest(t, testSensor, summary.SeqRange{First: 3, Last: 4}, summary.SeqRange{First: 8, Last: 8},
		summary.SeqRange{First: 20, Last: 21}), true, 1); err != nil {
		t.Fatal(err)
	}
	lostTopic := Topic("", testSensor, KindLost)
	waitFor(t, "the resent summaries and the lost report", 10*time.Second, func() bool { return len(col.payloads(lostTopic)) == 1 })
	if got, want := fmt.Sprint(col.seqs(t)), "[1 2 3 4 5 6 7 8 9 10 3 4 8]"; got != want {
		t.Errorf("summaries %s, want %s", got, want)
	}
	if got, want := col.payloads(lostTopic)[0], `{"sensor":"pw-test","lost":[{"first":20,"last":21}]}`; got != want {
		t.Errorf("lost report %s, want %s", got, want)
	}
	if s := up.State(); s.Resent != 3 || s.ReportedLost != 2 || s.Outbox != 0 {
		t.Errorf("status %+v, want 3 resent, 2 reported lost, empty outbox", s)
	}

	// A reconnect within resendRepeat (the broker drops the connection):
	// the retained request comes again, and is not served again.
	cl, ok := srv.Clients.Get("peerwatch-" + testSensor)
	if !ok {
		t.Fatal("the uplink's client is not at the broker")
	}
	_ = srv.DisconnectClient(cl, packets.ErrServerShuttingDown)
	waitFor(t, "the reconnect", 10*time.Second, func() bool { return len(col.payloads(Topic("", testSensor, KindStatus))) >= 2 })
	time.Sleep(500 * time.Millisecond) // nothing may happen: no condition to poll
	if got := len(col.seqs(t)); got != 13 {
		t.Errorf("%d summaries after the reconnect, want still 13", got)
	}
	// A restart of the sensor forgets what it served: it serves the
	// request again once (the collector drops the duplicates).
	stop()
	up, stop = startUplink(t, cfg, st)
	waitFor(t, "the request served again", 10*time.Second, func() bool { return len(col.seqs(t)) == 16 })

	// Refused: malformed, another sensor's id.
	for _, p := range []string{`{"sensor":"pw-test","missing":[{"first":2,"last":1}]}`, string(resendRequest(t, "other", summary.SeqRange{First: 1, Last: 1}))} {
		if err := srv.Publish(resendTopic, []byte(p), true, 1); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "two refusals", 5*time.Second, func() bool { return up.State().ResendRefused == 2 })

	// The empty payload clears the request.
	if err := srv.Publish(resendTopic, nil, true, 1); err != nil {
		t.Fatal(err)
	}
	stop()

	// The rate limit: 4 per minute, 10 asked.
	cfg.ResendPerMinute = 4
	lookups.Store(0)
	up, _ = startUplink(t, cfg, st)
	if err := srv.Publish(resendTopic, resendRequest(t, testSensor, summary.SeqRange{First: 1, Last: 10}), true, 1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "4 resent", 5*time.Second, func() bool { return up.State().Resent == 4 })
	time.Sleep(time.Second) // the budget of a second more is 1/15 of a seq
	if s := up.State(); s.Resent != 4 || lookups.Load() != 4 {
		t.Errorf("%d resent, %d lookups in the first second, want 4 (the limit)", s.Resent, lookups.Load())
	}
	if got := strings.Count(fmt.Sprint(col.seqs(t)), " "); got+1 != 20 {
		t.Errorf("%d summaries at the subscriber, want 20", got+1)
	}
}
