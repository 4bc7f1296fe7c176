package collectord

import (
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/peerwatch/peerwatch/sensor/api"
	"github.com/peerwatch/peerwatch/sensor/collector"
	"github.com/peerwatch/peerwatch/sensor/summary"
	"github.com/peerwatch/peerwatch/sensor/traffic"
	"github.com/peerwatch/peerwatch/sensor/web"
)

// levels are the collector's aggregation levels, finest first, with how
// many windows each keeps.
var levels = []struct {
	width time.Duration
	keep  int
}{
	{time.Minute, 60},
	{time.Hour, 48},
	{24 * time.Hour, 30},
}

func windowWidths() []time.Duration {
	out := make([]time.Duration, len(levels))
	for i, l := range levels {
		out[i] = l.width
	}
	return out
}

func windowKeep() []int {
	out := make([]int, len(levels))
	for i, l := range levels {
		out[i] = l.keep
	}
	return out
}

// Defaults and bounds of the API's parameters.
const (
	// DefaultWindow is the window of the API when none is asked for.
	DefaultWindow = time.Hour
	// DefaultTopLimit and MaxTopLimit bound the items of /api/v1/top.
	DefaultTopLimit = 1000
	MaxTopLimit     = 10000
	// DefaultAlertLimit is how many alerts /api/v1/alerts gives without
	// limit; at most collector.DefaultMaxAlerts are kept.
	DefaultAlertLimit = 100
)

// MaxSeriesPoints bounds the points of a series, as the sensor's API does;
// a level that would give more is not chosen, or refused when asked for.
const MaxSeriesPoints = 10000

// level is one of the collector's aggregation levels.
type level struct {
	name  string
	width time.Duration
	keep  int // windows, the current one included
}

// kept is the span of the windows the level keeps.
func (l level) kept() time.Duration { return time.Duration(l.keep) * l.width }

// levels are the collector's levels, finest first, as it was made.
func (d *Daemon) levels() []level {
	var out []level
	for _, name := range d.col.Levels() {
		width, keep := d.col.Retention(name)
		out = append(out, level{name: name, width: width, keep: keep})
	}
	return out
}

// maxWindow is the longest window a level keeps.
func (d *Daemon) maxWindow() time.Duration {
	var longest time.Duration
	for _, l := range d.levels() {
		longest = max(longest, l.kept())
	}
	return longest
}

// parseWindow reads the window parameter: a duration such as 15m, 1h or 7d
// (default 1h), positive, and no longer than the collector keeps.
func (d *Daemon) parseWindow(v url.Values) (time.Duration, error) {
	s := v.Get("window")
	if s == "" {
		return DefaultWindow, nil
	}
	w, ok := web.ParseSpan(s)
	switch {
	case !ok:
		return 0, web.BadParam("window", "%q is not a duration like 15m, 1h or 7d", s)
	case w <= 0:
		return 0, web.BadParam("window", "%s is not positive", s)
	case w > d.maxWindow():
		return 0, web.BadParam("window", "%s is longer than the %s the collector keeps", s, web.FormatSpan(d.maxWindow()))
	}
	return w, nil
}

// levelFor returns the finest level that keeps the whole window in at
// most MaxSeriesPoints windows (else the coarsest level).
func (d *Daemon) levelFor(window time.Duration) time.Duration {
	ls := d.levels()
	for _, l := range ls {
		if l.kept() >= window && window/l.width <= MaxSeriesPoints {
			return l.width
		}
	}
	return ls[len(ls)-1].width
}

// parseLevel reads the level parameter of a series: 1m, 1h or 1d, which
// must keep the whole window; by default the finest level that does.
func (d *Daemon) parseLevel(v url.Values, window time.Duration) (time.Duration, error) {
	s := v.Get("level")
	if s == "" {
		return d.levelFor(window), nil
	}
	var names []string
	for _, l := range d.levels() {
		names = append(names, l.name)
		if l.name != s {
			continue
		}
		if l.kept() < window {
			return 0, web.BadParam("level", "%s keeps %s, less than the window %s", s, web.FormatSpan(l.kept()), web.FormatSpan(window))
		}
		if n := window / l.width; n > MaxSeriesPoints {
			return 0, web.BadParam("level", "%s over %s is %d points, more than %d: choose a coarser level or a shorter window", s, web.FormatSpan(window), n, MaxSeriesPoints)
		}
		return l.width, nil
	}
	return 0, web.BadParam("level", "%q is not %s", s, strings.Join(names, ", "))
}

