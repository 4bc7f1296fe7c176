package web

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/peerwatch/peerwatch/sensor/api"
	"github.com/peerwatch/peerwatch/sensor/summary"
	"github.com/peerwatch/peerwatch/sensor/traffic"
)

func newHandler(src Source, opts Options) http.Handler {
	if opts.Now == nil {
		opts.Now = clock
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
	}
	return New(src, opts, nil)
}

// do sends one request to h and returns the response with its body read.
func do(t *testing.T, h http.Handler, method, target string, mod ...func(*http.Request)) (*http.Response, string) {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	for _, m := range mod {
		m(req)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	res := rec.Result()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, string(b)
}

// getJSON GETs target, wants 200 and decodes the body into v.
func getJSON(t *testing.T, h http.Handler, target string, v any) {
	t.Helper()
	res, body := do(t, h, http.MethodGet, target)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", target, res.StatusCode, body)
	}
	if ct := res.Header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
		t.Errorf("GET %s: Content-Type %q", target, ct)
	}
	if err := json.Unmarshal([]byte(body), v); err != nil {
		t.Fatalf("GET %s: %v in %s", target, err, body)
	}
}

func TestAPIStatus(t *testing.T) {
	f := newFixture(t)
	h := newHandler(f, Options{})
	var st api.Status
	getJSON(t, h, "/api/v1/status", &st)

	if st.Sensor != "akl-ix-01" || st.Version != "0.4.1" || st.Board != "nanopi-r6s" || st.Kernel != "6.12.20-arm64" {
		t.Errorf("identity %q %q %q %q", st.Sensor, st.Version, st.Board, st.Kernel)
	}
	if want := (9*24*time.Hour + 4*time.Hour + 12*time.Minute).Seconds(); st.UptimeSeconds != want {
		t.Errorf("uptime %v, want %v", st.UptimeSeconds, want)
	}
	if len(st.Interfaces) != 3 || st.Interfaces[0] != (api.Interface{Name: "eth0", Mode: "xdp-native", State: "attached"}) ||
		st.Interfaces[2].Error != "carrier lost 2026-03-14 09:12 UTC" {
		t.Errorf("interfaces %+v", st.Interfaces)
	}
	if st.DrainLagSeconds == nil || *st.DrainLagSeconds != 2.3 || st.DrainIntervalSeconds != 10 || st.DrainDurationSeconds != 0.0032 {
		t.Errorf("drain lag %v interval %v duration %v", st.DrainLagSeconds, st.DrainIntervalSeconds, st.DrainDurationSeconds)
	}
	if !st.Invariant.OK || st.Invariant.Error != "" {
		t.Errorf("invariant %+v", st.Invariant)
	}
	if st.Totals != f.health.Totals || st.Remote != api.CountersOf(f.health.Remote) {
		t.Errorf("cumulative counters %+v %+v", st.Totals, st.Remote)
	}
	last := f.levels["interval"][len(f.levels["interval"])-1]
	if st.Latest == nil {
		t.Fatal("no latest interval")
	}
	if want := float64(last.Remote.Packets[traffic.In]) / 10; st.Latest.PPS.In != want {
		t.Errorf("pps in %v, want %v", st.Latest.PPS.In, want)
	}
	if want := float64(last.Remote.Bytes[traffic.Out]) * 8 / 10; st.Latest.BPS.Out != want {
		t.Errorf("bps out %v, want %v", st.Latest.BPS.Out, want)
	}
	if st.Latest.Globals != last.Globals || st.Latest.Seconds != 10 || !st.Latest.End.Equal(t0) {
		t.Errorf("latest %+v", st.Latest)
	}
	if st.Store != (api.Store{Path: "/var/lib/peerwatch/store.db", Bytes: 187 << 20, MaxBytes: 512 << 20, Evicted: 1234}) || st.Uplink != (api.Uplink{State: "connected", Outbox: 3}) {
		t.Errorf("store %+v uplink %+v", st.Store, st.Uplink)
	}

	// A broken invariant says why.
	f.health.Invariant = fmt.Errorf("%w: seen 100 != remote 90 + buckets 5", summary.ErrInconsistent)
	getJSON(t, h, "/api/v1/status", &st)
	if st.Invariant.OK || st.Invariant.Error != "summary totals do not reconcile: seen 100 != remote 90 + buckets 5" {
		t.Errorf("broken invariant %+v", st.Invariant)
	}
}

