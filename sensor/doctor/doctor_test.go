package doctor

import (
	"errors"
	"io/fs"
	"net"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/peerwatch/peerwatch/internal/testutil"
	"github.com/peerwatch/peerwatch/sensor/config"
)

// fakeBoard is a 1 GiB, 4-CPU board with Linux 6.1, a bpffs, the JIT on,
// root, eth0 and eth1 (r8169, no native XDP), and a synchronised clock.
func fakeBoard() System {
	files := map[string]string{
		"/proc/sys/net/core/bpf_jit_enable": "1\n",
		"/proc/self/status":                 "Name:\tsensorctl\nCapEff:\t000001ffffffffff\n",
		"/sys/devices/system/cpu/possible":  "0-3\n",
		"/proc/meminfo":                     "MemTotal:        1000000 kB\nMemFree:          500000 kB\n",
		"/sys/kernel/btf/vmlinux":           "",
	}
	return System{
		ReadFile: func(p string) ([]byte, error) {
			s, ok := files[p]
			if !ok {
				return nil, &fs.PathError{Op: "open", Path: p, Err: fs.ErrNotExist}
			}
			return []byte(s), nil
		},
		Stat: func(p string) error {
			if _, ok := files[p]; !ok {
				return &fs.PathError{Op: "stat", Path: p, Err: fs.ErrNotExist}
			}
			return nil
		},
		Release: func() (string, error) { return "6.1.0-rpi7-rpi-v8", nil },
		FSType:  func(string) (int64, error) { return unix.BPF_FS_MAGIC, nil },
		Clock:   func() (bool, int64, error) { return true, 16000, nil },
		Links: func() ([]Link, error) {
			return []Link{
				{Name: "eth0", Index: 2, Up: true, Driver: "bcmgenet", MAC: net.HardwareAddr{0xdc, 0xa6, 0x32, 0, 0, 1}},
				{Name: "eth1", Index: 3, Up: true, Driver: "r8169", MAC: net.HardwareAddr{0x00, 0x11, 0x22, 0x33, 0x44, 0x55}, AltNames: []string{"mirror0"}},
			}, nil
		},
		Probe: func(ifname string) ([]ModeProbe, error) {
			return []ModeProbe{
				{ModeXDPNative, errors.New("create link: operation not supported")},
				{ModeXDPGeneric, nil},
				{ModeTCX, nil},
			}, nil
		},
	}
}

func boardConfig(t *testing.T) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(`
sensor: {id: pi, board: rpi4}
interfaces:
  - {name: eth1, hook: xdp-generic}
  - {mac: "00:11:22:33:44:55", altname: mirror0}
local_prefixes: ["192.0.2.0/24"]
datapath: {counter_entries: 32768}
store: {max_size: 128MiB}
`), "/etc/peerwatch/sensord.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestRunBoard(t *testing.T) {
	r := Run(Options{ConfigPath: "/etc/peerwatch/sensord.yaml", Config: boardConfig(t), System: fakeBoard()})
	var b strings.Builder
	if err := r.Write(&b); err != nil {
		t.Fatal(err)
	}
	want := `PASS  config              /etc/peerwatch/sensord.yaml is valid (board rpi4)
PASS  local prefixes      1
WARN  kernel              6.1.0-rpi7-rpi-v8: no TCX before Linux 6.6; hook tc uses a clsact qdisc instead
PASS  btf                 /sys/kernel/btf/vmlinux present
PASS  bpffs               /sys/fs/bpf is a bpffs (bpffs_dir /sys/fs/bpf/peerwatch)
PASS  jit                 BPF JIT enabled
PASS  privileges          CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON effective
PASS  interface 0         name eth1 is eth1 (ifindex 3, driver r8169), up; hook xdp-generic
PASS  interface 1         mac 00:11:22:33:44:55, altname mirror0 is eth1 (ifindex 3, driver r8169), up; hook xdp
WARN  attach xdp-native   on a scratch veth: create link: operation not supported: hook xdp falls back to generic XDP (same counts, more CPU per packet)
PASS  attach xdp-generic  on a scratch veth
PASS  attach tcx          on a scratch veth
PASS  memory              the configuration needs 431 MiB (kernel maps 63 MiB for 4 CPUs, store 128 MiB, process 240 MiB) of 977 MiB (44%)
PASS  clock               synchronised (estimated error 16 ms)
`
	if b.String() != want {
		t.Errorf("report:\n%s\nwant:\n%s", b.String(), want)
	}
	if r.Failed() != 0 {
		t.Errorf("%d failed", r.Failed())
	}
}