func parseLimit(v url.Values, def, maxN int) (int, error) {
	s := v.Get("limit")
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, web.BadParam("limit", "%q is not a number", s)
	}
	if n < 1 || n > maxN {
		return 0, web.BadParam("limit", "%d is not between 1 and %d", n, maxN)
	}
	return n, nil
}

// parseCountry reads a country code, any case; "" (or "unknown") is the
// traffic no table places.
func parseCountry(name, s string) (string, error) {
	cc := strings.ToUpper(s)
	if cc == "" || cc == "UNKNOWN" {
		return "", nil
	}
	if len(cc) != 2 || strings.Trim(cc, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != "" {
		return "", web.BadParam(name, "%q is not a two-letter country code (or empty for traffic no table places)", s)
	}
	return cc, nil
}

// parseASN reads an AS number: 131279 or AS131279; 0 (or "unknown") is the
// traffic no table places.
func parseASN(name, s string) (uint32, error) {
	if strings.EqualFold(s, "unknown") {
		return 0, nil
	}
	n, err := strconv.ParseUint(strings.TrimPrefix(strings.ToUpper(s), "AS"), 10, 32)
	if err != nil {
		return 0, web.BadParam(name, "%q is not an AS number like 131279 or AS131279", s)
	}
	return uint32(n), nil
}

// span is the windows of the level of width that a query of window at now
// reads: those that start in [from, to).
func span(now time.Time, window, width time.Duration) (from, to time.Time) {
	now = now.UTC()
	return now.Add(-window).Truncate(width), now.Truncate(width).Add(width)
}

// Handler serves the dashboard (/), the JSON API (/api/v1/), the metrics
// (/metrics) and the dashboard's assets (/static/). Every path is GET or
// HEAD only and carries the sensor page's security headers.
func (d *Daemon) Handler() http.Handler {
	endpoints := http.NewServeMux()
	endpoints.HandleFunc("/api/v1/sensors", d.api(d.sensors))
	endpoints.HandleFunc("/api/v1/rejects", d.api(d.rejects))
	endpoints.HandleFunc("/api/v1/top", d.api(d.top))
	endpoints.HandleFunc("/api/v1/whosees", d.api(d.whoSees))
	endpoints.HandleFunc("/api/v1/series", d.api(d.series))
	endpoints.HandleFunc("/api/v1/alerts", d.api(d.alerts))
	endpoints.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		web.WriteJSON(w, http.StatusNotFound, api.Error{Error: "no such endpoint: " + r.URL.Path})
	})

	mux := http.NewServeMux()
	mux.Handle("/api/", endpoints)
	mux.Handle("/metrics", d.metricsHandler())
	mux.Handle("/static/", web.StaticHandler(staticFS))
	mux.HandleFunc("/{$}", d.dashboard)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "404 page not found", http.StatusNotFound)
	})
	return web.SecurityHeaders(d.httpSec.wrap(web.OnlyGet(mux)))
}

// api wraps an endpoint: its result is the JSON body, a parameter error a
// 400 that names the parameter.
func (d *Daemon) api(fn func(*http.Request) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, err := fn(r)
		switch {
		case web.IsParamError(err):
			web.WriteJSON(w, http.StatusBadRequest, api.Error{Error: err.Error()})
		case err != nil:
			web.WriteJSON(w, http.StatusInternalServerError, api.Error{Error: err.Error()})
		default:
			web.WriteJSON(w, http.StatusOK, v)
		}
	}
}

func (d *Daemon) sensors(r *http.Request) (any, error) {
	if _, err := web.ReadParams(r); err != nil {
		return nil, err
	}
	return map[string]any{"sensors": d.col.Sensors(d.now())}, nil
}

func (d *Daemon) rejects(r *http.Request) (any, error) {
	if _, err := web.ReadParams(r); err != nil {
		return nil, err
	}
	return map[string]any{"rejects": d.col.Rejects()}, nil
}

