package collectord

import (
	"cmp"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/peerwatch/peerwatch/sensor/api"
	"github.com/peerwatch/peerwatch/sensor/brokerauth"
	"github.com/peerwatch/peerwatch/sensor/collector"
	"github.com/peerwatch/peerwatch/sensor/human"
	"github.com/peerwatch/peerwatch/sensor/summary"
	"github.com/peerwatch/peerwatch/sensor/traffic"
	"github.com/peerwatch/peerwatch/sensor/version"
	"github.com/peerwatch/peerwatch/sensor/watch"
	"github.com/peerwatch/peerwatch/sensor/web"
)

// The dashboard is built like the sensor's status page, from its parts:
// style.css, chart.js and the "top" tables come from sensor/web; this
// package adds dashboard.html, dashboard.css and dashboard.js.

//go:embed assets
var assets embed.FS

var (
	dashboardTemplate = must(web.ParsePage(assets, "assets/dashboard.html"))
	staticFS          = overlayFS{must(fs.Sub(assets, "assets/static")), web.Static()}
	assetVersion      = web.HashFS(staticFS)
)

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// overlayFS serves the files of the first FS that has them.
type overlayFS []fs.FS

func (o overlayFS) Open(name string) (fs.File, error) {
	for _, f := range o {
		file, err := f.Open(name)
		if err == nil || !errors.Is(err, fs.ErrNotExist) {
			return file, err
		}
	}
	return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
}

// ReadDir merges the directories, for HashFS.
func (o overlayFS) ReadDir(name string) ([]fs.DirEntry, error) {
	seen := map[string]bool{}
	var out []fs.DirEntry
	for _, f := range o {
		des, err := fs.ReadDir(f, name)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		for _, de := range des {
			if !seen[de.Name()] {
				seen[de.Name()] = true
				out = append(out, de)
			}
		}
	}
	slices.SortFunc(out, func(a, b fs.DirEntry) int { return cmp.Compare(a.Name(), b.Name()) })
	return out, nil
}

// Choices and bounds of the dashboard.
const (
	dashTopRows      = 12
	dashSensorRows   = 500 // of the sensors table
	dashListed       = 5   // sensors named in the health card
	dashAlertRows    = 25
	dashQuickPicks   = 10 // countries offered as one-click links in "who sees"
	dashTopCharts    = 3  // countries, and ASes, with a chart each
	dashSensorCharts = 8  // sensors with a chart in "who sees"
	staleLag         = 3 * time.Minute
	dashRefreshEvery = 60 // seconds between reloads of the page
)

// dashWindows are the windows the dashboard offers.
var dashWindows = []string{"15m", "1h", "6h", "24h", "7d", "30d"}

// num is a number for humans with its exact value in a tooltip, as the
// "num" part draws it.
type num struct{ Text, Title string }

func count(n uint64, unit string) num {
	return num{Text: human.GroupDigits(n), Title: human.GroupDigits(n) + " " + unit}
}

func byteCount(n uint64) num {
	return num{Text: human.Bytes(n), Title: human.GroupDigits(n) + " bytes"}
}

func when(t time.Time) num {
	if t.IsZero() {
		return num{Text: "never", Title: "never"}
	}
	return num{Text: t.UTC().Format("2006-01-02 15:04:05 UTC"), Title: t.UTC().Format(time.RFC3339Nano)}
}

func ago(t, now time.Time) num {
	if t.IsZero() {
		return num{Text: "never", Title: "never"}
	}
	return num{Text: human.Duration(now.Sub(t).Round(time.Second)) + " ago", Title: t.UTC().Format(time.RFC3339Nano)}
}

type dashboardData struct {
	Now            num
	Version        string
	AssetVersion   string
	RefreshSeconds int
	Errors         []string

	SensorCount, OnlineCount int
	Offline, Late, NoStatus  []string // sensor ids
	SensorNotes              []note   // of the health card
	Health                   string   // "ok", "warn" or "bad"
	Missing                  num
	MissingStatus            string
	Lost                     num // summaries lost for good (gap repair: the sensors no longer had them)
	LostAll                  uint64
	Rejects                  num
	RejectStatus             string
	RejectTitle              string
	// BrokerRefusals is what the embedded broker refused: connections,
	// publishes and subscriptions ("" without its authentication).
	BrokerRefusals string
	Traffic        trafficView

	Sensors       []sensorView // problems first
	SensorsHidden int          // healthy sensors beyond dashSensorRows

	FleetCharts []chartView
	TopCharts   []chartView

	Window    string
	Windows   []windowLink
	TopNoData bool
	Countries web.TopView
	ASes      web.TopView
	Prefixes  web.TopView
	Classes   []classLegend

	Who whoView

	Alerts                    []alertView
	AlertCount, ActiveAlerts  int
	AlertEvents, AlertsShown  int
	AlertsTruncated, NoAlerts bool
}

