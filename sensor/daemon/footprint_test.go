package daemon_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/peerwatch/peerwatch/internal/testutil"
)

// TestNetnsSensordFootprint starts sensord with the full real tables
// (country and AS, IPv4 and IPv6) and measures the time until it counts and
// its peak resident memory: the budget is 10 s and 300 MB.
func TestNetnsSensordFootprint(t *testing.T) {
	testutil.RequireBPF(t)
	dir := t.TempDir()
	sensord := testutil.Build(t, dir, "sensor/cmd/sensord")
	sensor := testutil.NewNamespace(t)
	other := testutil.NewNamespace(t)
	testutil.Veth(t, other, "pw-peer", sensor, "pw-sensor")

	cfg := filepath.Join(dir, "sensord.yaml")
	err := os.WriteFile(cfg, []byte(fmt.Sprintf(`
data_dir: %[1]s
bpffs_dir: %[2]s
interfaces: [{name: pw-sensor}]
local_prefixes: ["192.0.2.0/24"]
tables:
  - {name: country, format: ip-location-country, files: [%[3]s/geo-whois-asn-country-ipv4.csv.gz, %[3]s/geo-whois-asn-country-ipv6.csv.gz]}
  - {name: asn, format: ip-location-asn, files: [%[3]s/asn-ipv4.csv.gz, %[3]s/asn-ipv6.csv.gz]}
http: {listen: "127.0.0.1:19101"}
`, dir, testutil.PinDir(t), ipdb)), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	cmd := startSensord(t, sensor, sensord, cfg, dir).cmd

	api := sensor.HTTPClient()
	var status struct {
		Interfaces []struct{ State string } `json:"interfaces"`
	}
	var ready time.Duration
	for {
		err := getJSON(t, api, "http://127.0.0.1:19101/api/v1/status", &status)
		if err == nil && len(status.Interfaces) == 1 && status.Interfaces[0].State == "attached" {
			ready = time.Since(start)
			break
		}
		if time.Since(start) > 60*time.Second {
			t.Fatalf("not attached after 60 s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// sensord runs under nsenter, which execs it: the pid is sensord's.
	peak := peakRSS(t, cmd.Process.Pid)
	// The time to counting is a figure for docs/benchmarks.md (10 s on a
	// quiet machine is the aim), not an assertion: on a shared machine it
	// measures the neighbours. 60 s above catches a hang.
	t.Logf("full real tables: counting after %.1f s, peak RSS %d MB", ready.Seconds(), peak>>20)
	if peak > 300<<20 {
		t.Errorf("sensord's peak RSS is %d MB, budget 300 MB", peak>>20)
	}
}

// peakRSS reads a process's peak resident set (VmHWM) in bytes.
func peakRSS(t *testing.T, pid int) uint64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseUint(f[1], 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc status")
	return 0
}
