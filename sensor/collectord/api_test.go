package collectord

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	dto "github.com/prometheus/client_model/go"

	"github.com/peerwatch/peerwatch/internal/testutil"
	"github.com/peerwatch/peerwatch/sensor/api"
	"github.com/peerwatch/peerwatch/sensor/collector"
	"github.com/peerwatch/peerwatch/sensor/traffic"
	"github.com/peerwatch/peerwatch/sensor/watch"
)

// TestFleetAPI checks the series, who-sees, alerts and metrics answers of a
// collectord fed by the fixture's four sensors over MQTT, to the packet:
// through its embedded broker, and subscribed to a real mosquitto.
func TestFleetAPI(t *testing.T) {
	if testing.Short() {
		t.Skip("broker tier: skipped by -short (make test-unit runs the pure-Go tests only)")
	}
	t.Run("embedded", func(t *testing.T) { testFleetAPI(t, startFleet(t)) })
	t.Run("mosquitto", func(t *testing.T) {
		addr := testutil.FreeAddr(t)
		_, port, _ := net.SplitHostPort(addr)
		testutil.StartMosquitto(t, t.TempDir(), "listener "+port+" 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\n", addr)
		testFleetAPI(t, startFleetOn(t, addr, Config{Broker: "tcp://" + addr}))
	})
}

