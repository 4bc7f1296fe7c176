package main_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/peerwatch/peerwatch/internal/testutil"
	"github.com/peerwatch/peerwatch/sensor/collector"
	"github.com/peerwatch/peerwatch/sensor/summary"
	"github.com/peerwatch/peerwatch/sensor/traffic"
	"github.com/peerwatch/peerwatch/sensor/trafficgen"
)

// Tier 3: the lab (scripts/lab), two sensord on its mirror ports publishing
// to a real mosquitto, collectord subscribed to it, a third sensord inline on one link inside the
// lab, and pwtraffic sending a fixed count on both links: what pwtraffic
// reports as sent, per prefix, country and AS, is what each sensor counted,
// and what the collector aggregated, exactly.

var repo, _ = filepath.Abs(filepath.Join("..", "..", ".."))

// process is a command of the test with its log, killed at cleanup.
type process struct {
	name  string
	cmd   *exec.Cmd
	log   string
	stdin io.WriteCloser // with withStdin
	done  chan error
}

func start(t *testing.T, dir, name string, withStdin bool, args ...string) *process {
	t.Helper()
	p := &process{name: name, log: filepath.Join(dir, name+".log"), done: make(chan error, 1)}
	f, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(args[0], args[1:]...)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	if withStdin {
		if p.stdin, err = p.cmd.StdinPipe(); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { p.done <- p.cmd.Wait(); f.Close() }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Signal(os.Interrupt)
			select {
			case <-p.done:
			case <-time.After(15 * time.Second):
				_ = p.cmd.Process.Kill()
				<-p.done
			}
		}
		if t.Failed() {
			b, _ := os.ReadFile(p.log)
			t.Logf("%s log:\n%s", name, b)
		}
	})
	return p
}

var hostClient = &http.Client{Timeout: 10 * time.Second}

func getJSON(url string, v any) error { return getJSONWith(hostClient, url, v) }

func getJSONWith(c *http.Client, url string, v any) error {
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return fmt.Errorf("%s: %s: %s", url, resp.Status, b)
	}
	return json.Unmarshal(b, v)
}

// poll calls cond every 200 ms until it returns true or the deadline passes.
func poll(t *testing.T, within time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ok, err := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, within, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// nsClient is an HTTP client whose connections are made inside the named
// network namespace: for a sensord that runs inside the lab.
func nsClient(t *testing.T, name string) *http.Client {
	ns, err := netns.GetFromName(name)
	if err != nil {
		t.Fatalf("network namespace %s: %v", name, err)
	}
	t.Cleanup(func() { ns.Close() })
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		type result struct {
			conn net.Conn
			err  error
		}
		done := make(chan result, 1)
		go func() {
			runtime.LockOSThread() // the thread dies with the goroutine, still in ns
			if err := netns.Set(ns); err != nil {
				done <- result{nil, err}
				return
			}
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			done <- result{c, err}
		}()
		r := <-done
		return r.conn, r.err
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: dial}}
}

// checkSensor compares a sensord's /api/v1/top by prefix, country and AS
// with what was sent on its link.
func checkSensor(t *testing.T, name string, c *http.Client, addr string, want *expected) {
	t.Helper()
	top := func(by string) sensorTop {
		var tp sensorTop
		if err := getJSONWith(c, "http://"+addr+"/api/v1/top?window=1h&limit=10000&by="+by, &tp); err != nil {
			t.Fatal(err)
		}
		return tp
	}
	poll(t, 20*time.Second, name+" counted everything", func() (bool, error) {
		tp := top("country")
		return tp.Total.counters() == want.total, fmt.Errorf("counted %+v, sent %+v", tp.Total.counters(), want.total)
	})
	for _, by := range []string{"prefix", "country", "as"} {
		tp := top(by)
		if tp.Other.counters() != (traffic.Counters{}) {
			t.Errorf("%s by %s: %+v left in other", name, by, tp.Other.counters())
		}
		switch by {
		case "prefix":
			got := map[netip.Prefix]traffic.Counters{}
			for _, r := range tp.Rows {
				got[r.Prefix] = r.counters()
			}
			compare(t, name+" prefix", want.prefixes, got)
		case "country":
			got := map[string]traffic.Counters{}
			for _, r := range tp.Rows {
				got[r.Country] = r.counters()
			}
			compare(t, name+" country", want.countries, got)
		case "as":
			got := map[uint32]traffic.Counters{}
			for _, r := range tp.Rows {
				got[r.ASN] = r.counters()
			}
			compare(t, name+" AS", want.ases, got)
		}
	}
}

