package daemon

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/peerwatch/peerwatch/sensor/aggregate"
	"github.com/peerwatch/peerwatch/sensor/linkwatch"
	"github.com/peerwatch/peerwatch/sensor/store"
	"github.com/peerwatch/peerwatch/sensor/summary"
	"github.com/peerwatch/peerwatch/sensor/version"
	"github.com/peerwatch/peerwatch/sensor/watch"
	"github.com/peerwatch/peerwatch/sensor/web"
)

// source is what the status page, the API and /metrics read.
type source struct{ d *Daemon }

func (s *source) Health() web.Health {
	d := s.d
	d.mu.Lock()
	defer d.mu.Unlock()
	h := web.Health{
		Version:       version.Version,
		Board:         d.cfg.Sensor.Board,
		Kernel:        d.kernel,
		Sensor:        d.cfg.Sensor.ID,
		Started:       d.started,
		LastDrain:     d.lastDrain,
		DrainInterval: d.cfg.Drain.Interval,
		DrainDuration: d.drainDur,
		Invariant:     d.invariant,
		Totals:        d.totals,
		Remote:        d.remote,
		Uplink:        web.UplinkHealth{State: "disabled"},
	}
	for _, st := range d.links.Status() {
		name := st.Ifname
		if name == "" {
			name = st.Selector.String()
		}
		h.Interfaces = append(h.Interfaces, web.Interface{Name: name, Mode: st.Mode, State: string(st.State), Err: st.Err})
	}
	if up := d.uplink.State(); d.uplink.Enabled() {
		h.Uplink = web.UplinkHealth{State: up.State, Outbox: up.Outbox, Resent: up.Resent, ReportedLost: up.ReportedLost}
	}
	stats := d.store.Stats()
	h.Store = web.StoreHealth{Path: d.cfg.Store.Path, Size: stats.FileSize, MaxSize: int64(d.cfg.Store.MaxSize), Evicted: stats.Evicted}
	h.Store.WriteErrors, h.Store.Unstored, h.Store.UnstoredDropped = d.writeErrors, len(d.unstored), d.unstoredDropped
	if d.writeErr != nil {
		h.Store.WriteError, h.Store.WriteErrorSince = d.writeErr.Error(), d.writeErrSince
	}
	if aside, reason := d.store.Recovered(); aside != "" {
		h.Store.Recovered = aside + ": " + reason.Error()
	}
	return h
}

func (s *source) Latest() (*summary.Summary, error) {
	sum, err := s.d.store.Latest()
	return sum, noData(err)
}

func (s *source) Window(from, to time.Time) (*summary.Summary, error) {
	sum, err := s.d.store.Window(from, to)
	return sum, noData(err)
}

func (s *source) Series(level string, from, to time.Time) ([]*summary.Summary, error) {
	sums, err := s.d.store.Series(level, from, to)
	return sums, noData(err)
}

// noData turns the store's "nothing stored yet" into the pages' own.
func noData(err error) error {
	if errors.Is(err, store.ErrNoData) {
		return fmt.Errorf("%w: %w", web.ErrNoData, err)
	}
	return err
}

func (s *source) Alerts() (active, recent []web.Alert) {
	s.d.mu.Lock()
	eng, before := s.d.alerts, s.d.recentBefore
	s.d.mu.Unlock()
	for _, a := range eng.Active() {
		active = append(active, webAlert(a))
	}
	for _, a := range append(eng.Recent(100), before...) {
		recent = append(recent, webAlert(a))
	}
	return active, recent
}

func webAlert(a watch.Alert) web.Alert {
	w := web.Alert{ID: a.ID, List: a.List, Reason: a.Reason, Start: a.Start, End: a.End,
		PeakPPS: a.PeakPPS, PeakBPS: a.PeakBPS, Packets: a.Packets, Bytes: a.Bytes}
	for _, p := range a.Prefixes {
		w.Prefixes = append(w.Prefixes, p.Prefix)
	}
	return w
}

func (s *source) Lookup(addr netip.Addr) (web.Labels, bool) {
	s.d.mu.Lock()
	tables := s.d.labels
	s.d.mu.Unlock()
	l := aggregate.Resolve(tables, addr)
	return web.Labels{Prefix: l.Prefix, Country: l.Country, ASN: l.ASN, ASName: l.ASName, Table: l.Table}, l.Prefix.IsValid()
}

var _ linkwatch.State
