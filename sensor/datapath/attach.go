package datapath

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Hook is where the operator asks the program to run.
type Hook string

// Hooks.
const (
	// HookXDP attaches in the driver (native XDP) and falls back to
	// generic XDP where the driver has no XDP support. Ingress only: the
	// hook for mirror ports and for links where all traffic arrives.
	HookXDP Hook = "xdp"
	// HookXDPGeneric forces generic (skb) XDP.
	HookXDPGeneric Hook = "xdp-generic"
	// HookTC attaches at TC ingress and egress through TCX, and falls back
	// to a clsact qdisc with BPF filters on kernels without TCX (< 6.6).
	HookTC Hook = "tc"
	// HookTCNetlink forces the clsact qdisc and filters.
	HookTCNetlink Hook = "tc-netlink"
)

// Mode is how the program got attached.
type Mode string

// Modes.
const (
	ModeXDPNative  Mode = "xdp-native"
	ModeXDPGeneric Mode = "xdp-generic"
	ModeTCX        Mode = "tcx"
	ModeTCNetlink  Mode = "tc-netlink"
)

// ParseHook checks a configured hook name.
func ParseHook(s string) (Hook, error) {
	switch h := Hook(s); h {
	case HookXDP, HookXDPGeneric, HookTC, HookTCNetlink:
		return h, nil
	}
	return "", fmt.Errorf("unknown hook %q (want xdp, xdp-generic, tc or tc-netlink)", s)
}

// attachment is the program attached to one interface.
type attachment struct {
	ifname string
	mode   Mode
	links  []link.Link          // pinned links (XDP, TCX)
	tc     []*netlink.BpfFilter // clsact filters
}

// close releases this process's handles; pinned links and filters stay.
func (a *attachment) close() error {
	var errs []error
	for _, l := range a.links {
		errs = append(errs, l.Close())
	}
	return errors.Join(errs...)
}

// detach removes the program from the interface.
func (a *attachment) detach() error {
	var errs []error
	for _, l := range a.links {
		if err := l.Unpin(); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	for _, f := range a.tc {
		if err := netlink.FilterDel(f); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ENODEV) {
			errs = append(errs, fmt.Errorf("delete tc filter on %s: %w", a.ifname, err))
		}
	}
	return errors.Join(errs...)
}

