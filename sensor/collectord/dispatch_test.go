package collectord

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// TestDispatcherOrder: every message is handled once, each sensor's in the
// order sent, and acknowledged only when handle took it; after close, a
// message that paho still delivers is dropped, not handled.
func TestDispatcherOrder(t *testing.T) {
	const sensors, each = 20, 200
	var mu sync.Mutex
	got := map[string][]int{}
	acked := map[string]int{}
	var handled sync.WaitGroup
	handled.Add(sensors * each)
	p := newDispatcher(func(topic string, payload []byte, done func(error)) {
		defer handled.Done()
		var seq int
		if _, err := fmt.Sscan(string(payload), &seq); err != nil {
			t.Errorf("payload %q: %v", payload, err)
		}
		sensor, _, _ := strings.Cut(strings.TrimPrefix(topic, "peerwatch/"), "/")
		mu.Lock()
		got[sensor] = append(got[sensor], seq)
		mu.Unlock()
		runtime.Gosched() // let the other workers run meanwhile
		if seq%10 == 9 {
			done(errors.New("refused")) // not acknowledged
			return
		}
		done(nil)
	})
	for seq := range each {
		for s := range sensors {
			// Two kinds per sensor: both go to the sensor's worker.
			topic := fmt.Sprintf("peerwatch/s%d/summary", s)
			if seq%2 == 1 {
				topic = fmt.Sprintf("peerwatch/s%d/alert", s)
			}
			p.send(message{topic: topic, payload: fmt.Append(nil, seq), ack: func() {
				mu.Lock()
				acked[topic]++
				mu.Unlock()
			}})
		}
	}
	handled.Wait()
	p.close()
	// Sent after close: dropped (a Done too many would panic).
	p.send(message{topic: "peerwatch/s0/summary", payload: []byte("0"), ack: func() { t.Error("acknowledged after close") }})
	for s := range sensors {
		seqs := got[fmt.Sprintf("s%d", s)]
		if len(seqs) != each {
			t.Fatalf("sensor s%d: %d messages handled, want %d", s, len(seqs), each)
		}
		for i, seq := range seqs {
			if seq != i {
				t.Fatalf("sensor s%d: messages handled in the order %v", s, seqs)
			}
		}
		if n := acked[fmt.Sprintf("peerwatch/s%d/summary", s)] + acked[fmt.Sprintf("peerwatch/s%d/alert", s)]; n != each-each/10 {
			t.Errorf("sensor s%d: %d acknowledged, want %d (every tenth refused)", s, n, each-each/10)
		}
	}
}
