package collectord

import (
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/peerwatch/peerwatch/internal/testutil"
	"github.com/peerwatch/peerwatch/internal/testutil/browser"
	"github.com/peerwatch/peerwatch/sensor/human"
	"github.com/peerwatch/peerwatch/sensor/traffic"
)

var update = flag.Bool("update", false, "rewrite testdata/dashboard.png with the browser test's screenshot")

// dashboardState is what the browser shows, read from the DOM.
type dashboardState struct {
	SensorCount  string            `json:"sensorCount"`
	OnlineCount  string            `json:"onlineCount"`
	States       map[string]string `json:"states"`
	SensorOrder  []string          `json:"sensorOrder"`
	SensorNotes  string            `json:"sensorNotes"`
	Versions     []string          `json:"versions"`
	PacketsIn    string            `json:"packetsIn"`
	PacketsOut   string            `json:"packetsOut"`
	Missing      string            `json:"missing"`
	TopCountry   string            `json:"topCountry"`
	TopPackets   string            `json:"topPackets"`
	Countries    []string          `json:"countries"`
	WhoCountry   string            `json:"whoCountry"`
	WhoSensors   []string          `json:"whoSensors"`
	WhoIn        []string          `json:"whoIn"`
	AlertRows    int               `json:"alertRows"`
	AlertSensors []string          `json:"alertSensors"`
	ActiveAlerts string            `json:"activeAlerts"`
	Charts       []string          `json:"charts"`
	ChartLines   []int             `json:"chartLines"`
	ChartEmpty   []string          `json:"chartEmpty"`
	Banners      []string          `json:"banners"`
}

const readDashboard = `(() => {
  const q = s => document.querySelector(s);
  const all = s => [...document.querySelectorAll(s)];
  const text = s => { const e = q(s); return e ? e.textContent.trim() : ''; };
  const states = {};
  all('#sensors tr.sensor').forEach(r => { states[r.dataset.sensor] = r.querySelector('.state').textContent.trim(); });
  const charts = all('figure.chart');
  return {
    sensorCount: text('#sensor-count'),
    onlineCount: text('#online-count'),
    states: states,
    sensorOrder: all('#sensors tr.sensor').map(r => r.dataset.sensor),
    sensorNotes: text('#sensor-notes'),
    versions: all('#sensors tr.sensor td:nth-child(3)').map(e => e.textContent.trim()),
    packetsIn: text('#fleet-packets-in .num'),
    packetsOut: text('#fleet-packets-out .num'),
    missing: text('#missing-count .num'),
    topCountry: text('#top-Country tbody tr td.key'),
    topPackets: text('#top-Country tbody tr td.n'),
    countries: all('#top-Country tbody tr td.key').map(e => e.textContent.trim()),
    whoCountry: text('#whosees-country'),
    whoSensors: all('#whosees-table tbody tr').map(r => r.dataset.sensor),
    whoIn: all('#whosees-table tbody tr td:nth-child(2)').map(e => e.textContent.trim()),
    alertRows: all('#alerts-table tbody tr').length,
    alertSensors: all('#alerts-table tbody tr td.key').map(e => e.textContent.trim()),
    activeAlerts: text('#active-alerts'),
    charts: charts.map(f => f.id),
    chartLines: charts.map(f => f.querySelectorAll('svg path.line').length),
    chartEmpty: charts.map(f => { const e = f.querySelector('.plot .empty'); return e ? e.textContent : ''; }),
    banners: all('.banner').map(e => e.textContent.trim()),
  };
})()`

