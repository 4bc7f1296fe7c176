package web

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"net/netip"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/peerwatch/peerwatch/sensor/api"

	"github.com/peerwatch/peerwatch/sensor/summary"
	"github.com/peerwatch/peerwatch/sensor/traffic"
)

//go:embed assets
var assets embed.FS

var (
	pageTemplate = must(ParsePage(assets, "assets/status.html"))
	staticFS     = must(fs.Sub(assets, "assets/static"))
	assetVersion = HashFS(staticFS)
)

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// HashFS is a short digest of the static files, added to their URLs so that a
// browser's cache never mixes an old script with a new page.
func HashFS(fsys fs.FS) string {
	h := sha256.New()
	_ = fs.WalkDir(fsys, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(fsys, path)
		h.Write([]byte(path))
		h.Write(b)
		return err
	})
	return hex.EncodeToString(h.Sum(nil))[:12]
}

// StaticHandler serves the files of fsys under /static/, with their content
// types set here and a day of caching (their URLs carry HashFS).
func StaticHandler(fsys fs.FS) http.Handler {
	files := http.StripPrefix("/static/", http.FileServerFS(fsys))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/") { // no directory listings
			http.NotFound(w, r)
			return
		}
		// Set here, not from the system's MIME table, which varies.
		switch path.Ext(r.URL.Path) {
		case ".js":
			w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
		case ".css":
			w.Header().Set("Content-Type", "text/css; charset=utf-8")
		case ".svg":
			w.Header().Set("Content-Type", "image/svg+xml")
		}
		w.Header().Set("Cache-Control", "public, max-age=86400")
		files.ServeHTTP(w, r)
	})
}

// TopByPrefix, TopByCountry and TopByAS are what TopTable ranks.
const (
	TopByPrefix  = byPrefix
	TopByCountry = byCountry
	TopByAS      = byAS
)

// Page limits and choices.
const (
	pageTopRows   = 25
	pageAlertRows = 20
)

// pageWindows are the windows the page offers for its top lists.
var pageWindows = []string{"10m", "1h", "6h", "24h", "7d"}

// num is a number for humans with its exact value in a tooltip.
type num struct {
	Text, Title string
}

func count(n uint64, unit string) num {
	return num{Text: groupDigits(n), Title: groupDigits(n) + " " + unit}
}

func byteCount(n uint64) num {
	return num{Text: fmtBytes(n), Title: groupDigits(n) + " bytes"}
}

func pps(v float64, packets uint64, sec float64) num {
	return num{Text: fmtPPS(v), Title: fmt.Sprintf("%s packets/s (%s packets in %s s)", groupFloat(v), groupDigits(packets), groupFloat(sec))}
}

func bps(v float64, bytes uint64, sec float64) num {
	return num{Text: fmtBPS(v), Title: fmt.Sprintf("%s bits/s (%s bytes in %s s)", groupFloat(v), groupDigits(bytes), groupFloat(sec))}
}

func when(t time.Time) num {
	if t.IsZero() {
		return num{Text: "never", Title: "never"}
	}
	return num{Text: t.UTC().Format("2006-01-02 15:04:05 UTC"), Title: t.UTC().Format(time.RFC3339Nano)}
}

// clockTime is a time of today, briefly.
func clockTime(t time.Time) num {
	return num{Text: t.UTC().Format("15:04:05 UTC"), Title: t.UTC().Format(time.RFC3339Nano)}
}

// minute is a time to the minute, for alerts.
func minute(t time.Time) num {
	return num{Text: t.UTC().Format("2006-01-02 15:04 UTC"), Title: t.UTC().Format(time.RFC3339Nano)}
}

func dur(d time.Duration) num {
	return num{Text: fmtDuration(d), Title: d.String()}
}

// status is the level of a health item: "ok", "warn", "bad" or "muted".
type status string

type pageData struct {
	Sensor, Version, Board, Kernel string
	Now                            num
	NowMillis                      int64
	Uptime                         num
	Started                        num
	RefreshSeconds                 int
	AssetVersion                   string
	Errors                         []string

	Live      *liveView
	Invariant invariantView
	Drain     drainView
	Store     storeView
	Uplink    uplinkView

	Interfaces []interfaceView
	Charts     []chartView

	Window    string
	Windows   []windowLink
	TopNoData bool
	Prefixes  TopView
	Countries TopView
	ASes      TopView
	Classes   []classLegend

	Watch                    []watchView
	Active, Recent           []alertView
	ActiveCount, RecentCount int

	Buckets []bucketView
}