// TopResponse is the answer of /api/v1/top.
type TopResponse struct {
	By      string           `json:"by"`
	Window  string           `json:"window"`
	Level   string           `json:"level"`
	From    time.Time        `json:"from"`
	To      time.Time        `json:"to"`
	Limit   int              `json:"limit"`
	Globals traffic.Globals  `json:"globals"`
	Remote  traffic.Counters `json:"remote"`
	// Other is, with by=prefix, the traffic of the prefixes not listed.
	Other *traffic.Counters `json:"other,omitempty"`
	Items any               `json:"items"`
}

func (d *Daemon) top(r *http.Request) (any, error) {
	v, err := web.ReadParams(r, "by", "window", "limit")
	if err != nil {
		return nil, err
	}
	by := v.Get("by")
	switch by {
	case "":
		by = collector.ByCountry
	case collector.ByCountry, collector.ByAS, collector.ByPrefix:
	default:
		return nil, web.BadParam("by", "%q is not country, as or prefix", by)
	}
	window, err := d.parseWindow(v)
	if err != nil {
		return nil, err
	}
	limit, err := parseLimit(v, DefaultTopLimit, MaxTopLimit)
	if err != nil {
		return nil, err
	}
	width := d.levelFor(window)
	from, to := span(d.now(), window, width)
	sum := d.col.Window(collector.LevelName(width), from, to)
	if sum == nil {
		sum = &summary.Summary{}
	}
	resp := TopResponse{By: by, Window: web.FormatSpan(window), Level: collector.LevelName(width), From: from, To: to,
		Limit: limit, Globals: sum.Globals, Remote: sum.Remote}
	switch by {
	case collector.ByCountry:
		resp.Items = nonNil(sum.Countries[:min(limit, len(sum.Countries))])
	case collector.ByAS:
		resp.Items = nonNil(sum.ASes[:min(limit, len(sum.ASes))])
	case collector.ByPrefix:
		other := sum.Other
		for _, p := range sum.Prefixes[min(limit, len(sum.Prefixes)):] {
			other.Add(p.Counters)
		}
		resp.Items = nonNil(sum.Prefixes[:min(limit, len(sum.Prefixes))])
		resp.Other = &other
	}
	return resp, nil
}

// WhoSeesResponse is the answer of /api/v1/whosees: Country is set when
// the question was a country, ASN when it was an AS.
type WhoSeesResponse struct {
	Country *string                 `json:"country,omitempty"`
	ASN     *uint32                 `json:"as,omitempty"`
	Window  string                  `json:"window"`
	Level   string                  `json:"level"`
	From    time.Time               `json:"from"`
	To      time.Time               `json:"to"`
	Sensors []collector.SensorCount `json:"sensors"`
	// PerSensorFrom, when set, is later than From: the windows before it
	// no longer keep per-sensor counters (--keep-per-sensor), and Sensors
	// count only the windows from it on.
	PerSensorFrom *time.Time `json:"per_sensor_from,omitempty"`
}

func (d *Daemon) whoSees(r *http.Request) (any, error) {
	v, err := web.ReadParams(r, "country", "as", "window")
	if err != nil {
		return nil, err
	}
	if v.Has("country") == v.Has("as") {
		return nil, web.BadParam("country", "give either country (empty for traffic no table places) or as")
	}
	window, err := d.parseWindow(v)
	if err != nil {
		return nil, err
	}
	width := d.levelFor(window)
	from, to := span(d.now(), window, width)
	resp := WhoSeesResponse{Window: web.FormatSpan(window), Level: collector.LevelName(width), From: from, To: to}
	var key collector.SeriesKey
	if v.Has("country") {
		cc, err := parseCountry("country", v.Get("country"))
		if err != nil {
			return nil, err
		}
		resp.Country, key = &cc, collector.SeriesKey{By: collector.ByCountry, Country: cc}
	} else {
		asn, err := parseASN("as", v.Get("as"))
		if err != nil {
			return nil, err
		}
		resp.ASN, key = &asn, collector.SeriesKey{By: collector.ByAS, ASN: asn}
	}
	resp.Sensors, _ = d.col.WhoSeesAt(resp.Level, key, from, to)
	resp.Sensors = nonNil(resp.Sensors)
	if vf := d.col.ViewsFrom(resp.Level); vf.After(from) {
		resp.PerSensorFrom = &vf
	}
	return resp, nil
}