func testFleetAPI(t *testing.T, f *fleet) {

	t.Run("series", func(t *testing.T) {
		prefix := netip.MustParsePrefix("175.45.176.0/24")
		var wantPrefix traffic.Counters
		for _, p := range f.recent.Prefixes {
			if p.Prefix == prefix {
				wantPrefix = p.Counters
			}
		}
		var wantAS traffic.Counters
		for _, a := range f.recent.ASes {
			if a.ASN == 131279 {
				wantAS = a.Counters
			}
		}
		for _, tc := range []struct {
			query, by, key string
			want           traffic.Counters
		}{
			{"by=total&window=1h", "total", "total", f.recent.Remote},
			{"window=1h", "total", "total", f.recent.Remote},
			{"by=country&key=kp&window=1h", "country", "KP", countryOf(&f.recent, "KP")},
			{"by=country&key=&window=1h", "country", "", countryOf(&f.recent, "")},
			{"by=as&key=AS131279&window=1h", "as", "131279", wantAS},
			{"by=prefix&key=175.45.176.0/24&window=1h", "prefix", "175.45.176.0/24", wantPrefix},
			{"by=country&key=KP&sensor=wlg-ix-01&window=1h", "country", "KP", countryOf(f.bySensor["wlg-ix-01"], "KP")},
			{"by=country&key=KP&sensor=chc-ix-01&window=1h", "country", "KP", traffic.Counters{}},
		} {
			var s SeriesResponse
			getJSON(t, f.api+"/series?"+tc.query, &s)
			var got traffic.Counters
			for i, p := range s.Points {
				got.Packets[traffic.In] += p.PacketsIn
				got.Packets[traffic.Out] += p.PacketsOut
				got.Bytes[traffic.In] += p.BytesIn
				got.Bytes[traffic.Out] += p.BytesOut
				if p.Seconds != 60 || (i > 0 && !p.T.After(s.Points[i-1].T)) {
					t.Errorf("%s: point %d: %+v", tc.query, i, p)
				}
			}
			if s.By != tc.by || s.Key != tc.key || s.Level != "1m" || s.Window != "1h" || s.StepSeconds != 60 || len(s.Points) != 55 {
				t.Errorf("%s: by %q key %q level %s window %s step %v, %d points; want by %q key %q, 1m, 1h, 60, 55 points",
					tc.query, s.By, s.Key, s.Level, s.Window, s.StepSeconds, len(s.Points), tc.by, tc.key)
			}
			if got.Packets != tc.want.Packets || got.Bytes != tc.want.Bytes {
				t.Errorf("%s: sum of the points %v packets %v bytes, want %v and %v", tc.query, got.Packets, got.Bytes, tc.want.Packets, tc.want.Bytes)
			}
		}
		// The hour level: the same traffic, and the hours before.
		var s SeriesResponse
		getJSON(t, f.api+"/series?by=country&key=KP&window=1h&level=1h", &s)
		if s.Level != "1h" || s.StepSeconds != 3600 || len(s.Points) == 0 || len(s.Points) > 2 {
			t.Errorf("level 1h: %+v", s)
		}
	})

	t.Run("whosees", func(t *testing.T) {
		var who WhoSeesResponse
		getJSON(t, f.api+"/whosees?as=131279&window=1h", &who)
		if who.ASN == nil || *who.ASN != 131279 || who.Country != nil || who.Level != "1m" || who.PerSensorFrom != nil {
			t.Errorf("whosees as: %+v", who)
		}
		var ids []string
		for _, sc := range who.Sensors {
			ids = append(ids, sc.Sensor)
			var want traffic.Counters
			for _, a := range f.bySensor[sc.Sensor].ASes {
				if a.ASN == 131279 {
					want = a.Counters
				}
			}
			if sc.Counters != want {
				t.Errorf("whosees AS131279 at %s: %+v, want %+v", sc.Sensor, sc.Counters, want)
			}
		}
		if !slices.Equal(ids, []string{"akl-ix-01", "wlg-ix-01", "dud-ix-01"}) {
			t.Errorf("whosees AS131279: %q", ids)
		}
		getJSON(t, f.api+"/whosees?country=ZZ", &who)
		if who.Sensors == nil || len(who.Sensors) != 0 || *who.Country != "ZZ" {
			t.Errorf("whosees ZZ: %+v", who)
		}
	})

	t.Run("alerts", func(t *testing.T) {
		var all, two struct{ Alerts []collector.Alert }
		getJSON(t, f.api+"/alerts", &all)
		getJSON(t, f.api+"/alerts?limit=2", &two)
		var got []string
		for _, a := range all.Alerts {
			var w watch.Alert
			if err := json.Unmarshal(a.Alert, &w); err != nil {
				t.Fatal(err)
			}
			got = append(got, a.Sensor+" "+a.Event+" "+w.List)
		}
		want := []string{"akl-ix-01 started kp", "akl-ix-01 ended kp-transit", "wlg-ix-01 ended tor-exits", "wlg-ix-01 started tor-exits"}
		if !slices.Equal(got, want) {
			t.Errorf("alerts, newest first: %q, want %q", got, want)
		}
		if len(two.Alerts) != 2 || two.Alerts[0].Sensor != "akl-ix-01" || two.Alerts[0].Event != "started" {
			t.Errorf("limit=2: %+v", two.Alerts)
		}
	})

	t.Run("metrics", func(t *testing.T) {
		families, value := scrape(t, f.base)
		summaries := 0.0
		for _, n := range f.summaries {
			summaries += float64(n)
		}
		for _, tc := range []struct {
			name   string
			labels []string
			want   float64
		}{
			{"peerwatch_collector_sensors", nil, 4},
			{"peerwatch_collector_sensors_online", nil, 3},
			{"peerwatch_collector_sensors_labelled", nil, 4},
			{"peerwatch_collector_messages_accepted_total", []string{"kind", "summary"}, summaries},
			{"peerwatch_collector_messages_accepted_total", []string{"kind", "alert"}, 4},
			{"peerwatch_collector_messages_accepted_total", []string{"kind", "status"}, 5}, // 4 online, 1 offline
			{"peerwatch_collector_messages_total", nil, summaries + 4 + 5},
			{"peerwatch_collector_rejects_total", []string{"reason", "duplicate"}, 0},
			{"peerwatch_collector_rejects_total", []string{"reason", "sensor_mismatch"}, 0},
			{"peerwatch_collector_sensor_online", []string{"sensor", "dud-ix-01"}, 0},
			{"peerwatch_collector_sensor_online", []string{"sensor", "akl-ix-01"}, 1},
			{"peerwatch_collector_sensor_summaries_total", []string{"sensor", "chc-ix-01"}, float64(f.lastSeq["chc-ix-01"] - 3)},
			{"peerwatch_collector_sensor_summaries_total", []string{"sensor", "akl-ix-01"}, float64(f.lastSeq["akl-ix-01"])},
			{"peerwatch_collector_sensor_duplicates_total", []string{"sensor", "akl-ix-01"}, 0},
			{"peerwatch_collector_sensor_gaps", []string{"sensor", "chc-ix-01"}, 1},
			{"peerwatch_collector_sensor_missing_summaries", []string{"sensor", "chc-ix-01"}, 3},
			{"peerwatch_collector_sensor_missing_summaries", []string{"sensor", "akl-ix-01"}, 0},
			{"peerwatch_collector_sensor_last_seq", []string{"sensor", "chc-ix-01"}, float64(f.lastSeq["chc-ix-01"])},
			{"peerwatch_collector_alerts", nil, 4},
			{"peerwatch_collector_build_info", []string{"version", "dev"}, 1},
		} {
			got, ok := value(tc.name, tc.labels...)
			if !ok || got != tc.want {
				t.Errorf("%s%v = %v (present %v), want %v", tc.name, tc.labels, got, ok, tc.want)
			}
		}
		// The embedded broker's refusals: none without authentication;
		// absent with an external broker.
		refused, ok := value("peerwatch_collector_broker_refusals_total", "kind", "connect")
		if embedded := strings.HasSuffix(t.Name(), "/embedded/metrics"); ok != embedded || refused != 0 {
			t.Errorf("broker connect refusals %v (present %v)", refused, ok)
		}
		// The lag and the last times are those of the sensors API.
		var sensors struct{ Sensors []collector.SensorState }
		getJSON(t, f.api+"/sensors", &sensors)
		for _, s := range sensors.Sensors {
			lastEnd, _ := value("peerwatch_collector_sensor_last_summary_end_timestamp_seconds", "sensor", s.ID)
			lastSeen, _ := value("peerwatch_collector_sensor_last_seen_timestamp_seconds", "sensor", s.ID)
			lag, ok := value("peerwatch_collector_sensor_lag_seconds", "sensor", s.ID)
			if lastEnd != float64(s.LastEnd.UnixNano())/1e9 || lastSeen != float64(s.LastSeen.UnixNano())/1e9 || !ok || lag < s.Lag.Seconds()-5 || lag > s.Lag.Seconds()+5 {
				t.Errorf("%s: last end %v, last seen %v, lag %v; API %v %v %v", s.ID, lastEnd, lastSeen, lag, s.LastEnd, s.LastSeen, s.Lag)
			}
		}
		for name, mf := range families {
			if strings.HasPrefix(name, "peerwatch_") && !strings.HasPrefix(name, "peerwatch_collector_") {
				t.Errorf("metric %s outside peerwatch_collector_", name)
			}
			if mf.GetHelp() == "" {
				t.Errorf("metric %s without help", name)
			}
		}
	})
}