// Attach runs the program on an interface and reports the mode obtained.
// Links pinned by an earlier run are taken over and switched to this run's
// program without a gap in counting.
func (d *Datapath) Attach(ifname string, hook Hook) (Mode, error) {
	iface, err := net.InterfaceByName(ifname)
	if err != nil {
		return "", fmt.Errorf("attach to %s: %w", ifname, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if a, ok := d.attached[ifname]; ok {
		if err := a.close(); err != nil {
			d.log.Warn("close previous attachment", "interface", ifname, "error", err)
		}
		delete(d.attached, ifname)
	}

	var a *attachment
	switch hook {
	case HookXDP:
		a, err = d.attachXDP(iface, ModeXDPNative, link.XDPDriverMode)
		if err != nil {
			d.log.Info("native XDP not available, trying generic", "interface", ifname, "reason", err)
			a, err = d.attachXDP(iface, ModeXDPGeneric, link.XDPGenericMode)
		}
	case HookXDPGeneric:
		a, err = d.attachXDP(iface, ModeXDPGeneric, link.XDPGenericMode)
	case HookTC:
		a, err = d.attachTCX(iface)
		if errors.Is(err, ebpf.ErrNotSupported) {
			d.log.Info("TCX not available, using a clsact qdisc", "interface", ifname, "reason", err)
			a, err = d.attachTCNetlink(iface)
		}
	case HookTCNetlink:
		a, err = d.attachTCNetlink(iface)
	default:
		_, err = ParseHook(string(hook))
	}
	if err != nil {
		return "", fmt.Errorf("attach %s to %s: %w", hook, ifname, err)
	}
	d.attached[ifname] = a
	d.log.Info("attached", "interface", ifname, "mode", a.mode)
	return a.mode, nil
}

// Detach removes the program from an interface attached by this process.
func (d *Datapath) Detach(ifname string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	a, ok := d.attached[ifname]
	if !ok {
		return fmt.Errorf("detach %s: not attached", ifname)
	}
	delete(d.attached, ifname)
	return errors.Join(a.detach(), a.close())
}

// linkPath names a pinned link. The bpffs refuses names with a dot, which
// interface names (eth0.100) may have: dots and percent signs are escaped.
func (d *Datapath) linkPath(ifname, hook string) string {
	if d.cfg.PinDir == "" {
		return ""
	}
	escaped := strings.NewReplacer("%", "%25", ".", "%2E").Replace(ifname)
	return filepath.Join(d.linksDir(), escaped+"@"+hook)
}

// reuseLink takes over a link pinned at path if it still belongs to the
// interface, and points it at this run's program. A stale pin is removed.
func (d *Datapath) reuseLink(path string, ifindex int, prog *ebpf.Program) link.Link {
	if path == "" {
		return nil
	}
	l, err := link.LoadPinnedLink(path, nil)
	if err != nil {
		return nil
	}
	info, err := l.Info()
	owner := uint32(0)
	if err == nil {
		if x := info.XDP(); x != nil {
			owner = x.Ifindex
		} else if t := info.TCX(); t != nil {
			owner = t.Ifindex
		}
	}
	if owner == uint32(ifindex) {
		if err := l.Update(prog); err == nil {
			return l
		} else {
			d.log.Warn("pinned link cannot take the new program, attaching anew", "link", path, "error", err)
		}
	} else {
		d.log.Info("pinned link belongs to a removed interface, attaching anew", "link", path)
	}
	_ = l.Unpin()
	_ = l.Close()
	return nil
}

func (d *Datapath) pin(l link.Link, path string) error {
	if path == "" {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	_ = os.Remove(path) // a stale pin of a detached link
	if err := l.Pin(path); err != nil {
		return fmt.Errorf("pin link %s: %w", path, err)
	}
	return nil
}

func (d *Datapath) attachXDP(iface *net.Interface, mode Mode, flags link.XDPAttachFlags) (*attachment, error) {
	prog := d.objs.PeerwatchXdp
	path := d.linkPath(iface.Name, string(mode))
	a := &attachment{ifname: iface.Name, mode: mode}
	if l := d.reuseLink(path, iface.Index, prog); l != nil {
		a.links = []link.Link{l}
		return a, nil
	}
	// A link of the other XDP mode pinned by an earlier run holds the hook.
	other := ModeXDPGeneric
	if mode == ModeXDPGeneric {
		other = ModeXDPNative
	}
	if l := d.reuseLink(d.linkPath(iface.Name, string(other)), iface.Index, prog); l != nil {
		_ = l.Unpin()
		_ = l.Close()
	}
	l, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: iface.Index, Flags: flags})
	if err != nil {
		return nil, err
	}
	if err := d.pin(l, path); err != nil {
		_ = l.Close()
		return nil, err
	}
	a.links = []link.Link{l}
	return a, nil
}

func (d *Datapath) attachTCX(iface *net.Interface) (*attachment, error) {
	prog := d.objs.PeerwatchTc
	a := &attachment{ifname: iface.Name, mode: ModeTCX}
	for _, dir := range []struct {
		name string
		typ  ebpf.AttachType
	}{{"tcx-ingress", ebpf.AttachTCXIngress}, {"tcx-egress", ebpf.AttachTCXEgress}} {
		path := d.linkPath(iface.Name, dir.name)
		if l := d.reuseLink(path, iface.Index, prog); l != nil {
			a.links = append(a.links, l)
			continue
		}
		l, err := link.AttachTCX(link.TCXOptions{Program: prog, Interface: iface.Index, Attach: dir.typ})
		if err == nil {
			err = d.pin(l, path)
		}
		if err != nil {
			_ = a.detach()
			_ = a.close()
			return nil, err
		}
		a.links = append(a.links, l)
	}
	return a, nil
}

// tcFilterPriority and tcFilterHandle identify peerwatch's filters, so that
// a restarted daemon replaces its own filters and leaves others alone.
const (
	tcFilterPriority = 0xC0DE
	tcFilterHandle   = 0xC0DE
)

func (d *Datapath) attachTCNetlink(iface *net.Interface) (*attachment, error) {
	qdisc := &netlink.GenericQdisc{
		QdiscAttrs: netlink.QdiscAttrs{
			LinkIndex: iface.Index,
			Handle:    netlink.MakeHandle(0xFFFF, 0),
			Parent:    netlink.HANDLE_CLSACT,
		},
		QdiscType: "clsact",
	}
	if err := netlink.QdiscReplace(qdisc); err != nil {
		return nil, fmt.Errorf("add clsact qdisc: %w", err)
	}
	a := &attachment{ifname: iface.Name, mode: ModeTCNetlink}
	for _, parent := range []uint32{netlink.HANDLE_MIN_INGRESS, netlink.HANDLE_MIN_EGRESS} {
		f := &netlink.BpfFilter{
			FilterAttrs: netlink.FilterAttrs{
				LinkIndex: iface.Index,
				Parent:    parent,
				Handle:    tcFilterHandle,
				Protocol:  unix.ETH_P_ALL,
				Priority:  tcFilterPriority,
			},
			Fd:           d.objs.PeerwatchTc.FD(),
			Name:         "peerwatch",
			DirectAction: true,
		}
		if err := netlink.FilterReplace(f); err != nil {
			_ = a.detach()
			return nil, fmt.Errorf("add tc filter: %w", err)
		}
		a.tc = append(a.tc, f)
	}
	return a, nil
}
