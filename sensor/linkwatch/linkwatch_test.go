package linkwatch

import (
	"context"
	"errors"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

const (
	mac1 = "02:00:00:00:00:01"
	mac2 = "02:00:00:00:00:02"
)

type harness struct {
	w     *Watcher
	net   *fakeNet
	att   *recorder
	clock *fakeClock
	logs  *logBuffer
}

func newHarness(t *testing.T, sel ...Selector) *harness {
	t.Helper()
	log, logs := testLogger(t)
	h := &harness{
		net:   newFakeNet(),
		att:   newRecorder(),
		clock: &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)},
		logs:  logs,
	}
	h.w = New(sel, h.att, log)
	h.net.install(h.w)
	h.w.now = h.clock.now
	return h
}

// resync lists and reconciles once, as the watcher does on every update,
// and moves the clock a second so that Since tells changes apart.
func (h *harness) resync() {
	h.w.resyncNow()
	h.clock.advance(time.Second)
}

func (h *harness) status(t *testing.T, i int) Status {
	t.Helper()
	s := h.w.Status()
	if i >= len(s) {
		t.Fatalf("status has %d entries, want more than %d", len(s), i)
	}
	return s[i]
}

func (h *harness) wantStatus(t *testing.T, i int, state State, ifname string, ifindex int) Status {
	t.Helper()
	s := h.status(t, i)
	if s.State != state || s.Ifname != ifname || s.Ifindex != ifindex {
		t.Fatalf("status %d = %+v, want state %s, interface %q, ifindex %d", i, s, state, ifname, ifindex)
	}
	return s
}

func (h *harness) wantCalls(t *testing.T, want ...string) {
	t.Helper()
	if got := h.att.take(); !slices.Equal(got, want) {
		t.Fatalf("attacher calls = %q, want %q", got, want)
	}
}

func TestAppearDisappear(t *testing.T) {
	h := newHarness(t, Selector{Name: "eth0"})
	h.wantStatus(t, 0, StateMissing, "", 0)
	h.resync()
	h.wantStatus(t, 0, StateMissing, "", 0)
	h.wantCalls(t)

	idx := h.net.add("eth0", mac1)
	h.net.add("eth1", mac2)
	h.resync()
	s := h.wantStatus(t, 0, StateAttached, "eth0", idx)
	if s.Mode != "xdp-native" || s.Err != "" || s.Selector != (Selector{Name: "eth0"}) {
		t.Errorf("status = %+v", s)
	}
	h.wantCalls(t, "attach eth0")

	h.resync() // nothing changed: no call, same Since
	h.wantCalls(t)
	if got := h.status(t, 0); got.Since != s.Since {
		t.Errorf("Since moved from %v to %v without a change", s.Since, got.Since)
	}

	h.net.del("eth0")
	h.resync()
	s2 := h.wantStatus(t, 0, StateMissing, "", 0)
	if !s2.Since.After(s.Since) {
		t.Errorf("Since %v not after %v", s2.Since, s.Since)
	}
	h.wantCalls(t, "detach eth0")
}

func TestRecreateNewIfindex(t *testing.T) {
	h := newHarness(t, Selector{Name: "eth0"})
	old := h.net.add("eth0", mac1)
	h.resync()
	h.wantStatus(t, 0, StateAttached, "eth0", old)
	h.wantCalls(t, "attach eth0")

	// Deleted and created again between two reconciles.
	h.net.del("eth0")
	idx := h.net.add("eth0", mac1)
	h.resync()
	h.wantStatus(t, 0, StateAttached, "eth0", idx)
	h.wantCalls(t, "detach eth0", "attach eth0")
}

func TestRenameSelectedByName(t *testing.T) {
	h := newHarness(t, Selector{Name: "eth0"})
	idx := h.net.add("eth0", mac1)
	h.resync()
	h.wantCalls(t, "attach eth0")

	// The configured interface is gone; the program leaves the renamed link.
	h.net.rename("eth0", "wan0")
	h.resync()
	h.wantStatus(t, 0, StateMissing, "", 0)
	h.wantCalls(t, "detach eth0")
	h.resync()
	h.wantCalls(t)

	h.net.rename("wan0", "eth0")
	h.resync()
	h.wantStatus(t, 0, StateAttached, "eth0", idx)
	h.wantCalls(t, "attach eth0")
}

