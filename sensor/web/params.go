package web

import (
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/peerwatch/peerwatch/sensor/traffic"
)

// Bounds of the API's parameters.
const (
	maxLimit     = 10000
	maxSpan      = 730 * 24 * time.Hour
	maxPoints    = 10000 // of a series
	defaultLimit = 50
)

// paramError is a bad request parameter: the API answers 400 with its text,
// which starts with the parameter's name.
type paramError struct {
	name, msg string
}

func (e *paramError) Error() string { return e.name + ": " + e.msg }

func badParam(name, format string, a ...any) error {
	return &paramError{name: name, msg: fmt.Sprintf(format, a...)}
}

// readParams parses the query, refusing parameters the endpoint does not
// know (a typo would otherwise silently fall back to a default) and
// parameters given twice.
func readParams(r *http.Request, allowed ...string) (url.Values, error) {
	v, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, badParam("query", "%v", err)
	}
	names := make([]string, 0, len(v))
	for name := range v {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if !slices.Contains(allowed, name) {
			if len(allowed) == 0 {
				return nil, badParam(name, "unknown parameter; this endpoint takes none")
			}
			return nil, badParam(name, "unknown parameter; this endpoint takes %s", strings.Join(allowed, ", "))
		}
		if len(v[name]) > 1 {
			return nil, badParam(name, "given more than once")
		}
	}
	return v, nil
}

// parseSpan reads a duration: Go's syntax ("90s", "15m", "1h30m") or whole
// days ("7d").
func parseSpan(s string) (time.Duration, bool) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseUint(days, 10, 16) // 65535 days still fit a Duration
		if err != nil {
			return 0, false
		}
		return time.Duration(n) * 24 * time.Hour, true
	}
	d, err := time.ParseDuration(s)
	return d, err == nil
}