// topResponse is api.Top as a client decodes it.
type topResponse struct {
	api.Top
	Rows []api.PrefixRow `json:"rows"` // country and AS rows leave Prefix empty
}

func (r topResponse) packets(i int, dir direction) uint64 {
	c := r.Rows[i].Counters
	switch dir {
	case dirIn:
		return c.PacketsIn
	case dirOut:
		return c.PacketsOut
	}
	return c.PacketsIn + c.PacketsOut
}

func TestAPITop(t *testing.T) {
	f := newFixture(t)
	h := newHandler(f, Options{})
	w, _ := f.Window(t0.Add(-time.Hour), t0)

	var r topResponse
	getJSON(t, h, "/api/v1/top", &r)
	if r.By != "prefix" || r.Direction != "both" || r.Window != "1h" || r.Limit != 50 || !r.Approximate || r.NoData {
		t.Errorf("defaults %+v", r.Top)
	}
	if !r.From.Equal(t0.Add(-time.Hour)) || !r.To.Equal(t0) || !r.DataStart.Equal(t0.Add(-time.Hour)) || !r.DataEnd.Equal(t0) {
		t.Errorf("window %v-%v data %v-%v", r.From, r.To, r.DataStart, r.DataEnd)
	}
	if len(r.Rows) != len(w.Prefixes) {
		t.Fatalf("%d rows, want %d", len(r.Rows), len(w.Prefixes))
	}
	top := w.Prefixes[0]
	if got := r.Rows[0]; got.Prefix.String() != "142.250.0.0/15" || got.Country != "US" || got.ASN != 15169 || got.ASName != "GOOGLE" ||
		got.Counters != api.CountersOf(top.Counters) {
		t.Errorf("top row %+v, want %+v", got, top)
	}
	if r.Total != api.CountersOf(w.Remote) {
		t.Errorf("total %+v, want %+v", r.Total, w.Remote)
	}
	sum := r.Other.PacketsIn + r.Other.PacketsOut
	for i := range r.Rows {
		sum += r.packets(i, dirBoth)
		if i > 0 && r.packets(i, dirBoth) > r.packets(i-1, dirBoth) {
			t.Errorf("row %d has more packets than row %d", i, i-1)
		}
	}
	if sum != w.Remote.Total() {
		t.Errorf("rows + other = %d packets, want %d", sum, w.Remote.Total())
	}

	for _, tc := range []struct {
		query string
		by    string
		dir   direction
		rows  int
		first string
	}{
		{"by=country", "country", dirBoth, 9, "US"},
		{"by=country&direction=out&limit=3", "country", dirOut, 3, "US"},
		{"by=as&window=30m&limit=5", "as", dirBoth, 5, ""},
		{"by=prefix&direction=in&limit=1", "prefix", dirIn, 1, ""},
		{"by=as&window=7d&direction=in&limit=10000", "as", dirIn, 12, ""},
	} {
		var r topResponse
		getJSON(t, h, "/api/v1/top?"+tc.query, &r)
		if r.By != tc.by || r.Direction != tc.dir.String() || len(r.Rows) != tc.rows {
			t.Errorf("%s: by %s direction %s, %d rows, want %d", tc.query, r.By, r.Direction, len(r.Rows), tc.rows)
			continue
		}
		if r.Approximate != (tc.by == "prefix") {
			t.Errorf("%s: approximate %v", tc.query, r.Approximate)
		}
		if tc.first != "" && r.Rows[0].Country != tc.first {
			t.Errorf("%s: first row %+v", tc.query, r.Rows[0])
		}
		for i := 1; i < len(r.Rows); i++ {
			if r.packets(i, tc.dir) > r.packets(i-1, tc.dir) {
				t.Errorf("%s: row %d ranks above row %d", tc.query, i, i-1)
			}
		}
	}

	// Countries are exact: KP's row is the sum of its prefix in every minute.
	var kp traffic.Counters
	for _, s := range f.levels["1m"] {
		if !s.Start.Before(t0.Add(-time.Hour)) {
			for _, c := range s.Countries {
				if c.Country == "KP" {
					kp.Add(c.Counters)
				}
			}
		}
	}
	var rc struct {
		Rows []api.CountryRow `json:"rows"`
	}
	getJSON(t, h, "/api/v1/top?by=country&limit=100", &rc)
	found := false
	for _, row := range rc.Rows {
		if row.Country == "KP" {
			found = true
			if row.Counters != api.CountersOf(kp) {
				t.Errorf("KP %+v, want %+v", row.Counters, api.CountersOf(kp))
			}
		}
	}
	if !found {
		t.Errorf("KP missing from %+v", rc.Rows)
	}
}