type trafficView struct {
	PktIn, PktOut, BytesIn, BytesOut num
	PPSIn, PPSOut                    num
	Tunnel                           num
}

// note is a short text of a card, with its class and tooltip.
type note struct{ Class, Text, Title string }

type sensorView struct {
	ID, Version, Board      string
	State, Status           string
	LastSeen, Lag           num
	LagStatus               string
	Summaries, Duplicates   num
	Missing, Rejects        num
	Lost                    num
	GapStatus, RejectStatus string
	LostStatus              string
	LastSeq                 uint64
	Gaps                    string
}

type chartView struct {
	ID, Title, Src, Href string
	Group                string // charts of a group share their y scale
}

type windowLink struct {
	Label, Href string
	Current     bool
}

type classLegend struct{ Class, Name string }

type whoView struct {
	Country, Label string
	Options        []countryOption
	Picks          []countryPick
	Rows           []whoRow
	Total          whoRow
	Chart          chartView
	SensorCharts   []chartView // each sensor's traffic of the country
	Reason         string      // why this country is shown
	// PerSensorFrom, when the window starts earlier: the per-sensor
	// counts start there (--keep-per-sensor), "15:04 UTC".
	PerSensorFrom string
}

type countryOption struct {
	Code, Label string
	Selected    bool
}

type countryPick struct {
	Label, Href string
	Current     bool
}

type whoRow struct {
	Sensor, Status                   string
	PktIn, PktOut, BytesIn, BytesOut num
	Share                            num
	ShareWidth                       string
	Tunnel                           num
}

type alertView struct {
	Sensor, ID, List, Reason string
	Active                   bool
	Start, End, Duration     num
	PeakPPS, PeakBPS         num
	Packets, Bytes           num
	Prefixes                 []string
	More                     int
}

func (d *Daemon) dashboard(w http.ResponseWriter, r *http.Request) {
	web.RenderPage(w, dashboardTemplate, d.dashboardData(r), "dashboard", d.log)
}

