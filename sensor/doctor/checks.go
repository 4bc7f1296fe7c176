package doctor

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/peerwatch/peerwatch/sensor/config"
)

// Options say what to check.
type Options struct {
	// ConfigPath is the configuration file that was read; Config its
	// content, or ConfigErr why it could not be read. Without a file
	// (ConfigPath empty), the defaults are checked.
	ConfigPath string
	Config     *config.Config
	ConfigErr  error
	// Interface is where the attach probe runs; empty: a veth pair in a
	// scratch network namespace.
	Interface string
	System    System
}

// Kernel versions that matter.
var (
	minKernel = [2]int{5, 8} // CAP_BPF and CAP_PERFMON
	tcxKernel = [2]int{6, 6} // TCX links; hook tc falls back to a clsact qdisc before
)

// Capabilities sensord needs (and the attach probe).
const (
	capNetAdmin = 12
	capSysAdmin = 21
	capPerfmon  = 38
	capBPF      = 39
)

// Run runs every check.
func Run(o Options) Report {
	o.System.fill()
	sys := &o.System
	cfg := o.Config
	var r Report
	switch {
	case o.ConfigErr != nil:
		r = append(r, fail("config", "%v", oneLine(o.ConfigErr)))
	case o.ConfigPath == "":
		r = append(r, warn("config", "no configuration file: checking the defaults"))
	default:
		r = append(r, pass("config", "%s is valid (board %s)", o.ConfigPath, cfg.Sensor.Board))
	}
	if cfg == nil {
		d := config.Default()
		cfg = &d
	}
	r = append(r, checkLocalPrefixes(sys, cfg))
	r = append(r, checkKernel(sys))
	r = append(r, checkBTF(sys))
	r = append(r, checkBPFFS(sys, cfg.BPFFSDir))
	r = append(r, checkJIT(sys))
	privileged, privs := checkPrivileges(sys)
	r = append(r, privs)
	r = append(r, checkInterfaces(sys, cfg)...)
	if privileged {
		r = append(r, checkAttach(sys, o.Interface)...)
	} else {
		r = append(r, fail("attach", "not tried: needs CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON (run as root)"))
	}
	r = append(r, checkMemoryOf(sys, cfg))
	r = append(r, checkClock(sys))
	return r
}

func oneLine(err error) string {
	return strings.ReplaceAll(err.Error(), "\n", "; ")
}

// maxLocalPrefixFile bounds a local prefix file that doctor reads.
const maxLocalPrefixFile = 16 << 20

// checkLocalPrefixes counts the operator's own prefixes: without any,
// every packet is counted as neither_local.
func checkLocalPrefixes(sys *System, cfg *config.Config) Check {
	const name = "local prefixes"
	n := len(cfg.LocalPrefixes)
	for _, path := range cfg.LocalPrefixFiles {
		b, err := sys.ReadFile(path)
		if err != nil {
			return fail(name, "local_prefix_files: %s: %v", path, errText(err))
		}
		if len(b) > maxLocalPrefixFile {
			return fail(name, "local_prefix_files: %s: over %d MiB", path, maxLocalPrefixFile>>20)
		}
		for i, line := range strings.Split(string(b), "\n") {
			line, _, _ = strings.Cut(line, "#")
			line = strings.TrimSpace(line)
			if line == "" {
				continue
			}
			if _, err := netip.ParsePrefix(line); err != nil {
				if _, err := netip.ParseAddr(line); err != nil {
					return fail(name, "%s:%d: %q is neither a prefix nor an address", path, i+1, line)
				}
			}
			n++
		}
	}
	if n == 0 {
		where := "local_prefixes"
		if len(cfg.LocalPrefixFiles) > 0 {
			where = strings.Join(cfg.LocalPrefixFiles, ", ")
		}
		return warn(name, "none (%s): every packet is counted as neither_local; list the network's own prefixes", where)
	}
	return pass(name, "%d", n)
}

// kernelVersion is the major and minor number of a release (6.18.44-x).
func kernelVersion(release string) ([2]int, error) {
	var v [2]int
	parts := strings.SplitN(release, ".", 3)
	if len(parts) < 2 {
		return v, fmt.Errorf("%q is not a kernel release", release)
	}
	minor := parts[1]
	if i := strings.IndexFunc(minor, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
		minor = minor[:i]
	}
	var err1, err2 error
	v[0], err1 = strconv.Atoi(parts[0])
	v[1], err2 = strconv.Atoi(minor)
	if err1 != nil || err2 != nil {
		return v, fmt.Errorf("%q is not a kernel release", release)
	}
	return v, nil
}