// TestAPITopClockSteppedBack: after the wall clock went back an hour, the
// intervals stored before the step end after now. "The last hour" reaches
// the newest of them, where the data is, and so does the lookup.
func TestAPITopClockSteppedBack(t *testing.T) {
	f := newFixture(t)
	back := t0.Add(-time.Hour)
	h := newHandler(f, Options{Now: func() time.Time { return back }})
	w, _ := f.Window(back.Add(-time.Hour), t0)
	if w.Remote.Total() == 0 {
		t.Fatal("the fixture has no traffic in the two hours before t0")
	}
	var r topResponse
	getJSON(t, h, "/api/v1/top?window=1h", &r)
	if !r.From.Equal(back.Add(-time.Hour)) || !r.To.Equal(t0) || !r.DataEnd.Equal(t0) {
		t.Errorf("window %v-%v data end %v: want %v-%v, data to %v", r.From, r.To, r.DataEnd, back.Add(-time.Hour), t0, t0)
	}
	if r.Total != api.CountersOf(w.Remote) {
		t.Errorf("total %+v, want %+v", r.Total, w.Remote)
	}
	var l api.Lookup
	getJSON(t, h, "/api/v1/lookup?addr=142.250.1.1&window=1h", &l)
	if !l.To.Equal(t0) {
		t.Errorf("lookup to %v, want %v", l.To, t0)
	}
}

func TestAPIBadParams(t *testing.T) {
	h := newHandler(newFixture(t), Options{})
	for _, tc := range []struct{ target, msg string }{
		{"/api/v1/top?window=5x", `window: "5x" is not a duration`},
		{"/api/v1/top?window=0s", `window: 0s is not positive`},
		{"/api/v1/top?window=-1h", `window: -1h is not positive`},
		{"/api/v1/top?window=731d", `window: 731d is more than 730 days`},
		{"/api/v1/top?window=99999d", `window: "99999d" is not a duration`},
		{"/api/v1/top?limit=0", `limit: 0 is not between 1 and 10000`},
		{"/api/v1/top?limit=10001", `limit: 10001 is not between 1 and 10000`},
		{"/api/v1/top?limit=ten", `limit: "ten" is not a number`},
		{"/api/v1/top?by=asn", `by: "asn" is not prefix, country or as`},
		{"/api/v1/top?direction=up", `direction: "up" is not in, out or both`},
		{"/api/v1/top?windows=1h", `windows: unknown parameter; this endpoint takes by, window, direction, limit`},
		{"/api/v1/top?limit=1&limit=2", `limit: given more than once`},
		{"/api/v1/top?%zz", `query: invalid URL escape "%zz"`},
		{"/api/v1/lookup", `addr: missing; give an IPv4 or IPv6 address`},
		{"/api/v1/lookup?addr=999.1.1.1", `addr: "999.1.1.1" is not an IP address`},
		{"/api/v1/lookup?addr=fe80::1%25eth0", `addr: "fe80::1%eth0" is not an IP address`},
		{"/api/v1/lookup?addr=192.0.2.1&window=1y", `window: "1y" is not a duration`},
		{"/api/v1/series?key=city:AKL", `key: "city:AKL" is not total, country:CC, as:ASN or watch:LIST`},
		{"/api/v1/series?key=country", `key: "country" is not total, country:CC, as:ASN or watch:LIST`},
		{"/api/v1/series?key=country:KPX", `key: "KPX" is not a two-letter country code`},
		{"/api/v1/series?key=as:google", `key: "google" is not an AS number`},
		{"/api/v1/series?key=as:4294967296", `key: "4294967296" is not an AS number`},
		{"/api/v1/series?level=5m", `level: "5m" is not interval, 1m, 1h or 1d`},
		{"/api/v1/series?from=yesterday", `from: "yesterday" is not a time (RFC 3339, Unix seconds, or -duration before now)`},
		{"/api/v1/series?to=2026-13-01T00:00:00Z", `to: "2026-13-01T00:00:00Z" is not a time (RFC 3339, Unix seconds, or -duration before now)`},
		{"/api/v1/series?from=2026-03-14T12:00:00Z&to=2026-03-14T11:00:00Z", `from: 2026-03-14T12:00:00Z is not before to (2026-03-14T11:00:00Z)`},
		{"/api/v1/series?from=1773489600&to=1773489600", `from: 2026-03-14T12:00:00Z is not before to (2026-03-14T12:00:00Z)`},
		{"/api/v1/series?level=1d&from=-800d", `from: 2024-01-04T12:00:00Z to 2026-03-14T12:00:00Z is more than 730 days`},
		{"/api/v1/series?level=interval&from=-2d", `level: interval from 2026-03-12T12:00:00Z to 2026-03-14T12:00:00Z is 17280 points, more than 10000: choose a coarser level or a shorter span`},
		{"/api/v1/status?verbose=1", `verbose: unknown parameter; this endpoint takes none`},
		{"/api/v1/alerts?active=1", `active: unknown parameter; this endpoint takes none`},
	} {
		res, body := do(t, h, http.MethodGet, tc.target)
		if res.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400", tc.target, res.StatusCode)
		}
		var e api.Error
		if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error != tc.msg {
			t.Errorf("%s:\n got %s\nwant {\"error\":%q}", tc.target, strings.TrimSpace(body), tc.msg)
		}
	}
}