// TestRunBroken: every check that can fail, fails with its reason.
func TestRunBroken(t *testing.T) {
	sys := fakeBoard()
	read := sys.ReadFile
	sys.ReadFile = func(p string) ([]byte, error) {
		switch p {
		case "/proc/sys/net/core/bpf_jit_enable":
			return []byte("0\n"), nil
		case "/proc/self/status":
			return []byte("CapEff:\t0000000000000000\n"), nil
		case "/proc/meminfo":
			return []byte("MemTotal:  400000 kB\n"), nil
		case "/etc/peerwatch/local.txt":
			return []byte("# ours\n198.51.100.0/24\n192.0.2.300/24\n"), nil
		}
		return read(p)
	}
	sys.Stat = func(p string) error { return &fs.PathError{Op: "stat", Path: p, Err: fs.ErrNotExist} }
	sys.Release = func() (string, error) { return "5.4.0-150-generic", nil }
	sys.FSType = func(string) (int64, error) { return 0x01021994, nil } // tmpfs
	sys.Clock = func() (bool, int64, error) { return false, 16000000, nil }
	sys.Links = func() ([]Link, error) { return []Link{{Name: "eth1", Index: 3, Up: false}}, nil }
	cfg := boardConfig(t)
	cfg.LocalPrefixFiles = []string{"/etc/peerwatch/local.txt"}
	cfg.Interfaces = append(cfg.Interfaces, config.Interface{Name: "eth9", Hook: config.HookXDP})
	r := Run(Options{ConfigPath: "/etc/peerwatch/sensord.yaml", Config: cfg, System: sys})
	var b strings.Builder
	_ = r.Write(&b)
	want := `PASS  config          /etc/peerwatch/sensord.yaml is valid (board rpi4)
FAIL  local prefixes  /etc/peerwatch/local.txt:3: "192.0.2.300/24" is neither a prefix nor an address
FAIL  kernel          5.4.0-150-generic: sensord needs Linux 5.8 or later (CAP_BPF, CAP_PERFMON)
WARN  btf             /sys/kernel/btf/vmlinux: file does not exist; the counter program does not need it, bpftool's map dumps do
FAIL  bpffs           /sys/fs/bpf is not a bpffs: mount one (mount -t bpf bpf /sys/fs/bpf; systemd does at boot) so that bpffs_dir /sys/fs/bpf/peerwatch keeps the counts across restarts
FAIL  jit             BPF JIT disabled (/proc/sys/net/core/bpf_jit_enable = 0): the interpreter is several times slower; echo 1 > /proc/sys/net/core/bpf_jit_enable
FAIL  privileges      missing CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON: run sensorctl doctor as root
WARN  interface 0     name eth1 is eth1 (ifindex 3, virtual): down; sensord attaches and counts once it is up
FAIL  interface 1     mac 00:11:22:33:44:55, altname mirror0: no such interface (ip link lists them)
FAIL  interface 2     name eth9: no such interface (ip link lists them)
FAIL  attach          not tried: needs CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON (run as root)
FAIL  memory          the configuration needs 431 MiB (kernel maps 63 MiB for 4 CPUs, store 128 MiB, process 240 MiB) of 391 MiB (110%): over 80%; lower datapath.counter_entries or store.max_size
WARN  clock           not synchronised: summaries carry wall-clock times; run an NTP client (systemd-timesyncd, chrony)
`
	if b.String() != want {
		t.Errorf("report:\n%s\nwant:\n%s", b.String(), want)
	}
	if r.Failed() != 9 {
		t.Errorf("%d failed, want 9", r.Failed())
	}
}