func TestRenameSelectedByMACOrAltname(t *testing.T) {
	for _, sel := range []Selector{
		{MAC: mac1},
		{MAC: "02:00:00:00:00:01"},
		{MAC: "02-00-00-00-00-01"},
		{Altname: "uplink"},
	} {
		t.Run(sel.String(), func(t *testing.T) {
			h := newHarness(t, sel)
			h.net.add("eth1", mac2, "other")
			idx := h.net.add("eth0", mac1, "uplink")
			h.resync()
			h.wantStatus(t, 0, StateAttached, "eth0", idx)
			h.wantCalls(t, "attach eth0")

			h.net.rename("eth0", "wan0")
			h.resync()
			h.wantStatus(t, 0, StateAttached, "wan0", idx)
			h.wantCalls(t, "detach eth0", "attach wan0")
		})
	}
}

func TestMACCaseAndAmbiguity(t *testing.T) {
	h := newHarness(t, Selector{MAC: "02:AB:CD:EF:00:01"})
	h.net.add("eth9", mac2)
	eth0 := h.net.add("eth0", "02:ab:cd:ef:00:01")
	h.net.add("eth0.100", "02:ab:cd:ef:00:01") // VLANs take the parent's MAC
	h.resync()
	h.wantStatus(t, 0, StateAttached, "eth0", eth0)
	h.wantCalls(t, "attach eth0")
}

func TestMACPermanentAddressFirst(t *testing.T) {
	// A bond takes its first port's MAC and gives it to all ports: the
	// link whose permanent address it is wins over the lower ifindex.
	h := newHarness(t, Selector{MAC: mac1})
	h.net.add("bond0", mac1)
	port := h.net.add("eth1", mac1)
	h.net.change("eth1", func(a *netlink.LinkAttrs) { a.PermHWAddr = mustMAC(mac1) })
	h.resync()
	h.wantStatus(t, 0, StateAttached, "eth1", port)
	h.wantCalls(t, "attach eth1")
}

func mustMAC(s string) net.HardwareAddr {
	hw, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return hw
}

func TestFollowedLinkStaysWhenMACIsShared(t *testing.T) {
	h := newHarness(t, Selector{MAC: mac1})
	h.net.add("eth0", mac2)
	br := h.net.add("br0", mac1)
	h.resync()
	h.wantStatus(t, 0, StateAttached, "br0", br)
	h.wantCalls(t, "attach br0")
	// eth0 takes the same address; it has the lower ifindex but br0 is
	// already followed.
	h.net.change("eth0", func(a *netlink.LinkAttrs) { a.HardwareAddr = mustMAC(mac1) })
	h.resync()
	h.wantStatus(t, 0, StateAttached, "br0", br)
	h.wantCalls(t)
}

func TestDownUp(t *testing.T) {
	h := newHarness(t, Selector{Name: "eth0"})
	idx := h.net.add("eth0", mac1)
	h.resync()
	h.wantCalls(t, "attach eth0")

	h.net.setUp("eth0", false)
	h.resync()
	s := h.wantStatus(t, 0, StateDown, "eth0", idx)
	if s.Mode != "xdp-native" {
		t.Errorf("down link lost its mode: %+v", s)
	}
	h.net.setUp("eth0", true)
	h.resync()
	h.wantStatus(t, 0, StateAttached, "eth0", idx)

	h.net.setCarrier("eth0", false)
	h.resync()
	h.wantStatus(t, 0, StateDown, "eth0", idx)
	h.net.setCarrier("eth0", true)
	h.resync()
	h.wantStatus(t, 0, StateAttached, "eth0", idx)
	h.wantCalls(t) // XDP and TC stay on a down link: no re-attach

	// Links without carrier handling say "unknown" when up.
	h.net.change("eth0", func(a *netlink.LinkAttrs) { a.OperState = netlink.OperUnknown })
	h.resync()
	h.wantStatus(t, 0, StateAttached, "eth0", idx)

	// A link that appears down is attached all the same.
	h.net.del("eth0")
	idx = h.net.add("eth0", mac1)
	h.net.setUp("eth0", false)
	h.resync()
	h.wantStatus(t, 0, StateDown, "eth0", idx)
	h.wantCalls(t, "detach eth0", "attach eth0")
}