func TestAPILookup(t *testing.T) {
	f := newFixture(t)
	h := newHandler(f, Options{})
	w, _ := f.Window(t0.Add(-time.Hour), t0)
	countryOf := func(cc string) api.Counters {
		for _, c := range w.Countries {
			if c.Country == cc {
				return api.CountersOf(c.Counters)
			}
		}
		t.Fatalf("no %s in the window", cc)
		return api.Counters{}
	}

	// In the top list, with labels.
	var r api.Lookup
	getJSON(t, h, "/api/v1/lookup?addr=142.251.16.100", &r)
	if r.Labels == nil || r.Labels.Prefix.String() != "142.250.0.0/15" || r.Labels.Country != "US" || r.Labels.ASN != 15169 || r.Labels.Table != "ipdb" {
		t.Errorf("labels %+v", r.Labels)
	}
	if !r.InTop || r.Prefix == nil || r.Prefix.String() != "142.250.0.0/15" || r.Counters == nil || *r.Counters != api.CountersOf(w.Prefixes[0].Counters) || r.Note != "" {
		t.Errorf("in top: %+v", r)
	}
	if r.Country == nil || *r.Country != countryOf("US") || r.AS == nil {
		t.Errorf("country/AS counters %+v %+v", r.Country, r.AS)
	}

	// Labelled, but not in the top list: labels only, and it says so.
	r = api.Lookup{}
	getJSON(t, h, "/api/v1/lookup?addr=210.52.109.9&window=1h", &r)
	if r.Labels == nil || r.Labels.Country != "CN" || r.Labels.ASN != 4837 || r.InTop || r.Counters != nil || r.Prefix != nil {
		t.Errorf("not in top: %+v", r)
	}
	if want := "210.52.109.0/24 is not in the 12 top prefixes of the last 1h: labels only (its traffic, if any, is in other; country_counters and as_counters are exact)"; r.Note != want {
		t.Errorf("note %q\nwant %q", r.Note, want)
	}
	if r.Country == nil || *r.Country != countryOf("CN") {
		t.Errorf("CN counters %+v", r.Country)
	}

	// No table, but its fixed-length aggregate is in the top list.
	r = api.Lookup{}
	getJSON(t, h, "/api/v1/lookup?addr=198.51.100.77", &r)
	if r.Labels != nil || !r.InTop || r.Prefix.String() != "198.51.100.0/24" || r.Counters == nil ||
		r.Note != "no loaded table holds 198.51.100.77; counters are those of its aggregate 198.51.100.0/24" {
		t.Errorf("aggregate: %+v", r)
	}

	// Neither.
	r = api.Lookup{}
	getJSON(t, h, "/api/v1/lookup?addr=::ffff:192.0.2.1", &r)
	if r.Addr.String() != "192.0.2.1" || r.Labels != nil || r.InTop || r.Counters != nil ||
		r.Note != "no loaded table holds 192.0.2.1, and it is not in the 12 top prefixes of the last 1h" {
		t.Errorf("unknown: %+v", r)
	}

	// IPv6, in the top list.
	r = api.Lookup{}
	getJSON(t, h, "/api/v1/lookup?addr=2a03:2880:f10d:83:face:b00c:0:25de&window=10m", &r)
	if r.Labels == nil || r.Labels.ASName != "FACEBOOK" || !r.InTop || r.Window != "10m" {
		t.Errorf("ipv6: %+v", r)
	}
}