// formatSpan writes a duration the way parseSpan reads it, briefly: "7d",
// "1h", "1h30m", "90s".
func formatSpan(d time.Duration) string {
	if d > 0 && d%(24*time.Hour) == 0 {
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d"
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// parseWindow reads the window parameter: positive, at most 730 days.
func parseWindow(v url.Values, def time.Duration) (time.Duration, error) {
	s := v.Get("window")
	if s == "" {
		return def, nil
	}
	d, ok := parseSpan(s)
	if !ok {
		return 0, badParam("window", "%q is not a duration", s)
	}
	if d <= 0 {
		return 0, badParam("window", "%s is not positive", s)
	}
	if d > maxSpan {
		return 0, badParam("window", "%s is more than 730 days", s)
	}
	return d, nil
}

func parseLimit(v url.Values, def int) (int, error) {
	s := v.Get("limit")
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, badParam("limit", "%q is not a number", s)
	}
	if n < 1 || n > maxLimit {
		return 0, badParam("limit", "%d is not between 1 and %d", n, maxLimit)
	}
	return n, nil
}

// direction selects the packets a list is ranked by.
type direction int

const (
	dirBoth direction = iota
	dirIn
	dirOut
)

func (d direction) String() string {
	switch d {
	case dirIn:
		return "in"
	case dirOut:
		return "out"
	}
	return "both"
}

// packets are the counters' packets in the direction.
func (d direction) packets(c traffic.Counters) uint64 {
	switch d {
	case dirIn:
		return c.Packets[traffic.In]
	case dirOut:
		return c.Packets[traffic.Out]
	}
	return c.Total()
}

func parseDirection(v url.Values) (direction, error) {
	switch s := v.Get("direction"); s {
	case "", "both":
		return dirBoth, nil
	case "in":
		return dirIn, nil
	case "out":
		return dirOut, nil
	default:
		return 0, badParam("direction", "%q is not in, out or both", s)
	}
}

// What a top list ranks.
const (
	byPrefix  = "prefix"
	byCountry = "country"
	byAS      = "as"
)

func parseBy(v url.Values) (string, error) {
	switch s := v.Get("by"); s {
	case "", byPrefix:
		return byPrefix, nil
	case byCountry, byAS:
		return s, nil
	default:
		return "", badParam("by", "%q is not prefix, country or as", s)
	}
}

func parseAddr(v url.Values) (netip.Addr, error) {
	s := v.Get("addr")
	if s == "" {
		return netip.Addr{}, badParam("addr", "missing; give an IPv4 or IPv6 address")
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, badParam("addr", "%q is not an IP address", s)
	}
	return a.Unmap(), nil
}

// Rollup levels of Series, and the length of one of their summaries.
var levels = []string{"interval", "1m", "1h", "1d"}

// levelStep is the length of a summary of the level.
func levelStep(level string, drainInterval time.Duration) time.Duration {
	switch level {
	case "1m":
		return time.Minute
	case "1h":
		return time.Hour
	case "1d":
		return 24 * time.Hour
	}
	if drainInterval <= 0 {
		return 10 * time.Second
	}
	return drainInterval
}

// defaultSeriesSpan is how far back a series goes without from.
func defaultSeriesSpan(level string) time.Duration {
	switch level {
	case "interval":
		return time.Hour
	case "1h":
		return 7 * 24 * time.Hour
	case "1d":
		return 365 * 24 * time.Hour
	}
	return 24 * time.Hour
}

func parseLevel(v url.Values) (string, error) {
	s := v.Get("level")
	if s == "" {
		return "1m", nil
	}
	if !slices.Contains(levels, s) {
		return "", badParam("level", "%q is not interval, 1m, 1h or 1d", s)
	}
	return s, nil
}

// parseTime reads a point in time: RFC 3339, Unix seconds, or a duration
// before now ("-6h", "-7d").
func parseTime(name, s string, now time.Time) (time.Time, error) {
	if rel, ok := strings.CutPrefix(s, "-"); ok {
		if d, ok := parseSpan(rel); ok && d <= maxSpan*2 {
			return now.Add(-d), nil
		}
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil && n >= 0 && n < 1<<40 {
		return time.Unix(n, 0).UTC(), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	return time.Time{}, badParam(name, "%q is not a time (RFC 3339, Unix seconds, or -duration before now)", s)
}

// seriesKey is what a series follows: all remote traffic, one country, one
// AS or one watch list.
type seriesKey struct {
	kind    string // "total", "country", "as", "watch"
	country string
	asn     uint32
	list    string
}

func (k seriesKey) String() string {
	switch k.kind {
	case "country":
		return "country:" + k.country
	case "as":
		return "as:" + strconv.FormatUint(uint64(k.asn), 10)
	case "watch":
		return "watch:" + k.list
	}
	return "total"
}

func parseSeriesKey(v url.Values) (seriesKey, error) {
	s := v.Get("key")
	if s == "" || s == "total" {
		return seriesKey{kind: "total"}, nil
	}
	bad := badParam("key", "%q is not total, country:CC, as:ASN or watch:LIST", s)
	kind, arg, ok := strings.Cut(s, ":")
	if !ok || arg == "" {
		return seriesKey{}, bad
	}
	switch kind {
	case "country":
		cc := strings.ToUpper(arg)
		if len(cc) != 2 || strings.Trim(cc, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != "" {
			return seriesKey{}, badParam("key", "%q is not a two-letter country code", arg)
		}
		return seriesKey{kind: kind, country: cc}, nil
	case "as":
		n, err := strconv.ParseUint(strings.TrimPrefix(strings.ToUpper(arg), "AS"), 10, 32)
		if err != nil {
			return seriesKey{}, badParam("key", "%q is not an AS number", arg)
		}
		return seriesKey{kind: kind, asn: uint32(n)}, nil
	case "watch":
		return seriesKey{kind: kind, list: arg}, nil
	}
	return seriesKey{}, bad
}