func TestAttachFailureRetried(t *testing.T) {
	h := newHarness(t, Selector{Name: "eth0"})
	idx := h.net.add("eth0", mac1)
	h.att.setFail("eth0", unix.EBUSY)
	h.resync()
	s := h.wantStatus(t, 0, StateError, "eth0", idx)
	if s.Err != "attach xdp to eth0: device or resource busy" || s.Mode != "" {
		t.Errorf("status = %+v", s)
	}
	h.wantCalls(t, "attach eth0")
	const failLog = "attach failed"
	if n := h.logs.count(failLog); n != 1 {
		t.Fatalf("%d error logs, want 1", n)
	}

	// Retried at every reconcile, logged once a minute.
	for range 10 {
		h.resync()
		h.wantCalls(t, "attach eth0")
	}
	if n := h.logs.count(failLog); n != 1 {
		t.Fatalf("%d error logs after 10 retries within a minute, want 1", n)
	}
	if got := h.status(t, 0).Since; got != s.Since {
		t.Errorf("Since moved while the error stayed: %v, %v", s.Since, got)
	}
	h.clock.advance(time.Minute)
	h.resync()
	h.wantCalls(t, "attach eth0")
	if n := h.logs.count(failLog); n != 2 {
		t.Fatalf("%d error logs after a minute, want 2", n)
	}

	h.att.setFail("eth0", nil)
	h.resync()
	h.wantStatus(t, 0, StateAttached, "eth0", idx)
	h.wantCalls(t, "attach eth0")

	// A new failure is logged at once.
	h.net.del("eth0")
	h.att.setFail("eth0", unix.ENODEV)
	idx = h.net.add("eth0", mac1)
	h.resync()
	h.wantStatus(t, 0, StateError, "eth0", idx)
	if n := h.logs.count(failLog); n != 3 {
		t.Fatalf("%d error logs, want 3", n)
	}
}

func TestSelectorsSharingALink(t *testing.T) {
	h := newHarness(t, Selector{Name: "eth0"}, Selector{MAC: mac1}, Selector{Altname: "wan"})
	idx := h.net.add("eth0", mac1, "wan")
	h.resync()
	for i := range 3 {
		h.wantStatus(t, i, StateAttached, "eth0", idx)
	}
	h.wantCalls(t, "attach eth0")

	// Renamed: the name selector misses it, the others follow it.
	h.net.rename("eth0", "eth5")
	h.resync()
	h.wantStatus(t, 0, StateMissing, "", 0)
	h.wantStatus(t, 1, StateAttached, "eth5", idx)
	h.wantStatus(t, 2, StateAttached, "eth5", idx)
	h.wantCalls(t, "detach eth0", "attach eth5")

	// One failed attach per interface and reconcile.
	h.net.del("eth5")
	h.att.setFail("eth0", unix.EBUSY)
	h.net.add("eth0", mac1, "wan")
	h.resync()
	for i := range 3 {
		if s := h.status(t, i); s.State != StateError {
			t.Errorf("status %d = %+v, want error", i, s)
		}
	}
	h.wantCalls(t, "detach eth5", "attach eth0")
}

func TestInvalidMAC(t *testing.T) {
	h := newHarness(t, Selector{MAC: "not-a-mac"})
	h.resync()
	s := h.status(t, 0)
	if s.State != StateError || s.Err == "" {
		t.Fatalf("status = %+v, want an error", s)
	}
}

func TestListError(t *testing.T) {
	h := newHarness(t, Selector{Name: "eth0"})
	idx := h.net.add("eth0", mac1)
	h.resync()
	h.net.mu.Lock()
	h.net.listErr = errors.New("netlink receive: interrupted")
	h.net.mu.Unlock()
	for range 5 {
		h.resync()
	}
	// The last known state stands; the failure is logged once a minute.
	h.wantStatus(t, 0, StateAttached, "eth0", idx)
	if n := h.logs.count("list links"); n != 1 {
		t.Errorf("%d list error logs, want 1", n)
	}
}

func TestBridgePortDellinkIgnored(t *testing.T) {
	h := newHarness(t, Selector{Name: "eth0"})
	idx := h.net.add("eth0", mac1)
	h.resync()
	u := update(unix.RTM_DELLINK, h.net.byName("eth0"))
	u.Family = unix.AF_BRIDGE // a port leaving its bridge
	h.w.update(u)
	h.wantStatus(t, 0, StateAttached, "eth0", idx)
}

// run starts Run and stops it at the end of the test, checking that it
// returns.
func (h *harness) run(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("Run did not return after cancel")
		}
	})
}

// eventually polls cond for up to five seconds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (h *harness) eventuallyStatus(t *testing.T, i int, state State, ifname string, ifindex int) {
	t.Helper()
	eventually(t, "status", func() bool {
		s := h.w.Status()[i]
		return s.State == state && s.Ifname == ifname && s.Ifindex == ifindex
	})
}