type liveView struct {
	PPSIn, PPSOut, BPSIn, BPSOut num
	Interval                     num
	End                          num
	Tunnel                       num
}

type invariantView struct {
	OK                    bool
	Status                status
	Error                 string
	Scope                 string // "last interval" or "since start"
	Seen, Remote, Buckets num
}

type drainView struct {
	Status                  status
	Lag, Interval, Duration num
	Last                    num
	Never                   bool
}

type storeView struct {
	Status          status
	Size, Max       num
	Percent         float64
	HasMax          bool
	Evicted         num
	Path, Recovered string
	WriteError      string // the last failed write while writes fail, with since when
	Unstored        num    // intervals held in memory until the store takes them
	Dropped         num    // intervals given up since start
}

type uplinkView struct {
	Status status
	State  string
	Outbox num
}

type interfaceView struct {
	Name, Mode, State, Err string
	Status                 status
}

type chartView struct {
	Title, Level, Key string
	SpanSeconds       int64
	StepSeconds       float64
}

type windowLink struct {
	Label, Href string
	Current     bool
}

// TopView is a top table of the pages.
type TopView struct {
	Title, KeyName string
	Rows           []rowView
	Other          *rowView
	Total          rowView
	Note           string
}

type rowView struct {
	Rank                             int
	Key, KeyTitle                    string
	Href                             string // where the key links to, if anywhere
	Country, ASN, ASName, ASTitle    string
	PktIn, PktOut, BytesIn, BytesOut num
	Share                            num
	ShareWidth                       string
	Classes                          []classSegment
	Tunnel                           num
	NoTunnel                         bool
	UnknownCountry, UnknownAS        bool
}

type classSegment struct {
	Class, X, W, Title string
}

type classLegend struct {
	Class, Name string
}

type watchView struct {
	List                             string
	PktIn, PktOut, BytesIn, BytesOut num
	Alerting                         bool
}

type alertView struct {
	ID, List, Reason string
	Start, End       num
	Duration         num
	PeakPPS, PeakBPS num
	Packets, Bytes   num
	Prefixes         []string
	More             int
}

type bucketView struct {
	Name, Help       string
	Last, Cumulative num
	Status           status
}

func (s *server) page(w http.ResponseWriter, r *http.Request) {
	RenderPage(w, pageTemplate, s.pageData(r), "status page", s.log)
}

func (s *server) pageData(r *http.Request) *pageData {
	now := s.now()
	h := s.src.Health()
	d := &pageData{
		Sensor: orDash(h.Sensor), Version: orDash(h.Version), Board: orDash(h.Board), Kernel: orDash(h.Kernel),
		Now: when(now), NowMillis: now.UnixMilli(), Started: when(h.Started),
		AssetVersion: assetVersion,
	}
	if !h.Started.IsZero() {
		d.Uptime = dur(now.Sub(h.Started).Truncate(time.Second))
	}
	d.RefreshSeconds = int(max(h.DrainInterval, 5*time.Second) / time.Second)

	latest, err := s.latest()
	if err != nil {
		d.Errors = append(d.Errors, err.Error())
	}
	if !hasData(latest) {
		latest = nil
	}
	d.health(h, latest, now)

	// The charts: last hour, day and week.
	step := levelStep("interval", h.DrainInterval)
	d.Charts = []chartView{
		{Title: "Last hour", Level: "interval", Key: "total", SpanSeconds: 3600, StepSeconds: step.Seconds()},
		{Title: "Last day", Level: "1m", Key: "total", SpanSeconds: 86400, StepSeconds: 60},
		{Title: "Last week", Level: "1h", Key: "total", SpanSeconds: 7 * 86400, StepSeconds: 3600},
	}

	// The top lists and watch lists over the chosen window.
	span := time.Hour
	if v, err := parseWindow(r.URL.Query(), time.Hour); err != nil {
		d.Errors = append(d.Errors, err.Error()+"; showing the last hour")
	} else {
		span = v
	}
	d.Window = formatSpan(span)
	for _, ws := range pageWindows {
		v, _ := parseSpan(ws)
		d.Windows = append(d.Windows, windowLink{Label: ws, Href: "/?window=" + ws, Current: v == span})
	}
	win, err := s.window(s.recent(now, span))
	if err != nil {
		d.Errors = append(d.Errors, err.Error())
	}
	d.TopNoData = win == nil
	d.Prefixes = TopTable(win, byPrefix, "Top remote prefixes", "Prefix", pageTopRows)
	d.Prefixes.Note = "Prefixes of a merged window are ranked from each interval's top list, so they may be approximate; totals, countries and ASes are exact."
	d.Countries = TopTable(win, byCountry, "Top countries", "Country", pageTopRows)
	d.ASes = TopTable(win, byAS, "Top origin ASes", "AS", pageTopRows)
	for c := range traffic.Class(traffic.NumClasses) {
		d.Classes = append(d.Classes, classLegend{Class: c.String(), Name: classLabel(c)})
	}

	active, recent := s.src.Alerts()
	alerting := map[string]bool{}
	for _, a := range active {
		alerting[a.List] = true
	}
	if win != nil {
		for _, wc := range win.Watch {
			d.Watch = append(d.Watch, watchView{
				List:  wc.List,
				PktIn: count(wc.Packets[traffic.In], "packets"), PktOut: count(wc.Packets[traffic.Out], "packets"),
				BytesIn: byteCount(wc.Bytes[traffic.In]), BytesOut: byteCount(wc.Bytes[traffic.Out]),
				Alerting: alerting[wc.List],
			})
		}
	}
	d.Active, d.ActiveCount = alertViews(active, now), len(active)
	d.Recent, d.RecentCount = alertViews(recent, now), len(recent)
	return d
}