// scrape reads base's /metrics with Prometheus's own parser, and returns
// the families and a lookup of one series' value by name and label pairs.
func scrape(t *testing.T, base string) (map[string]*dto.MetricFamily, func(name string, labels ...string) (float64, bool)) {
	t.Helper()
	res, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(res.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return families, func(name string, labels ...string) (float64, bool) {
		mf := families[name]
		if mf == nil {
			return 0, false
		}
	metrics:
		for _, m := range mf.Metric {
			have := map[string]string{}
			for _, l := range m.Label {
				have[l.GetName()] = l.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue metrics
				}
			}
			if len(have) != len(labels)/2 {
				continue
			}
			return metricValue(m), true
		}
		return 0, false
	}
}

func metricValue(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	}
	return -1
}

// TestAPIParameters checks every 400 of the API and its message.
func TestAPIParameters(t *testing.T) {
	d, err := New(Config{EmbeddedBroker: ":0"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := d.Handler()
	for _, tc := range []struct {
		path, want string
	}{
		{"/api/v1/top?by=city", `by: "city" is not country, as or prefix`},
		{"/api/v1/top?window=-1h", `window: -1h is not positive`},
		{"/api/v1/top?window=5x", `window: "5x" is not a duration like 15m, 1h or 7d`},
		{"/api/v1/top?window=90d", `window: 90d is longer than the 30d the collector keeps`},
		{"/api/v1/top?limit=0", `limit: 0 is not between 1 and 10000`},
		{"/api/v1/top?limt=5", `limt: unknown parameter; this endpoint takes by, window, limit`},
		{"/api/v1/top?by=as&by=prefix", `by: given more than once`},
		{"/api/v1/top?%zz", `query: invalid URL escape "%zz"`},
		{"/api/v1/whosees", `country: give either country (empty for traffic no table places) or as`},
		{"/api/v1/whosees?country=KP&as=1", `country: give either country (empty for traffic no table places) or as`},
		{"/api/v1/whosees?country=KPX", `country: "KPX" is not a two-letter country code (or empty for traffic no table places)`},
		{"/api/v1/whosees?as=google", `as: "google" is not an AS number like 131279 or AS131279`},
		{"/api/v1/series?by=city&key=AKL", `by: "city" is not total, country, as or prefix`},
		{"/api/v1/series?by=country", `key: missing; by=country needs one`},
		{"/api/v1/series?key=KP", `key: by=total takes no key`},
		{"/api/v1/series?by=prefix&key=175.45.176.1/22", `key: 175.45.176.1/22 has host bits set; the prefix is 175.45.176.0/22`},
		{"/api/v1/series?by=prefix&key=korea", `key: "korea" is not a prefix like 175.45.176.0/22`},
		{"/api/v1/series?level=5m", `level: "5m" is not 1m, 1h, 1d`},
		{"/api/v1/series?level=1m&window=6h", `level: 1m keeps 1h, less than the window 6h`},
		{"/api/v1/series?window=31d", `window: 31d is longer than the 30d the collector keeps`},
		{"/api/v1/series?by=total&sensor=akl-ix-01", `sensor: a sensor's series is kept for by=country and by=as only`},
		{"/api/v1/series?by=as&key=1&sensor=a/b", `sensor: "a/b" is not a sensor id`},
		{"/api/v1/alerts?limit=1001", `limit: 1001 is not between 1 and 1000`},
		{"/api/v1/alerts?limit=ten", `limit: "ten" is not a number`},
		{"/api/v1/sensors?verbose=1", `verbose: unknown parameter; this endpoint takes none`},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, tc.path, nil))
		var e api.Error
		if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || rec.Code != http.StatusBadRequest || e.Error != tc.want {
			t.Errorf("GET %s: %d %s, want 400 %q", tc.path, rec.Code, strings.TrimSpace(rec.Body.String()), tc.want)
		}
	}
	for _, tc := range []struct {
		method, path string
		code         int
		body         string
	}{
		{http.MethodGet, "/api/v1/top?by=as&window=7d", http.StatusOK, `"level":"1d"`},
		{http.MethodGet, "/api/v1/series?by=as&key=AS131279&window=36h", http.StatusOK, `"level":"1h"`},
		{http.MethodGet, "/api/v1/nope", http.StatusNotFound, `{"error":"no such endpoint: /api/v1/nope"}`},
		{http.MethodPost, "/api/v1/top", http.StatusMethodNotAllowed, `{"error":"method POST not allowed: use GET or HEAD"}`},
		{http.MethodGet, "/", http.StatusOK, `<title>peerwatch · fleet</title>`},
		{http.MethodGet, "/static/dashboard.js", http.StatusOK, "window.peerwatch"},
		{http.MethodGet, "/static/chart.js", http.StatusOK, "window.peerwatch = {"},
		{http.MethodGet, "/static/style.css", http.StatusOK, "--ink"},
		{http.MethodGet, "/nope", http.StatusNotFound, "404 page not found"},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
		body, _ := io.ReadAll(rec.Body)
		if rec.Code != tc.code || !strings.Contains(string(body), tc.body) {
			t.Errorf("%s %s: %d %.200s, want %d with %q", tc.method, tc.path, rec.Code, body, tc.code, tc.body)
		}
		if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
			t.Errorf("%s %s: Content-Security-Policy %q", tc.method, tc.path, csp)
		}
	}
	// The page names no other origin, and every asset it loads is served.
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	page := rec.Body.String()
	for _, asset := range []string{"style.css", "dashboard.css", "chart.js", "dashboard.js", "favicon.svg"} {
		ref := fmt.Sprintf("/static/%s?v=%s", asset, assetVersion)
		if !strings.Contains(page, ref) {
			t.Errorf("the page does not load %s", ref)
		}
	}
	if strings.Contains(strings.ReplaceAll(page, "http://www.w3.org/2000/svg", ""), "http") {
		t.Error("the page names another origin")
	}
}

