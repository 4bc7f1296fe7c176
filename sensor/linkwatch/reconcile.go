package linkwatch

import (
	"bytes"
	"net"
	"slices"

	"github.com/vishvananda/netlink"
)

// reconcile brings the attachments in line with the links and updates the
// status of every selector. Detaches come before attaches: a link renamed
// under a MAC or altname selector is detached under its old name before it
// is attached under the new one (an XDP hook takes one program; TCX would
// run two).
func (w *Watcher) reconcile(links []netlink.Link) {
	matched := make([]netlink.Link, len(w.sels))
	want := make(map[string]int) // interface name → ifindex
	for i, t := range w.sels {
		if l := t.match(links); l != nil {
			matched[i] = l
			want[l.Attrs().Name] = l.Attrs().Index
		}
	}

	for name, a := range w.attached {
		if want[name] != a.ifindex {
			w.detach(name)
		}
	}

	failed := make(map[string]error) // one attempt per interface and reconcile
	for i, t := range w.sels {
		l := matched[i]
		if l == nil {
			if t.macErr != nil {
				w.setError(t, "", 0, t.macErr)
				continue
			}
			w.set(t, Status{State: StateMissing})
			continue
		}
		name, index := l.Attrs().Name, l.Attrs().Index
		a, ok := w.attached[name]
		if !ok {
			err, tried := failed[name]
			if !tried {
				var mode string
				mode, err = w.attacher.Attach(name)
				if err == nil {
					a = attachment{ifindex: index, mode: mode}
					w.attached[name] = a
				} else {
					failed[name] = err
				}
			}
			if err != nil {
				w.setError(t, name, index, err)
				continue
			}
		}
		state := StateAttached
		if isDown(l) {
			state = StateDown
		}
		w.set(t, Status{Ifname: name, Ifindex: index, State: state, Mode: a.mode})
	}
	w.publish()
}

// linkDeleted forgets a link the kernel removed.
func (w *Watcher) linkDeleted(ifindex int) {
	for name, a := range w.attached {
		if a.ifindex == ifindex {
			w.detach(name)
		}
	}
	for _, t := range w.sels {
		if t.status.Ifindex == ifindex && t.status.State != StateMissing {
			w.set(t, Status{State: StateMissing})
		}
	}
}

// detach releases an attachment that no selector wants any more: the link
// has gone, was recreated or renamed, or was renamed away from a configured
// name.
func (w *Watcher) detach(name string) {
	delete(w.attached, name)
	if err := w.attacher.Detach(name); err != nil {
		w.log.Warn("detach", "interface", name, "error", err)
	}
}

// match finds the link a selector names. Several links may carry one MAC
// address (VLANs, bridges and bonds take their port's); the link whose
// permanent address it is comes first, then the link already followed,
// then the lowest ifindex.
func (t *tracked) match(links []netlink.Link) netlink.Link {
	var best netlink.Link
	rank := func(l netlink.Link) int {
		a := l.Attrs()
		switch {
		case bytes.Equal(a.PermHWAddr, t.mac):
			return 0
		case a.Index == t.status.Ifindex:
			return 1
		}
		return 2
	}
	for _, l := range links {
		a := l.Attrs()
		switch {
		case t.sel.Name != "":
			if a.Name == t.sel.Name {
				return l
			}
		case t.sel.Altname != "":
			if slices.Contains(a.AltNames, t.sel.Altname) {
				return l
			}
		case t.mac != nil:
			if !bytes.Equal(a.HardwareAddr, t.mac) && !bytes.Equal(a.PermHWAddr, t.mac) {
				continue
			}
			if best == nil || rank(l) < rank(best) ||
				rank(l) == rank(best) && a.Index < best.Attrs().Index {
				best = l
			}
		}
	}
	return best
}

// isDown tells whether a link is administratively down or has no carrier.
// Links without carrier handling (dummy, some tunnels) report the unknown
// operational state when up.
func isDown(l netlink.Link) bool {
	a := l.Attrs()
	if a.Flags&net.FlagUp == 0 {
		return true
	}
	switch a.OperState {
	case netlink.OperDown, netlink.OperLowerLayerDown, netlink.OperNotPresent:
		return true
	}
	return false
}

// set records a selector's new status and logs the change.
func (w *Watcher) set(t *tracked, s Status) {
	old := t.status
	s.Selector = t.sel
	s.Since = old.Since
	first := old.Since.IsZero() // the first reconcile
	changed := s.State != old.State || s.Ifname != old.Ifname || s.Ifindex != old.Ifindex
	if changed || first {
		s.Since = w.now()
	}
	t.status = s
	if s.State != StateError {
		t.errLog.reset() // a new failure is logged at once
	}
	if !changed && !first {
		return
	}
	log := w.log.With("selector", t.sel.String())
	switch s.State {
	case StateAttached:
		log.Info("interface attached", "interface", s.Ifname, "ifindex", s.Ifindex, "mode", s.Mode)
	case StateDown:
		log.Warn("interface down, program stays attached", "interface", s.Ifname, "ifindex", s.Ifindex, "mode", s.Mode)
	case StateMissing:
		if first {
			log.Warn("interface missing")
		} else {
			log.Warn("interface missing", "was", old.Ifname, "ifindex", old.Ifindex)
		}
	}
}

// setError records a failed attach; the log of a selector that keeps
// failing is limited to one line a minute.
func (w *Watcher) setError(t *tracked, name string, index int, err error) {
	w.set(t, Status{Ifname: name, Ifindex: index, State: StateError, Err: err.Error()})
	if t.errLog.allow(w.now()) {
		w.log.Error("attach failed, retrying at the next reconcile",
			"selector", t.sel.String(), "interface", name, "ifindex", index, "error", err)
	}
}
