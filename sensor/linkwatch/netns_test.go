package linkwatch

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/peerwatch/peerwatch/internal/testutil"
)

// attachLog is an Attacher that records which ifindex each name had when it
// was attached, looked up in the test's namespace.
type attachLog struct {
	nl    *netlink.Handle
	mu    sync.Mutex
	calls []string
}

func (a *attachLog) Attach(ifname string) (string, error) {
	l, err := a.nl.LinkByName(ifname)
	if err != nil {
		return "", fmt.Errorf("attach to %s: %w", ifname, err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls = append(a.calls, fmt.Sprintf("attach %s@%d", ifname, l.Attrs().Index))
	return "test", nil
}

func (a *attachLog) Detach(ifname string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls = append(a.calls, "detach "+ifname)
	return nil
}

func (a *attachLog) take() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	c := a.calls
	a.calls = nil
	return c
}

// TestNetnsLinkWatch runs the watcher on real netlink in a namespace of its
// own: links appear, are recreated, renamed and set down.
func TestNetnsLinkWatch(t *testing.T) {
	ns := testutil.NewNamespace(t)
	nl := ns.Netlink()
	peer := testutil.NewNamespace(t)
	macSel := "02:00:5e:00:53:01"

	log, _ := testLogger(t)
	att := &attachLog{nl: nl}
	w := New([]Selector{{Name: "pwname0"}, {MAC: macSel}, {Altname: "pw-uplink"}}, att, log)
	h, err := netlink.NewHandleAt(ns.Handle())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	nsh := ns.Handle()
	w.useNetlink(h, &nsh)
	w.resync = time.Hour // updates alone must drive it

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
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

	waitStatus := func(i int, state State, ifname string) Status {
		t.Helper()
		var last Status
		deadline := time.Now().Add(5 * time.Second)
		for {
			last = w.Status()[i]
			if last.State == state && last.Ifname == ifname {
				return last
			}
			if time.Now().After(deadline) {
				t.Fatalf("status %d = %+v, want %s on %q", i, last, state, ifname)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	index := func(name string) int {
		t.Helper()
		l, err := nl.LinkByName(name)
		if err != nil {
			t.Fatalf("link %s: %v", name, err)
		}
		return l.Attrs().Index
	}
	wantCalls := func(want ...string) {
		t.Helper()
		if got := att.take(); !slices.Equal(got, want) {
			t.Fatalf("attacher calls = %q, want %q", got, want)
		}
	}
	link := func(name string) netlink.Link {
		t.Helper()
		l, err := nl.LinkByName(name)
		if err != nil {
			t.Fatalf("link %s: %v", name, err)
		}
		return l
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}

	// Nothing configured exists yet.
	for i := range 3 {
		waitStatus(i, StateMissing, "")
	}

	// A veth pair appears: selected by name.
	testutil.Veth(t, ns, "pwname0", peer, "pwpeer0")
	s := waitStatus(0, StateAttached, "pwname0")
	if s.Ifindex != index("pwname0") || s.Mode != "test" {
		t.Fatalf("status = %+v", s)
	}
	wantCalls(fmt.Sprintf("attach pwname0@%d", s.Ifindex))

	// Deleted: missing; created again: attached under the new ifindex.
	old := s.Ifindex
	must(nl.LinkDel(link("pwname0")))
	waitStatus(0, StateMissing, "")
	wantCalls("detach pwname0")
	testutil.Veth(t, ns, "pwname0", peer, "pwpeer0")
	s = waitStatus(0, StateAttached, "pwname0")
	if s.Ifindex == old || s.Ifindex != index("pwname0") {
		t.Fatalf("recreated link: status %+v, old ifindex %d", s, old)
	}
	wantCalls(fmt.Sprintf("attach pwname0@%d", s.Ifindex))

	// A link selected by MAC, and one selected by altname (veth pairs:
	// kernels without the dummy driver exist).
	testutil.Veth(t, ns, "pwmac0", peer, "pwpeer1")
	hw, _ := net.ParseMAC(macSel)
	must(nl.LinkSetHardwareAddr(link("pwmac0"), hw))
	s = waitStatus(1, StateAttached, "pwmac0")
	macIndex := s.Ifindex
	wantCalls(fmt.Sprintf("attach pwmac0@%d", macIndex))

	testutil.Veth(t, ns, "pwalt0", peer, "pwpeer2")
	must(nl.LinkAddAltName(link("pwalt0"), "pw-uplink"))
	s = waitStatus(2, StateAttached, "pwalt0")
	altIndex := s.Ifindex
	wantCalls(fmt.Sprintf("attach pwalt0@%d", altIndex))

	// Down: reported, still attached. The kernel renames only links that
	// are down.
	must(nl.LinkSetDown(link("pwmac0")))
	waitStatus(1, StateDown, "pwmac0")
	wantCalls()

	// Renamed while selected by MAC: attached again under the new name.
	must(nl.LinkSetName(link("pwmac0"), "pwmac1"))
	s = waitStatus(1, StateDown, "pwmac1")
	if s.Ifindex != macIndex {
		t.Fatalf("renamed link: status %+v, want ifindex %d", s, macIndex)
	}
	wantCalls("detach pwmac0", fmt.Sprintf("attach pwmac1@%d", macIndex))
	must(nl.LinkSetUp(link("pwmac1")))
	waitStatus(1, StateAttached, "pwmac1")

	// Renamed while selected by altname.
	must(nl.LinkSetDown(link("pwalt0")))
	must(nl.LinkSetName(link("pwalt0"), "pwalt1"))
	must(nl.LinkSetUp(link("pwalt1")))
	s = waitStatus(2, StateAttached, "pwalt1")
	if s.Ifindex != altIndex {
		t.Fatalf("renamed link: status %+v, want ifindex %d", s, altIndex)
	}

	// Renamed while selected by name: missing, and the program leaves it.
	must(nl.LinkSetDown(link("pwname0")))
	must(nl.LinkSetName(link("pwname0"), "pwother0"))
	waitStatus(0, StateMissing, "")
	calls := att.take()
	if !slices.Contains(calls, "detach pwname0") {
		t.Fatalf("attacher calls = %q, want a detach of pwname0", calls)
	}

	// The peer's side going down takes the carrier away.
	must(nl.LinkSetName(link("pwother0"), "pwname0"))
	must(nl.LinkSetUp(link("pwname0")))
	waitStatus(0, StateAttached, "pwname0")
	pl, err := peer.Netlink().LinkByName("pwpeer0")
	must(err)
	must(peer.Netlink().LinkSetDown(pl))
	waitStatus(0, StateDown, "pwname0")
	must(peer.Netlink().LinkSetUp(pl))
	waitStatus(0, StateAttached, "pwname0")
}
