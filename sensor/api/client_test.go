package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/peerwatch/peerwatch/sensor/api"
)

// fixtures are answers of sensor/web's test fixture, kept with sensorctl's
// tests.
const fixtures = "../ctl/testdata"

func readFixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(fixtures, name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The types read and write the API's JSON byte for byte: decoding an answer
// and encoding it again gives the same text.
func TestRoundTrip(t *testing.T) {
	for name, v := range map[string]func() any{
		"status":             func() any { return new(api.Status) },
		"status-fresh":       func() any { return new(api.Status) },
		"status-broken":      func() any { return new(api.Status) },
		"status-store-fault": func() any { return new(api.Status) },
		"lookup-in-top":      func() any { return new(api.Lookup) },
		"lookup-labels-only": func() any { return new(api.Lookup) },
		"lookup-unknown":     func() any { return new(api.Lookup) },
		"alerts":             func() any { return new(api.Alerts) },
		"alerts-none":        func() any { return new(api.Alerts) },
	} {
		raw := bytes.TrimSpace(readFixture(t, name))
		dst := v()
		if err := json.Unmarshal(raw, dst); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if again, _ := json.Marshal(dst); !bytes.Equal(again, raw) {
			t.Errorf("%s: encoded again\n%s\nwant\n%s", name, again, raw)
		}
	}
	for _, name := range []string{"top-prefix", "top-country", "top-as-in", "top-fresh"} {
		raw := bytes.TrimSpace(readFixture(t, name))
		top, err := api.DecodeTop(raw)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if again, _ := json.Marshal(top); !bytes.Equal(again, raw) {
			t.Errorf("%s: encoded again\n%s\nwant\n%s", name, again, raw)
		}
	}
}

func TestDecodeTop(t *testing.T) {
	top, err := api.DecodeTop(readFixture(t, "top-country"))
	if err != nil {
		t.Fatal(err)
	}
	rows := top.CountryRows()
	if len(rows) != 5 || rows[0].Country != "US" || rows[0].PacketsIn != 2705476195 || top.PrefixRows() != nil || top.ASRows() != nil {
		t.Errorf("country rows %+v", top.Rows)
	}
	top, err = api.DecodeTop(readFixture(t, "top-prefix"))
	if err != nil {
		t.Fatal(err)
	}
	if p := top.PrefixRows(); len(p) != 5 || p[0].Prefix != netip.MustParsePrefix("142.250.0.0/15") || p[0].ASN != 15169 || p[0].Counters.Packets() != 1555188689+438642966 {
		t.Errorf("prefix rows %+v", top.Rows)
	}
	top, err = api.DecodeTop(readFixture(t, "top-fresh"))
	if err != nil || !top.NoData || top.CountryRows() == nil || len(top.CountryRows()) != 0 {
		t.Errorf("fresh: %v %+v", err, top)
	}
	if _, err := api.DecodeTop([]byte(`{"by":"city","rows":[]}`)); err == nil || err.Error() != `by: "city" is not prefix, country or as` {
		t.Errorf("unknown by: %v", err)
	}
	if _, err := api.DecodeTop([]byte(`{"by":"as","rows":[{"asn":"x"}]}`)); err == nil || !strings.HasPrefix(err.Error(), "rows: ") {
		t.Errorf("bad rows: %v", err)
	}
}

func TestCounters(t *testing.T) {
	c := api.Counters{PacketsIn: 3, PacketsOut: 4, BytesIn: 100, BytesOut: 50}
	if c.Packets() != 7 || c.Bytes() != 150 || c.PacketsTo("in") != 3 || c.PacketsTo("out") != 4 || c.PacketsTo("both") != 7 {
		t.Errorf("%+v", c)
	}
}

// sensor is a fake sensord: it answers the fixtures and records the
// requests.
func sensor(t *testing.T, auth bool) (*httptest.Server, *[]*http.Request) {
	var reqs []*http.Request
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reqs = append(reqs, r)
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		if u, p, ok := r.BasicAuth(); auth && (!ok || u != "noc" || p != "pw") {
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprintln(w, `{"error":"authentication required"}`)
			return
		}
		name := map[string]string{
			"/api/v1/status": "status", "/api/v1/top": "top-country", "/api/v1/lookup": "lookup-in-top", "/api/v1/alerts": "alerts",
			"/prefix/api/v1/status": "status-fresh",
		}[r.URL.Path]
		switch {
		case r.URL.Path == "/api/v1/series":
			fmt.Fprintln(w, `{"key":"country:KP","level":"1m","from":"2026-03-14T11:57:00Z","to":"2026-03-14T12:00:00Z","step_seconds":60,"points":[{"t":"2026-03-14T11:57:00Z","seconds":60,"packets_in":87222,"packets_out":106601,"bytes_in":45355440,"bytes_out":51168480}]}`)
		case r.URL.Query().Get("window") == "5x":
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprintln(w, `{"error":"window: \"5x\" is not a duration"}`)
		case name == "":
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprintf(w, `{"error":"no such endpoint: %s"}`+"\n", r.URL.Path)
		default:
			_, _ = w.Write(readFixture(t, name))
		}
	}))
	t.Cleanup(srv.Close)
	return srv, &reqs
}