// SeriesResponse is the answer of /api/v1/series: the sensor's api.Series
// (key, level, from, to, step_seconds, points) with what was asked.
type SeriesResponse struct {
	By     string `json:"by"`
	Sensor string `json:"sensor,omitempty"`
	Window string `json:"window"`
	api.Series
	// PerSensorFrom, with Sensor, when set: the windows before it no
	// longer keep per-sensor counters (--keep-per-sensor) and have no
	// point.
	PerSensorFrom *time.Time `json:"per_sensor_from,omitempty"`
}

// parseSeriesKey reads by and key: by=total (the default, no key),
// country (key a code, empty for traffic no table places), as (key a
// number) or prefix (key a prefix in canonical form).
func parseSeriesKey(v url.Values) (collector.SeriesKey, string, error) {
	by, key := v.Get("by"), v.Get("key")
	if by == "" || by == collector.ByTotal {
		if v.Has("key") {
			return collector.SeriesKey{}, "", web.BadParam("key", "by=total takes no key")
		}
		return collector.SeriesKey{By: collector.ByTotal}, "total", nil
	}
	if !v.Has("key") {
		return collector.SeriesKey{}, "", web.BadParam("key", "missing; by=%s needs one", by)
	}
	switch by {
	case collector.ByCountry:
		cc, err := parseCountry("key", key)
		return collector.SeriesKey{By: by, Country: cc}, cc, err
	case collector.ByAS:
		asn, err := parseASN("key", key)
		return collector.SeriesKey{By: by, ASN: asn}, strconv.FormatUint(uint64(asn), 10), err
	case collector.ByPrefix:
		p, err := netip.ParsePrefix(key)
		if err != nil || p.Addr().Zone() != "" || p.Addr().Is4In6() {
			return collector.SeriesKey{}, "", web.BadParam("key", "%q is not a prefix like 175.45.176.0/22", key)
		}
		if p != p.Masked() {
			return collector.SeriesKey{}, "", web.BadParam("key", "%s has host bits set; the prefix is %s", key, p.Masked())
		}
		return collector.SeriesKey{By: by, Prefix: p}, p.String(), nil
	}
	return collector.SeriesKey{}, "", web.BadParam("by", "%q is not total, country, as or prefix", by)
}

func (d *Daemon) series(r *http.Request) (any, error) {
	v, err := web.ReadParams(r, "by", "key", "sensor", "window", "level")
	if err != nil {
		return nil, err
	}
	key, keyName, err := parseSeriesKey(v)
	if err != nil {
		return nil, err
	}
	if v.Has("sensor") {
		key.Sensor = v.Get("sensor")
		switch {
		case !summary.ValidSensorID(key.Sensor):
			return nil, web.BadParam("sensor", "%q is not a sensor id", key.Sensor)
		case key.By != collector.ByCountry && key.By != collector.ByAS:
			return nil, web.BadParam("sensor", "a sensor's series is kept for by=country and by=as only")
		}
	}
	window, err := d.parseWindow(v)
	if err != nil {
		return nil, err
	}
	width, err := d.parseLevel(v, window)
	if err != nil {
		return nil, err
	}
	from, to := span(d.now(), window, width)
	pts, ok := d.col.Series(collector.LevelName(width), from, to, key)
	if !ok {
		return nil, fmt.Errorf("no level %s", collector.LevelName(width))
	}
	resp := SeriesResponse{By: key.By, Sensor: key.Sensor, Window: web.FormatSpan(window), Series: api.Series{
		Key: keyName, Level: collector.LevelName(width), From: from, To: to, StepSeconds: width.Seconds(),
		Points: make([]api.Point, 0, len(pts)),
	}}
	if vf := d.col.ViewsFrom(resp.Level); key.Sensor != "" && vf.After(from) {
		resp.PerSensorFrom = &vf
	}
	for _, p := range pts {
		resp.Points = append(resp.Points, api.Point{
			T: p.Start, Seconds: width.Seconds(),
			PacketsIn: p.Packets[traffic.In], PacketsOut: p.Packets[traffic.Out],
			BytesIn: p.Bytes[traffic.In], BytesOut: p.Bytes[traffic.Out],
		})
	}
	return resp, nil
}

func (d *Daemon) alerts(r *http.Request) (any, error) {
	v, err := web.ReadParams(r, "limit")
	if err != nil {
		return nil, err
	}
	limit, err := parseLimit(v, DefaultAlertLimit, collector.DefaultMaxAlerts)
	if err != nil {
		return nil, err
	}
	return map[string]any{"alerts": d.col.Alerts(limit)}, nil
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