func orDash(s string) string {
	if s == "" {
		return "–"
	}
	return s
}

func (d *pageData) health(h Health, latest *summary.Summary, now time.Time) {
	if latest != nil {
		sec := latest.End.Sub(latest.Start).Seconds()
		p, b := rates(latest)
		d.Live = &liveView{
			PPSIn: pps(p[traffic.In], latest.Remote.Packets[traffic.In], sec), PPSOut: pps(p[traffic.Out], latest.Remote.Packets[traffic.Out], sec),
			BPSIn: bps(b[traffic.In], latest.Remote.Bytes[traffic.In], sec), BPSOut: bps(b[traffic.Out], latest.Remote.Bytes[traffic.Out], sec),
			Interval: dur(latest.End.Sub(latest.Start)), End: clockTime(latest.End),
			Tunnel: num{Text: fmtPercent(latest.Remote.Class[traffic.Tunnel], latest.Remote.Total()),
				Title: fmt.Sprintf("%s of %s packets", groupDigits(latest.Remote.Class[traffic.Tunnel]), groupDigits(latest.Remote.Total()))},
		}
	}

	inv := invariantView{OK: h.Invariant == nil, Status: "ok", Scope: "since start"}
	g, remote := h.Totals, h.Remote.Total()
	if latest != nil {
		g, remote, inv.Scope = latest.Globals, latest.Remote.Total(), "last interval"
	}
	if !inv.OK {
		inv.Status, inv.Error = "bad", h.Invariant.Error()
	}
	inv.Seen, inv.Remote = count(g.Seen, "packets"), count(remote, "packets")
	inv.Buckets = num{Text: groupDigits(g.Buckets()), Title: fmt.Sprintf("non-IP %s, malformed %s, both local %s, neither local %s, overflow %s",
		groupDigits(g.NonIP), groupDigits(g.Malformed), groupDigits(g.BothLocal), groupDigits(g.NeitherLocal), groupDigits(g.Overflow))}
	d.Invariant = inv

	dr := drainView{Interval: dur(h.DrainInterval), Duration: dur(h.DrainDuration), Last: when(h.LastDrain), Status: "ok"}
	if h.LastDrain.IsZero() {
		dr.Never, dr.Status = true, "warn"
	} else {
		lag := now.Sub(h.LastDrain)
		dr.Lag = num{Text: fmtDuration(lag.Round(100 * time.Millisecond)), Title: "now − last drain = " + lag.String()}
		switch iv := max(h.DrainInterval, time.Second); {
		case lag > 5*iv:
			dr.Status = "bad"
		case lag > 2*iv:
			dr.Status = "warn"
		}
	}
	d.Drain = dr

	st := storeView{Status: "ok", Size: num{Text: fmtIEC(h.Store.Size), Title: groupDigits(uint64(max(h.Store.Size, 0))) + " bytes"},
		Evicted: count(h.Store.Evicted, "summaries evicted"), Path: h.Store.Path, Recovered: h.Store.Recovered}
	if h.Store.MaxSize > 0 {
		st.HasMax = true
		st.Max = num{Text: fmtIEC(h.Store.MaxSize), Title: groupDigits(uint64(h.Store.MaxSize)) + " bytes"}
		st.Percent = min(100, float64(h.Store.Size)/float64(h.Store.MaxSize)*100)
		if st.Percent >= 90 {
			st.Status = "warn"
		}
	}
	if h.Store.Recovered != "" {
		st.Status = "warn"
	}
	if h.Store.UnstoredDropped > 0 {
		st.Dropped = count(h.Store.UnstoredDropped, "intervals given up: their counts are lost")
		st.Status = "bad"
	}
	if h.Store.WriteError != "" {
		st.WriteError = "writes fail since " + h.Store.WriteErrorSince.UTC().Format("2006-01-02 15:04:05Z") + ": " + h.Store.WriteError
		st.Unstored = count(uint64(max(h.Store.Unstored, 0)), "intervals held in memory until the store takes them")
		st.Status = "bad"
	}
	d.Store = st

	up := uplinkView{State: h.Uplink.State, Outbox: count(uint64(max(h.Uplink.Outbox, 0)), "summaries waiting")}
	switch h.Uplink.State {
	case "connected":
		up.Status = "ok"
	case "", "disabled":
		up.Status = "muted"
		if up.State == "" {
			up.State = "disabled"
		}
	default:
		up.Status = "warn"
	}
	d.Uplink = up

	for _, i := range h.Interfaces {
		v := interfaceView{Name: i.Name, Mode: i.Mode, State: i.State, Err: i.Err, Status: "bad"}
		switch i.State {
		case Attached:
			v.Status = "ok"
		case "down":
			v.Status = "warn"
		}
		d.Interfaces = append(d.Interfaces, v)
	}

	var last traffic.Globals
	if latest != nil {
		last = latest.Globals
	}
	lastRemote := uint64(0)
	if latest != nil {
		lastRemote = latest.Remote.Total()
	}
	// alarm is the share of the packets seen above which a bucket is a
	// problem: any overflow loses keys; a little malformed traffic is normal.
	bucket := func(name, help string, l, c uint64, alarm float64) bucketView {
		b := bucketView{Name: name, Help: help, Last: count(l, "packets"), Cumulative: count(c, "packets")}
		if alarm >= 0 && (percent(l, last.Seen) > alarm || percent(c, h.Totals.Seen) > alarm) {
			b.Status = "warn"
		}
		if latest == nil {
			b.Last = num{Text: "–", Title: "no interval yet"}
		}
		return b
	}
	t := h.Totals
	d.Buckets = []bucketView{
		bucket("Seen", "every packet the program saw", last.Seen, t.Seen, -1),
		bucket("Remote", "counted under a remote prefix", lastRemote, h.Remote.Total(), -1),
		bucket("Non-IP", "not IPv4/IPv6, or more than two VLAN tags", last.NonIP, t.NonIP, -1),
		bucket("Malformed", "truncated or invalid headers", last.Malformed, t.Malformed, 0.1),
		bucket("Both local", "both addresses in the local prefixes", last.BothLocal, t.BothLocal, -1),
		bucket("Neither local", "transit: neither address local", last.NeitherLocal, t.NeitherLocal, -1),
		bucket("Overflow", "the remote key did not fit in the counter map: keys lost", last.Overflow, t.Overflow, 0),
	}
}

