package collectord

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/peerwatch/peerwatch/sensor/collector"
	"github.com/peerwatch/peerwatch/sensor/summary"
	"github.com/peerwatch/peerwatch/sensor/traffic"
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

// DefaultWindow is the window of the API when none is asked for.
const DefaultWindow = time.Hour

// parseWindow reads a duration such as 15m, 1h or 7d (default 1h).
func parseWindow(s string) (time.Duration, error) {
	if s == "" {
		return DefaultWindow, nil
	}
	var d time.Duration
	var err error
	if n, ok := strings.CutSuffix(s, "d"); ok {
		var days int
		days, err = strconv.Atoi(n)
		d = time.Duration(days) * 24 * time.Hour
	} else {
		d, err = time.ParseDuration(s)
	}
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("window %q: not a positive duration like 15m, 1h or 7d", s)
	}
	return d, nil
}

// levelFor returns the finest level that keeps the whole window.
func levelFor(window time.Duration) (time.Duration, error) {
	for _, l := range levels {
		if time.Duration(l.keep)*l.width >= window {
			return l.width, nil
		}
	}
	last := levels[len(levels)-1]
	return 0, fmt.Errorf("window %s: longer than the %s kept", window, time.Duration(last.keep)*last.width)
}

// Handler serves the JSON API.
func (d *Daemon) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/sensors", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"sensors": d.col.Sensors(d.now())})
	})
	mux.HandleFunc("GET /api/v1/rejects", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"rejects": d.col.Rejects()})
	})
	mux.HandleFunc("GET /api/v1/top", d.top)
	mux.HandleFunc("GET /api/v1/whosees", d.whoSees)
	return mux
}

// TopResponse is the answer of /api/v1/top.
type TopResponse struct {
	By      string           `json:"by"`
	Window  string           `json:"window"`
	Level   string           `json:"level"`
	From    time.Time        `json:"from"`
	To      time.Time        `json:"to"`
	Globals traffic.Globals  `json:"globals"`
	Remote  traffic.Counters `json:"remote"`
	// Other is, with by=prefix, the traffic of the prefixes not listed.
	Other *traffic.Counters `json:"other,omitempty"`
	Items any               `json:"items"`
}

func (d *Daemon) span(r *http.Request) (width time.Duration, from, to time.Time, err error) {
	window, err := parseWindow(r.URL.Query().Get("window"))
	if err != nil {
		return 0, from, to, err
	}
	width, err = levelFor(window)
	if err != nil {
		return 0, from, to, err
	}
	now := d.now().UTC()
	return width, now.Add(-window).Truncate(width), now.Truncate(width).Add(width), nil
}

func (d *Daemon) top(w http.ResponseWriter, r *http.Request) {
	by := r.URL.Query().Get("by")
	if by == "" {
		by = "country"
	}
	width, from, to, err := d.span(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	sum := d.col.Window(collector.LevelName(width), from, to)
	if sum == nil {
		sum = &summary.Summary{}
	}
	resp := TopResponse{By: by, Window: r.URL.Query().Get("window"), Level: collector.LevelName(width), From: from, To: to,
		Globals: sum.Globals, Remote: sum.Remote}
	if resp.Window == "" {
		resp.Window = DefaultWindow.String()
	}
	switch by {
	case "country":
		resp.Items = nonNil(sum.Countries)
	case "as":
		resp.Items = nonNil(sum.ASes)
	case "prefix":
		resp.Items = nonNil(sum.Prefixes)
		resp.Other = &sum.Other
	default:
		writeError(w, http.StatusBadRequest, fmt.Errorf("by %q: one of country, as, prefix", by))
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

func (d *Daemon) whoSees(w http.ResponseWriter, r *http.Request) {
	if !r.URL.Query().Has("country") {
		writeError(w, http.StatusBadRequest, fmt.Errorf("country missing (empty for traffic no table places)"))
		return
	}
	country := strings.ToUpper(r.URL.Query().Get("country"))
	_, from, to, err := d.span(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"country": country, "from": from, "to": to,
		"sensors": d.col.WhoSees(country, from, to),
	})
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, map[string]string{"error": err.Error()})
}