func TestRunConfigError(t *testing.T) {
	_, err := config.Parse([]byte("drain: {interval: 5x}\n"), "/etc/peerwatch/sensord.yaml")
	r := Run(Options{ConfigPath: "/etc/peerwatch/sensord.yaml", ConfigErr: err, System: fakeBoard()})
	if r[0].Result != Fail || !strings.HasPrefix(r[0].Reason, "/etc/peerwatch/sensord.yaml:1: drain.interval: ") {
		t.Errorf("config check: %+v", r[0])
	}
}

func TestAttachNoMode(t *testing.T) {
	sys := fakeBoard()
	sys.Probe = func(string) ([]ModeProbe, error) {
		e := errors.New("operation not supported")
		return []ModeProbe{{ModeXDPNative, unix.EBUSY}, {ModeXDPGeneric, e}, {ModeTCX, e}}, nil
	}
	sys.fill()
	got := checkAttach(&sys, "eth1")
	want := []Check{
		{"attach xdp-native", Warn, "on eth1: device or resource busy: another XDP program is attached there (sensord's?)"},
		{"attach xdp-generic", Warn, "on eth1: operation not supported: hooks xdp and xdp-generic cannot work here; use hook tc"},
		{"attach tcx", Warn, "on eth1: operation not supported: hook tc falls back to a clsact qdisc"},
		{"attach", Fail, "no mode works on eth1: sensord cannot count there"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %+v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("line %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestParsers(t *testing.T) {
	for in, want := range map[string]int{"0-3\n": 4, "0": 1, "0,2-5": 5, "0-127": 128} {
		if got, err := possibleCPUs(in); err != nil || got != want {
			t.Errorf("possibleCPUs(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "x", "3-1", "0-"} {
		if _, err := possibleCPUs(in); err == nil {
			t.Errorf("possibleCPUs(%q): no error", in)
		}
	}
	if got, err := memTotal("MemTotal:        8052380 kB\n"); err != nil || got != 8052380*1024 {
		t.Errorf("memTotal: %d %v", got, err)
	}
	if _, err := memTotal("MemTotal: 12 MB\n"); err == nil {
		t.Error("memTotal in MB: no error")
	}
	for in, want := range map[string][2]int{"6.18.44-fc-v782": {6, 18}, "5.10.0-rc1": {5, 10}, "6.6": {6, 6}, "6.12+rpt-rpi-2712": {6, 12}} {
		if got, err := kernelVersion(in); err != nil || got != want {
			t.Errorf("kernelVersion(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := kernelVersion("linux"); err == nil {
		t.Error("kernelVersion(linux): no error")
	}
}

// TestProbeVeth attaches for real, on a scratch veth: every mode works on
// the kernels CI runs (veth has native XDP), and nothing is left behind.
func TestProbeVeth(t *testing.T) {
	testutil.RequireBPF(t)
	probes, err := probe("")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{ModeXDPNative, ModeXDPGeneric, ModeTCX}
	if len(probes) != len(want) {
		t.Fatalf("probes %+v", probes)
	}
	for i, p := range probes {
		if p.Mode != want[i] || p.Err != nil {
			t.Errorf("probe %d: %s %v, want %s attached", i, p.Mode, p.Err, want[i])
		}
	}
	if _, err := net.InterfaceByName("pwdoctor0"); err == nil {
		t.Error("pwdoctor0 appeared in the test's own namespace")
	}
}

// TestProbeLoopback: loopback has no native XDP; generic XDP and TCX work.
func TestProbeLoopback(t *testing.T) {
	testutil.RequireBPF(t)
	ns := testutil.NewNamespace(t)
	var probes []ModeProbe
	err := ns.Do(func() (err error) {
		probes, err = probe("lo")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(probes) != 3 || !errors.Is(probes[0].Err, unix.EOPNOTSUPP) || probes[1].Err != nil || probes[2].Err != nil {
		t.Errorf("probes on lo: %+v", probes)
	}
}