func classLabel(c traffic.Class) string {
	switch c {
	case traffic.TCP:
		return "TCP"
	case traffic.UDP:
		return "UDP"
	case traffic.ICMP:
		return "ICMP"
	case traffic.Tunnel:
		return "Tunnel/VPN"
	}
	return "Other"
}

// TopTable is the table of the top prefixes ("prefix"), countries
// ("country") or origin ASes ("as") of a window, at most rows of them, as
// the "top" template of parts.html draws it. w may be nil (no data).
func TopTable(w *summary.Summary, by, title, keyName string, rows int) TopView {
	t := TopView{Title: title, KeyName: keyName}
	items, all, other := topItems(w, by, dirBoth, rows)
	for i, it := range items {
		r := row(it.Counters, all)
		r.Rank = i + 1
		switch by {
		case byPrefix:
			r.Key, r.KeyTitle = it.Prefix.String(), prefixTitle(it.Prefix)
			r.Country, r.ASN, r.ASName = api.CountryLabel(it.Country), api.ASLabel(it.ASN), it.ASName
			r.UnknownCountry, r.UnknownAS = it.Country == "", it.ASN == 0
		case byCountry:
			r.Key, r.KeyTitle = api.CountryLabel(it.Country), "country "+api.CountryLabel(it.Country)
			r.UnknownCountry = it.Country == ""
		case byAS:
			r.Key, r.KeyTitle = api.ASLabel(it.ASN), api.ASLabel(it.ASN)
			r.ASName, r.UnknownAS = it.ASName, it.ASN == 0
			if it.ASN == 0 {
				r.ASName = "no table knows the origin AS"
			}
		}
		r.ASTitle = strings.TrimSpace(r.ASN + " " + r.ASName)
		t.Rows = append(t.Rows, r)
	}
	if other.Total() > 0 {
		o := row(other, all)
		o.Key = "all others"
		t.Other = &o
	}
	t.Total = row(all, all)
	t.Total.Key = "total"
	return t
}

