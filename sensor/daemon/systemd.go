package daemon

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/peerwatch/peerwatch/sensor/linkwatch"
	"github.com/peerwatch/peerwatch/sensor/sdnotify"
	"github.com/peerwatch/peerwatch/sensor/wallclock"
)

// readyPoll is how often the first reconcile of the interfaces is looked
// for before READY=1.
const readyPoll = 50 * time.Millisecond

// notifySystemd tells systemd (Type=notify) that sensord is ready once the
// program is attached to the interfaces that exist, then sends WATCHDOG=1
// while sensord is healthy (see health). Outside systemd it does nothing.
func (d *Daemon) notifySystemd(ctx context.Context) error {
	n, err := sdnotify.FromEnv()
	if err != nil {
		d.log.Error("systemd notification disabled", "error", err)
		return nil
	}
	if !n.Enabled() {
		return nil
	}
	every, err := sdnotify.WatchdogInterval()
	if err != nil {
		d.log.Error("systemd watchdog disabled", "error", err)
	}
	log := d.log.With("component", "systemd")

	poll := time.NewTicker(readyPoll)
	for !reconciled(d.links.Status()) {
		select {
		case <-ctx.Done():
			poll.Stop()
			return nil
		case <-poll.C:
		}
	}
	poll.Stop()
	if err := n.Notify(sdnotify.Ready, sdnotify.Status(interfacesLine(d.links.Status()))); err != nil {
		log.Error("tell systemd sensord is ready", "error", err)
	}
	defer func() { _ = n.Notify(sdnotify.Stopping) }()
	if every <= 0 {
		<-ctx.Done()
		return nil
	}

	d.mu.Lock()
	h := &health{interval: d.cfg.Drain.Interval}
	d.mu.Unlock()
	tick := time.NewTicker(every / 2)
	defer tick.Stop()
	var lastErr string
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		err := h.check(d.sample())
		msg := sdnotify.Watchdog
		if err != nil {
			// No WATCHDOG=1: systemd restarts sensord after WatchdogSec.
			msg = sdnotify.Status("unhealthy: " + err.Error())
			if err.Error() != lastErr {
				log.Error("unhealthy: withholding the watchdog keep-alive", "error", err)
			}
			lastErr = err.Error()
		} else if lastErr != "" {
			lastErr = ""
			log.Info("healthy again")
			_ = n.Notify(sdnotify.Status(interfacesLine(d.links.Status())))
		}
		if err := n.Notify(msg); err != nil {
			log.Error("notify systemd", "error", err)
		}
	}
}

// reconciled tells whether linkwatch has looked at every configured
// interface once: each has then a Since.
func reconciled(st []linkwatch.Status) bool {
	for _, s := range st {
		if s.Since.IsZero() {
			return false
		}
	}
	return true
}

// interfacesLine is the STATUS= line: each interface and its state.
func interfacesLine(st []linkwatch.Status) string {
	if len(st) == 0 {
		return "no interfaces configured: counting nothing"
	}
	parts := make([]string, len(st))
	for i, s := range st {
		name := s.Ifname
		if name == "" {
			name = s.Selector.String()
		}
		parts[i] = name + " " + string(s.State)
		if s.Mode != "" && (s.State == linkwatch.StateAttached || s.State == linkwatch.StateDown) {
			parts[i] += " (" + s.Mode + ")"
		}
	}
	return "counting: " + strings.Join(parts, ", ")
}

// healthSample is what health judges, read at one instant.
type healthSample struct {
	now       time.Time
	lastDrain time.Time // when the drain loop last finished a drain (or sensord started)
	seen      uint64    // packets the program counted, as drained so far
	rx        uint64    // packets the attached, up interfaces received
	up        []string  // those interfaces
}

func (d *Daemon) sample() healthSample {
	d.mu.Lock()
	s := healthSample{now: wallclock.Now(), lastDrain: d.lastDrain, seen: d.totals.Seen}
	d.mu.Unlock()
	if s.lastDrain.IsZero() {
		s.lastDrain = d.started
	}
	for _, st := range d.links.Status() {
		if st.State != linkwatch.StateAttached {
			continue
		}
		l, err := netlink.LinkByIndex(st.Ifindex)
		if err != nil || l.Attrs().Statistics == nil {
			continue
		}
		s.rx += l.Attrs().Statistics.RxPackets
		s.up = append(s.up, st.Ifname)
	}
	return s
}

// health decides whether sensord does its job: the drain loop finishes a
// drain every interval, and the program counts while the interfaces it is
// attached to receive packets (a program that was detached behind
// sensord's back, or a drain that returns nothing, stops the counts).
type health struct {
	interval time.Duration
	// The last sample at which the counts moved, or the interfaces were
	// quiet: received packets since then must show in the counts.
	base    healthSample
	hasBase bool
}

// drainLate is how late a drain may be before sensord is unhealthy: three
// intervals, and at least 30 s (a drain of a full map on a slow board).
func (h *health) drainLate() time.Duration { return max(3*h.interval, 30*time.Second) }

// countLag is how long received packets may stay out of the counts: they
// show after the next drain, so two intervals and a margin.
func (h *health) countLag() time.Duration { return 2*h.interval + 5*time.Second }

func (h *health) check(s healthSample) error {
	if late := s.now.Sub(s.lastDrain); late > h.drainLate() {
		return fmt.Errorf("no drain for %s (drain.interval %s)", late.Round(time.Second), h.interval)
	}
	if !h.hasBase || s.seen != h.base.seen || s.rx <= h.base.rx || len(s.up) != len(h.base.up) {
		// Counting, quiet, or another set of interfaces: start over.
		h.base, h.hasBase = s, true
		return nil
	}
	if since := s.now.Sub(h.base.now); since > h.countLag() {
		return fmt.Errorf("%s received %d packets in %s but the program counted none",
			strings.Join(s.up, ", "), s.rx-h.base.rx, since.Round(time.Second))
	}
	return nil
}
