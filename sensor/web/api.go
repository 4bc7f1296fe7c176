package web

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"time"

	"github.com/peerwatch/peerwatch/sensor/api"
	"github.com/peerwatch/peerwatch/sensor/summary"
	"github.com/peerwatch/peerwatch/sensor/traffic"
)

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code, b = http.StatusInternalServerError, []byte(`{"error":"encode the response"}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

// api wraps an endpoint: its result is the JSON body; a parameter error is a
// 400 naming the parameter, any other error a 500.
func (s *server) api(fn func(*http.Request) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, err := fn(r)
		var pe *paramError
		switch {
		case errors.As(err, &pe):
			writeJSON(w, http.StatusBadRequest, api.Error{Error: pe.Error()})
		case err != nil:
			if ok, n := s.errLog.allow(s.now()); ok {
				s.log.Error("api request", "path", r.URL.Path, "err", err, "suppressed", n)
			}
			writeJSON(w, http.StatusInternalServerError, api.Error{Error: err.Error()})
		default:
			writeJSON(w, http.StatusOK, v)
		}
	}
}

// hasData tells a summary with traffic from none (nil, or no interval).
func hasData(s *summary.Summary) bool {
	return s != nil && (s.Globals.Seen > 0 || !s.End.IsZero())
}

// latest is the source's last interval; nil before the first one.
func (s *server) latest() (*summary.Summary, error) {
	l, err := s.src.Latest()
	if errors.Is(err, ErrNoData) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the last interval: %w", err)
	}
	return l, nil
}

// window is the source's merged window; nil when it holds no data.
func (s *server) window(from, to time.Time) (*summary.Summary, error) {
	w, err := s.src.Window(from, to)
	if errors.Is(err, ErrNoData) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the window %s to %s: %w", from.Format(time.RFC3339), to.Format(time.RFC3339), err)
	}
	if !hasData(w) {
		return nil, nil
	}
	return w, nil
}

// recent is the window of "the last span": from now − span to now, or to
// the end of the newest interval when that is later. After the wall clock
// was stepped back, the intervals stored before the step end after now;
// they were counted before now, so the last span holds them.
func (s *server) recent(now time.Time, span time.Duration) (from, to time.Time) {
	from, to = now.Add(-span), now
	if l, err := s.src.Latest(); err == nil && l != nil && l.End.After(to) {
		to = l.End
	}
	return from, to
}

// --- status

// rates are an interval's packets and bits per second by direction.
func rates(s *summary.Summary) (pps, bps [2]float64) {
	sec := s.End.Sub(s.Start).Seconds()
	if sec <= 0 {
		return pps, bps
	}
	for d := range 2 {
		pps[d] = float64(s.Remote.Packets[d]) / sec
		bps[d] = float64(s.Remote.Bytes[d]) * 8 / sec
	}
	return pps, bps
}

func (s *server) status(r *http.Request) (any, error) {
	if _, err := readParams(r); err != nil {
		return nil, err
	}
	h := s.src.Health()
	now := s.now()
	st := api.Status{
		Sensor: h.Sensor, Version: h.Version, Board: h.Board, Kernel: h.Kernel,
		Now: now.UTC(), Started: h.Started.UTC(), UptimeSeconds: durSeconds(now.Sub(h.Started), !h.Started.IsZero()),
		Interfaces:           make([]api.Interface, 0, len(h.Interfaces)),
		DrainIntervalSeconds: h.DrainInterval.Seconds(),
		DrainDurationSeconds: h.DrainDuration.Seconds(),
		Invariant:            api.Invariant{OK: h.Invariant == nil},
		Totals:               h.Totals,
		Remote:               api.CountersOf(h.Remote),
		Store: api.Store{Path: h.Store.Path, Bytes: h.Store.Size, MaxBytes: h.Store.MaxSize, Evicted: h.Store.Evicted, Recovered: h.Store.Recovered,
			WriteError: h.Store.WriteError, WriteErrors: h.Store.WriteErrors, Unstored: h.Store.Unstored, UnstoredDropped: h.Store.UnstoredDropped},
		Uplink: api.Uplink{State: h.Uplink.State, Outbox: h.Uplink.Outbox, Resent: h.Uplink.Resent, ReportedLost: h.Uplink.ReportedLost},
	}
	if h.Invariant != nil {
		st.Invariant.Error = h.Invariant.Error()
	}
	if h.Store.WriteError != "" {
		since := h.Store.WriteErrorSince.UTC()
		st.Store.WriteErrorSince = &since
	}
	for _, i := range h.Interfaces {
		st.Interfaces = append(st.Interfaces, api.Interface{Name: i.Name, Mode: i.Mode, State: i.State, Error: i.Err})
	}
	if !h.LastDrain.IsZero() {
		last, lag := h.LastDrain.UTC(), now.Sub(h.LastDrain).Seconds()
		st.LastDrain, st.DrainLagSeconds = &last, &lag
	}
	l, err := s.latest()
	if err != nil {
		return nil, err
	}
	if hasData(l) {
		pps, bps := rates(l)
		st.Latest = &api.Interval{
			Start: l.Start.UTC(), End: l.End.UTC(), Seconds: l.End.Sub(l.Start).Seconds(),
			PPS:     api.Rates{In: pps[traffic.In], Out: pps[traffic.Out]},
			BPS:     api.Rates{In: bps[traffic.In], Out: bps[traffic.Out]},
			Globals: l.Globals, Remote: api.CountersOf(l.Remote),
		}
	}
	return st, nil
}

func durSeconds(d time.Duration, ok bool) float64 {
	if !ok || d < 0 {
		return 0
	}
	return d.Seconds()
}

// --- top

// topItem is one row of a top list: a prefix with its labels, a country or
// an AS.
type topItem struct {
	Prefix  netip.Prefix
	Country string
	ASN     uint32
	ASName  string
	traffic.Counters
}

// topItems ranks the window's prefixes, countries or ASes by packets in the
// direction (rows without packets in it are left out) and keeps limit rows.
// all is the window's remote traffic, other what the rows leave out of it.
func topItems(s *summary.Summary, by string, dir direction, limit int) (rows []topItem, all, other traffic.Counters) {
	if s == nil {
		return nil, all, other
	}
	switch by {
	case byPrefix:
		for _, p := range s.Prefixes {
			rows = append(rows, topItem{Prefix: p.Prefix, Country: p.Country, ASN: p.ASN, ASName: p.ASName, Counters: p.Counters})
		}
	case byCountry:
		for _, c := range s.Countries {
			rows = append(rows, topItem{Country: c.Country, Counters: c.Counters})
		}
	case byAS:
		for _, a := range s.ASes {
			rows = append(rows, topItem{ASN: a.ASN, ASName: a.ASName, Counters: a.Counters})
		}
	}
	rows = slices.DeleteFunc(rows, func(t topItem) bool { return dir.packets(t.Counters) == 0 })
	slices.SortStableFunc(rows, func(a, b topItem) int {
		return cmp.Or(cmp.Compare(dir.packets(b.Counters), dir.packets(a.Counters)), cmp.Compare(b.Total(), a.Total()))
	})
	rows = rows[:min(limit, len(rows))]
	all = s.Remote
	other = all
	for _, r := range rows {
		other = subCounters(other, r.Counters)
	}
	return rows, all, other
}

// subCounters is a - b, floored at zero: a merged window's top prefixes are
// approximate and must not make "other" wrap around.
func subCounters(a, b traffic.Counters) traffic.Counters {
	sub := func(x, y uint64) uint64 {
		if y > x {
			return 0
		}
		return x - y
	}
	for i := range a.Packets {
		a.Packets[i] = sub(a.Packets[i], b.Packets[i])
		a.Bytes[i] = sub(a.Bytes[i], b.Bytes[i])
	}
	for i := range a.Class {
		a.Class[i] = sub(a.Class[i], b.Class[i])
	}
	return a
}

func (s *server) top(r *http.Request) (any, error) {
	v, err := readParams(r, "by", "window", "direction", "limit")
	if err != nil {
		return nil, err
	}
	by, err := parseBy(v)
	if err != nil {
		return nil, err
	}
	span, err := parseWindow(v, time.Hour)
	if err != nil {
		return nil, err
	}
	dir, err := parseDirection(v)
	if err != nil {
		return nil, err
	}
	limit, err := parseLimit(v, defaultLimit)
	if err != nil {
		return nil, err
	}
	from, to := s.recent(s.now(), span)
	w, err := s.window(from, to)
	if err != nil {
		return nil, err
	}
	items, all, other := topItems(w, by, dir, limit)
	res := api.Top{
		By: by, Direction: dir.String(), Window: formatSpan(span), From: from.UTC(), To: to.UTC(), Limit: limit,
		Approximate: by == byPrefix, NoData: w == nil,
		Total: api.CountersOf(all), Other: api.CountersOf(other),
	}
	if w != nil {
		start, end := w.Start.UTC(), w.End.UTC()
		res.DataStart, res.DataEnd = &start, &end
	}
	switch by {
	case byPrefix:
		rows := make([]api.PrefixRow, 0, len(items))
		for _, t := range items {
			rows = append(rows, api.PrefixRow{Prefix: t.Prefix, Country: t.Country, ASN: t.ASN, ASName: t.ASName, Counters: api.CountersOf(t.Counters)})
		}
		res.Rows = rows
	case byCountry:
		rows := make([]api.CountryRow, 0, len(items))
		for _, t := range items {
			rows = append(rows, api.CountryRow{Country: t.Country, Counters: api.CountersOf(t.Counters)})
		}
		res.Rows = rows
	case byAS:
		rows := make([]api.ASRow, 0, len(items))
		for _, t := range items {
			rows = append(rows, api.ASRow{ASN: t.ASN, ASName: t.ASName, Counters: api.CountersOf(t.Counters)})
		}
		res.Rows = rows
	}
	return res, nil
}

// --- lookup

func (s *server) lookup(r *http.Request) (any, error) {
	v, err := readParams(r, "addr", "window")
	if err != nil {
		return nil, err
	}
	addr, err := parseAddr(v)
	if err != nil {
		return nil, err
	}
	span, err := parseWindow(v, time.Hour)
	if err != nil {
		return nil, err
	}
	from, to := s.recent(s.now(), span)
	res := api.Lookup{Addr: addr, Window: formatSpan(span), From: from.UTC(), To: to.UTC()}
	l, known := s.src.Lookup(addr)
	if known {
		res.Labels = &api.Labels{Prefix: l.Prefix, Country: l.Country, ASN: l.ASN, ASName: l.ASName, Table: l.Table}
	}
	w, err := s.window(from, to)
	if err != nil {
		return nil, err
	}
	if w == nil {
		res.Note = "no traffic data yet in the last " + res.Window
		if !known {
			res.Note = "no loaded table holds " + addr.String() + "; " + res.Note
		}
		return res, nil
	}
	// The address's remote prefix is the longest listed prefix that holds it.
	best := -1
	for i, p := range w.Prefixes {
		if p.Prefix.Contains(addr) && (best < 0 || p.Prefix.Bits() > w.Prefixes[best].Prefix.Bits()) {
			best = i
		}
	}
	if best >= 0 {
		p := w.Prefixes[best]
		c := api.CountersOf(p.Counters)
		res.InTop, res.Prefix, res.Counters = true, &p.Prefix, &c
	}
	if known {
		if l.Country != "" {
			if i := slices.IndexFunc(w.Countries, func(c summary.CountryCount) bool { return c.Country == l.Country }); i >= 0 {
				c := api.CountersOf(w.Countries[i].Counters)
				res.Country = &c
			}
		}
		if l.ASN != 0 {
			if i := slices.IndexFunc(w.ASes, func(a summary.ASCount) bool { return a.ASN == l.ASN }); i >= 0 {
				c := api.CountersOf(w.ASes[i].Counters)
				res.AS = &c
			}
		}
	}
	switch {
	case !known && !res.InTop:
		res.Note = fmt.Sprintf("no loaded table holds %s, and it is not in the %d top prefixes of the last %s", addr, len(w.Prefixes), res.Window)
	case !known:
		res.Note = fmt.Sprintf("no loaded table holds %s; counters are those of its aggregate %s", addr, res.Prefix)
	case !res.InTop:
		res.Note = fmt.Sprintf("%s is not in the %d top prefixes of the last %s: labels only (its traffic, if any, is in other; country_counters and as_counters are exact)",
			l.Prefix, len(w.Prefixes), res.Window)
	}
	return res, nil
}

// --- series

// counters of a key in a summary; zero when the key had no traffic.
func (k seriesKey) counters(s *summary.Summary) traffic.Counters {
	switch k.kind {
	case "country":
		for _, c := range s.Countries {
			if c.Country == k.country {
				return c.Counters
			}
		}
	case "as":
		for _, a := range s.ASes {
			if a.ASN == k.asn {
				return a.Counters
			}
		}
	case "watch":
		for _, w := range s.Watch {
			if w.List == k.list {
				return w.Counters
			}
		}
	default:
		return s.Remote
	}
	return traffic.Counters{}
}

func (s *server) series(r *http.Request) (any, error) {
	v, err := readParams(r, "key", "level", "from", "to")
	if err != nil {
		return nil, err
	}
	key, err := parseSeriesKey(v)
	if err != nil {
		return nil, err
	}
	level, err := parseLevel(v)
	if err != nil {
		return nil, err
	}
	now := s.now()
	to := now
	if t := v.Get("to"); t != "" {
		if to, err = parseTime("to", t, now); err != nil {
			return nil, err
		}
	}
	from := to.Add(-defaultSeriesSpan(level))
	if f := v.Get("from"); f != "" {
		if from, err = parseTime("from", f, now); err != nil {
			return nil, err
		}
	}
	if !from.Before(to) {
		return nil, badParam("from", "%s is not before to (%s)", from.UTC().Format(time.RFC3339), to.UTC().Format(time.RFC3339))
	}
	if to.Sub(from) > maxSpan {
		return nil, badParam("from", "%s to %s is more than 730 days", from.UTC().Format(time.RFC3339), to.UTC().Format(time.RFC3339))
	}
	step := levelStep(level, s.src.Health().DrainInterval)
	if n := to.Sub(from) / step; n > maxPoints {
		return nil, badParam("level", "%s from %s to %s is %d points, more than %d: choose a coarser level or a shorter span",
			level, from.UTC().Format(time.RFC3339), to.UTC().Format(time.RFC3339), n, maxPoints)
	}
	ss, err := s.src.Series(level, from, to)
	if err != nil && !errors.Is(err, ErrNoData) {
		return nil, fmt.Errorf("read the %s series: %w", level, err)
	}
	res := api.Series{Key: key.String(), Level: level, From: from.UTC(), To: to.UTC(), StepSeconds: step.Seconds(), Points: make([]api.Point, 0, len(ss))}
	for _, sm := range ss {
		if sm == nil {
			continue
		}
		c := key.counters(sm)
		res.Points = append(res.Points, api.Point{
			T: sm.Start.UTC(), Seconds: sm.End.Sub(sm.Start).Seconds(),
			PacketsIn: c.Packets[traffic.In], PacketsOut: c.Packets[traffic.Out],
			BytesIn: c.Bytes[traffic.In], BytesOut: c.Bytes[traffic.Out],
		})
	}
	return res, nil
}

// --- alerts

func alertsOf(as []Alert) []api.Alert {
	out := make([]api.Alert, 0, len(as))
	for _, a := range as {
		j := api.Alert{
			ID: a.ID, List: a.List, Reason: a.Reason, Active: a.End.IsZero(), Start: a.Start.UTC(),
			PeakPPS: a.PeakPPS, PeakBPS: a.PeakBPS, Packets: a.Packets, Bytes: a.Bytes,
			Prefixes: append([]netip.Prefix{}, a.Prefixes...),
		}
		if !a.End.IsZero() {
			end := a.End.UTC()
			j.End = &end
		}
		out = append(out, j)
	}
	return out
}

func (s *server) alerts(r *http.Request) (any, error) {
	if _, err := readParams(r); err != nil {
		return nil, err
	}
	active, recent := s.src.Alerts()
	return api.Alerts{Active: alertsOf(active), Recent: alertsOf(recent)}, nil
}