func TestRunFollowsUpdates(t *testing.T) {
	h := newHarness(t, Selector{Name: "eth0"}, Selector{MAC: mac2})
	h.w.resync = time.Hour // only updates drive it
	eth1 := h.net.add("eth1", mac2)
	h.run(t)
	h.eventuallyStatus(t, 1, StateAttached, "eth1", eth1)

	idx := h.net.add("eth0", mac1)
	h.eventuallyStatus(t, 0, StateAttached, "eth0", idx)

	// With the listing failing, the removal is seen from the update alone.
	h.net.mu.Lock()
	h.net.listErr = errors.New("listing broken")
	h.net.mu.Unlock()
	h.net.del("eth0")
	h.eventuallyStatus(t, 0, StateMissing, "", 0)
	h.wantStatus(t, 1, StateAttached, "eth1", eth1)

	h.net.mu.Lock()
	h.net.listErr = nil
	h.net.mu.Unlock()
	idx = h.net.add("eth0", mac1)
	h.eventuallyStatus(t, 0, StateAttached, "eth0", idx)

	h.net.rename("eth1", "lan0")
	h.eventuallyStatus(t, 1, StateAttached, "lan0", eth1)
	h.net.setUp("lan0", false)
	h.eventuallyStatus(t, 1, StateDown, "lan0", eth1)
}

func TestRunResync(t *testing.T) {
	h := newHarness(t, Selector{Name: "eth0"})
	h.w.resync = 10 * time.Millisecond
	h.run(t)
	// A change that brings no update (the fake's subscription is
	// bypassed) is found by the periodic listing.
	h.net.mu.Lock()
	h.net.nextIndex++
	idx := h.net.nextIndex
	h.net.links[idx] = &netlink.Device{LinkAttrs: netlink.LinkAttrs{Name: "eth0", Index: idx, Flags: net.FlagUp}}
	h.net.mu.Unlock()
	h.eventuallyStatus(t, 0, StateAttached, "eth0", idx)
}

func TestRunResubscribes(t *testing.T) {
	h := newHarness(t, Selector{Name: "eth0"})
	h.w.resync = time.Hour
	h.w.retry = 10 * time.Millisecond
	h.run(t)
	eventually(t, "first subscription", func() bool { return h.net.subscriptions() == 1 })

	h.net.endSubscriptions()
	eventually(t, "second subscription", func() bool { return h.net.subscriptions() == 2 })
	idx := h.net.add("eth0", mac1)
	h.eventuallyStatus(t, 0, StateAttached, "eth0", idx)
	if n := h.logs.count("subscription ended"); n != 1 {
		t.Errorf("%d subscription-ended logs, want 1", n)
	}
}

func TestRunSubscribeFails(t *testing.T) {
	h := newHarness(t, Selector{Name: "eth0"})
	h.net.subErr = unix.EPERM
	err := h.w.Run(context.Background())
	if !errors.Is(err, unix.EPERM) {
		t.Fatalf("Run = %v, want EPERM", err)
	}
}

func TestStatusConcurrent(t *testing.T) {
	h := newHarness(t, Selector{Name: "eth0"}, Selector{MAC: mac2}, Selector{Altname: "up"})
	h.w.resync = time.Millisecond
	h.run(t)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				for _, s := range h.w.Status() {
					_ = s.State
				}
			}
		})
	}
	for range 50 {
		h.net.add("eth0", mac1)
		h.net.add("eth1", mac2, "up")
		h.net.rename("eth1", "eth2")
		h.net.setUp("eth2", false)
		h.net.del("eth0")
		h.net.del("eth2")
	}
	idx := h.net.add("eth0", mac1)
	h.eventuallyStatus(t, 0, StateAttached, "eth0", idx)
	h.eventuallyStatus(t, 1, StateMissing, "", 0)
	close(stop)
	wg.Wait()
}

func TestNamesSwapped(t *testing.T) {
	// udev-style: two links selected by MAC swap their names between two
	// reconciles. The attacher works by name, so both are attached anew.
	h := newHarness(t, Selector{MAC: mac1}, Selector{MAC: mac2})
	a := h.net.add("eth0", mac1)
	b := h.net.add("eth1", mac2)
	h.resync()
	h.att.take()
	h.net.rename("eth0", "tmp")
	h.net.rename("eth1", "eth0")
	h.net.rename("tmp", "eth1")
	h.resync()
	h.wantStatus(t, 0, StateAttached, "eth1", a)
	h.wantStatus(t, 1, StateAttached, "eth0", b)
	calls := h.att.take()
	slices.Sort(calls)
	if want := []string{"attach eth0", "attach eth1", "detach eth0", "detach eth1"}; !slices.Equal(calls, want) {
		t.Fatalf("attacher calls = %q, want %q", calls, want)
	}
}
