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

	"github.com/peerwatch/peerwatch/sensor/summary"
	"github.com/peerwatch/peerwatch/sensor/traffic"
)

type errorBody struct {
	Error string `json:"error"`
}

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
			writeJSON(w, http.StatusBadRequest, errorBody{Error: pe.Error()})
		case err != nil:
			if ok, n := s.errLog.allow(s.now()); ok {
				s.log.Error("api request", "path", r.URL.Path, "err", err, "suppressed", n)
			}
			writeJSON(w, http.StatusInternalServerError, errorBody{Error: err.Error()})
		default:
			writeJSON(w, http.StatusOK, v)
		}
	}
}

// countersJSON is traffic.Counters with named fields.
type countersJSON struct {
	PacketsIn  uint64      `json:"packets_in"`
	PacketsOut uint64      `json:"packets_out"`
	BytesIn    uint64      `json:"bytes_in"`
	BytesOut   uint64      `json:"bytes_out"`
	Classes    classesJSON `json:"classes"`
}

// classesJSON are packets by protocol class, both directions.
type classesJSON struct {
	TCP    uint64 `json:"tcp"`
	UDP    uint64 `json:"udp"`
	ICMP   uint64 `json:"icmp"`
	Tunnel uint64 `json:"tunnel"`
	Other  uint64 `json:"other"`
}

