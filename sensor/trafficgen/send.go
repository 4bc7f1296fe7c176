package trafficgen

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/peerwatch/peerwatch/sensor/traffic"
)

// The MAC addresses of the lab's two routers, which the frames carry. No
// interface has them, so the receiving namespaces drop every frame before
// IP (the packet is "for another host"): nothing answers, and nothing but
// the frames a run sends crosses the sensor's link.
var (
	PeerMAC  = net.HardwareAddr{0x02, 0x70, 0x77, 0x00, 0x00, 0x01}
	LocalMAC = net.HardwareAddr{0x02, 0x70, 0x77, 0x00, 0x00, 0x02}
)

// Port writes raw Ethernet frames on one interface, through an AF_PACKET
// socket opened inside a network namespace.
type Port struct {
	Name    string // "netns/interface" or "interface", for errors
	fd      int
	ifindex int
}

// OpenPort opens a sending socket on iface inside the named network
// namespace (as ip netns names it, under /var/run/netns), or in the
// current one when netnsName is empty. It needs CAP_NET_RAW (and
// CAP_SYS_ADMIN to enter a namespace).
func OpenPort(netnsName, iface string) (*Port, error) {
	p := &Port{Name: iface, fd: -1}
	if netnsName != "" {
		p.Name = netnsName + "/" + iface
	}
	open := func() error {
		ifi, err := net.InterfaceByName(iface)
		if err != nil {
			return fmt.Errorf("interface %s: %w", p.Name, err)
		}
		if ifi.Flags&net.FlagUp == 0 {
			return fmt.Errorf("interface %s is down", p.Name)
		}
		// Protocol 0: the socket sends only and receives nothing.
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("raw socket on %s: %w", p.Name, err)
		}
		p.fd, p.ifindex = fd, ifi.Index
		return nil
	}
	if netnsName == "" {
		return p, open()
	}
	ns, err := netns.GetFromName(netnsName)
	if err != nil {
		return nil, fmt.Errorf("network namespace %s: %w", netnsName, err)
	}
	defer ns.Close()
	// Enter the namespace on a thread of its own that never runs other
	// goroutines: it is locked and ends with the goroutine. The socket
	// stays in the namespace it was made in.
	errc := make(chan error)
	go func() {
		runtime.LockOSThread()
		if err := netns.Set(ns); err != nil {
			errc <- fmt.Errorf("enter network namespace %s: %w", netnsName, err)
			return
		}
		errc <- open()
	}()
	return p, <-errc
}

// Send writes one frame. A full transmit queue (ENOBUFS) is waited out, so
// that a frame counted as sent was handed to the interface.
func (p *Port) Send(frame []byte) error {
	addr := &unix.SockaddrLinklayer{Ifindex: p.ifindex, Halen: 6}
	copy(addr.Addr[:], frame[:6])
	for try := 0; ; try++ {
		err := unix.Sendto(p.fd, frame, 0, addr)
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.ENOBUFS) && !errors.Is(err, unix.EAGAIN) || try == 1000 {
			return fmt.Errorf("send on %s: %w", p.Name, err)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// Close closes the socket.
func (p *Port) Close() error {
	if p.fd < 0 {
		return nil
	}
	err := unix.Close(p.fd)
	p.fd = -1
	return err
}

// Stream is one generator's share of a run: its rate, its limits and when
// it starts.
type Stream struct {
	Gen *Generator
	// Rate in packets per second; 0 sends as fast as the pacing allows.
	Rate float64
	// Count stops the stream after this many packets; Duration after this
	// long. Zero is no limit; with neither, the stream lasts as long as
	// the run.
	Count    uint64
	Duration time.Duration
	// After delays the stream's start from the run's.
	After time.Duration

	// Sent is what the stream sent.
	Sent traffic.Counters
	sent uint64
}

// finished reports whether s has sent all it should by elapsed (time
// since the start of the run).
func (s *Stream) finished(elapsed time.Duration) bool {
	return s.Count > 0 && s.sent >= s.Count || s.Duration > 0 && elapsed >= s.After+s.Duration
}

// due is how many packets s may send now, at most SendBurst, and if none,
// how long until the next one.
func (s *Stream) due(elapsed time.Duration) (uint64, time.Duration) {
	if elapsed < s.After {
		return 0, s.After - elapsed
	}
	n := uint64(SendBurst)
	if s.Rate > 0 {
		total := uint64(s.Rate * (elapsed - s.After).Seconds())
		if total <= s.sent {
			return 0, time.Duration(float64(s.sent+1-total) / s.Rate * float64(time.Second))
		}
		n = min(n, total-s.sent)
	}
	if s.Count > 0 {
		n = min(n, s.Count-s.sent)
	}
	return n, 0
}

// Run sends what its streams' generators make, interleaved: remote-to-local
// packets on Peer (the peer's side of the link), local-to-remote packets
// on Local.
type Run struct {
	Streams     []*Stream
	Peer, Local *Port
	// Progress, if set, is called about once a second with the total so far.
	Progress func(traffic.Counters)
}

// SendBurst is the most frames sent back to back before the sender yields
// the CPU: the receiving veth queues (the backlog, an XDP ring of 256
// frames) must drain between bursts, or the kernel drops frames that were
// counted as sent.
const SendBurst = 32

// Send runs until every stream reached its limit (a stream without one
// runs until ctx ends), or ctx ends. The tally holds every frame handed to
// the kernel, also when Send returns an error.
func (r *Run) Send(ctx context.Context, t *Tally) error {
	for _, s := range r.Streams {
		if s.Rate < 0 {
			return fmt.Errorf("rate %v is negative", s.Rate)
		}
	}
	start := time.Now()
	nextProgress := start.Add(time.Second)
	buf := make([]byte, 0, 1600)
	for {
		select {
		case <-ctx.Done():
			return nil
		default:
		}
		now := time.Now()
		elapsed := now.Sub(start)
		if r.Progress != nil && now.After(nextProgress) {
			r.Progress(t.Sent())
			nextProgress = now.Add(time.Second)
		}
		sent, active := uint64(0), false
		wait := 10 * time.Millisecond
		for _, s := range r.Streams {
			if s.finished(elapsed) {
				continue
			}
			active = true
			n, w := s.due(elapsed)
			if n == 0 {
				wait = min(wait, w)
				continue
			}
			for range n {
				p, l := s.Gen.Next()
				port := r.Peer
				src, dst := PeerMAC, LocalMAC
				if p.Direction == traffic.Out {
					port, src, dst = r.Local, LocalMAC, PeerMAC
				}
				buf = p.Frame(buf[:0], src, dst)
				if err := port.Send(buf); err != nil {
					return err
				}
				t.Add(&p, l, len(buf))
				s.Sent.Packets[p.Direction]++
				s.Sent.Bytes[p.Direction] += uint64(len(buf))
				s.Sent.Class[p.Class]++
				s.sent++
			}
			sent += n
		}
		if !active {
			return nil
		}
		switch {
		case sent >= SendBurst:
			time.Sleep(100 * time.Microsecond) // let the receivers drain
		case sent == 0:
			time.Sleep(max(wait, 50*time.Microsecond))
		}
	}
}
