package board

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket/layers"

	"github.com/peerwatch/peerwatch/internal/testutil"
)

// sensordUser is the uid and gid the least-privilege tests run sensord as:
// no account, no group, nothing but the unit's capabilities.
const sensordUser = 61234

// leastPrivilege is the set the unit grants: each is needed (see
// TestNetnsLeastPrivilege), and nothing else is.
var leastPrivilege = []string{"CAP_BPF", "CAP_NET_ADMIN", "CAP_PERFMON"}

// launchAsUnit is a shell script that starts sensord the way
// peerwatch-sensord.service does, in a mount namespace of its own: a
// bpffs mounted at /sys/fs/bpf with mode 0700 as systemd mounts it, the
// unit's ExecStartPre=+ helper as root (unless $3 is empty), then sensord
// as the unit's user with only the unit's capabilities and no_new_privs,
// in the network namespace $2. Arguments: $1 sensord, $2 namespace,
// $3 prepare-bpffs, $4 uid, $5 setpriv's capability list, $6 config,
// $7 the file system at /sys/fs/bpf (bpf; tmpfs stands for none).
const launchAsUnit = `set -e
mount --make-rprivate /
mount -t "$7" -o mode=0700 "$7" /sys/fs/bpf
if [ -n "$3" ]; then "$3" /sys/fs/bpf/peerwatch "$4"; fi
exec nsenter --net=/var/run/netns/"$2" setpriv --reuid="$4" --regid="$4" --clear-groups \
	--inh-caps="$5" --ambient-caps="$5" --bounding-set="$5" --no-new-privs "$1" --config "$6"
`

