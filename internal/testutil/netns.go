package testutil

import (
	"fmt"
	"net"
	"os"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Namespace is a network namespace that a test made and removes at cleanup.
// Traffic of the tests stays inside such namespaces.
type Namespace struct {
	Name   string
	handle netns.NsHandle
	nl     *netlink.Handle
}

var nsSeq atomic.Uint32

// NewNamespace creates a named network namespace with loopback up, deleted
// at the end of the test.
func NewNamespace(tb testing.TB) *Namespace {
	tb.Helper()
	RequireRoot(tb)
	name := fmt.Sprintf("pwtest-%d-%d", os.Getpid(), nsSeq.Add(1))

	// netns.NewNamed moves the calling thread into the new namespace: do it
	// on a thread of its own that is never handed back to the runtime.
	type result struct {
		h   netns.NsHandle
		err error
	}
	done := make(chan result)
	go func() {
		runtime.LockOSThread() // the thread dies with the goroutine
		h, err := netns.NewNamed(name)
		done <- result{h, err}
	}()
	r := <-done
	if r.err != nil {
		tb.Fatalf("create network namespace %s: %v", name, r.err)
	}
	nl, err := netlink.NewHandleAt(r.h)
	if err != nil {
		tb.Fatalf("netlink handle in %s: %v", name, err)
	}
	ns := &Namespace{Name: name, handle: r.h, nl: nl}
	tb.Cleanup(func() {
		nl.Close()
		r.h.Close()
		if err := netns.DeleteNamed(name); err != nil {
			tb.Errorf("delete network namespace %s: %v", name, err)
		}
	})
	lo, err := nl.LinkByName("lo")
	if err == nil {
		err = nl.LinkSetUp(lo)
	}
	if err != nil {
		tb.Fatalf("loopback up in %s: %v", name, err)
	}
	return ns
}

// Netlink is a netlink handle that works inside the namespace.
func (ns *Namespace) Netlink() *netlink.Handle { return ns.nl }

// Handle is the namespace's file descriptor handle, for APIs that take a
// netns.NsHandle (netlink subscriptions, netlink.NewHandleAt).
func (ns *Namespace) Handle() netns.NsHandle { return ns.handle }

// Do runs fn on an OS thread inside the namespace. Sockets and netlink
// calls made there belong to the namespace, and stay usable afterwards.
func (ns *Namespace) Do(fn func() error) error {
	errc := make(chan error)
	go func() {
		runtime.LockOSThread() // the thread dies with the goroutine
		if err := netns.Set(ns.handle); err != nil {
			errc <- fmt.Errorf("enter %s: %w", ns.Name, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// Veth creates a veth pair, aName in a and bName in b, both up (their
// operstate too), and returns their MAC addresses.
func Veth(tb testing.TB, a *Namespace, aName string, b *Namespace, bName string) (aMAC, bMAC net.HardwareAddr) {
	tb.Helper()
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: aName, Namespace: netlink.NsFd(a.handle), TxQLen: 1000},
		PeerName:      bName,
		PeerNamespace: netlink.NsFd(b.handle),
	}
	if err := netlink.LinkAdd(veth); err != nil {
		tb.Fatalf("create veth %s/%s: %v", aName, bName, err)
	}
	up := func(ns *Namespace, name string) net.HardwareAddr {
		// No IPv6 on the test links: the kernel's own router solicitations
		// and MLD reports would add packets the test did not send.
		err := ns.Do(func() error {
			return os.WriteFile("/proc/sys/net/ipv6/conf/"+name+"/disable_ipv6", []byte("1"), 0)
		})
		if err != nil {
			tb.Fatalf("disable ipv6 on %s in %s: %v", name, ns.Name, err)
		}
		l, err := ns.nl.LinkByName(name)
		if err == nil {
			err = ns.nl.LinkSetUp(l)
		}
		if err != nil {
			tb.Fatalf("set %s up in %s: %v", name, ns.Name, err)
		}
		return l.Attrs().HardwareAddr
	}
	aMAC, bMAC = up(a, aName), up(b, bName)
	// The kernel turns the carrier on a moment later (its link watch
	// runs deferred): a daemon started before would see the link down.
	for _, end := range []struct {
		ns   *Namespace
		name string
	}{{a, aName}, {b, bName}} {
		deadline := time.Now().Add(10 * time.Second)
		for {
			l, err := end.ns.nl.LinkByName(end.name)
			if err == nil && l.Attrs().OperState == netlink.OperUp {
				break
			}
			if time.Now().After(deadline) {
				tb.Fatalf("%s in %s not up (operstate) 10s after setting it up: %v", end.name, end.ns.Name, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return aMAC, bMAC
}

// Sender writes raw Ethernet frames on one interface of a namespace.
type Sender struct {
	fd      int
	ifindex int
}

// NewSender opens an AF_PACKET socket on ifname inside ns.
func NewSender(tb testing.TB, ns *Namespace, ifname string) *Sender {
	tb.Helper()
	s := &Sender{fd: -1}
	err := ns.Do(func() error {
		iface, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0) // send only
		if err != nil {
			return err
		}
		s.fd, s.ifindex = fd, iface.Index
		return nil
	})
	if err != nil {
		tb.Fatalf("raw socket on %s in %s: %v", ifname, ns.Name, err)
	}
	tb.Cleanup(func() { unix.Close(s.fd) })
	return s
}

// Send writes one frame.
func (s *Sender) Send(frame []byte) error {
	addr := &unix.SockaddrLinklayer{Ifindex: s.ifindex, Halen: 6}
	copy(addr.Addr[:], frame[:6])
	return unix.Sendto(s.fd, frame, 0, addr)
}

// SendPaced writes every frame, pausing after each burst so that the
// receiving side's queues (the veth XDP ring, the backlog) never overflow:
// a frame dropped there never reaches the program under test.
func (s *Sender) SendPaced(frames [][]byte, burst int) error {
	for i, f := range frames {
		if err := s.Send(f); err != nil {
			return fmt.Errorf("send frame %d: %w", i, err)
		}
		if (i+1)%burst == 0 {
			time.Sleep(200 * time.Microsecond)
		}
	}
	return nil
}

// LinkStats returns an interface's counters inside a namespace.
func (ns *Namespace) LinkStats(tb testing.TB, ifname string) *netlink.LinkStatistics {
	tb.Helper()
	l, err := ns.nl.LinkByName(ifname)
	if err != nil {
		tb.Fatalf("link %s in %s: %v", ifname, ns.Name, err)
	}
	return l.Attrs().Statistics
}

// PinDir returns a fresh directory on the bpffs at /sys/fs/bpf, mounting
// the bpffs there first if the machine has not, and removes it at cleanup.
func PinDir(tb testing.TB) string {
	tb.Helper()
	RequireRoot(tb)
	const root = "/sys/fs/bpf"
	var fs unix.Statfs_t
	if err := unix.Statfs(root, &fs); err != nil || fs.Type != unix.BPF_FS_MAGIC {
		if err := os.MkdirAll(root, 0o700); err != nil {
			tb.Fatalf("create %s: %v", root, err)
		}
		if err := unix.Mount("bpf", root, "bpf", 0, "mode=0700"); err != nil {
			tb.Fatalf("mount bpffs on %s: %v", root, err)
		}
	}
	dir, err := os.MkdirTemp(root, "peerwatch-test-")
	if err != nil {
		tb.Fatalf("pin directory: %v", err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}