func prefixTitle(p netip.Prefix) string {
	if p.Addr().Is4() {
		return fmt.Sprintf("%s: %s IPv4 addresses", p, groupDigits(1<<(32-p.Bits())))
	}
	if 128-p.Bits() < 64 {
		return fmt.Sprintf("%s: %s IPv6 addresses", p, groupDigits(1<<(128-p.Bits())))
	}
	return fmt.Sprintf("%s: 2^%d IPv6 addresses", p, 128-p.Bits())
}

// row is the counters of a table row, with its share of all.
func row(c, all traffic.Counters) rowView {
	r := rowView{
		PktIn: count(c.Packets[traffic.In], "packets"), PktOut: count(c.Packets[traffic.Out], "packets"),
		BytesIn: byteCount(c.Bytes[traffic.In]), BytesOut: byteCount(c.Bytes[traffic.Out]),
		Share: num{Text: fmtPercent(c.Total(), all.Total()),
			Title: fmt.Sprintf("%s of %s packets", groupDigits(c.Total()), groupDigits(all.Total()))},
		ShareWidth: strconv.FormatFloat(percent(c.Total(), all.Total()), 'f', 2, 64),
		NoTunnel:   c.Class[traffic.Tunnel] == 0,
		Tunnel: num{Text: fmtPercent(c.Class[traffic.Tunnel], c.Total()),
			Title: fmt.Sprintf("%s of %s packets are tunnel/VPN (GRE, ESP/AH, IP-in-IP, WireGuard, OpenVPN, IKE)", groupDigits(c.Class[traffic.Tunnel]), groupDigits(c.Total()))},
	}
	var classTotal uint64
	for _, v := range c.Class {
		classTotal += v
	}
	x := 0.0
	for cl := range traffic.Class(traffic.NumClasses) {
		v := c.Class[cl]
		if v == 0 {
			continue
		}
		w := percent(v, classTotal)
		r.Classes = append(r.Classes, classSegment{
			Class: cl.String(), X: strconv.FormatFloat(x, 'f', 2, 64), W: strconv.FormatFloat(w, 'f', 2, 64),
			Title: fmt.Sprintf("%s %s (%s packets)", classLabel(cl), fmtPercent(v, classTotal), groupDigits(v)),
		})
		x += w
	}
	return r
}

func alertViews(as []Alert, now time.Time) []alertView {
	var out []alertView
	for i, a := range as {
		if i == pageAlertRows {
			break
		}
		end := a.End
		v := alertView{
			ID: a.ID, List: a.List, Reason: a.Reason, Start: minute(a.Start),
			PeakPPS: num{Text: fmtPPS(a.PeakPPS), Title: groupFloat(a.PeakPPS) + " packets/s"},
			PeakBPS: num{Text: fmtBPS(a.PeakBPS), Title: groupFloat(a.PeakBPS) + " bits/s"},
			Packets: count(a.Packets, "packets"), Bytes: byteCount(a.Bytes),
		}
		if end.IsZero() {
			end = now
			v.End = num{Text: "active", Title: "still active"}
		} else {
			v.End = minute(a.End)
		}
		v.Duration = dur(end.Sub(a.Start).Truncate(time.Second))
		for j, p := range a.Prefixes {
			if j == 3 {
				v.More = len(a.Prefixes) - 3
				break
			}
			v.Prefixes = append(v.Prefixes, p.String())
		}
		out = append(out, v)
	}
	return out
}