// sharedDir is a temporary directory that sensord's user can read.
func sharedDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "peerwatch-board-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestNetnsLeastPrivilege starts sensord as an ordinary user with exactly
// the capabilities of peerwatch-sensord.service, as the unit does: it
// attaches, says READY=1, and counts real packets exactly. Then it drops
// each capability in turn, and the helper that prepares the bpffs, to show
// that each is needed.
func TestNetnsLeastPrivilege(t *testing.T) {
	testutil.RequireBPF(t)
	requireTools(t, "unshare", "nsenter", "setpriv")
	u := readUnit(t, filepath.Join("common", "systemd", "peerwatch-sensord.service"))
	ambient := strings.Fields(u.one(t, "AmbientCapabilities"))
	bounding := strings.Fields(u.one(t, "CapabilityBoundingSet"))
	if !slices.Equal(ambient, leastPrivilege) || !slices.Equal(bounding, leastPrivilege) {
		t.Fatalf("the unit grants %v (bounding %v), want %v", ambient, bounding, leastPrivilege)
	}
	for key, want := range map[string]string{"NoNewPrivileges": "yes", "User": "peerwatch", "Type": "notify",
		"ExecStartPre": "+/usr/libexec/peerwatch/prepare-bpffs /sys/fs/bpf/peerwatch peerwatch"} {
		if got := u.one(t, key); got != want {
			t.Errorf("%s=%s, want %s", key, got, want)
		}
	}
	prepare, err := filepath.Abs(filepath.Join("common", "libexec", "prepare-bpffs"))
	if err != nil {
		t.Fatal(err)
	}

	dir := sharedDir(t)
	sensord := testutil.Build(t, dir, "sensor/cmd/sensord")
	data := filepath.Join(dir, "data") // the unit's StateDirectory=
	if err := os.Mkdir(data, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(data, sensordUser, sensordUser); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "sensord.yaml")
	err = os.WriteFile(cfg, []byte(fmt.Sprintf(`
sensor: {id: least-privilege}
data_dir: %s
interfaces: [{name: pw-lp}]
local_prefixes: ["192.0.2.0/24"]
tables: []
drain: {interval: 1s}
http: {listen: "127.0.0.1:19103"}
`, data)), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	peer, sensor := testutil.NewNamespace(t), testutil.NewNamespace(t)
	testutil.Veth(t, peer, "pw-peer", sensor, "pw-lp")
	from := testutil.NewSender(t, peer, "pw-peer")

	run := func(fs, prepareArg string, caps []string) *exec.Cmd {
		return exec.Command("unshare", "-m", "sh", "-c", launchAsUnit, "launch", sensord, sensor.Name,
			prepareArg, strconv.Itoa(sensordUser), setprivCaps(caps), cfg, fs)
	}

	t.Run("unit", func(t *testing.T) {
		notify := filepath.Join(dir, "notify")
		msgs := testutil.NotifySocket(t, notify)
		cmd := run("bpf", prepare, leastPrivilege)
		cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+notify, "WATCHDOG_USEC=2000000")
		p := start(t, cmd, filepath.Join(dir, "unit.log"))
		if got, want := waitReady(t, msgs, p.exited, 60*time.Second), "READY=1\nSTATUS=counting: pw-lp attached (xdp-native)"; got != want {
			t.Fatalf("notification %q, want %q", got, want)
		}
		pid := p.cmd.Process.Pid // unshare, sh, nsenter and setpriv exec: this is sensord
		if got := procStatus(t, pid, "Uid"); got != fmt.Sprintf("%d\t%[1]d\t%[1]d\t%[1]d", sensordUser) {
			t.Errorf("sensord runs as uid %q", got)
		}
		for _, field := range []string{"CapEff", "CapPrm", "CapBnd", "CapAmb"} {
			got, _ := strconv.ParseUint(procStatus(t, pid, field), 16, 64)
			if want := capMask(t, leastPrivilege); got != want {
				t.Errorf("%s %#x, want %#x (%v)", field, got, want, leastPrivilege)
			}
		}
		if got := procStatus(t, pid, "NoNewPrivs"); got != "1" {
			t.Errorf("NoNewPrivs %s", got)
		}

		const sent = 500
		frame := testutil.Frame{Src: netip.MustParseAddr("203.0.113.7"), Dst: netip.MustParseAddr("192.0.2.9"),
			Proto: layers.IPProtocolUDP, SrcPort: 53, DstPort: 40000}.Bytes(t)
		frames := make([][]byte, sent)
		for i := range frames {
			frames[i] = frame
		}
		if err := from.SendPaced(frames, 64); err != nil {
			t.Fatal(err)
		}
		waitSeen(t, sensor.HTTPClient(), "127.0.0.1:19103", sent)
		p.stop(t)
	})

	// Without each capability, or without the helper, sensord refuses to
	// start, and says why.
	for _, tc := range []struct {
		name    string
		fs      string
		prepare string
		caps    []string
		err     string
	}{
		{"without CAP_BPF", "bpf", prepare, []string{"CAP_NET_ADMIN", "CAP_PERFMON"}, "operation not permitted"},
		{"without CAP_NET_ADMIN", "bpf", prepare, []string{"CAP_BPF", "CAP_PERFMON"}, "operation not permitted"},
		// The verifier refuses the packet pointer arithmetic of an
		// unprivileged (no CAP_PERFMON) loader.
		{"without CAP_PERFMON", "bpf", prepare, []string{"CAP_BPF", "CAP_NET_ADMIN"}, "load counter program: load program: permission denied"},
		// /sys/fs/bpf is mode 0700: without the helper the user cannot reach it.
		{"without prepare-bpffs", "bpf", "", leastPrivilege, "create pin directory: mkdir /sys/fs/bpf/peerwatch: permission denied"},
		// Mounting the bpffs needs CAP_SYS_ADMIN: systemd must have done it.
		{"without a bpffs", "tmpfs", "", leastPrivilege, "mount the bpffs on /sys/fs/bpf: operation not permitted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			log := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".log")
			p := start(t, run(tc.fs, tc.prepare, tc.caps), log)
			select {
			case err := <-p.exited:
				if err == nil {
					t.Fatalf("sensord exited cleanly %s", tc.name)
				}
			case <-time.After(60 * time.Second):
				t.Fatalf("sensord runs %s: the unit grants more than it needs", tc.name)
			}
			b, _ := os.ReadFile(log)
			if !strings.Contains(string(b), "sensord: ") || !strings.Contains(string(b), tc.err) {
				t.Errorf("%s: log does not say %q:\n%s", tc.name, tc.err, b)
			}
		})
	}
}
