package drills_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/peerwatch/peerwatch/internal/testutil"
)

// startIn runs a program inside ns (nsenter --net), its output in
// dir/name.log, killed at cleanup.
func startIn(t *testing.T, ns *testutil.Namespace, dir, name string, args ...string) *sensordProc {
	t.Helper()
	logPath := filepath.Join(dir, name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command("nsenter", append([]string{"--net=/var/run/netns/" + ns.Name}, args...)...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &sensordProc{cmd: cmd, log: logPath, exited: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		if p.running() {
			_ = cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			if len(b) > 8000 {
				b = b[len(b)-8000:]
			}
			t.Logf("%s log (end):\n%s", name, b)
		}
	})
	return p
}

func getJSONWith(c *http.Client, url string, v any) error {
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s: %s", url, resp.Status, b)
	}
	return json.Unmarshal(b, v)
}

// collectorView is what the drill reads of collectord: the sensor's
// sequence numbers and the fleet's exact total.
type collectorView struct {
	Summaries, Duplicates, LastSeq uint64
	Missing                        uint64 // summaries in the gaps of the sequence numbers
	Repaired, Lost                 uint64 // gap repair: summaries that came into a gap, and lost for good
	Packets                        uint64
}

func readCollector(c *http.Client, base string) (collectorView, error) {
	var v collectorView
	var sensors struct {
		Sensors []struct {
			ID         string                         `json:"id"`
			LastSeq    uint64                         `json:"last_seq"`
			Summaries  uint64                         `json:"summaries"`
			Duplicates uint64                         `json:"duplicates"`
			Gaps       []struct{ First, Last uint64 } `json:"gaps"`
			Repaired   uint64                         `json:"repaired"`
			LostSeqs   uint64                         `json:"lost_seqs"`
		} `json:"sensors"`
	}
	if err := getJSONWith(c, base+"/api/v1/sensors", &sensors); err != nil {
		return v, err
	}
	for _, s := range sensors.Sensors {
		if s.ID == "drill" {
			v.Summaries, v.Duplicates, v.LastSeq = s.Summaries, s.Duplicates, s.LastSeq
			v.Repaired, v.Lost = s.Repaired, s.LostSeqs
			for _, g := range s.Gaps {
				v.Missing += g.Last - g.First + 1
			}
		}
	}
	var top struct {
		Remote struct {
			Packets [2]uint64 `json:"packets"`
		} `json:"remote"`
	}
	if err := getJSONWith(c, base+"/api/v1/top?by=country&window=6h&limit=1", &top); err != nil {
		return v, err
	}
	v.Packets = top.Remote.Packets[0] + top.Remote.Packets[1]
	return v, nil
}

// TestNetnsDrillBlackhole puts a real mosquitto and collectord in a
// namespace of their own, reached by sensord over a veth link
// (10.99.0.0/30), and blackholes that link under traffic (every frame lost,
// both ways) for DRILL_BLACKHOLE_SECONDS (15 in CI, 60 for the record, 600
// in the long run), then lifts it. The collector must end with every
// summary the sensor stored, once (no gap in the sequence numbers; one
// delivered again is dropped and counted as a duplicate), and its fleet
// total must equal the packets sent.
func TestNetnsDrillBlackhole(t *testing.T) {
	brokerDrill(t, "blackhole", false, true)
}

// TestNetnsDrillBrokerKill kills mosquitto (SIGKILL, no persistence) under
// traffic and starts it again, then checks the same as the blackhole.
// Summaries that the sensor publishes after the new broker is up but
// before collectord has subscribed again are acknowledged by the broker and
// delivered to nobody: the collector sees them as a gap and asks the
// sensor for them again (gap repair, docs/collectord.md), which sends them
// from its store.
func TestNetnsDrillBrokerKill(t *testing.T) {
	brokerDrill(t, "broker-kill", true, false)
}