// TestLevelsFollowTheCollector: the API's windows and levels are those of
// the collector's retention, and a series has at most MaxSeriesPoints.
func TestLevelsFollowTheCollector(t *testing.T) {
	d, err := New(Config{EmbeddedBroker: ":0"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	d.col = collector.New(collector.Options{Windows: windowWidths(), Retention: []int{20000, 48, 90}}, nil)
	h := d.Handler()
	for _, tc := range []struct {
		path string
		code int
		want string
	}{
		{"/api/v1/series?window=6d", http.StatusOK, `"level":"1m"`}, // 8640 minutes
		{"/api/v1/series?window=7d", http.StatusOK, `"level":"1d"`}, // 10080 minutes; the hours keep 2 days
		{"/api/v1/series?window=7d&level=1m", http.StatusBadRequest, `level: 1m over 7d is 10080 points, more than 10000: choose a coarser level or a shorter window`},
		{"/api/v1/top?window=90d", http.StatusOK, `"level":"1d"`},
		{"/api/v1/top?window=91d", http.StatusBadRequest, `window: 91d is longer than the 90d the collector keeps`},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, tc.path, nil))
		if rec.Code != tc.code || !strings.Contains(rec.Body.String(), tc.want) {
			t.Errorf("GET %s: %d %s, want %d with %s", tc.path, rec.Code, strings.TrimSpace(rec.Body.String()), tc.code, tc.want)
		}
	}
}
