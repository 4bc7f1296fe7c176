package doctor

import (
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// System is how the checks read the machine. A nil field is the real
// thing; tests set them.
type System struct {
	ReadFile func(path string) ([]byte, error)
	Stat     func(path string) error
	// Release is the kernel release (uname -r).
	Release func() (string, error)
	// FSType is the magic number of the file system at path (statfs).
	FSType func(path string) (int64, error)
	// Clock tells whether the kernel's clock is synchronised (adjtimex)
	// and its estimated maximum error.
	Clock func() (synced bool, maxError int64, err error)
	// Links lists the network interfaces.
	Links func() ([]Link, error)
	// Probe attaches a trivial program in each mode to ifname, or to a
	// veth pair in a scratch network namespace when ifname is empty.
	Probe func(ifname string) ([]ModeProbe, error)
}

// Link is a network interface as the interface check sees it.
type Link struct {
	Name     string
	MAC      net.HardwareAddr
	AltNames []string
	Index    int
	Up       bool
	Driver   string // from /sys/class/net/NAME/device/driver; empty if virtual
}

// Modes the probe tries.
const (
	ModeXDPNative  = "xdp-native"
	ModeXDPGeneric = "xdp-generic"
	ModeTCX        = "tcx"
)

// ModeProbe is the outcome of attaching in one mode.
type ModeProbe struct {
	Mode string
	Err  error // nil: attached (and detached at once)
}

func (s *System) fill() {
	if s.ReadFile == nil {
		s.ReadFile = os.ReadFile
	}
	if s.Stat == nil {
		s.Stat = func(p string) error { _, err := os.Stat(p); return err }
	}
	if s.Release == nil {
		s.Release = release
	}
	if s.FSType == nil {
		s.FSType = func(p string) (int64, error) {
			var fs unix.Statfs_t
			if err := unix.Statfs(p, &fs); err != nil {
				return 0, err
			}
			return int64(fs.Type), nil
		}
	}
	if s.Clock == nil {
		s.Clock = clock
	}
	if s.Links == nil {
		s.Links = links
	}
	if s.Probe == nil {
		s.Probe = probe
	}
}

func release() (string, error) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "", err
	}
	return unix.ByteSliceToString(u.Release[:]), nil
}

func clock() (bool, int64, error) {
	var tx unix.Timex // modes 0: read only
	state, err := unix.Adjtimex(&tx)
	if err != nil {
		return false, 0, err
	}
	synced := state != unix.TIME_ERROR && tx.Status&unix.STA_UNSYNC == 0
	return synced, int64(tx.Maxerror), nil
}

func links() ([]Link, error) {
	ls, err := netlink.LinkList()
	if err != nil {
		return nil, err
	}
	out := make([]Link, 0, len(ls))
	for _, l := range ls {
		a := l.Attrs()
		drv := ""
		if target, err := os.Readlink("/sys/class/net/" + a.Name + "/device/driver"); err == nil {
			drv = target[strings.LastIndexByte(target, '/')+1:]
		}
		out = append(out, Link{Name: a.Name, MAC: a.HardwareAddr, AltNames: a.AltNames, Index: a.Index,
			Up: a.Flags&net.FlagUp != 0, Driver: drv})
	}
	return out, nil
}

// The probe's programs: XDP_PASS, and TCX_NEXT (-1) at TC, so that even
// on a live interface they change nothing.
func probePrograms() (xdp, tc *ebpf.Program, err error) {
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, nil, fmt.Errorf("remove the memlock limit: %w", err)
	}
	xdp, err = ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "pw_doctor_xdp", Type: ebpf.XDP, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 2), asm.Return()}, // XDP_PASS
	})
	if err != nil {
		return nil, nil, fmt.Errorf("load an XDP program: %w", err)
	}
	tc, err = ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "pw_doctor_tc", Type: ebpf.SchedCLS, AttachType: ebpf.AttachTCXIngress, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, -1), asm.Return()}, // TCX_NEXT
	})
	if err != nil {
		xdp.Close()
		return nil, nil, fmt.Errorf("load a TC program: %w", err)
	}
	return xdp, tc, nil
}