func (d *Daemon) dashboardData(r *http.Request) *dashboardData {
	now := d.now()
	data := &dashboardData{
		Now: when(now), Version: version.Version, AssetVersion: assetVersion, RefreshSeconds: dashRefreshEvery,
	}
	q := r.URL.Query()
	window := DefaultWindow
	if v, err := d.parseWindow(q); err != nil {
		data.Errors = append(data.Errors, err.Error()+"; showing the last hour")
	} else {
		window = v
	}
	data.Window = web.FormatSpan(window)
	width := d.levelFor(window)
	from, to := span(now, window, width)
	sum := d.col.Window(collector.LevelName(width), from, to)

	d.sensorViews(data, now)
	data.Traffic = trafficOf(sum, window)
	rejects := d.col.Rejects()
	var nRejects uint64
	worst, worstN := "", uint64(0)
	for _, reason := range slices.Sorted(maps.Keys(rejects)) {
		nRejects += rejects[reason]
		if rejects[reason] > worstN {
			worst, worstN = reason, rejects[reason]
		}
	}
	data.Rejects = count(nRejects, "messages refused since the collector started")
	data.RejectStatus = "ok"
	if nRejects > 0 {
		data.RejectStatus = "warn"
		data.RejectTitle = fmt.Sprintf("most: %s (%s)", worst, human.GroupDigits(worstN))
	}
	if d.sec.hook != nil {
		b := d.BrokerRefusals()
		data.BrokerRefusals = fmt.Sprintf("broker refused %s connections, %s publishes, %s subscriptions",
			human.GroupDigits(b.ConnectsRefused), human.GroupDigits(b.PublishesDenied), human.GroupDigits(b.SubscribesDenied))
		if b != (brokerauth.Stats{}) {
			data.RejectStatus = "warn"
		}
	}

	// Charts of the fleet's traffic, over the retention of each level.
	for _, l := range d.levels() {
		span := min(l.kept(), MaxSeriesPoints*l.width)
		data.FleetCharts = append(data.FleetCharts, chartView{
			ID:    "fleet-" + l.name,
			Title: "Last " + web.FormatSpan(span),
			Src:   "/api/v1/series?by=total&window=" + web.FormatSpan(span),
		})
	}

	for _, ws := range dashWindows {
		v, _ := web.ParseSpan(ws)
		data.Windows = append(data.Windows, windowLink{Label: ws, Href: pageURL(ws, q.Get("country"), q.Has("country")), Current: v == window})
	}
	data.TopNoData = sum == nil || (sum.Remote.Total() == 0 && sum.Globals.Seen == 0)
	if data.TopNoData {
		sum = nil
	}
	data.Countries = web.TopTable(sum, web.TopByCountry, "Top countries", "Country", dashTopRows)
	for i := range data.Countries.Rows {
		row := &data.Countries.Rows[i]
		code := ""
		if !row.UnknownCountry {
			code = row.Key
		}
		row.Href = pageURL(data.Window, code, true) + "#whosees"
		row.KeyTitle = "which sensors see " + row.Key
	}
	data.ASes = web.TopTable(sum, web.TopByAS, "Top origin ASes", "AS", dashTopRows)
	data.Prefixes = web.TopTable(sum, web.TopByPrefix, "Top remote prefixes", "Prefix", dashTopRows)
	data.Prefixes.Note = "Each window keeps its top 1000 prefixes (the rest is in all others), so a prefix's count may be a lower bound; totals, countries and ASes are exact."
	for c := range traffic.Class(traffic.NumClasses) {
		data.Classes = append(data.Classes, classLegend{Class: c.String(), Name: web.ClassLabel(c)})
	}
	if sum != nil {
		for i, c := range sum.Countries[:min(dashTopCharts, len(sum.Countries))] {
			data.TopCharts = append(data.TopCharts, chartView{
				ID: "country-" + strconv.Itoa(i+1), Title: "Country " + api.CountryLabel(c.Country),
				Src:  "/api/v1/series?by=country&key=" + url.QueryEscape(c.Country) + "&window=" + data.Window,
				Href: pageURL(data.Window, c.Country, true) + "#whosees",
			})
		}
		for i, a := range sum.ASes[:min(dashTopCharts, len(sum.ASes))] {
			title := api.ASLabel(a.ASN)
			if a.ASName != "" {
				title += " " + a.ASName
			}
			data.TopCharts = append(data.TopCharts, chartView{
				ID: "as-" + strconv.Itoa(i+1), Title: title,
				Src: "/api/v1/series?by=as&key=" + strconv.FormatUint(uint64(a.ASN), 10) + "&window=" + data.Window,
			})
		}
	}

	alerts := d.alertViews(data, now)
	d.whoSeesView(data, q, sum, alerts, collector.LevelName(width), from, to)
	return data
}

// pageURL is the dashboard with a window and, when hasCountry, a country
// for "who sees" ("" is traffic no table places).
func pageURL(window, country string, hasCountry bool) string {
	v := url.Values{"window": {window}}
	if hasCountry {
		v.Set("country", country)
	}
	return "/?" + v.Encode()
}

func trafficOf(sum *summary.Summary, window time.Duration) trafficView {
	var c traffic.Counters
	// The rate is over the time the summaries cover, when less than the
	// window (a collector that started recently, a fleet that was quiet).
	covered := window
	if sum != nil {
		c = sum.Remote
		if span := sum.End.Sub(sum.Start); span > 0 && span < covered {
			covered = span
		}
	}
	rate := func(n uint64) num {
		v := float64(n) / covered.Seconds()
		return num{Text: human.PPS(v), Title: fmt.Sprintf("%s packets/s on average (%s packets in %s)",
			human.GroupFloat(v), human.GroupDigits(n), human.Duration(covered.Round(time.Second)))}
	}
	return trafficView{
		PktIn: count(c.Packets[traffic.In], "packets"), PktOut: count(c.Packets[traffic.Out], "packets"),
		BytesIn: byteCount(c.Bytes[traffic.In]), BytesOut: byteCount(c.Bytes[traffic.Out]),
		PPSIn: rate(c.Packets[traffic.In]), PPSOut: rate(c.Packets[traffic.Out]),
		Tunnel: num{Text: human.PercentOf(c.Class[traffic.Tunnel], c.Total()),
			Title: fmt.Sprintf("%s of %s packets", human.GroupDigits(c.Class[traffic.Tunnel]), human.GroupDigits(c.Total()))},
	}
}

