package daemon_test

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf/link"
	"github.com/google/gopacket/layers"

	"github.com/peerwatch/peerwatch/internal/testutil"
)

func nextMessage(t *testing.T, ch <-chan string, within time.Duration) string {
	t.Helper()
	select {
	case m, ok := <-ch:
		if !ok {
			t.Fatal("notification socket closed")
		}
		return m
	case <-time.After(within):
		t.Fatalf("no notification within %s", within)
	}
	return ""
}

// TestNetnsSensordSystemdNotify runs sensord as systemd runs a Type=notify
// unit with WatchdogSec=: READY=1 comes once the program is attached, then
// WATCHDOG=1 keeps coming while packets flow and are counted, stops when
// the program no longer counts what the interface receives, and
// STOPPING=1 comes at SIGTERM.
func TestNetnsSensordSystemdNotify(t *testing.T) {
	testutil.RequireBPF(t)
	dir := t.TempDir()
	sensord := testutil.Build(t, dir, "sensor/cmd/sensord")
	peer, sensor := testutil.NewNamespace(t), testutil.NewNamespace(t)
	testutil.Veth(t, peer, "pw-peer", sensor, "pw-sd")
	from := testutil.NewSender(t, peer, "pw-peer")

	pins := testutil.PinDir(t)
	cfg := filepath.Join(dir, "sensord.yaml")
	err := os.WriteFile(cfg, []byte(fmt.Sprintf(`
sensor: {id: notify}
data_dir: %s
bpffs_dir: %s
interfaces: [{name: pw-sd}]
local_prefixes: ["192.0.2.0/24"]
tables: []
drain: {interval: 1s}
http: {listen: "127.0.0.1:19101"}
`, dir, pins)), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	msgs := testutil.NotifySocket(t, filepath.Join(dir, "notify"))
	sd := startSensord(t, sensor, sensord, cfg, dir, "NOTIFY_SOCKET="+filepath.Join(dir, "notify"), "WATCHDOG_USEC=1000000")
	cmd, exited := sd.cmd, sd.exited

	if got, want := nextMessage(t, msgs, 60*time.Second), "READY=1\nSTATUS=counting: pw-sd attached (xdp-native)"; got != want {
		t.Fatalf("first notification %q, want %q", got, want)
	}
	// Packets flow for four seconds; every half second brings WATCHDOG=1.
	frame := testutil.Frame{Src: netip.MustParseAddr("198.51.100.7"), Dst: netip.MustParseAddr("192.0.2.9"),
		Proto: layers.IPProtocolUDP, SrcPort: 53, DstPort: 40000}.Bytes(t)
	keepAlives := 0
	end := time.Now().Add(4 * time.Second)
	for time.Now().Before(end) {
		if err := from.Send(frame); err != nil {
			t.Fatal(err)
		}
		select {
		case m := <-msgs:
			if m != "WATCHDOG=1" {
				t.Fatalf("notification %q while healthy", m)
			}
			keepAlives++
		case <-time.After(20 * time.Millisecond):
		}
	}
	if keepAlives < 6 {
		t.Errorf("%d WATCHDOG=1 in 4 s with WATCHDOG_USEC=1000000, want at least 6 (one per 500 ms)", keepAlives)
	}

	// Detach the program behind sensord's back: the interface still
	// receives, the counts stop, and sensord withholds WATCHDOG=1 (systemd
	// would restart it) and says why.
	links, err := filepath.Glob(filepath.Join(pins, "links", "*"))
	if err != nil || len(links) != 1 {
		t.Fatalf("pinned links %v %v, want one", links, err)
	}
	l, err := link.LoadPinnedLink(links[0], nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Detach(); err != nil {
		t.Fatalf("detach %s: %v", links[0], err)
	}
	l.Close()
	var unhealthy string
	end = time.Now().Add(20 * time.Second) // counts lag: 2 intervals + 5 s
	for unhealthy == "" && time.Now().Before(end) {
		if err := from.Send(frame); err != nil {
			t.Fatal(err)
		}
		select {
		case m := <-msgs:
			if strings.HasPrefix(m, "STATUS=unhealthy: ") {
				unhealthy = m
			} else if m != "WATCHDOG=1" {
				t.Fatalf("notification %q", m)
			}
		case <-time.After(20 * time.Millisecond):
		}
	}
	if !regexp.MustCompile(`^STATUS=unhealthy: pw-sd received \d+ packets in \d+s but the program counted none$`).MatchString(unhealthy) {
		t.Fatalf("no unhealthy status 20 s after the detach: %q", unhealthy)
	}
	// From then on, no keep-alive.
	quiet := time.After(2 * time.Second)
	for waiting := true; waiting; {
		if err := from.Send(frame); err != nil {
			t.Fatal(err)
		}
		select {
		case m := <-msgs:
			if m == "WATCHDOG=1" {
				t.Fatal("WATCHDOG=1 while the program counts nothing")
			}
		case <-quiet:
			waiting = false
		case <-time.After(20 * time.Millisecond):
		}
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	for {
		m := nextMessage(t, msgs, 30*time.Second)
		if m == "STOPPING=1" {
			break
		}
		if !strings.HasPrefix(m, "STATUS=unhealthy: ") {
			t.Fatalf("notification %q while stopping", m)
		}
	}
	if err := <-exited; err != nil {
		t.Fatalf("sensord: %v", err)
	}
}