// sensorRow is a row of sensord's /api/v1/top.
type sensorRow struct {
	Prefix     netip.Prefix      `json:"prefix"`
	Country    string            `json:"country"`
	ASN        uint32            `json:"asn"`
	PacketsIn  uint64            `json:"packets_in"`
	PacketsOut uint64            `json:"packets_out"`
	BytesIn    uint64            `json:"bytes_in"`
	BytesOut   uint64            `json:"bytes_out"`
	Classes    map[string]uint64 `json:"classes"`
}

func (r sensorRow) counters() traffic.Counters {
	c := traffic.Counters{Packets: [2]uint64{r.PacketsIn, r.PacketsOut}, Bytes: [2]uint64{r.BytesIn, r.BytesOut}}
	for i := range traffic.NumClasses {
		c.Class[i] = r.Classes[traffic.Class(i).String()]
	}
	return c
}

type sensorTop struct {
	Rows  []sensorRow `json:"rows"`
	Total sensorRow   `json:"total"`
	Other sensorRow   `json:"other"`
}

// expected sums reports: counters per prefix, country and AS.
type expected struct {
	total     traffic.Counters
	prefixes  map[netip.Prefix]traffic.Counters
	countries map[string]traffic.Counters
	ases      map[uint32]traffic.Counters
}

func newExpected() *expected {
	return &expected{prefixes: map[netip.Prefix]traffic.Counters{}, countries: map[string]traffic.Counters{}, ases: map[uint32]traffic.Counters{}}
}

func (e *expected) add(r trafficgen.Report) {
	e.total.Add(r.Sent)
	for _, p := range r.Prefixes {
		c := e.prefixes[p.Prefix]
		c.Add(p.Counters)
		e.prefixes[p.Prefix] = c
	}
	for _, p := range r.Countries {
		c := e.countries[p.Country]
		c.Add(p.Counters)
		e.countries[p.Country] = c
	}
	for _, p := range r.ASes {
		c := e.ases[p.ASN]
		c.Add(p.Counters)
		e.ases[p.ASN] = c
	}
}

// compare reports every key whose counters differ between want and got.
func compare[K comparable](t *testing.T, what string, want, got map[K]traffic.Counters) {
	t.Helper()
	bad := 0
	for k, w := range want {
		if got[k] != w {
			if bad < 10 {
				t.Errorf("%s %v: counted %+v, sent %+v", what, k, got[k], w)
			}
			bad++
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			if bad < 10 {
				t.Errorf("%s %v: counted %+v, sent nothing", what, k, g)
			}
			bad++
		}
	}
	if bad > 0 {
		t.Errorf("%s: %d of %d keys differ", what, bad, len(want))
	}
}

type site struct {
	name    string
	http    string
	runs    []string // pwtraffic arguments of each run, in order
	traffic []*process
	want    *expected
}

