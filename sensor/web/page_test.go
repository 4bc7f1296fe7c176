package web

import (
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promtestutil "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/peerwatch/peerwatch/sensor/api"
	"github.com/peerwatch/peerwatch/sensor/summary"
	"github.com/peerwatch/peerwatch/sensor/traffic"
)

func getPage(t *testing.T, h http.Handler, target string) string {
	t.Helper()
	res, body := do(t, h, http.MethodGet, target)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", target, res.StatusCode, body)
	}
	if ct := res.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("GET %s: Content-Type %q", target, ct)
	}
	return body
}

func wantIn(t *testing.T, page string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(page, w) {
			t.Errorf("the page lacks %q", w)
		}
	}
}

func TestPage(t *testing.T) {
	f := newFixture(t)
	h := newHandler(f, Options{})
	page := getPage(t, h, "/")

	last := f.levels["interval"][len(f.levels["interval"])-1]
	w, _ := f.Window(t0.Add(-time.Hour), t0)
	top := w.Prefixes[0]
	wantIn(t, page,
		`<span class="sensor" id="sensor-id" title="sensor id">akl-ix-01</span>`,
		`<dd id="version">0.4.1</dd>`, `<dd id="board">nanopi-r6s</dd>`, `<dd id="kernel">6.12.20-arm64</dd>`,
		`>9d 4h</span>`,
		// live rates, human with the exact value in the title
		`title="`+groupFloat(float64(last.Remote.Packets[traffic.In])/10)+` packets/s (`+groupDigits(last.Remote.Packets[traffic.In])+` packets in 10 s)">`+fmtPPS(float64(last.Remote.Packets[traffic.In])/10)+`</span>`,
		fmtBPS(float64(last.Remote.Bytes[traffic.Out])*8/10),
		// health
		`<span class="pill ok" data-live="invariant">OK</span>`,
		`<div><dt>seen</dt><dd><span class="num" title="`+groupDigits(last.Globals.Seen)+` packets">`+groupDigits(last.Globals.Seen)+`</span></dd></div>`,
		`<div><dt>= remote</dt><dd><span class="num" title="`+groupDigits(last.Remote.Total())+` packets">`+groupDigits(last.Remote.Total())+`</span></dd></div>`,
		`<span class="num" title="now − last drain = 2.3s">2.3 s</span>`,
		`<span class="num" title="196,083,712 bytes">187 MiB</span> <span class="of">of <span class="num" title="536,870,912 bytes">512 MiB</span></span>`,
		` ending <span data-live="interval-end"><span class="num" title="2026-03-14T12:00:00Z">12:00:00 UTC</span></span>`,
		`<span class="pill ok">connected</span>`, `outbox <span class="num" title="3 summaries waiting">3</span>`,
		// interfaces
		`<td class="key">eth0</td><td class="mode"><code>xdp-native</code></td><td class="nowrap"><span class="dot ok" aria-hidden="true"></span><span class="state">attached</span></td>`,
		`<span class="state">down</span></td><td class="muted">carrier lost 2026-03-14 09:12 UTC</td>`,
		// charts
		`data-level="interval" data-key="total" data-span="3600" data-step="10"`,
		`data-level="1m" data-key="total" data-span="86400" data-step="60"`,
		`data-level="1h" data-key="total" data-span="604800" data-step="3600"`,
		// top lists
		`<td class="key"><span title="142.250.0.0/15: 131,072 IPv4 addresses">142.250.0.0/15</span></td><td>US</td>`,
		`<td class="n"><span class="num" title="`+groupDigits(top.Packets[traffic.In])+` packets">`+groupDigits(top.Packets[traffic.In])+`</span></td>`,
		`<span title="AS15169 GOOGLE">AS15169 <span class="muted">GOOGLE</span></span>`,
		`<a href="/?window=1h" class="current" aria-current="true">1h</a>`,
		`<span title="country KP">KP</span>`, `<span title="country unknown">unknown</span>`,
		// watch lists and alerts
		`<span class="tag alerting">kp</span>`, `<span class="tag">tor-exits</span>`,
		`3.4 kpps over a 7-day baseline of 410 pps (8.3×)`, `<span class="count bad">1</span>`,
		`<code>185.220.100.0/22</code> <code>185.220.101.0/24</code> <code>185.220.102.0/24</code> <span class="muted">+1 more</span>`,
	)
	if strings.Contains(page, "no data yet") || strings.Contains(page, "BROKEN") || strings.Contains(page, `class="banner`) {
		t.Error("the page of a healthy sensor says no data, BROKEN or has an error banner")
	}

	// The tunnel share of the KP row: 35 % of its packets.
	if !regexp.MustCompile(`(?s)<span title="country KP">KP</span>.*?>3[45]\.\d %</span></td>\s*</tr>`).MatchString(page) {
		t.Error("no tunnel share on KP's row")
	}
}

// The page runs under a CSP without inline script or style and names no
// other origin.
func TestPageSelfContained(t *testing.T) {
	h := newHandler(newFixture(t), Options{})
	page := getPage(t, h, "/")
	for _, re := range []string{`<script(?:\s[^>]*)?>[^<]`, `<script(?:\s(?:[^s>]|s[^r])*)?>`, `\sstyle=`, `\son[a-z]+=`, `https?://`, `javascript:`} {
		if m := regexp.MustCompile(re).FindString(page); m != "" {
			t.Errorf("the page has %q (%s)", m, re)
		}
	}
	for _, p := range []string{"/static/style.css", "/static/status.js", "/static/chart.js", "/static/favicon.svg"} {
		_, body := do(t, h, http.MethodGet, p)
		body = strings.ReplaceAll(body, "http://www.w3.org/2000/svg", "")
		if m := regexp.MustCompile(`https?://|@import|url\(`).FindString(body); m != "" {
			t.Errorf("%s names another resource: %q", p, m)
		}
	}
	if !strings.Contains(page, `<script src="/static/status.js?v=`+assetVersion+`" defer></script>`) {
		t.Error("no versioned script")
	}
}

