package main_test

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/peerwatch/peerwatch/internal/testutil"
	"github.com/peerwatch/peerwatch/sensor/trafficgen"
)

// TestNetnsDemo runs make demo's script as a user would: it must say that
// both sensors are online at the collector and that ams1 raised the alert
// for the KP burst, serve the status pages and the fleet API on loopback,
// and on Ctrl-C stop every process and remove the lab and the pinned maps,
// keeping the logs and the traffic reports.
func TestNetnsDemo(t *testing.T) {
	testutil.RequireBPF(t)
	var rnd [2]byte
	_, _ = rand.Read(rnd[:])
	prefix := "pd" + hex.EncodeToString(rnd[:])
	dir := filepath.Join(t.TempDir(), "demo")
	// Two free consecutive ports for the status pages.
	var sensorPort int
	for p := 19301; p < 19400; p += 2 {
		if portFree(p) && portFree(p+1) {
			sensorPort = p
			break
		}
	}
	if sensorPort == 0 {
		t.Fatal("no two free consecutive ports between 19301 and 19400")
	}
	broker, collector := testutil.FreeAddr(t), testutil.FreeAddr(t)
	pages := []string{net.JoinHostPort("127.0.0.1", itoa(sensorPort)), net.JoinHostPort("127.0.0.1", itoa(sensorPort+1))}

	cmd := exec.Command(filepath.Join(repo, "scripts", "demo"))
	cmd.Env = append(os.Environ(), "DEMO_DIR="+dir, "LAB_PREFIX="+prefix, "DEMO_BROKER="+broker, "DEMO_COLLECTOR="+collector,
		"DEMO_SENSOR_PORT="+itoa(sensorPort), "DEMO_ATTACK_AFTER=3s", "DEMO_DRAIN=1s", "DEMO_RATE=150", "DEMO_SKIP_DEPS=1")
	r, w := io.Pipe()
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait(); w.Close() }()
	var output strings.Builder
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = cmd.Process.Signal(os.Interrupt)
			select {
			case <-exited:
			case <-time.After(60 * time.Second):
				_ = cmd.Process.Kill()
			}
		}
		if t.Failed() {
			t.Logf("demo output:\n%s", output.String())
			for _, f := range []string{"collectord.log", "sensord-ams1.log", "sensord-fra1.log", "pwtraffic-ams1.log"} {
				b, _ := os.ReadFile(filepath.Join(dir, f))
				t.Logf("%s:\n%s", f, b)
			}
		}
	})

	// The demo says when both sensors are online and when the alert is up.
	want := map[string]bool{"collectord lists ams1 and fra1 online": false, "ams1 raised an alert for watch list kp": false}
	deadline := time.After(4 * time.Minute)
	for pending := len(want); pending > 0; {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("the demo ended early: %v", <-exited)
			}
			output.WriteString(line + "\n")
			for m, seen := range want {
				if !seen && strings.Contains(line, m) {
					want[m] = true
					pending--
				}
			}
		case <-deadline:
			t.Fatalf("within 4 minutes the demo did not say %v", want)
		}
	}
	go func() { // keep draining the output
		for line := range lines {
			output.WriteString(line + "\n")
		}
	}()
	for _, url := range []string{"http://" + collector + "/api/v1/sensors"} {
		if !strings.Contains(output.String(), url) {
			t.Errorf("the demo did not print %s", url)
		}
	}
	for i, site := range []string{"ams1", "fra1"} {
		page := "http://" + pages[i] + "/"
		if !strings.Contains(output.String(), page) {
			t.Errorf("the demo did not print %s's status page %s", site, page)
		}
		resp, err := http.Get(page)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), "peerwatch · "+site) {
			t.Errorf("%s: %s, page without its title:\n%.300s", page, resp.Status, b)
		}
		var top sensorTop
		if err := getJSON("http://"+pages[i]+"/api/v1/top?by=as&window=1h", &top); err != nil || len(top.Rows) == 0 || top.Total.PacketsIn == 0 {
			t.Errorf("%s: no traffic per AS: %v %+v", site, err, top.Total)
		}
	}

	// Ctrl-C: everything stops and the lab is gone; logs and reports stay.
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	stopped = true
	select {
	case err := <-exited:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 130 {
			t.Errorf("the demo exited with %v after SIGINT, want exit status 130", err)
		}
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("the demo did not stop within 60 s of SIGINT")
	}
	for _, ns := range []string{"-peer", "-ix", "-local"} {
		if _, err := os.Stat("/var/run/netns/" + prefix + ns); err == nil {
			t.Errorf("namespace %s%s left behind", prefix, ns)
		}
	}
	for _, site := range []string{"ams1", "fra1"} {
		if _, err := net.InterfaceByName(prefix + "-" + site); err == nil {
			t.Errorf("interface %s-%s left behind", prefix, site)
		}
		if _, err := os.Stat("/sys/fs/bpf/peerwatch-demo-" + prefix + "-" + site); err == nil {
			t.Errorf("pinned maps of %s left behind", site)
		}
		if _, err := os.Stat(filepath.Join(dir, site)); err == nil {
			t.Errorf("the store of %s left behind", site)
		}
	}
	for _, addr := range append([]string{broker, collector}, pages...) {
		if !portFree(atoiPort(addr)) {
			t.Errorf("%s still listening after the demo stopped", addr)
		}
	}
	for _, site := range []string{"ams1", "fra1"} {
		b, err := os.ReadFile(filepath.Join(dir, "traffic-"+site+".json"))
		if err != nil {
			t.Fatalf("the traffic report of %s: %v", site, err)
		}
		var rep trafficgen.Report
		if err := json.Unmarshal(b, &rep); err != nil {
			t.Fatal(err)
		}
		if len(rep.Streams) != 2 || rep.Streams[0].Sent.Total() == 0 || rep.Streams[1].Sent.Total() == 0 {
			t.Errorf("%s's report: streams %+v, want the steady mix and an attack, both sending", site, rep.Streams)
		}
	}
}

func portFree(port int) bool {
	c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", itoa(port)), time.Second)
	if err != nil {
		return true
	}
	c.Close()
	return false
}

func itoa(n int) string { return strconv.Itoa(n) }

// atoiPort is the port of host:port.
func atoiPort(addr string) int {
	_, p, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(p)
	return n
}