// sensordConfig writes the configuration of a sensord counting on iface with
// the real tables and a KP watch list; uplink "" is none.
func sensordConfig(t *testing.T, dir, id, iface, hook, http, uplink string) string {
	t.Helper()
	ipdb := filepath.Join(repo, "board", "common", "ipdb")
	cfg := filepath.Join(dir, id+".yaml")
	text := fmt.Sprintf(`
sensor: {id: %[1]s, board: x86-64}
data_dir: %[2]s/%[1]s
bpffs_dir: %[3]s
interfaces: [{name: %[4]s, hook: %[5]s}]
local_prefixes: ["192.0.2.0/24", "2001:db8:1::/48"]
tables:
  - {name: country, format: ip-location-country, files: [%[6]s/geo-whois-asn-country-ipv4.csv.gz, %[6]s/geo-whois-asn-country-ipv6.csv.gz]}
  - {name: asn, format: ip-location-asn, files: [%[6]s/asn-ipv4.csv.gz, %[6]s/asn-ipv6.csv.gz]}
drain: {interval: 1s}
watch_lists:
  - {name: kp, countries: [KP], alert: {pps: 100}}
http: {listen: "%[7]s"}
`, id, dir, testutil.PinDir(t), iface, hook, ipdb, http)
	if hook == "xdp" {
		text += "datapath: {xdp_drop: true}\n" // a mirror port
	}
	if uplink != "" {
		text += fmt.Sprintf("uplink: {broker: %q}\n", uplink)
	}
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestNetnsLabFleet(t *testing.T) {
	testutil.RequireBPF(t)
	began := time.Now()
	dir := t.TempDir()
	bins := map[string]string{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, pkg := range []string{"sensord", "collectord", "pwtraffic"} {
		wg.Go(func() {
			b := testutil.Build(t, dir, "sensor/cmd/"+pkg)
			mu.Lock()
			bins[pkg] = b
			mu.Unlock()
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	// The lab, under a prefix of its own so that a demo's lab is left alone.
	var rnd [2]byte
	_, _ = rand.Read(rnd[:])
	prefix := "pw" + hex.EncodeToString(rnd[:])
	lab := func(verb string) (string, error) {
		cmd := exec.Command(filepath.Join(repo, "scripts", "lab"), verb)
		cmd.Env = append(os.Environ(), "LAB_PREFIX="+prefix, "LAB_SITES=ams1 fra1")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := lab("up"); err != nil {
		t.Fatalf("scripts/lab up: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := lab("down"); err != nil {
			t.Errorf("scripts/lab down: %v\n%s", err, out)
		}
		if _, err := os.Stat("/var/run/netns/" + prefix + "-ix"); err == nil {
			t.Errorf("scripts/lab down left the namespace %s-ix", prefix)
		}
	})
	if out, err := lab("up"); err != nil || !strings.Contains(out, "up already") {
		t.Errorf("scripts/lab up a second time: %v\n%s", err, out)
	}
	if out, err := lab("status"); err != nil || !strings.Contains(out, "lab "+prefix+": up") {
		t.Fatalf("scripts/lab status: %v\n%s", err, out)
	}
	// On a failure, the interfaces' own counters tell whether a frame was
	// lost on the way (a queue that dropped it) or miscounted.
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, site := range []string{"ams1", "fra1"} {
			out, _ := exec.Command("ip", "-s", "link", "show", prefix+"-"+site).CombinedOutput()
			t.Logf("mirror port %s-%s:\n%s", prefix, site, out)
			for _, l := range []string{site + "-p", site + "-l", site + "-m"} {
				out, _ := exec.Command("ip", "-n", prefix+"-ix", "-s", "link", "show", l).CombinedOutput()
				t.Logf("%s in %s-ix:\n%s", l, prefix, out)
			}
		}
	})

	// A real mosquitto between the sensors and the collector (the demo, and
	// TestNetnsDemo, use collectord's embedded broker).
	const mosquitto = "/usr/sbin/mosquitto"
	if _, err := os.Stat(mosquitto); err != nil {
		t.Skipf("%s not installed (scripts/install-deps installs the mosquitto package): %v", mosquitto, err)
	}
	broker, api := testutil.FreeAddr(t), testutil.FreeAddr(t)
	_, brokerPort, _ := net.SplitHostPort(broker)
	conf := filepath.Join(dir, "mosquitto.conf")
	if err := os.WriteFile(conf, []byte("listener "+brokerPort+" 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mq := start(t, dir, "mosquitto", false, mosquitto, "-c", conf)
	poll(t, 10*time.Second, "mosquitto listening on "+broker, func() (bool, error) {
		select {
		case err := <-mq.done:
			t.Fatalf("mosquitto exited: %v", err)
		default:
		}
		c, err := net.DialTimeout("tcp", broker, 200*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err == nil, err
	})
	start(t, dir, "collectord", false, bins["collectord"], "--broker", "tcp://"+broker, "--listen", api,
		"--data-dir", filepath.Join(dir, "collectord-data"), "--client-id", "collectord-lab-test")

	// Each site: its traffic runs, loaded and waiting while sensord starts.
	ipdb := filepath.Join(repo, "board", "common", "ipdb")
	sites := []*site{
		{name: "ams1", runs: []string{
			"--profile=peering --seed=1 --count=4000 --attack=spoofed --attack-count=300 --attack-rate=0",
		}},
		{name: "fra1", runs: []string{
			"--profile=peering --seed=2 --count=3000 --mix=KP=1,NZ=3,*=6 --attack=burst --attack-count=500 --country=KP",
		}},
	}
	for _, s := range sites {
		s.want = newExpected()
		for i, args := range s.runs {
			argv := append([]string{bins["pwtraffic"], "--site", s.name, "--lab", prefix, "--ipdb", ipdb, "--rate", "0", "--wait",
				"--report", filepath.Join(dir, fmt.Sprintf("%s-%d.json", s.name, i))}, strings.Fields(args)...)
			s.traffic = append(s.traffic, start(t, dir, fmt.Sprintf("pwtraffic-%s-%d", s.name, i), true, argv...))
		}
		s.http = testutil.FreeAddr(t)
		cfg := sensordConfig(t, dir, s.name, prefix+"-"+s.name, "xdp", s.http, "tcp://"+broker)
		start(t, dir, "sensord-"+s.name, false, bins["sensord"], "--config", cfg)
	}

	// The inline variant: a third sensord inside the lab, on ams1's link
	// itself (ams1-p in the ix namespace, TC: both directions), without an
	// uplink (the broker is on the host's loopback).
	inlineHTTP := "127.0.0.1:9100"
	inlineClient := nsClient(t, prefix+"-ix")
	cfg := sensordConfig(t, dir, "ams1-inline", "ams1-p", "tc", inlineHTTP, "")
	start(t, dir, "sensord-ams1-inline", false, "nsenter", "--net=/var/run/netns/"+prefix+"-ix", bins["sensord"], "--config", cfg)

	// Every sensord attached, and the two on the mirror ports online at the
	// collector.
	attached := func(name string, c *http.Client, addr string) {
		poll(t, 90*time.Second, "sensord "+name+" attached", func() (bool, error) {
			var st struct {
				Interfaces []struct{ Name, State string } `json:"interfaces"`
			}
			err := getJSONWith(c, "http://"+addr+"/api/v1/status", &st)
			return err == nil && len(st.Interfaces) == 1 && st.Interfaces[0].State == "attached", fmt.Errorf("%v %+v", err, st)
		})
	}
	for _, s := range sites {
		attached(s.name, hostClient, s.http)
	}
	attached("ams1 inline", inlineClient, inlineHTTP)
	type sensorState struct {
		ID     string `json:"id"`
		Online bool   `json:"online"`
	}
	poll(t, 30*time.Second, "both sensors online at collectord", func() (bool, error) {
		var ss struct{ Sensors []sensorState }
		err := getJSON("http://"+api+"/api/v1/sensors", &ss)
		online := 0
		for _, s := range ss.Sensors {
			if s.Online {
				online++
			}
		}
		return online == 2, fmt.Errorf("%v %+v", err, ss)
	})
	t.Logf("lab, collectord and three sensord up after %s", time.Since(began).Round(time.Millisecond))

	// Send: the runs of a site one after the other, the sites together.
	for _, s := range sites {
		wg.Go(func() {
			for _, p := range s.traffic {
				if _, err := io.WriteString(p.stdin, "go\n"); err != nil {
					t.Errorf("start %s: %v", p.name, err)
					return
				}
				if err := <-p.done; err != nil {
					t.Errorf("%s: %v", p.name, err)
					return
				}
				p.done <- nil // for the cleanup
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	fleet := newExpected()
	for _, s := range sites {
		for i := range s.runs {
			b, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("%s-%d.json", s.name, i)))
			if err != nil {
				t.Fatal(err)
			}
			var r trafficgen.Report
			if err := json.Unmarshal(b, &r); err != nil {
				t.Fatalf("report of %s run %d: %v", s.name, i, err)
			}
			s.want.add(r)
			fleet.add(r)
		}
		t.Logf("%s: sent %d packets (%d in, %d out), %d bytes, %d prefixes, %d countries, %d ASes", s.name, s.want.total.Total(),
			s.want.total.Packets[0], s.want.total.Packets[1], s.want.total.TotalBytes(), len(s.want.prefixes), len(s.want.countries), len(s.want.ases))
	}
	if fleet.countries["KP"].Total() < 500 {
		t.Fatalf("the runs sent %d packets from KP, want at least the burst's 500", fleet.countries["KP"].Total())
	}

	// Each sensor: per prefix, country and AS, exactly what its link carried;
	// the inline sensor on ams1's link exactly what the mirror port gave ams1.
	for _, s := range sites {
		checkSensor(t, s.name, hostClient, s.http, s.want)
	}
	checkSensor(t, "ams1 inline", inlineClient, inlineHTTP, sites[0].want)

	// The KP burst raised fra1's watch-list alert.
	alerted := func(s *site) bool {
		var al struct {
			Active, Recent []struct {
				List string `json:"list"`
			}
		}
		if err := getJSON("http://"+s.http+"/api/v1/alerts", &al); err != nil {
			t.Fatal(err)
		}
		for _, a := range append(al.Active, al.Recent...) {
			if a.List == "kp" {
				return true
			}
		}
		return false
	}
	if !alerted(sites[1]) {
		t.Errorf("fra1: no alert of the watch list kp after a burst of 500 packets from KP")
	}

	// The collector: the fleet's sum, exactly.
	ctop := func(by string) (traffic.Counters, json.RawMessage) {
		var resp struct {
			Remote traffic.Counters `json:"remote"`
			Items  json.RawMessage  `json:"items"`
		}
		if err := getJSON("http://"+api+"/api/v1/top?window=1h&by="+by, &resp); err != nil {
			t.Fatal(err)
		}
		return resp.Remote, resp.Items
	}
	poll(t, 20*time.Second, "collectord aggregated everything", func() (bool, error) {
		remote, _ := ctop("country")
		return remote == fleet.total, fmt.Errorf("aggregated %+v, sent %+v", remote, fleet.total)
	})
	_, items := ctop("country")
	var countries []summary.CountryCount
	if err := json.Unmarshal(items, &countries); err != nil {
		t.Fatal(err)
	}
	gotC := map[string]traffic.Counters{}
	for _, c := range countries {
		gotC[c.Country] = c.Counters
	}
	compare(t, "collector country", fleet.countries, gotC)
	_, items = ctop("as")
	var ases []summary.ASCount
	if err := json.Unmarshal(items, &ases); err != nil {
		t.Fatal(err)
	}
	gotA := map[uint32]traffic.Counters{}
	for _, a := range ases {
		gotA[a.ASN] = a.Counters
	}
	compare(t, "collector AS", fleet.ases, gotA)
	_, items = ctop("prefix")
	var pfx []summary.PrefixCount
	if err := json.Unmarshal(items, &pfx); err != nil {
		t.Fatal(err)
	}
	gotP := map[netip.Prefix]traffic.Counters{}
	for _, p := range pfx {
		gotP[p.Prefix] = p.Counters
	}
	compare(t, "collector prefix", fleet.prefixes, gotP)

	// Who sees KP: both sensors, with their own counts.
	var who struct {
		Sensors []collector.SensorCount `json:"sensors"`
	}
	if err := getJSON("http://"+api+"/api/v1/whosees?country=KP&window=1h", &who); err != nil {
		t.Fatal(err)
	}
	gotWho := map[string]traffic.Counters{}
	for _, s := range who.Sensors {
		gotWho[s.Sensor] = s.Counters
	}
	for _, s := range sites {
		if w := s.want.countries["KP"]; gotWho[s.name] != w {
			t.Errorf("whosees KP: %s %+v, sent %+v", s.name, gotWho[s.name], w)
		}
	}
	t.Logf("sent == counted at each sensor == aggregated at collectord, %s after the start", time.Since(began).Round(time.Millisecond))
}

// scripts/lab refuses bad names and verbs before it touches anything (no
// root needed).
func TestLabScriptRefusesBadInput(t *testing.T) {
	testutil.RequireNative(t)
	for _, tc := range []struct {
		env  []string
		verb string
		code int
		want string
	}{
		{[]string{"LAB_PREFIX=Lab"}, "up", 1, "LAB_PREFIX=Lab: want 1 to 6 lower-case letters or digits, starting with a letter"},
		{[]string{"LAB_PREFIX=pwlab123"}, "down", 1, "LAB_PREFIX=pwlab123: want 1 to 6"},
		{[]string{"LAB_SITES=ams1 frankfurt"}, "up", 1, `LAB_SITES: site "frankfurt": want 1 to 6 lower-case letters or digits`},
		{[]string{"LAB_SITES=ams1 ams1"}, "status", 1, `LAB_SITES: site "ams1" is named twice`},
		{nil, "start", 2, "Usage: scripts/lab up|down|status"},
	} {
		cmd := exec.Command(filepath.Join(repo, "scripts", "lab"), tc.verb)
		cmd.Env = append(os.Environ(), tc.env...)
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		if code != tc.code || !strings.Contains(string(out), tc.want) {
			t.Errorf("%v scripts/lab %s: exit %d %q, want exit %d and %q", tc.env, tc.verb, code, out, tc.code, tc.want)
		}
	}
}