func older(v, than [2]int) bool { return v[0] < than[0] || (v[0] == than[0] && v[1] < than[1]) }

func checkKernel(sys *System) Check {
	const name = "kernel"
	rel, err := sys.Release()
	if err != nil {
		return fail(name, "uname: %v", err)
	}
	v, err := kernelVersion(rel)
	switch {
	case err != nil:
		return warn(name, "%v: cannot tell its features", err)
	case older(v, minKernel):
		return fail(name, "%s: sensord needs Linux %d.%d or later (CAP_BPF, CAP_PERFMON)", rel, minKernel[0], minKernel[1])
	case older(v, tcxKernel):
		return warn(name, "%s: no TCX before Linux %d.%d; hook tc uses a clsact qdisc instead", rel, tcxKernel[0], tcxKernel[1])
	}
	return pass(name, "%s (Linux %d.%d or later: XDP, TCX)", rel, tcxKernel[0], tcxKernel[1])
}

func checkBTF(sys *System) Check {
	const name, path = "btf", "/sys/kernel/btf/vmlinux"
	if err := sys.Stat(path); err != nil {
		return warn(name, "%s: %v; the counter program does not need it, bpftool's map dumps do", path, errText(err))
	}
	return pass(name, "%s present", path)
}

func checkBPFFS(sys *System, pinDir string) Check {
	const name = "bpffs"
	// sensord pins into pinDir and creates it: its parent must be a bpffs.
	dir := filepath.Dir(filepath.Clean(pinDir))
	t, err := sys.FSType(dir)
	if err != nil {
		return fail(name, "%s: %v; bpffs_dir %s must be on a bpffs", dir, errText(err), pinDir)
	}
	if t != unix.BPF_FS_MAGIC {
		return fail(name, "%s is not a bpffs: mount one (mount -t bpf bpf %s; systemd does at boot) so that bpffs_dir %s keeps the counts across restarts",
			dir, dir, pinDir)
	}
	return pass(name, "%s is a bpffs (bpffs_dir %s)", dir, pinDir)
}

func checkJIT(sys *System) Check {
	const name, path = "jit", "/proc/sys/net/core/bpf_jit_enable"
	b, err := sys.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		// Only the host's network namespace has it.
		return warn(name, "%s: not there (not the host's network namespace?); cannot tell whether BPF programs are compiled", path)
	}
	if err != nil {
		return warn(name, "%s: %v; cannot tell whether BPF programs are compiled", path, errText(err))
	}
	switch v := strings.TrimSpace(string(b)); v {
	case "1":
		return pass(name, "BPF JIT enabled")
	case "2":
		return warn(name, "BPF JIT in debug mode (%s = 2): it logs every program", path)
	case "0":
		return fail(name, "BPF JIT disabled (%s = 0): the interpreter is several times slower; echo 1 > %s", path, path)
	default:
		return warn(name, "%s: unexpected value %q", path, v)
	}
}

func checkPrivileges(sys *System) (bool, Check) {
	const name = "privileges"
	b, err := sys.ReadFile("/proc/self/status")
	if err != nil {
		return false, fail(name, "read /proc/self/status: %v", errText(err))
	}
	caps, err := capabilities(string(b))
	if err != nil {
		return false, fail(name, "/proc/self/status: %v", err)
	}
	has := func(c uint) bool { return caps&(1<<c) != 0 }
	var missing []string
	if !has(capBPF) && !has(capSysAdmin) {
		missing = append(missing, "CAP_BPF")
	}
	if !has(capNetAdmin) {
		missing = append(missing, "CAP_NET_ADMIN")
	}
	if !has(capPerfmon) && !has(capSysAdmin) {
		missing = append(missing, "CAP_PERFMON")
	}
	if len(missing) > 0 {
		return false, fail(name, "missing %s: run sensorctl doctor as root", strings.Join(missing, ", "))
	}
	return true, pass(name, "CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON effective")
}

