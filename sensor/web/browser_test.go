package web

import (
	"encoding/json"
	"flag"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/peerwatch/peerwatch/internal/testutil/browser"
	"github.com/peerwatch/peerwatch/sensor/api"
)

var update = flag.Bool("update", false, "rewrite testdata/status.png with the browser test's screenshot")

// pageState is what the browser shows, read from the DOM.
type pageState struct {
	Sensor        string   `json:"sensor"`
	TopPrefix     string   `json:"topPrefix"`
	TopPacketsIn  string   `json:"topPacketsIn"`
	TopCountry    string   `json:"topCountry"`
	Invariant     string   `json:"invariant"`
	Modes         []string `json:"modes"`
	PPSIn         string   `json:"ppsIn"`
	PPSInTitle    string   `json:"ppsInTitle"`
	ChartLines    []int    `json:"chartLines"`
	ChartPathLens []int    `json:"chartPathLens"`
	ChartEmpty    []string `json:"chartEmpty"`
	ActiveAlerts  int      `json:"activeAlerts"`
	LiveEmpty     string   `json:"liveEmpty"`
	TopEmpty      string   `json:"topEmpty"`
}

const readPage = `(() => {
  const q = s => document.querySelector(s);
  const text = s => { const e = q(s); return e ? e.textContent.trim() : ''; };
  const charts = [...document.querySelectorAll('figure.chart')];
  return {
    sensor: text('#sensor-id'),
    topPrefix: text('#top-Prefix tbody tr td.key'),
    topPacketsIn: text('#top-Prefix tbody tr td.n'),
    topCountry: text('#top-Country tbody tr td.key'),
    invariant: text('[data-live=invariant]'),
    modes: [...document.querySelectorAll('#interfaces td.mode')].map(e => e.textContent.trim()),
    ppsIn: text('[data-live=pps-in] .num'),
    ppsInTitle: q('[data-live=pps-in] .num') ? q('[data-live=pps-in] .num').title : '',
    chartLines: charts.map(f => f.querySelectorAll('svg path.line').length),
    chartPathLens: charts.flatMap(f => [...f.querySelectorAll('svg path.line')].map(p => (p.getAttribute('d') || '').length)),
    chartEmpty: charts.map(f => { const e = f.querySelector('.plot .empty'); return e ? e.textContent : ''; }),
    activeAlerts: document.querySelectorAll('#alerts table.alerts')[0] ? document.querySelectorAll('#alerts table.alerts')[0].tBodies[0].rows.length : 0,
    liveEmpty: text('#live-empty'),
    topEmpty: text('#top-empty'),
  };
})()`