func TestAPISeries(t *testing.T) {
	f := newFixture(t)
	h := newHandler(f, Options{})

	var r api.Series
	getJSON(t, h, "/api/v1/series?level=interval", &r)
	iv := f.levels["interval"]
	if r.Key != "total" || r.Level != "interval" || r.StepSeconds != 10 || len(r.Points) != len(iv) ||
		!r.From.Equal(t0.Add(-time.Hour)) || !r.To.Equal(t0) {
		t.Fatalf("series %s %s step %v, %d points, %v-%v", r.Key, r.Level, r.StepSeconds, len(r.Points), r.From, r.To)
	}
	for i, p := range r.Points {
		s := iv[i]
		want := api.Point{T: s.Start, Seconds: 10, PacketsIn: s.Remote.Packets[0], PacketsOut: s.Remote.Packets[1], BytesIn: s.Remote.Bytes[0], BytesOut: s.Remote.Bytes[1]}
		if !p.T.Equal(want.T) || p.Seconds != want.Seconds || p.PacketsIn != want.PacketsIn || p.PacketsOut != want.PacketsOut || p.BytesIn != want.BytesIn || p.BytesOut != want.BytesOut {
			t.Fatalf("point %d %+v, want %+v", i, p, want)
		}
	}

	// Country, AS and watch list KP are the same traffic here.
	var kp []api.Point
	for _, key := range []string{"country:KP", "country:kp", "as:131279", "as:AS131279", "watch:kp"} {
		getJSON(t, h, "/api/v1/series?level=1m&from=-1h&key="+url.QueryEscape(key), &r)
		if len(r.Points) != 60 || r.Level != "1m" || r.StepSeconds != 60 {
			t.Fatalf("%s: %d points, level %s", key, len(r.Points), r.Level)
		}
		if r.Points[0].PacketsIn == 0 || r.Points[0].PacketsIn >= r.Points[0].PacketsOut*2 {
			t.Errorf("%s: first point %+v", key, r.Points[0])
		}
		if kp == nil {
			kp = r.Points
			continue
		}
		for i := range kp {
			if r.Points[i] != kp[i] {
				t.Errorf("%s: point %d %+v, want %+v", key, i, r.Points[i], kp[i])
				break
			}
		}
	}
	if r.Key != "watch:kp" {
		t.Errorf("key %q", r.Key)
	}

	// A key without traffic has zero points; times in RFC 3339 and Unix seconds.
	getJSON(t, h, "/api/v1/series?key=country:ZZ&level=1h&from=2026-03-13T12:00:00Z&to=1773489600", &r)
	if r.Key != "country:ZZ" || len(r.Points) != 24 || r.Points[0].PacketsIn != 0 || r.Points[0].Seconds != 3600 || !r.Points[0].T.Equal(t0.Add(-24*time.Hour)) {
		t.Errorf("ZZ: %d points, first %+v", len(r.Points), r.Points[0])
	}
	getJSON(t, h, "/api/v1/series?level=1d", &r)
	if len(r.Points) != 0 || r.Points == nil || r.StepSeconds != 86400 || !r.From.Equal(t0.Add(-365*24*time.Hour)) {
		t.Errorf("1d: %+v", r)
	}
}