func (d *Daemon) sensorViews(data *dashboardData, now time.Time) {
	var missingAll, lostAll uint64
	health := "ok"
	for _, s := range d.col.Sensors(now) {
		v := sensorView{
			ID: s.ID, Version: orDash(s.Version), Board: orDash(s.Board), LastSeq: s.LastSeq,
			LastSeen: ago(s.LastSeen, now), Summaries: count(s.Summaries, "summaries accepted"),
			Duplicates: count(s.Duplicates, "duplicate summaries dropped"),
			State:      "offline", Status: "bad",
		}
		switch {
		case s.Online:
			v.State, v.Status = "online", "ok"
			data.OnlineCount++
		case !s.HasStatus:
			// Heard from, but no status (a shared subscription need not get
			// the retained one): neither online nor offline.
			v.State, v.Status = "no status", "muted"
			data.NoStatus = append(data.NoStatus, s.ID)
		default:
			health = "bad"
			data.Offline = append(data.Offline, s.ID)
		}
		if s.LastEnd.IsZero() {
			v.Lag = num{Text: "–", Title: "no summary yet"}
		} else {
			v.Lag = num{Text: human.Duration(s.Lag.Round(time.Second)), Title: "the latest summary ended " + s.LastEnd.UTC().Format(time.RFC3339)}
			if s.Lag > staleLag {
				v.LagStatus = "warn"
				if s.Online {
					v.Status = "warn"
					health = worse(health, "warn")
					data.Late = append(data.Late, s.ID)
				}
			}
		}
		m := missing(s.Gaps)
		missingAll += m
		v.Missing = num{Text: human.GroupDigits(m), Title: fmt.Sprintf("%s summaries missing in %d gaps", human.GroupDigits(m), len(s.Gaps))}
		if m > 0 {
			v.GapStatus = "warn"
			for i, g := range s.Gaps {
				if i == 5 {
					v.Gaps += fmt.Sprintf(" +%d more", len(s.Gaps)-5)
					break
				}
				if g.First == g.Last {
					v.Gaps += fmt.Sprintf(" %d", g.First)
				} else {
					v.Gaps += fmt.Sprintf(" %d–%d", g.First, g.Last)
				}
			}
			v.Missing.Title += ": seq" + v.Gaps
		}
		lostAll += s.LostSeqs
		v.Lost = count(s.LostSeqs, "summaries lost for good: the sensor no longer held them when the collector asked")
		if s.LostSeqs > 0 {
			v.LostStatus = "bad"
		}
		var rej uint64
		for _, n := range s.Rejects {
			rej += n
		}
		v.Rejects = count(rej, "messages refused")
		if rej > 0 {
			v.RejectStatus = "warn"
		}
		data.Sensors = append(data.Sensors, v)
	}
	data.SensorCount = len(data.Sensors)
	// Problems first: offline, late, then missing summaries or refused
	// messages, then those without a status; by id within each.
	rank := func(v sensorView) int {
		switch {
		case v.Status == "bad":
			return 0
		case v.Status == "warn":
			return 1
		case v.GapStatus != "" || v.RejectStatus != "" || v.LostStatus != "":
			return 2
		case v.Status == "muted":
			return 3
		}
		return 4
	}
	slices.SortStableFunc(data.Sensors, func(a, b sensorView) int { return cmp.Compare(rank(a), rank(b)) })
	if len(data.Sensors) > dashSensorRows {
		data.SensorsHidden = len(data.Sensors) - dashSensorRows
		data.Sensors = data.Sensors[:dashSensorRows]
	}
	named := func(what string, ids []string) string {
		if len(ids) > dashListed {
			return fmt.Sprintf("%s: %s and %d more", what, strings.Join(ids[:dashListed], ", "), len(ids)-dashListed)
		}
		return what + ": " + strings.Join(ids, ", ")
	}
	if len(data.Offline) > 0 {
		data.SensorNotes = append(data.SensorNotes, note{Class: "bad-text", Text: named("offline", data.Offline)})
	}
	if len(data.Late) > 0 {
		data.SensorNotes = append(data.SensorNotes, note{Class: "warn-text", Text: named("late", data.Late),
			Title: "the latest summary ended more than " + human.Duration(staleLag) + " ago"})
	}
	if len(data.NoStatus) > 0 {
		data.SensorNotes = append(data.SensorNotes, note{Class: "muted", Text: named("no status", data.NoStatus),
			Title: "no status message received: with a shared subscription, the broker need not deliver the retained status"})
	}
	switch {
	case data.SensorCount == 0:
		data.SensorNotes = []note{{Text: "no sensor heard from yet"}}
	case len(data.SensorNotes) == 0:
		data.SensorNotes = []note{{Text: "every sensor online"}}
	}
	if data.SensorCount == 0 {
		health = "muted"
	}
	data.Health = health
	data.Missing = count(missingAll, "summaries missing in the sensors' sequence numbers; the collector asks the sensors for them")
	data.Lost, data.LostAll = count(lostAll, "summaries lost for good"), lostAll
	data.MissingStatus = "ok"
	if missingAll > 0 {
		data.MissingStatus = "warn"
	}
}

