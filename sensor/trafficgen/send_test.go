package trafficgen

import (
	"testing"
	"time"
)

func TestStreamPacing(t *testing.T) {
	s := &Stream{Rate: 1000, Count: 2500, After: 2 * time.Second}
	// Before its start: nothing, and the wait is the time to the start.
	if n, wait := s.due(500 * time.Millisecond); n != 0 || wait != 1500*time.Millisecond {
		t.Errorf("before the start: %d due, wait %v", n, wait)
	}
	// 10 ms after the start at 1000/s: 10 due.
	if n, _ := s.due(2*time.Second + 10*time.Millisecond); n != 10 {
		t.Errorf("10 ms in: %d due, want 10", n)
	}
	// Long behind: one burst at most.
	if n, _ := s.due(3 * time.Second); n != SendBurst {
		t.Errorf("a second in, nothing sent: %d due, want %d", n, SendBurst)
	}
	// Caught up: nothing due, wait for the next packet.
	s.sent = 1000
	if n, wait := s.due(3 * time.Second); n != 0 || wait != time.Millisecond {
		t.Errorf("caught up: %d due, wait %v; want 0, 1ms", n, wait)
	}
	// The count caps what is due, and ends the stream.
	s.sent = 2490
	if n, _ := s.due(10 * time.Second); n != 10 {
		t.Errorf("10 before the count: %d due", n)
	}
	s.sent = 2500
	if !s.finished(10 * time.Second) {
		t.Error("not finished at its count")
	}
	// A duration ends it too, counted from its own start.
	d := &Stream{Duration: time.Second, After: time.Second}
	if d.finished(1900*time.Millisecond) || !d.finished(2*time.Second) {
		t.Error("a 1 s stream starting at 1 s must end at 2 s")
	}
	// No limit: never finished; rate 0: a burst whenever asked.
	u := &Stream{}
	if n, _ := u.due(time.Hour); u.finished(time.Hour) || n != SendBurst {
		t.Errorf("unlimited stream: finished %v, %d due", u.finished(time.Hour), n)
	}
}