func apiGet(t *testing.T, url string, v any) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d", url, res.StatusCode)
	}
	if err := json.NewDecoder(res.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

func TestBrowserStatusPage(t *testing.T) {
	ctx := browser.Start(t)
	console := browser.WatchConsole(t, ctx)

	f := newFixture(t)
	f.health.DrainInterval = 5 * time.Second // the page refreshes its live numbers every 5 s
	srv := httptest.NewServer(newHandler(f, Options{BasicAuth: BasicAuth{User: "noc", Password: "pw"}}))
	defer srv.Close()
	base := strings.Replace(srv.URL, "http://", "http://noc:pw@", 1)
	if !strings.HasPrefix(srv.URL, "http://127.0.0.1:") {
		t.Fatalf("test server on %s, want loopback", srv.URL)
	}

	st := browser.Load[pageState](t, ctx, base+"/", readPage)
	console.Check(t)

	// The page shows what the API says.
	var top struct {
		Rows []api.PrefixRow `json:"rows"`
	}
	apiGet(t, base+"/api/v1/top?by=prefix&window=1h&limit=1", &top)
	var countries struct {
		Rows []api.CountryRow `json:"rows"`
	}
	apiGet(t, base+"/api/v1/top?by=country&window=1h&limit=1", &countries)
	var status api.Status
	apiGet(t, base+"/api/v1/status", &status)

	if st.Sensor != status.Sensor {
		t.Errorf("sensor %q, API %q", st.Sensor, status.Sensor)
	}
	if st.TopPrefix != top.Rows[0].Prefix.String() || st.TopPacketsIn != groupDigits(top.Rows[0].PacketsIn) {
		t.Errorf("top prefix %s with %s packets in; API %s with %d", st.TopPrefix, st.TopPacketsIn, top.Rows[0].Prefix, top.Rows[0].PacketsIn)
	}
	if st.TopCountry != countries.Rows[0].Country {
		t.Errorf("top country %s, API %s", st.TopCountry, countries.Rows[0].Country)
	}
	if want := map[bool]string{true: "OK", false: "BROKEN"}[status.Invariant.OK]; st.Invariant != want {
		t.Errorf("invariant %q, API ok=%v", st.Invariant, status.Invariant.OK)
	}
	var modes []string
	for _, i := range status.Interfaces {
		modes = append(modes, i.Mode)
	}
	if !slices.Equal(st.Modes, modes) {
		t.Errorf("interface modes %q, API %q", st.Modes, modes)
	}
	if st.PPSIn != fmtPPS(status.Latest.PPS.In) || !strings.HasPrefix(st.PPSInTitle, groupFloat(status.Latest.PPS.In)+" packets/s") {
		t.Errorf("pps in %q (%q), API %v", st.PPSIn, st.PPSInTitle, status.Latest.PPS.In)
	}
	if st.ActiveAlerts != 1 {
		t.Errorf("%d active alerts shown", st.ActiveAlerts)
	}

	// Three charts, each with an in and an out line drawn from the series.
	if !slices.Equal(st.ChartLines, []int{2, 2, 2}) || slices.ContainsFunc(st.ChartPathLens, func(n int) bool { return n < 200 }) {
		t.Errorf("chart lines %v, path lengths %v, empty %q", st.ChartLines, st.ChartPathLens, st.ChartEmpty)
	}

	// Hovering a chart reads out the point; resizing redraws.
	readout, err := chromedp.Run(ctx, chromedp.Evaluate[string](`(() => {
	  const svg = document.querySelector('figure.chart svg'), r = svg.getBoundingClientRect();
	  svg.dispatchEvent(new MouseEvent('mousemove', {clientX: r.left + r.width * 0.6, clientY: r.top + 30, bubbles: true}));
	  const text = document.querySelector('figure.chart .readout').textContent;
	  svg.dispatchEvent(new MouseEvent('mouseleave'));
	  return text;
	})()`))
	if err != nil || !strings.Contains(readout, " · in ") || !strings.Contains(readout, "pps · out ") {
		t.Errorf("chart readout %q: %v", readout, err)
	}
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(420, 900), chromedp.Sleep(400*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('figure.chart svg path.line').length`))
	if err != nil || n != 6 {
		t.Errorf("after a resize to a phone's width: %d chart lines: %v", n, err)
	}
	if *update {
		shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(os.TempDir(), "peerwatch-status-narrow.png"), shot, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1440, 1000), chromedp.Sleep(400*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if *update {
		shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join("testdata", "status.png"), shot, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Log("wrote testdata/status.png")
	}

	// The script's refresh of the live numbers writes them as the server does.
	before := st.PPSIn + " | " + st.PPSInTitle
	if err := chromedp.Do(ctx,
		chromedp.Evaluate[chromedp.Void](`document.querySelector('[data-live=pps-in] .num').textContent = 'stale'`),
		chromedp.Sleep(5500*time.Millisecond),
	); err != nil {
		t.Fatal(err)
	}
	after, err := chromedp.Run(ctx, chromedp.Evaluate[pageState](readPage))
	if err != nil {
		t.Fatal(err)
	}
	if got := after.PPSIn + " | " + after.PPSInTitle; got != before {
		t.Errorf("after the refresh: %q, the server wrote %q", got, before)
	}
	console.Check(t)

	// A sensor that has just started: no data, and still no error.
	fresh := httptest.NewServer(newHandler(newFreshSource(), Options{}))
	defer fresh.Close()
	st = browser.Load[pageState](t, ctx, fresh.URL+"/", readPage)
	if st.LiveEmpty == "" || st.TopEmpty == "" || !slices.Equal(st.ChartEmpty, []string{"no data yet", "no data yet", "no data yet"}) || st.Invariant != "OK" {
		t.Errorf("fresh sensor: %+v", st)
	}
	if *update {
		shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(os.TempDir(), "peerwatch-status-fresh.png"), shot, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	console.Check(t)
}