func worse(a, b string) string {
	rank := map[string]int{"ok": 0, "warn": 1, "bad": 2}
	if rank[b] > rank[a] {
		return b
	}
	return a
}

func orDash(s string) string {
	if s == "" {
		return "–"
	}
	return s
}

// alertViews turns the collector's alert messages into one row per alert
// (a sensor's started and ended messages of one id are one alert), newest
// first. It returns the alerts decoded, for "who sees".
func (d *Daemon) alertViews(data *dashboardData, now time.Time) []watch.Alert {
	msgs := d.col.Alerts(collector.DefaultMaxAlerts)
	data.AlertEvents = len(msgs)
	seen := map[string]bool{}
	var out []watch.Alert
	for _, m := range msgs {
		var a watch.Alert
		if err := json.Unmarshal(m.Alert, &a); err != nil || a.ID == "" {
			a = watch.Alert{ID: "?", List: "?", Reason: "an alert this dashboard cannot read (" + m.Event + ")", Start: m.Received}
		}
		key := m.Sensor + "\x00" + a.ID
		if seen[key] {
			continue // an older message of an alert already shown
		}
		seen[key] = true
		out = append(out, a)
		active := m.Event != "ended" && a.End.IsZero()
		if active {
			data.ActiveAlerts++
		}
		data.AlertCount++
		if len(data.Alerts) == dashAlertRows {
			data.AlertsTruncated = true
			continue
		}
		v := alertView{
			Sensor: m.Sensor, ID: a.ID, List: a.List, Reason: a.Reason, Active: active,
			Start:   num{Text: a.Start.UTC().Format("2006-01-02 15:04 UTC"), Title: a.Start.UTC().Format(time.RFC3339Nano)},
			PeakPPS: num{Text: human.PPS(a.PeakPPS), Title: human.GroupFloat(a.PeakPPS) + " packets/s"},
			PeakBPS: num{Text: human.BPS(a.PeakBPS), Title: human.GroupFloat(a.PeakBPS) + " bits/s"},
			Packets: count(a.Packets, "packets"), Bytes: byteCount(a.Bytes),
		}
		end := a.End
		if active || end.IsZero() {
			end = now
			v.End = num{Text: "active", Title: "no end received"}
		} else {
			v.End = num{Text: end.UTC().Format("2006-01-02 15:04 UTC"), Title: end.UTC().Format(time.RFC3339Nano)}
		}
		dur := max(end.Sub(a.Start), 0).Truncate(time.Second)
		v.Duration = num{Text: human.Duration(dur), Title: dur.String()}
		for j, p := range a.Prefixes {
			if j == 3 {
				v.More = len(a.Prefixes) - 3
				break
			}
			v.Prefixes = append(v.Prefixes, p.Prefix.String())
		}
		data.Alerts = append(data.Alerts, v)
	}
	data.AlertsShown = len(data.Alerts)
	data.NoAlerts = data.AlertCount == 0
	return out
}

