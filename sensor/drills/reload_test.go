package drills_test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

var ipdb, _ = filepath.Abs(filepath.Join("..", "..", "board", "common", "ipdb"))

// kernelTrouble matches the kernel's reports of a CPU or RCU stuck too long.
var kernelTrouble = regexp.MustCompile(`soft lockup|hard LOCKUP|rcu_sched self-detected stall|rcu: INFO: rcu_(sched|preempt) (self-)?detected stall|hung_task|blocked for more than`)

// kmsgLines returns the kernel log lines that match re, read from
// /dev/kmsg without blocking (the whole ring buffer).
func kmsgLines(t *testing.T, re *regexp.Regexp) []string {
	t.Helper()
	out, err := exec.Command("dmesg", "--notime").Output()
	if err != nil {
		t.Fatalf("dmesg: %v", err)
	}
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		if re.MatchString(sc.Text()) {
			lines = append(lines, sc.Text())
		}
	}
	return lines
}

// TestNetnsDrillReload reloads the real country and AS tables (1.7 million
// prefixes, IPv4 and IPv6) with SIGHUP, DRILL_RELOADS times (3 in CI, 20
// for the record) one after the other, under traffic: the kernel switches
// table sets between two packets, so the store must end with exactly the
// packets sent, and the kernel must not report a soft lockup or an RCU
// stall meanwhile.
func TestNetnsDrillReload(t *testing.T) {
	l := newLab(t)
	if _, err := os.Stat(filepath.Join(ipdb, "asn-ipv4.csv.gz")); err != nil {
		t.Fatalf("the real tables are part of the repository: %v", err)
	}
	reloads := envInt(t, "DRILL_RELOADS", 3)
	r := newReport(t, "reload")
	troubleBefore := len(kmsgLines(t, kernelTrouble))
	l.tables = fmt.Sprintf(`tables:
  - {name: country, format: ip-location-country, files: [%[1]s/geo-whois-asn-country-ipv4.csv.gz, %[1]s/geo-whois-asn-country-ipv6.csv.gz]}
  - {name: asn, format: ip-location-asn, files: [%[1]s/asn-ipv4.csv.gz, %[1]s/asn-ipv6.csv.gz]}`, ipdb)
	p := l.start(l.config(filepath.Join(l.dir, "data"), ""))
	started := time.Now()
	l.waitAttached(p, 180*time.Second)
	r.set("first_load", time.Since(started).Round(100*time.Millisecond))
	tr := l.traffic(envInt(t, "DRILL_RATE", 2000))

	reloaded := func() int {
		b, _ := os.ReadFile(p.log)
		return strings.Count(string(b), "reloaded tables and watch lists")
	}
	var longest time.Duration
	for i := range reloads {
		at := time.Now()
		if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		poll(t, 180*time.Second, fmt.Sprintf("reload %d", i+1), func() (bool, error) {
			b, _ := os.ReadFile(p.log)
			if strings.Contains(string(b), "reload refused") {
				t.Fatalf("reload %d refused", i+1)
			}
			return reloaded() == i+1, nil
		})
		longest = max(longest, time.Since(at))
		r.set("reloads", i+1)
	}
	r.set("longest_reload", longest.Round(100*time.Millisecond))
	tr.end()
	sent := tr.sent.Load()
	got := l.settle(sent, 30*time.Second)
	r.set("sent", sent)
	r.set("stored", got)
	trouble := kmsgLines(t, kernelTrouble)
	r.set("kernel_stalls", len(trouble)-troubleBefore)
	if len(trouble) > troubleBefore {
		t.Errorf("the kernel reported trouble during the reloads:\n%s", strings.Join(trouble[troubleBefore:], "\n"))
	}
	p.stop(t)
}