func brokerDrill(t *testing.T, name string, kill, hole bool) {
	l := newLab(t)
	testutil.RequireMosquitto(t)
	r := newReport(t, name)
	blackhole := time.Duration(envInt(t, "DRILL_BLACKHOLE_SECONDS", 15)) * time.Second
	up := newUplinkLab(t, l)
	coll, base := up.collector, up.collectURL

	p := l.start(l.config(filepath.Join(l.dir, "data"), "uplink:\n  broker: "+up.broker+"\n"))
	l.waitAttached(p, 60*time.Second)
	tr := l.traffic(envInt(t, "DRILL_RATE", 2000))
	connected := func(want bool) func() (bool, error) {
		return func() (bool, error) {
			st, err := l.status()
			if err != nil {
				return false, err
			}
			return (st.Uplink.State == "connected") == want, nil
		}
	}
	poll(t, 30*time.Second, "uplink connected", connected(true))
	poll(t, 30*time.Second, "summaries at the collector", func() (bool, error) {
		v, err := readCollector(coll, base)
		return err == nil && v.Summaries >= 2, err
	})

	// The broker dies: SIGKILL, a few drains without it, a new one.
	if kill {
		_ = up.mosquitto.cmd.Process.Signal(syscall.SIGKILL)
		<-up.mosquitto.exited
		l.waitDrains(3, 15*time.Second)
		st, err := l.status()
		if err != nil {
			t.Fatal(err)
		}
		r.set("outbox_while_broker_dead", st.Uplink.Outbox)
		up.startBroker()
		at := time.Now()
		poll(t, 90*time.Second, "uplink connected to the new broker", connected(true))
		poll(t, 60*time.Second, "outbox empty after the broker's restart", func() (bool, error) {
			st, err := l.status()
			return err == nil && st.Uplink.Outbox == 0, err
		})
		r.set("caught_up_after_restart", time.Since(at).Round(100*time.Millisecond))
	}

	if hole {
		// The blackhole: every frame on the uplink's link lost, both ways.
		// netem (loss 100 %) where the kernel has it; else every frame is
		// redirected (tc mirred, as the lab uses) into a veth that is down,
		// where it is dropped: the same loss, both ways.
		tc := func(args ...string) error {
			out, err := exec.Command("ip", append([]string{"netns", "exec", l.sensor.Name, "tc"}, args...)...).CombinedOutput()
			if err != nil {
				return fmt.Errorf("tc %s: %v: %s", strings.Join(args, " "), err, out)
			}
			return nil
		}
		how := "netem"
		lift := []string{"qdisc", "del", "dev", "pw-up", "root"}
		if err := tc("qdisc", "add", "dev", "pw-up", "root", "netem", "loss", "100%"); err != nil {
			t.Logf("no netem (%v): redirecting into a veth that is down", err)
			how = "mirred-to-down-veth"
			lift = []string{"qdisc", "del", "dev", "pw-up", "clsact"}
			must(t, l.sensor.Netlink().LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "pw-hole"}, PeerName: "pw-hole-p"}))
			must(t, tc("qdisc", "add", "dev", "pw-up", "clsact"))
			for _, dir := range []string{"egress", "ingress"} {
				must(t, tc("filter", "add", "dev", "pw-up", dir, "u32", "match", "u32", "0", "0", "action", "mirred", "egress", "redirect", "dev", "pw-hole"))
			}
		}
		r.set("blackhole_by", how)
		var maxOutbox int
		deadline := time.Now().Add(blackhole)
		for time.Now().Before(deadline) {
			l.waitDrains(1, 15*time.Second)
			if st, err := l.status(); err == nil {
				maxOutbox = max(maxOutbox, st.Uplink.Outbox)
			}
		}
		r.set("blackhole", blackhole)
		r.set("outbox_max", maxOutbox)
		must(t, tc(lift...))
		at := time.Now()
		poll(t, 180*time.Second, "outbox empty after the blackhole", func() (bool, error) {
			st, err := l.status()
			return err == nil && st.Uplink.Outbox == 0 && st.Uplink.State == "connected", err
		})
		r.set("caught_up_after_blackhole", time.Since(at).Round(100*time.Millisecond))
	}

	tr.end()
	sent := tr.sent.Load()
	stored := l.settle(sent, 30*time.Second)
	poll(t, 60*time.Second, "outbox empty", func() (bool, error) {
		st, err := l.status()
		return err == nil && st.Uplink.Outbox == 0, err
	})
	var v collectorView
	var err error
	// Gap repair asks for a gap 20 s (--resend-grace) after it is found.
	deadline := time.Now().Add(60 * time.Second)
	for {
		v, err = readCollector(coll, base)
		if (err == nil && v.Packets >= sent && v.Missing == 0) || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	r.set("sent", sent)
	r.set("stored", stored)
	r.set("collector_packets", v.Packets)
	r.set("summaries", v.Summaries)
	r.set("last_seq", v.LastSeq)
	r.set("duplicates_dropped", v.Duplicates)
	r.set("missing_summaries", v.Missing)
	r.set("repaired_summaries", v.Repaired)
	r.set("lost_summaries", v.Lost)
	if v.Packets != sent || v.Missing != 0 || v.Lost != 0 || v.Summaries != v.LastSeq {
		t.Errorf("collector: %+v; sent %d", v, sent)
	}
	p.stop(t)
}