// whoSeesView fills the "which sensors see this country" view: the country of
// ?country=, else the country of the newest alert's top prefix (a watched
// one), else the window's top country.
func (d *Daemon) whoSeesView(data *dashboardData, q url.Values, sum *summary.Summary, alerts []watch.Alert, level string, from, to time.Time) {
	w := &data.Who
	country, chosen := "", false
	if q.Has("country") {
		cc, err := parseCountry("country", q.Get("country"))
		if err != nil {
			data.Errors = append(data.Errors, err.Error())
		} else {
			country, chosen, w.Reason = cc, true, "chosen"
		}
	}
	if !chosen {
		for _, a := range alerts {
			if len(a.Prefixes) > 0 && a.Prefixes[0].Country != "" {
				country, chosen, w.Reason = a.Prefixes[0].Country, true, "the country of the newest alert ("+a.List+")"
				break
			}
		}
	}
	if !chosen && sum != nil && len(sum.Countries) > 0 {
		country, chosen, w.Reason = sum.Countries[0].Country, true, "the top country of the window"
	}
	if !chosen {
		return
	}
	w.Country, w.Label = country, api.CountryLabel(country)
	var countries []summary.CountryCount
	if sum != nil {
		countries = sum.Countries
	}
	listed := false
	for i, c := range countries {
		w.Options = append(w.Options, countryOption{Code: c.Country, Label: api.CountryLabel(c.Country), Selected: c.Country == country})
		listed = listed || c.Country == country
		if i < dashQuickPicks {
			w.Picks = append(w.Picks, countryPick{Label: api.CountryLabel(c.Country), Href: pageURL(data.Window, c.Country, true) + "#whosees", Current: c.Country == country})
		}
	}
	if !listed {
		w.Options = append([]countryOption{{Code: country, Label: api.CountryLabel(country) + " (no traffic)", Selected: true}}, w.Options...)
	}
	slices.SortStableFunc(w.Options, func(a, b countryOption) int { return cmp.Compare(a.Label, b.Label) })
	w.Chart = chartView{ID: "whosees-chart", Title: "Fleet traffic of " + w.Label,
		Src: "/api/v1/series?by=country&key=" + url.QueryEscape(country) + "&window=" + data.Window}

	seen, _ := d.col.WhoSeesAt(level, collector.SeriesKey{By: collector.ByCountry, Country: country}, from, to)
	if vf := d.col.ViewsFrom(level); vf.After(from) {
		w.PerSensorFrom = vf.UTC().Format("Jan 2 15:04 UTC")
	}
	online := map[string]string{}
	for _, s := range d.col.Sensors(d.now()) {
		switch {
		case s.Online:
			online[s.ID] = "ok"
		case s.HasStatus:
			online[s.ID] = "bad"
		}
	}
	var all traffic.Counters
	for _, sc := range seen {
		all.Add(sc.Counters)
	}
	row := func(name string, c traffic.Counters) whoRow {
		return whoRow{
			Sensor: name, Status: online[name],
			PktIn: count(c.Packets[traffic.In], "packets"), PktOut: count(c.Packets[traffic.Out], "packets"),
			BytesIn: byteCount(c.Bytes[traffic.In]), BytesOut: byteCount(c.Bytes[traffic.Out]),
			Share: num{Text: human.PercentOf(c.Total(), all.Total()),
				Title: fmt.Sprintf("%s of %s packets", human.GroupDigits(c.Total()), human.GroupDigits(all.Total()))},
			ShareWidth: strconv.FormatFloat(human.Percent(c.Total(), all.Total()), 'f', 2, 64),
			Tunnel: num{Text: human.PercentOf(c.Class[traffic.Tunnel], c.Total()),
				Title: fmt.Sprintf("%s of %s packets are tunnel/VPN", human.GroupDigits(c.Class[traffic.Tunnel]), human.GroupDigits(c.Total()))},
		}
	}
	for i, sc := range seen {
		w.Rows = append(w.Rows, row(sc.Sensor, sc.Counters))
		if i < dashSensorCharts {
			w.SensorCharts = append(w.SensorCharts, chartView{
				ID: "whosees-" + sc.Sensor, Title: sc.Sensor, Group: "whosees",
				Src: "/api/v1/series?by=country&key=" + url.QueryEscape(country) + "&sensor=" + url.QueryEscape(sc.Sensor) + "&window=" + data.Window,
			})
		}
	}
	w.Total = row("all sensors", all)
}