func TestAPIAlerts(t *testing.T) {
	h := newHandler(newFixture(t), Options{})
	var r api.Alerts
	getJSON(t, h, "/api/v1/alerts", &r)
	if len(r.Active) != 1 || len(r.Recent) != 2 {
		t.Fatalf("%d active, %d recent", len(r.Active), len(r.Recent))
	}
	a := r.Active[0]
	if a.ID != "kp-1741952" || a.List != "kp" || !a.Active || a.End != nil || !a.Start.Equal(t0.Add(-28*time.Minute)) ||
		a.PeakPPS != 3412.5 || a.Packets != 5_418_220 || len(a.Prefixes) != 1 || a.Prefixes[0].String() != "175.45.176.0/22" {
		t.Errorf("active %+v", a)
	}
	if e := r.Recent[0]; e.Active || e.End == nil || !e.End.Equal(t0.Add(-4*time.Hour-20*time.Minute)) || len(e.Prefixes) != 4 {
		t.Errorf("recent %+v", e)
	}
}

// A sensor that has just started answers every endpoint, with empty lists.
func TestAPIFreshSensor(t *testing.T) {
	h := newHandler(newFreshSource(), Options{})
	for target, want := range map[string]string{
		"/api/v1/top":                    `"rows":[]`,
		"/api/v1/top?by=country":         `"no_data":true`,
		"/api/v1/series?level=interval":  `"points":[]`,
		"/api/v1/alerts":                 `{"active":[],"recent":[]}`,
		"/api/v1/status":                 `"latest":null`,
		"/api/v1/lookup?addr=192.0.2.1":  `"note":"no loaded table holds 192.0.2.1; no traffic data yet in the last 1h"`,
		"/api/v1/lookup?addr=2001:db8::": `"labels":null`,
	} {
		res, body := do(t, h, http.MethodGet, target)
		if res.StatusCode != http.StatusOK || !strings.Contains(body, want) {
			t.Errorf("%s: %d %s\nwant it to contain %s", target, res.StatusCode, body, want)
		}
	}
	var st api.Status
	getJSON(t, h, "/api/v1/status", &st)
	if st.LastDrain != nil || st.DrainLagSeconds != nil || !st.Invariant.OK || st.Uplink.State != "disabled" {
		t.Errorf("fresh status %+v", st)
	}
}

func TestAPISourceError(t *testing.T) {
	f := newFixture(t)
	f.err = errStoreDown
	h := newHandler(f, Options{})
	for target, want := range map[string]string{
		"/api/v1/top":    "read the window 2026-03-14T11:00:00Z to 2026-03-14T12:00:00Z: store: database is closed",
		"/api/v1/series": "read the 1m series: store: database is closed",
		"/api/v1/status": "read the last interval: store: database is closed",
	} {
		res, body := do(t, h, http.MethodGet, target)
		var e api.Error
		if res.StatusCode != http.StatusInternalServerError || json.Unmarshal([]byte(body), &e) != nil || e.Error != want {
			t.Errorf("%s: %d %s, want 500 %q", target, res.StatusCode, body, want)
		}
	}
	// The page still renders, with the error in a banner.
	res, body := do(t, h, http.MethodGet, "/")
	if res.StatusCode != http.StatusOK || !strings.Contains(body, "store: database is closed") {
		t.Errorf("page with a failing store: %d", res.StatusCode)
	}
}

func TestNotFound(t *testing.T) {
	h := newHandler(newFixture(t), Options{})
	res, body := do(t, h, http.MethodGet, "/api/v1/nope")
	if res.StatusCode != http.StatusNotFound || strings.TrimSpace(body) != `{"error":"no such endpoint: /api/v1/nope"}` {
		t.Errorf("/api/v1/nope: %d %s", res.StatusCode, body)
	}
	for _, p := range []string{"/nope", "/static/", "/static/nope.js", "/index.html"} {
		if res, _ := do(t, h, http.MethodGet, p); res.StatusCode != http.StatusNotFound {
			t.Errorf("%s: %d, want 404", p, res.StatusCode)
		}
	}
}