func TestClient(t *testing.T) {
	srv, reqs := sensor(t, true)
	c := &api.Client{BaseURL: srv.URL + "/", User: "noc", Password: "pw"}
	ctx := context.Background()

	st, err := c.Status(ctx)
	if err != nil || st.Sensor != "akl-ix-01" || len(st.Interfaces) != 3 || st.Latest == nil || st.Latest.PPS.In != 1225437.2 {
		t.Fatalf("status: %v %+v", err, st)
	}
	top, err := c.Top(ctx, "country", "1h", "both", 5)
	if err != nil || len(top.CountryRows()) != 5 {
		t.Fatalf("top: %v %+v", err, top)
	}
	l, err := c.Lookup(ctx, netip.MustParseAddr("175.45.177.10"))
	if err != nil || !l.InTop || l.Labels == nil || l.Labels.ASN != 131279 || l.Counters == nil || l.Counters.PacketsIn != 5176291 {
		t.Fatalf("lookup: %v %+v", err, l)
	}
	from := time.Date(2026, 3, 14, 11, 57, 0, 0, time.UTC)
	s, err := c.Series(ctx, "country:KP", "1m", from, time.Time{})
	if err != nil || len(s.Points) != 1 || s.Points[0].PacketsOut != 106601 || s.StepSeconds != 60 {
		t.Fatalf("series: %v %+v", err, s)
	}
	a, err := c.Alerts(ctx)
	if err != nil || len(a.Active) != 1 || a.Active[0].End != nil || len(a.Recent) != 2 || a.Recent[0].End == nil {
		t.Fatalf("alerts: %v %+v", err, a)
	}

	var got []string
	for _, r := range *reqs {
		got = append(got, r.Method+" "+r.URL.RequestURI())
	}
	want := []string{
		"GET /api/v1/status",
		"GET /api/v1/top?by=country&direction=both&limit=5&window=1h",
		"GET /api/v1/lookup?addr=175.45.177.10",
		"GET /api/v1/series?from=2026-03-14T11%3A57%3A00Z&key=country%3AKP&level=1m",
		"GET /api/v1/alerts",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("requests\n%q\nwant\n%q", got, want)
	}
	// Empty parameters are the sensor's defaults.
	*reqs = nil
	if _, err := c.Top(ctx, "", "", "", 0); err != nil {
		t.Fatal(err)
	}
	if q := (*reqs)[0].URL.RawQuery; q != "" {
		t.Errorf("top with defaults asked %q", q)
	}

	// A base URL with a path keeps it.
	c2 := &api.Client{BaseURL: srv.URL + "/prefix", User: "noc", Password: "pw"}
	if st, err := c2.Status(ctx); err != nil || st.Sensor != "lab-1" {
		t.Errorf("base URL with a path: %v %+v", err, st)
	}
}

func TestClientErrors(t *testing.T) {
	srv, _ := sensor(t, true)
	ctx := context.Background()
	var he *api.HTTPError

	_, err := (&api.Client{BaseURL: srv.URL}).Status(ctx)
	if !errors.As(err, &he) || he.StatusCode != 401 || he.Message != "authentication required" || he.Status != "401 Unauthorized" {
		t.Errorf("no account: %v", err)
	}
	if want := "GET " + srv.URL + "/api/v1/status: 401 Unauthorized: authentication required"; err == nil || err.Error() != want {
		t.Errorf("error text %v, want %s", err, want)
	}
	c := &api.Client{BaseURL: srv.URL, User: "noc", Password: "pw"}
	_, err = c.Top(ctx, "prefix", "5x", "", 0)
	if !errors.As(err, &he) || he.StatusCode != 400 || he.Message != `window: "5x" is not a duration` {
		t.Errorf("bad window: %v", err)
	}
	_, err = (&api.Client{BaseURL: srv.URL + "/nope", User: "noc", Password: "pw"}).Alerts(ctx)
	if !errors.As(err, &he) || he.StatusCode != 404 || he.Message != "no such endpoint: /nope/api/v1/alerts" {
		t.Errorf("wrong base: %v", err)
	}
	if _, err := c.Lookup(ctx, netip.Addr{}); err == nil {
		t.Error("lookup of no address: no error")
	}
	for _, base := range []string{"", "127.0.0.1:9100", "ftp://sensor", "http://"} {
		if _, err := (&api.Client{BaseURL: base}).Status(ctx); err == nil || !strings.HasPrefix(err.Error(), "sensor address ") {
			t.Errorf("base %q: %v", base, err)
		}
	}

	// Answers that are not the API's.
	html := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		if r.URL.Path == "/api/v1/alerts" {
			w.WriteHeader(http.StatusBadGateway)
		}
		fmt.Fprint(w, "<html>Bad Gateway</html>\nmore")
	}))
	defer html.Close()
	_, err = (&api.Client{BaseURL: html.URL}).Alerts(ctx)
	if !errors.As(err, &he) || he.StatusCode != 502 || he.Message != "<html>Bad Gateway</html>" {
		t.Errorf("a proxy's error page: %v", err)
	}
	if _, err := (&api.Client{BaseURL: html.URL}).Status(ctx); err == nil || !strings.Contains(err.Error(), "not JSON") {
		t.Errorf("an HTML page: %v", err)
	}
}