func countersOf(c traffic.Counters) countersJSON {
	return countersJSON{
		PacketsIn: c.Packets[traffic.In], PacketsOut: c.Packets[traffic.Out],
		BytesIn: c.Bytes[traffic.In], BytesOut: c.Bytes[traffic.Out],
		Classes: classesJSON{
			TCP: c.Class[traffic.TCP], UDP: c.Class[traffic.UDP], ICMP: c.Class[traffic.ICMP],
			Tunnel: c.Class[traffic.Tunnel], Other: c.Class[traffic.Other],
		},
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

// --- status

type statusJSON struct {
	Sensor               string          `json:"sensor"`
	Version              string          `json:"version"`
	Board                string          `json:"board"`
	Kernel               string          `json:"kernel"`
	Now                  time.Time       `json:"now"`
	Started              time.Time       `json:"started"`
	UptimeSeconds        float64         `json:"uptime_seconds"`
	Interfaces           []interfaceJSON `json:"interfaces"`
	LastDrain            *time.Time      `json:"last_drain"`
	DrainLagSeconds      *float64        `json:"drain_lag_seconds"`
	DrainIntervalSeconds float64         `json:"drain_interval_seconds"`
	DrainDurationSeconds float64         `json:"drain_duration_seconds"`
	Invariant            invariantJSON   `json:"invariant"`
	Totals               traffic.Globals `json:"totals"`
	Remote               countersJSON    `json:"remote"`
	Latest               *intervalJSON   `json:"latest"`
	Store                storeJSON       `json:"store"`
	Uplink               uplinkJSON      `json:"uplink"`
}

type interfaceJSON struct {
	Name  string `json:"name"`
	Mode  string `json:"mode"`
	State string `json:"state"`
	Error string `json:"error,omitempty"`
}

type invariantJSON struct {
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

// intervalJSON is the last interval: its counters and rates.
type intervalJSON struct {
	Start   time.Time       `json:"start"`
	End     time.Time       `json:"end"`
	Seconds float64         `json:"seconds"`
	PPS     rateJSON        `json:"packets_per_second"`
	BPS     rateJSON        `json:"bits_per_second"`
	Globals traffic.Globals `json:"globals"`
	Remote  countersJSON    `json:"remote"`
}

type rateJSON struct {
	In  float64 `json:"in"`
	Out float64 `json:"out"`
}

type storeJSON struct {
	Path      string `json:"path"`
	Bytes     int64  `json:"bytes"`
	MaxBytes  int64  `json:"max_bytes"`
	Evicted   uint64 `json:"evicted"`
	Recovered string `json:"recovered,omitempty"`
}

type uplinkJSON struct {
	State  string `json:"state"`
	Outbox int    `json:"outbox"`
}

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
	st := statusJSON{
		Sensor: h.Sensor, Version: h.Version, Board: h.Board, Kernel: h.Kernel,
		Now: now.UTC(), Started: h.Started.UTC(), UptimeSeconds: durSeconds(now.Sub(h.Started), !h.Started.IsZero()),
		Interfaces:           make([]interfaceJSON, 0, len(h.Interfaces)),
		DrainIntervalSeconds: h.DrainInterval.Seconds(),
		DrainDurationSeconds: h.DrainDuration.Seconds(),
		Invariant:            invariantJSON{OK: h.Invariant == nil},
		Totals:               h.Totals,
		Remote:               countersOf(h.Remote),
		Store:                storeJSON{Path: h.Store.Path, Bytes: h.Store.Size, MaxBytes: h.Store.MaxSize, Evicted: h.Store.Evicted, Recovered: h.Store.Recovered},
		Uplink:               uplinkJSON{State: h.Uplink.State, Outbox: h.Uplink.Outbox},
	}
	if h.Invariant != nil {
		st.Invariant.Error = h.Invariant.Error()
	}
	for _, i := range h.Interfaces {
		st.Interfaces = append(st.Interfaces, interfaceJSON{Name: i.Name, Mode: i.Mode, State: i.State, Error: i.Err})
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
		st.Latest = &intervalJSON{
			Start: l.Start.UTC(), End: l.End.UTC(), Seconds: l.End.Sub(l.Start).Seconds(),
			PPS:     rateJSON{In: pps[traffic.In], Out: pps[traffic.Out]},
			BPS:     rateJSON{In: bps[traffic.In], Out: bps[traffic.Out]},
			Globals: l.Globals, Remote: countersOf(l.Remote),
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

type topJSON struct {
	By          string       `json:"by"`
	Direction   string       `json:"direction"`
	Window      string       `json:"window"`
	From        time.Time    `json:"from"`
	To          time.Time    `json:"to"`
	Limit       int          `json:"limit"`
	Approximate bool         `json:"approximate"`
	NoData      bool         `json:"no_data,omitempty"`
	Total       countersJSON `json:"total"`
	Rows        any          `json:"rows"`
	Other       countersJSON `json:"other"`
	DataStart   *time.Time   `json:"data_start,omitempty"`
	DataEnd     *time.Time   `json:"data_end,omitempty"`
}

type prefixRowJSON struct {
	Prefix  netip.Prefix `json:"prefix"`
	Country string       `json:"country"`
	ASN     uint32       `json:"asn"`
	ASName  string       `json:"as_name"`
	countersJSON
}

type countryRowJSON struct {
	Country string `json:"country"`
	countersJSON
}

type asRowJSON struct {
	ASN    uint32 `json:"asn"`
	ASName string `json:"as_name"`
	countersJSON
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
	to := s.now()
	from := to.Add(-span)
	w, err := s.window(from, to)
	if err != nil {
		return nil, err
	}
	items, all, other := topItems(w, by, dir, limit)
	res := topJSON{
		By: by, Direction: dir.String(), Window: formatSpan(span), From: from.UTC(), To: to.UTC(), Limit: limit,
		Approximate: by == byPrefix, NoData: w == nil,
		Total: countersOf(all), Other: countersOf(other),
	}
	if w != nil {
		start, end := w.Start.UTC(), w.End.UTC()
		res.DataStart, res.DataEnd = &start, &end
	}
	switch by {
	case byPrefix:
		rows := make([]prefixRowJSON, 0, len(items))
		for _, t := range items {
			rows = append(rows, prefixRowJSON{Prefix: t.Prefix, Country: t.Country, ASN: t.ASN, ASName: t.ASName, countersJSON: countersOf(t.Counters)})
		}
		res.Rows = rows
	case byCountry:
		rows := make([]countryRowJSON, 0, len(items))
		for _, t := range items {
			rows = append(rows, countryRowJSON{Country: t.Country, countersJSON: countersOf(t.Counters)})
		}
		res.Rows = rows
	case byAS:
		rows := make([]asRowJSON, 0, len(items))
		for _, t := range items {
			rows = append(rows, asRowJSON{ASN: t.ASN, ASName: t.ASName, countersJSON: countersOf(t.Counters)})
		}
		res.Rows = rows
	}
	return res, nil
}

// --- lookup

type labelsJSON struct {
	Prefix  netip.Prefix `json:"prefix"`
	Country string       `json:"country"`
	ASN     uint32       `json:"asn"`
	ASName  string       `json:"as_name"`
	Table   string       `json:"table"`
}

type lookupJSON struct {
	Addr     netip.Addr    `json:"addr"`
	Window   string        `json:"window"`
	From     time.Time     `json:"from"`
	To       time.Time     `json:"to"`
	Labels   *labelsJSON   `json:"labels"`
	InTop    bool          `json:"in_top"`
	Prefix   *netip.Prefix `json:"prefix,omitempty"`
	Counters *countersJSON `json:"counters,omitempty"`
	Country  *countersJSON `json:"country_counters,omitempty"`
	AS       *countersJSON `json:"as_counters,omitempty"`
	Note     string        `json:"note,omitempty"`
}

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
	to := s.now()
	from := to.Add(-span)
	res := lookupJSON{Addr: addr, Window: formatSpan(span), From: from.UTC(), To: to.UTC()}
	l, known := s.src.Lookup(addr)
	if known {
		res.Labels = &labelsJSON{Prefix: l.Prefix, Country: l.Country, ASN: l.ASN, ASName: l.ASName, Table: l.Table}
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
		c := countersOf(p.Counters)
		res.InTop, res.Prefix, res.Counters = true, &p.Prefix, &c
	}
	if known {
		if l.Country != "" {
			if i := slices.IndexFunc(w.Countries, func(c summary.CountryCount) bool { return c.Country == l.Country }); i >= 0 {
				c := countersOf(w.Countries[i].Counters)
				res.Country = &c
			}
		}
		if l.ASN != 0 {
			if i := slices.IndexFunc(w.ASes, func(a summary.ASCount) bool { return a.ASN == l.ASN }); i >= 0 {
				c := countersOf(w.ASes[i].Counters)
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

type seriesJSON struct {
	Key         string      `json:"key"`
	Level       string      `json:"level"`
	From        time.Time   `json:"from"`
	To          time.Time   `json:"to"`
	StepSeconds float64     `json:"step_seconds"`
	Points      []pointJSON `json:"points"`
}

type pointJSON struct {
	T          time.Time `json:"t"`
	Seconds    float64   `json:"seconds"`
	PacketsIn  uint64    `json:"packets_in"`
	PacketsOut uint64    `json:"packets_out"`
	BytesIn    uint64    `json:"bytes_in"`
	BytesOut   uint64    `json:"bytes_out"`
}

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
	res := seriesJSON{Key: key.String(), Level: level, From: from.UTC(), To: to.UTC(), StepSeconds: step.Seconds(), Points: make([]pointJSON, 0, len(ss))}
	for _, sm := range ss {
		if sm == nil {
			continue
		}
		c := key.counters(sm)
		res.Points = append(res.Points, pointJSON{
			T: sm.Start.UTC(), Seconds: sm.End.Sub(sm.Start).Seconds(),
			PacketsIn: c.Packets[traffic.In], PacketsOut: c.Packets[traffic.Out],
			BytesIn: c.Bytes[traffic.In], BytesOut: c.Bytes[traffic.Out],
		})
	}
	return res, nil
}

// --- alerts

type alertsJSON struct {
	Active []alertJSON `json:"active"`
	Recent []alertJSON `json:"recent"`
}

type alertJSON struct {
	ID       string         `json:"id"`
	List     string         `json:"list"`
	Reason   string         `json:"reason"`
	Active   bool           `json:"active"`
	Start    time.Time      `json:"start"`
	End      *time.Time     `json:"end"`
	PeakPPS  float64        `json:"peak_pps"`
	PeakBPS  float64        `json:"peak_bps"`
	Packets  uint64         `json:"packets"`
	Bytes    uint64         `json:"bytes"`
	Prefixes []netip.Prefix `json:"prefixes"`
}

func alertsOf(as []Alert) []alertJSON {
	out := make([]alertJSON, 0, len(as))
	for _, a := range as {
		j := alertJSON{
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
	return alertsJSON{Active: alertsOf(active), Recent: alertsOf(recent)}, nil
}