// uplinkLab is the uplink's side of a drill: a namespace for the broker,
// linked to the sensor's namespace (pw-up 10.99.0.2 — pw-broker
// 10.99.0.1), with mosquitto (no persistence) and collectord subscribed to
// it, whose API is on that namespace's loopback.
type uplinkLab struct {
	t          *testing.T
	l          *lab
	ns         *testutil.Namespace
	conf       string
	broker     string // tcp://10.99.0.1:1883
	mosquitto  *sensordProc
	collector  *http.Client
	collectURL string
}

func newUplinkLab(t *testing.T, l *lab) *uplinkLab {
	t.Helper()
	testutil.RequireMosquitto(t)
	collectord := filepath.Join(bin.dir, "collectord")
	if _, err := os.Stat(collectord); err != nil {
		testutil.Build(t, bin.dir, "sensor/cmd/collectord")
	}
	ns := testutil.NewNamespace(t)
	testutil.Veth(t, l.sensor, "pw-up", ns, "pw-broker")
	for _, x := range []struct {
		ns   *testutil.Namespace
		name string
		addr string
	}{{l.sensor, "pw-up", "10.99.0.2/30"}, {ns, "pw-broker", "10.99.0.1/30"}} {
		lk, err := x.ns.Netlink().LinkByName(x.name)
		if err != nil {
			t.Fatal(err)
		}
		a, _ := netlink.ParseAddr(x.addr)
		must(t, x.ns.Netlink().AddrAdd(lk, a))
	}
	up := &uplinkLab{t: t, l: l, ns: ns, conf: filepath.Join(l.dir, "mosquitto.conf"), broker: "tcp://10.99.0.1:1883",
		collector: ns.HTTPClient(), collectURL: "http://127.0.0.1:19200"}
	must(t, os.WriteFile(up.conf, []byte("listener 1883 10.99.0.1\nallow_anonymous true\npersistence false\n"), 0o644))
	up.startBroker()
	startIn(t, ns, l.dir, "collectord", collectord, "--broker", up.broker, "--listen", "127.0.0.1:19200",
		"--data-dir", filepath.Join(l.dir, "collectord"))
	return up
}

// startBroker starts mosquitto (again, after a kill) and waits until it
// listens.
func (up *uplinkLab) startBroker() {
	t := up.t
	t.Helper()
	mq := startIn(t, up.ns, up.l.dir, "mosquitto", "/usr/sbin/mosquitto", "-c", up.conf)
	poll(t, 10*time.Second, "mosquitto listening", func() (bool, error) {
		if !mq.running() {
			t.Fatalf("mosquitto exited: %v", mq.err)
		}
		c, err := dialIn(up.ns, "10.99.0.1:1883")
		if err == nil {
			c.Close()
		}
		return err == nil, err
	})
	up.mosquitto = mq
}

func dialIn(ns *testutil.Namespace, addr string) (net.Conn, error) {
	var c net.Conn
	err := ns.Do(func() (err error) {
		c, err = net.DialTimeout("tcp", addr, time.Second)
		return err
	})
	return c, err
}
