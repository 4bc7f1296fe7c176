package daemon

import (
	"strings"
	"testing"
	"time"

	"github.com/peerwatch/peerwatch/sensor/linkwatch"
)

func TestHealth(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	at := func(sec int) time.Time { return t0.Add(time.Duration(sec) * time.Second) }
	up := []string{"eth1"}
	h := &health{interval: 10 * time.Second} // drain late after 30 s, counts lag 25 s
	steps := []struct {
		s    healthSample
		want string
	}{
		{healthSample{now: at(0), lastDrain: at(0), seen: 0, rx: 100, up: up}, ""},
		{healthSample{now: at(10), lastDrain: at(10), seen: 0, rx: 100, up: up}, ""},  // quiet
		{healthSample{now: at(20), lastDrain: at(20), seen: 0, rx: 150, up: up}, ""},  // received, not drained yet
		{healthSample{now: at(30), lastDrain: at(30), seen: 50, rx: 170, up: up}, ""}, // counted
		{healthSample{now: at(40), lastDrain: at(40), seen: 50, rx: 180, up: up}, ""},
		{healthSample{now: at(50), lastDrain: at(50), seen: 50, rx: 190, up: up}, ""},
		{healthSample{now: at(56), lastDrain: at(50), seen: 50, rx: 195, up: up}, "eth1 received 25 packets in 26s but the program counted none"},
		{healthSample{now: at(60), lastDrain: at(60), seen: 75, rx: 200, up: up}, ""}, // counting again
		{healthSample{now: at(91), lastDrain: at(60), seen: 75, rx: 200, up: up}, "no drain for 31s (drain.interval 10s)"},
		{healthSample{now: at(95), lastDrain: at(94), seen: 75, rx: 200, up: nil}, ""},
	}
	for i, st := range steps {
		err := h.check(st.s)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != st.want {
			t.Errorf("step %d: got %q, want %q", i, got, st.want)
		}
	}
}

func TestReconciledAndStatusLine(t *testing.T) {
	st := []linkwatch.Status{
		{Selector: linkwatch.Selector{Name: "eth1"}, Ifname: "eth1", State: linkwatch.StateAttached, Mode: "xdp-native", Since: time.Now()},
		{Selector: linkwatch.Selector{MAC: "00:11:22:33:44:55"}, State: linkwatch.StateMissing},
	}
	if reconciled(st) {
		t.Error("reconciled before the second interface was looked at")
	}
	st[1].Since = time.Now()
	if !reconciled(st) || !reconciled(nil) {
		t.Error("not reconciled")
	}
	want := "counting: eth1 attached (xdp-native), mac 00:11:22:33:44:55 missing"
	if got := interfacesLine(st); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if got := interfacesLine(nil); !strings.HasPrefix(got, "no interfaces") {
		t.Errorf("no interfaces: %q", got)
	}
}