func TestPageBrokenInvariant(t *testing.T) {
	f := newFixture(t)
	f.health.Invariant = summary.ErrInconsistent
	page := getPage(t, newHandler(f, Options{}), "/")
	wantIn(t, page, `<span class="pill bad" data-live="invariant">BROKEN</span>`, `<span class="bad-text">summary totals do not reconcile</span>`, `<article class="card bad" id="invariant">`)
}

func TestPageWindow(t *testing.T) {
	h := newHandler(newFixture(t), Options{})
	page := getPage(t, h, "/?window=6h")
	wantIn(t, page, `<a href="/?window=6h" class="current" aria-current="true">6h</a>`, `<a href="/api/v1/top?by=prefix&amp;window=6h">`)
	page = getPage(t, h, "/?window=soon")
	wantIn(t, page, `<div class="banner bad" role="alert">window: &#34;soon&#34; is not a duration; showing the last hour</div>`,
		`<a href="/?window=1h" class="current" aria-current="true">1h</a>`)
}

// A sensor that has just started, with no interval yet, renders and says so.
func TestPageFreshSensor(t *testing.T) {
	page := getPage(t, newHandler(newFreshSource(), Options{}), "/")
	wantIn(t, page,
		`<p class="empty" id="live-empty">no data yet: the first interval has not been drained</p>`,
		`<p class="empty" id="top-empty">no data yet in the last 1h</p>`,
		`<span class="pill warn">no drain yet</span>`,
		`<span class="pill ok" data-live="invariant">OK</span>`,
		`<span class="pill muted">disabled</span>`,
		`<code>xdp-generic</code>`, `no active alert`, `no recent alert`,
		`<span class="sensor" id="sensor-id" title="sensor id">lab-1</span>`, `<dd id="board">–</dd>`,
	)
	if strings.Contains(page, "BROKEN") || strings.Contains(page, `class="banner`) {
		t.Error("a fresh sensor's page shows an error")
	}
}

// A sensor with nothing at all: zero Health, no interfaces, no store.
func TestPageZeroHealth(t *testing.T) {
	f := newFreshSource()
	f.health = Health{}
	page := getPage(t, newHandler(f, Options{}), "/")
	wantIn(t, page, "no interface configured", "no data yet", `<dd id="uptime">–</dd>`)
}

// A store that refuses writes (a full or read-only data partition) shows on
// the page, in the API and in /metrics, with the intervals held in memory.
func TestStoreWriteFault(t *testing.T) {
	f := newFixture(t)
	since := t0.Add(-90 * time.Second)
	f.health.Store.WriteError = "put interval 812: journal: write /var/lib/peerwatch/store.db: no space left on device"
	f.health.Store.WriteErrorSince = since
	f.health.Store.WriteErrors, f.health.Store.Unstored, f.health.Store.UnstoredDropped = 9, 9, 2
	reg := prometheus.NewRegistry()
	h := newHandler(f, Options{Registry: reg, Now: func() time.Time { return t0 }})
	page := getPage(t, h, "/")
	wantIn(t, page, `<article class="card bad" id="store">`,
		`<p class="foot bad-text" id="store-write-error">writes fail since `+since.UTC().Format("2006-01-02 15:04:05Z")+
			`: put interval 812: journal: write /var/lib/peerwatch/store.db: no space left on device; holding <span class="num" title="9 intervals held in memory until the store takes them">9</span> intervals in memory</p>`,
		`given up: <span class="num" title="2 intervals given up: their counts are lost">2</span> intervals`)

	var st api.Status
	getJSON(t, h, "/api/v1/status", &st)
	if st.Store.WriteError != f.health.Store.WriteError || st.Store.WriteErrorSince == nil || !st.Store.WriteErrorSince.Equal(since) ||
		st.Store.WriteErrors != 9 || st.Store.Unstored != 9 || st.Store.UnstoredDropped != 2 {
		t.Errorf("/api/v1/status store: %+v", st.Store)
	}

	want := `# HELP peerwatch_store_write_ok 1 when the last write of an interval to the store succeeded (or none failed yet), 0 while writes fail (a full or read-only data partition).
# TYPE peerwatch_store_write_ok gauge
peerwatch_store_write_ok 0
# HELP peerwatch_store_write_errors_total Failed writes of an interval to the store since the sensor started.
# TYPE peerwatch_store_write_errors_total counter
peerwatch_store_write_errors_total 9
# HELP peerwatch_store_unstored_intervals Intervals drained but held in memory until the store takes them.
# TYPE peerwatch_store_unstored_intervals gauge
peerwatch_store_unstored_intervals 9
# HELP peerwatch_store_unstored_dropped_total Intervals given up because too many waited for the store: their counts are lost.
# TYPE peerwatch_store_unstored_dropped_total counter
peerwatch_store_unstored_dropped_total 2
# HELP peerwatch_store_recovered 1 when a damaged store file was moved aside at start (see the status page), else 0.
# TYPE peerwatch_store_recovered gauge
peerwatch_store_recovered 0
`
	if err := promtestutil.GatherAndCompare(reg, strings.NewReader(want), "peerwatch_store_write_ok", "peerwatch_store_write_errors_total",
		"peerwatch_store_unstored_intervals", "peerwatch_store_unstored_dropped_total", "peerwatch_store_recovered"); err != nil {
		t.Error(err)
	}
}