// checkInterfaces finds each configured interface.
func checkInterfaces(sys *System, cfg *config.Config) []Check {
	if len(cfg.Interfaces) == 0 {
		return []Check{warn("interfaces", "none configured: sensord counts nothing")}
	}
	ls, err := sys.Links()
	if err != nil {
		return []Check{fail("interfaces", "list the interfaces: %v", err)}
	}
	var out []Check
	for i, ifc := range cfg.Interfaces {
		name := fmt.Sprintf("interface %d", i)
		sel := selectorText(ifc)
		l, ok := findLink(ls, ifc)
		switch {
		case !ok:
			out = append(out, fail(name, "%s: no such interface (ip link lists them)", sel))
		case !l.Up:
			out = append(out, warn(name, "%s is %s (ifindex %d, %s): down; sensord attaches and counts once it is up",
				sel, l.Name, l.Index, driverText(l)))
		default:
			out = append(out, pass(name, "%s is %s (ifindex %d, %s), up; hook %s", sel, l.Name, l.Index, driverText(l), ifc.Hook))
		}
	}
	return out
}

func driverText(l Link) string {
	if l.Driver == "" {
		return "virtual"
	}
	return "driver " + l.Driver
}

func selectorText(ifc config.Interface) string {
	var parts []string
	if ifc.Name != "" {
		parts = append(parts, "name "+ifc.Name)
	}
	if ifc.MAC != "" {
		parts = append(parts, "mac "+ifc.MAC)
	}
	if ifc.AltName != "" {
		parts = append(parts, "altname "+ifc.AltName)
	}
	return strings.Join(parts, ", ")
}

// findLink is the link that matches every selector the interface sets, as
// sensord's attacher matches them.
func findLink(ls []Link, ifc config.Interface) (Link, bool) {
	for _, l := range ls {
		if ifc.Name != "" && l.Name != ifc.Name {
			continue
		}
		if ifc.MAC != "" && !strings.EqualFold(l.MAC.String(), normMAC(ifc.MAC)) {
			continue
		}
		if ifc.AltName != "" && !contains(l.AltNames, ifc.AltName) {
			continue
		}
		return l, true
	}
	return Link{}, false
}

func normMAC(s string) string {
	if m, err := parseMAC(s); err == nil {
		return m
	}
	return s
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// checkAttach reports each attach mode.
func checkAttach(sys *System, ifname string) []Check {
	where := ifname
	if where == "" {
		where = "a scratch veth"
	}
	probes, err := sys.Probe(ifname)
	if err != nil {
		return []Check{fail("attach", "on %s: %v", where, oneLine(err))}
	}
	var out []Check
	works := 0
	for _, p := range probes {
		name := "attach " + p.Mode
		if p.Err == nil {
			works++
			out = append(out, pass(name, "on %s", where))
			continue
		}
		var reason string
		switch p.Mode {
		case ModeXDPNative:
			reason = "hook xdp falls back to generic XDP (same counts, more CPU per packet)"
			if errors.Is(p.Err, unix.EBUSY) || errors.Is(p.Err, unix.EEXIST) {
				reason = "another XDP program is attached there (sensord's?)"
			}
		case ModeXDPGeneric:
			reason = "hooks xdp and xdp-generic cannot work here; use hook tc"
		case ModeTCX:
			reason = "hook tc falls back to a clsact qdisc"
		}
		out = append(out, warn(name, "on %s: %v: %s", where, p.Err, reason))
	}
	if works == 0 {
		out = append(out, fail("attach", "no mode works on %s: sensord cannot count there", where))
	}
	return out
}

func checkMemoryOf(sys *System, cfg *config.Config) Check {
	b, err := sys.ReadFile("/sys/devices/system/cpu/possible")
	if err != nil {
		return fail("memory", "possible CPUs: %v", errText(err))
	}
	cpus, err := possibleCPUs(string(b))
	if err != nil {
		return fail("memory", "/sys/devices/system/cpu/possible: %v", err)
	}
	b, err = sys.ReadFile("/proc/meminfo")
	if err != nil {
		return fail("memory", "read /proc/meminfo: %v", errText(err))
	}
	total, err := memTotal(string(b))
	if err != nil {
		return fail("memory", "/proc/meminfo: %v", err)
	}
	return checkMemory(MemoryNeed(cfg, cpus), total)
}

// maxClockError is the largest estimated error of a synchronised clock
// that passes: intervals are stamped to the second.
const maxClockError = 500_000 // µs

func checkClock(sys *System) Check {
	const name = "clock"
	synced, maxErr, err := sys.Clock()
	switch {
	case err != nil:
		return warn(name, "adjtimex: %v", err)
	case !synced:
		return warn(name, "not synchronised: summaries carry wall-clock times; run an NTP client (systemd-timesyncd, chrony)")
	case maxErr > maxClockError:
		return warn(name, "synchronised, but the estimated error is %d ms", maxErr/1000)
	}
	return pass(name, "synchronised (estimated error %d ms)", maxErr/1000)
}

func errText(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}