// probe attaches in each mode on ifname, or on a veth in a scratch
// namespace.
func probe(ifname string) ([]ModeProbe, error) {
	xdp, tc, err := probePrograms()
	if err != nil {
		return nil, err
	}
	defer xdp.Close()
	defer tc.Close()
	if ifname != "" {
		iface, err := net.InterfaceByName(ifname)
		if err != nil {
			return nil, err
		}
		return attachEach(xdp, tc, iface.Index), nil
	}
	type result struct {
		probes []ModeProbe
		err    error
	}
	done := make(chan result)
	go func() {
		// The thread enters a namespace of its own and is never handed
		// back to the runtime: it ends with the goroutine, and the
		// namespace with its veth pair goes with it.
		runtime.LockOSThread()
		ns, err := netns.New()
		if err != nil {
			done <- result{err: fmt.Errorf("create a scratch network namespace: %w", err)}
			return
		}
		defer ns.Close()
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "pwdoctor0"}, PeerName: "pwdoctor1"}
		if err := netlink.LinkAdd(veth); err != nil {
			done <- result{err: fmt.Errorf("create a veth pair: %w", err)}
			return
		}
		defer netlink.LinkDel(veth)
		for _, name := range []string{"pwdoctor0", "pwdoctor1"} {
			if l, err := netlink.LinkByName(name); err == nil {
				_ = netlink.LinkSetUp(l)
			}
		}
		l, err := netlink.LinkByName("pwdoctor0")
		if err != nil {
			done <- result{err: fmt.Errorf("find the veth: %w", err)}
			return
		}
		done <- result{probes: attachEach(xdp, tc, l.Attrs().Index)}
	}()
	r := <-done
	return r.probes, r.err
}

func attachEach(xdp, tc *ebpf.Program, index int) []ModeProbe {
	attach := func(f func() (link.Link, error)) error {
		l, err := f()
		if err != nil {
			return err
		}
		return l.Close() // not pinned: this detaches
	}
	return []ModeProbe{
		{ModeXDPNative, attach(func() (link.Link, error) {
			return link.AttachXDP(link.XDPOptions{Program: xdp, Interface: index, Flags: link.XDPDriverMode})
		})},
		{ModeXDPGeneric, attach(func() (link.Link, error) {
			return link.AttachXDP(link.XDPOptions{Program: xdp, Interface: index, Flags: link.XDPGenericMode})
		})},
		{ModeTCX, attach(func() (link.Link, error) {
			return link.AttachTCX(link.TCXOptions{Program: tc, Attach: ebpf.AttachTCXIngress, Interface: index})
		})},
	}
}

// possibleCPUs parses /sys/devices/system/cpu/possible ("0-3", "0,2-5").
func possibleCPUs(text string) (int, error) {
	n := 0
	for _, part := range strings.Split(strings.TrimSpace(text), ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return 0, fmt.Errorf("%q is not a CPU list", text)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return 0, fmt.Errorf("%q is not a CPU list", text)
			}
		}
		n += b - a + 1
	}
	return n, nil
}

// memTotal is MemTotal of /proc/meminfo, in bytes.
func memTotal(meminfo string) (uint64, error) {
	for _, line := range strings.Split(meminfo, "\n") {
		rest, ok := strings.CutPrefix(line, "MemTotal:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			break
		}
		kb, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			break
		}
		return kb << 10, nil
	}
	return 0, errors.New("no MemTotal line in kB")
}

// capabilities are the effective capabilities of /proc/self/status.
func capabilities(status string) (uint64, error) {
	for _, line := range strings.Split(status, "\n") {
		if rest, ok := strings.CutPrefix(line, "CapEff:"); ok {
			return strconv.ParseUint(strings.TrimSpace(rest), 16, 64)
		}
	}
	return 0, errors.New("no CapEff line")
}

func parseMAC(s string) (string, error) {
	m, err := net.ParseMAC(s)
	if err != nil {
		return "", err
	}
	return m.String(), nil
}