func TestMethodNotAllowed(t *testing.T) {
	h := newHandler(newFixture(t), Options{})
	for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch, http.MethodOptions} {
		for _, p := range []string{"/", "/api/v1/status", "/api/v1/top", "/metrics", "/static/style.css", "/api/v1/nope"} {
			res, body := do(t, h, method, p)
			if res.StatusCode != http.StatusMethodNotAllowed || res.Header.Get("Allow") != "GET, HEAD" {
				t.Errorf("%s %s: %d Allow %q", method, p, res.StatusCode, res.Header.Get("Allow"))
			}
			want := "method " + method + " not allowed: use GET or HEAD"
			if strings.HasPrefix(p, "/api/") {
				want = `{"error":"` + want + `"}`
			}
			if strings.TrimSpace(body) != want {
				t.Errorf("%s %s: body %q, want %q", method, p, body, want)
			}
		}
	}
	// HEAD is fine.
	if res, _ := do(t, h, http.MethodHead, "/api/v1/status"); res.StatusCode != http.StatusOK {
		t.Errorf("HEAD: %d", res.StatusCode)
	}
}

func TestBasicAuth(t *testing.T) {
	h := newHandler(newFixture(t), Options{BasicAuth: BasicAuth{User: "noc", Password: "s3cret pass"}})
	auth := func(user, pass string) func(*http.Request) {
		return func(r *http.Request) { r.SetBasicAuth(user, pass) }
	}
	for _, p := range []string{"/", "/api/v1/status", "/api/v1/top?by=as", "/metrics", "/static/style.css", "/static/status.js"} {
		for name, mod := range map[string]func(*http.Request){
			"no credentials": func(*http.Request) {},
			"wrong password": auth("noc", "s3cret"),
			"wrong user":     auth("nocx", "s3cret pass"),
			"empty":          auth("", ""),
		} {
			res, _ := do(t, h, http.MethodGet, p, mod)
			if res.StatusCode != http.StatusUnauthorized || res.Header.Get("WWW-Authenticate") != `Basic realm="peerwatch", charset="UTF-8"` {
				t.Errorf("%s, %s: %d %q", p, name, res.StatusCode, res.Header.Get("WWW-Authenticate"))
			}
			if res.Header.Get("Content-Security-Policy") == "" {
				t.Errorf("%s, %s: no security headers on the 401", p, name)
			}
		}
		if res, body := do(t, h, http.MethodGet, p, auth("noc", "s3cret pass")); res.StatusCode != http.StatusOK {
			t.Errorf("%s with the account: %d %.200s", p, res.StatusCode, body)
		}
	}
	res, body := do(t, h, http.MethodGet, "/api/v1/alerts")
	if strings.TrimSpace(body) != `{"error":"authentication required"}` {
		t.Errorf("api 401 body %q (%d)", body, res.StatusCode)
	}
	// Without an account, nothing asks for one.
	if res, _ := do(t, newHandler(newFixture(t), Options{}), http.MethodGet, "/api/v1/status"); res.StatusCode != http.StatusOK {
		t.Errorf("no auth configured: %d", res.StatusCode)
	}
}

func TestSecurityHeaders(t *testing.T) {
	h := newHandler(newFixture(t), Options{})
	for _, p := range []string{"/", "/api/v1/status", "/metrics", "/static/status.js", "/nope", "/api/v1/top?limit=0"} {
		res, _ := do(t, h, http.MethodGet, p)
		for k, v := range map[string]string{
			"Content-Security-Policy": contentSecurityPolicy,
			"X-Content-Type-Options":  "nosniff",
			"X-Frame-Options":         "DENY",
			"Referrer-Policy":         "no-referrer",
		} {
			if got := res.Header.Get(k); got != v {
				t.Errorf("%s: %s %q, want %q", p, k, got, v)
			}
		}
	}
	if !strings.Contains(contentSecurityPolicy, "script-src 'self';") || strings.Contains(contentSecurityPolicy, "unsafe") {
		t.Errorf("CSP %q", contentSecurityPolicy)
	}
	for p, ct := range map[string]string{"/static/style.css": "text/css; charset=utf-8", "/static/status.js": "text/javascript; charset=utf-8", "/static/favicon.svg": "image/svg+xml"} {
		res, _ := do(t, h, http.MethodGet, p)
		if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != ct {
			t.Errorf("%s: %d %q, want %q", p, res.StatusCode, res.Header.Get("Content-Type"), ct)
		}
	}
}
