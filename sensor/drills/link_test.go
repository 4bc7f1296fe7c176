package drills_test

import (
	"fmt"

	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/peerwatch/peerwatch/internal/testutil"
)

// TestNetnsDrillLink takes sensord's interface down and up, deletes and
// recreates it, and renames it, with sensord running and selecting the
// interface by MAC address (as a board whose names change between boots
// does). After each event sensord must report the state (down, missing),
// attach the program again and log it, and count every packet sent after
// it exactly. sensor/linkwatch's TestNetnsLinkWatch covers the netlink logic
// against a recording attacher; this drill runs it with the real program.
func TestNetnsDrillLink(t *testing.T) {
	l := newLab(t)
	r := newReport(t, "link")
	sensorNL := l.sensor.Netlink()
	link := func(nl *netlink.Handle, name string) netlink.Link {
		t.Helper()
		lk, err := nl.LinkByName(name)
		if err != nil {
			t.Fatalf("link %s: %v", name, err)
		}
		return lk
	}
	mac := link(sensorNL, l.ifname).Attrs().HardwareAddr
	l.selector = "mac: " + mac.String()
	p := l.start(l.config(filepath.Join(l.dir, "data"), ""))
	l.waitAttached(p, 60*time.Second)

	var sent uint64
	// check sends a burst and waits until the store holds everything sent.
	check := func(step string) {
		t.Helper()
		sent += l.burst(1000)
		l.settle(sent, 20*time.Second)
		if t.Failed() {
			t.Fatalf("after %s: counts differ", step)
		}
	}
	// state waits until the API reports the interface in state (under name
	// when it is attached) and returns how long that took.
	state := func(want, name string, since time.Time) time.Duration {
		t.Helper()
		poll(t, 20*time.Second, "interface "+want, func() (bool, error) {
			st, err := l.status()
			if err != nil {
				return false, err
			}
			return len(st.Interfaces) == 1 && st.Interfaces[0].State == want && (name == "" || st.Interfaces[0].Name == name), nil
		})
		return time.Since(since).Round(time.Millisecond)
	}
	check("start")

	// Down and up: reported down, the program stays attached.
	at := time.Now()
	must(t, sensorNL.LinkSetDown(link(sensorNL, l.ifname)))
	state("down", "", at)
	at = time.Now()
	must(t, sensorNL.LinkSetUp(link(sensorNL, l.ifname)))
	r.set("up_after", state("attached", l.ifname, at))
	check("down/up")

	// Deleted and created again with the same MAC: missing, then attached
	// under the new ifindex.
	at = time.Now()
	must(t, sensorNL.LinkDel(link(sensorNL, l.ifname)))
	state("missing", "", at)
	at = time.Now()
	veth := &netlink.Veth{
		LinkAttrs:        netlink.LinkAttrs{Name: "pw-peer", Namespace: netlink.NsFd(l.peer.Handle()), TxQLen: 1000},
		PeerName:         l.ifname,
		PeerNamespace:    netlink.NsFd(l.sensor.Handle()),
		PeerHardwareAddr: mac,
	}
	must(t, netlink.LinkAdd(veth))
	for _, x := range []struct {
		ns   *testutil.Namespace
		name string
	}{{l.peer, "pw-peer"}, {l.sensor, l.ifname}} {
		must(t, x.ns.Do(func() error {
			return os.WriteFile("/proc/sys/net/ipv6/conf/"+x.name+"/disable_ipv6", []byte("1"), 0)
		}))
		must(t, x.ns.Netlink().LinkSetUp(link(x.ns.Netlink(), x.name)))
	}
	r.set("recreated_after", state("attached", l.ifname, at))
	l.from = testutil.NewSender(t, l.peer, "pw-peer")
	check("delete/create")

	// Renamed (the kernel renames only links that are down).
	at = time.Now()
	must(t, sensorNL.LinkSetDown(link(sensorNL, l.ifname)))
	must(t, sensorNL.LinkSetName(link(sensorNL, l.ifname), "pw-renamed"))
	must(t, sensorNL.LinkSetUp(link(sensorNL, "pw-renamed")))
	r.set("renamed_after", state("attached", "pw-renamed", at))
	check("rename")

	// sensord said so in its log: attached four times (start, up again,
	// created again, renamed), down once, missing once.
	log, err := os.ReadFile(p.log)
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	for _, line := range strings.Split(string(log), "\n") {
		for _, m := range []string{"interface attached", "interface down, program stays attached", "interface missing"} {
			if strings.Contains(line, m) {
				counts[m]++
			}
		}
	}
	if counts["interface attached"] < 3 || counts["interface down, program stays attached"] < 2 || counts["interface missing"] < 1 {
		t.Errorf("sensord's log: %v", counts)
	}
	r.set("log", fmt.Sprintf("attached:%d,down:%d,missing:%d", counts["interface attached"],
		counts["interface down, program stays attached"], counts["interface missing"]))
	r.set("sent", sent)
	stored, _ := l.stored()
	r.set("stored", stored)
	p.stop(t)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