func TestBrowserDashboard(t *testing.T) {
	browser.Require(t)
	// The daemon first, so that the browser is closed before the daemon
	// stops (cleanups run last first): chromium's idle preconnections would
	// hold up the HTTP server's shutdown.
	f := startFleet(t)
	ctx := browser.Start(t)
	console := browser.WatchConsole(t, ctx)

	st := browser.Load[dashboardState](t, ctx, f.base+"/", readDashboard)
	console.Check(t)
	if st.SensorCount != "4" || st.OnlineCount != "3" {
		t.Errorf("sensors %q, online %q; want 4 and 3", st.SensorCount, st.OnlineCount)
	}
	wantStates := map[string]string{"akl-ix-01": "online", "chc-ix-01": "online", "dud-ix-01": "offline", "wlg-ix-01": "online"}
	if len(st.States) != 4 || st.States["dud-ix-01"] != "offline" || st.States["akl-ix-01"] != "online" ||
		st.States["wlg-ix-01"] != "online" || st.States["chc-ix-01"] != "online" {
		t.Errorf("sensor states %v, want %v", st.States, wantStates)
	}
	if st.SensorNotes != "offline: dud-ix-01" {
		t.Errorf("sensor notes %q", st.SensorNotes)
	}
	// Problems first: the offline sensor, the one with missing summaries.
	if want := []string{"dud-ix-01", "chc-ix-01", "akl-ix-01", "wlg-ix-01"}; !slices.Equal(st.SensorOrder, want) {
		t.Errorf("sensors in the order %q, want %q", st.SensorOrder, want)
	}
	if !slices.Equal(st.Versions, []string{"0.4.1", "0.4.1", "0.4.1", "0.4.1"}) {
		t.Errorf("versions %q", st.Versions)
	}
	// The fleet's traffic of the last hour is the sum of every one-minute
	// summary; the hourly and daily ones are older.
	r := f.recent.Remote
	if st.PacketsIn != human.GroupDigits(r.Packets[traffic.In]) || st.PacketsOut != human.GroupDigits(r.Packets[traffic.Out]) {
		t.Errorf("fleet packets %s in, %s out; want %s and %s", st.PacketsIn, st.PacketsOut,
			human.GroupDigits(r.Packets[traffic.In]), human.GroupDigits(r.Packets[traffic.Out]))
	}
	if st.Missing != "3" {
		t.Errorf("missing summaries %q, want 3 (chc-ix-01's seqs 30 to 32)", st.Missing)
	}
	top := f.recent.Countries[0]
	if st.TopCountry != "US" || top.Country != "US" || st.TopPackets != human.GroupDigits(top.Packets[traffic.In]) {
		t.Errorf("top country %s with %s packets in; want US with %s", st.TopCountry, st.TopPackets, human.GroupDigits(top.Packets[traffic.In]))
	}
	if len(st.Countries) != len(f.recent.Countries) || !slices.Contains(st.Countries, "unknown") {
		t.Errorf("countries %q, want %d with unknown", st.Countries, len(f.recent.Countries))
	}
	// Without a choice, "who sees" shows the country of the newest alert: KP.
	wantWho := []string{"akl-ix-01", "wlg-ix-01", "dud-ix-01"} // most KP packets first; chc-ix-01 sees none
	if st.WhoCountry != "KP" || !slices.Equal(st.WhoSensors, wantWho) {
		t.Errorf("who sees %q: %q, want KP: %q", st.WhoCountry, st.WhoSensors, wantWho)
	}
	for i, id := range st.WhoSensors {
		want := human.GroupDigits(countryOf(f.bySensor[id], "KP").Packets[traffic.In])
		if i >= len(st.WhoIn) || st.WhoIn[i] != want {
			t.Errorf("who sees KP at %s: %q packets in, want %s", id, st.WhoIn, want)
		}
	}
	// Four alert messages: tor-exits started and ended (one alert), two of akl.
	if st.AlertRows != 3 || st.ActiveAlerts != "1" || !slices.Equal(st.AlertSensors, []string{"akl-ix-01", "akl-ix-01", "wlg-ix-01"}) {
		t.Errorf("alerts: %d rows of %q, %q active; want 3 rows, 1 active", st.AlertRows, st.AlertSensors, st.ActiveAlerts)
	}
	// Charts: the fleet over each level, the top 3 countries and ASes, and
	// "who sees"; each with its in and out lines.
	wantCharts := []string{"fleet-1m", "fleet-1h", "fleet-1d", "country-1", "country-2", "country-3", "as-1", "as-2", "as-3", "whosees-chart",
		"whosees-akl-ix-01", "whosees-wlg-ix-01", "whosees-dud-ix-01"}
	if !slices.Equal(st.Charts, wantCharts) || slices.ContainsFunc(st.ChartLines, func(n int) bool { return n != 2 }) {
		t.Errorf("charts %q with lines %v (empty: %q); want %q with 2 lines each", st.Charts, st.ChartLines, st.ChartEmpty, wantCharts)
	}
	if len(st.Banners) != 0 {
		t.Errorf("banners: %q", st.Banners)
	}
	// The sensors' charts share their scale: the same top tick.
	tops, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('figure[data-group=whosees]')].map(f => [...f.querySelectorAll('svg .axis text[text-anchor=end]')].pop().textContent)`))
	if err != nil || len(tops) != 3 || tops[0] != tops[1] || tops[1] != tops[2] {
		t.Errorf("tops of the sensors' charts %q (%v), want one scale", tops, err)
	}
	if *update {
		shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join("testdata", "dashboard.png"), shot, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Log("wrote testdata/dashboard.png")
	}

	// A laptop's and a phone's width: the charts are drawn again to fit.
	for _, size := range [][2]int64{{1280, 800}, {420, 900}} {
		if err := chromedp.Do(ctx, chromedp.EmulateViewport(size[0], size[1]), chromedp.Sleep(400*time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		lines, err := chromedp.Run(ctx, chromedp.Evaluate[[]int](`[...document.querySelectorAll('figure.chart')].map(f => f.querySelectorAll('svg path.line').length)`))
		if err != nil || len(lines) != len(wantCharts) || slices.ContainsFunc(lines, func(n int) bool { return n != 2 }) {
			t.Errorf("at %dx%d: chart lines %v: %v", size[0], size[1], lines, err)
		}
		if *update {
			shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
			if err != nil {
				t.Fatal(err)
			}
			name := filepath.Join(os.TempDir(), fmt.Sprintf("peerwatch-dashboard-%d.png", size[0]))
			if err := os.WriteFile(name, shot, 0o644); err != nil {
				t.Fatal(err)
			}
			t.Log("wrote", name)
		}
	}
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1440, 1000)); err != nil {
		t.Fatal(err)
	}

	// Choosing a country: NZ, seen by every sensor, with the 6h window.
	st = browser.Load[dashboardState](t, ctx, f.base+"/?window=6h&country=nz", readDashboard)
	if st.WhoCountry != "NZ" || len(st.WhoSensors) != 4 {
		t.Errorf("who sees NZ: %q %q", st.WhoCountry, st.WhoSensors)
	}
	for i, id := range st.WhoSensors {
		// 6 h reads the hour level, which also holds the hourly summaries
		// of the last hours: at least the last 55 minutes' packets.
		if i >= len(st.WhoIn) || st.WhoIn[i] == "" {
			t.Errorf("who sees NZ at %s: %q", id, st.WhoIn)
		}
	}
	// Picking from the list submits the form.
	if err := chromedp.Do(ctx,
		chromedp.SetValue(chromedp.CSS(`#country-select`), "KP"),
		// Later: the evaluation must return before the page navigates
		// (chromedp may run it again in the next page, where it does nothing).
		chromedp.Evaluate[chromedp.Void](`(s => s && setTimeout(() => s.dispatchEvent(new Event('change')), 0))(document.getElementById('country-select'))`),
	); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the country picked", 10*time.Second, func() bool {
		loc, err := chromedp.Run(ctx, chromedp.Location())
		return err == nil && strings.Contains(loc, "country=KP")
	})
	// A bad window shows a banner and the last hour; a bad country one too.
	st = browser.Load[dashboardState](t, ctx, f.base+"/?window=90d&country=KPX", readDashboard)
	if len(st.Banners) != 2 || !strings.HasPrefix(st.Banners[0], "window: 90d is longer than") || !strings.HasPrefix(st.Banners[1], `country: "KPX"`) {
		t.Errorf("banners %q", st.Banners)
	}
	console.Check(t)
}

// TestBrowserDashboardEmpty: a collector that has heard nothing yet shows
// "no data yet" and no error.
func TestBrowserDashboardEmpty(t *testing.T) {
	browser.Require(t)
	_, api := startDaemon(t, Config{EmbeddedBroker: testutil.FreeAddr(t)}) // before the browser, as above
	ctx := browser.Start(t)
	console := browser.WatchConsole(t, ctx)
	st := browser.Load[dashboardState](t, ctx, strings.TrimSuffix(api, "/api/v1")+"/", readDashboard)
	if st.SensorCount != "0" || len(st.Charts) != 3 || !slices.Equal(st.ChartEmpty, []string{"no data yet", "no data yet", "no data yet"}) {
		t.Errorf("empty collector: %+v", st)
	}
	console.Check(t)
}

// TestDashboardNoStatus: a sensor heard from only through its summaries
// (a shared subscription need not get its retained status) is neither
// online nor offline.
func TestDashboardNoStatus(t *testing.T) {
	d, err := New(Config{EmbeddedBroker: ":0"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	if err := d.Collector().Handle("peerwatch/nap-ix-01/summary", encode(t, testSummary(t, "nap-ix-01", 1, now.Add(-time.Minute))), now); err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	d.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	page := rec.Body.String()
	for _, want := range []string{
		`<span class="dot muted" aria-hidden="true"></span><span class="state">no status</span>`,
		`<span id="online-count">0</span> <span class="of">of <span id="sensor-count">1</span> online</span>`,
		`>no status: nap-ix-01</span></p>`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %s", want)
		}
	}
	if strings.Contains(page, "offline") {
		t.Error("the page says offline")
	}
}

// TestDashboardPerSensorFrom: with --keep-per-sensor shorter than the
// window, "who sees" says from when its per-sensor counts run, as the
// API's per_sensor_from does; without it, neither says anything.
func TestDashboardPerSensorFrom(t *testing.T) {
	for _, keep := range []map[string]int{nil, {"1m": 2}} {
		d, err := New(Config{EmbeddedBroker: ":0", KeepPerSensor: keep}, nil)
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now().UTC()
		for i := range 10 {
			at := now.Add(time.Duration(i-9) * time.Minute)
			if err := d.Collector().Handle("peerwatch/nap-ix-01/summary", encode(t, testSummary(t, "nap-ix-01", uint64(i+1), at)), at); err != nil {
				t.Fatal(err)
			}
		}
		rec := httptest.NewRecorder()
		d.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/?country=KP", nil))
		page := rec.Body.String()
		rec = httptest.NewRecorder()
		d.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/whosees?country=KP", nil))
		var who WhoSeesResponse
		if err := json.Unmarshal(rec.Body.Bytes(), &who); err != nil {
			t.Fatalf("whosees: %v: %s", err, rec.Body)
		}
		if keep == nil {
			if strings.Contains(page, `id="whosees-from"`) || who.PerSensorFrom != nil {
				t.Errorf("all windows keep per-sensor counts, yet the page or the API (%v) says from when", who.PerSensorFrom)
			}
			continue
		}
		from := d.Collector().ViewsFrom(who.Level)
		if who.PerSensorFrom == nil || !who.PerSensorFrom.Equal(from) || !from.After(who.From) {
			t.Errorf("per_sensor_from %v, want %v (after the window's start %v)", who.PerSensorFrom, from, who.From)
		}
		if want := `per sensor from ` + from.Format("Jan 2 15:04 UTC") + `</span>`; !strings.Contains(page, want) {
			t.Errorf("the page lacks %s", want)
		}
	}
}
