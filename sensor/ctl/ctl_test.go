package ctl

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// now is the tests' clock; the fixtures were answered at this time.
var now = time.Date(2026, 3, 14, 12, 0, 0, 0, time.UTC)

// fixtureAPI serves the JSON files of testdata, which sensor/web's test
// fixture answered: routes maps a request ("top?by=country&…", the query
// sorted) to a file's name without ".json".
type fixtureAPI struct {
	*httptest.Server
	mu       sync.Mutex
	routes   map[string]string
	requests []string
}

func newFixtureAPI(t *testing.T, routes map[string]string) *fixtureAPI {
	t.Helper()
	f := &fixtureAPI{routes: routes}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req := strings.TrimPrefix(r.URL.Path, "/api/v1/")
		if q := r.URL.Query().Encode(); q != "" {
			req += "?" + q
		}
		f.mu.Lock()
		f.requests = append(f.requests, req)
		name, ok := f.routes[req]
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprintf(w, `{"error":"the test serves no %s"}`+"\n", req)
			return
		}
		b, err := os.ReadFile(filepath.Join("testdata", name+".json"))
		if err != nil {
			t.Error(err)
		}
		_, _ = w.Write(b)
	}))
	t.Cleanup(f.Close)
	return f
}

// result is what one run of sensorctl printed and returned.
type result struct {
	stdout, stderr string
	err            error
}

func (r result) code() int { return ExitCode(r.err) }

// run runs sensorctl with args and a fixed environment.
func run(t *testing.T, env Env, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	env.Stdout, env.Stderr = &stdout, &stderr
	if env.Getenv == nil {
		env.Getenv = func(string) string { return "" }
	}
	if env.Now == nil {
		env.Now = func() time.Time { return now }
	}
	if env.Kill == nil {
		env.Kill = func(pid int, sig syscall.Signal) error {
			return fmt.Errorf("the test sends no signals (pid %d, %v)", pid, sig)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := Run(ctx, args, env)
	return result{stdout.String(), stderr.String(), err}
}

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to write it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (go test -update rewrites it):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

func TestOutput(t *testing.T) {
	api := newFixtureAPI(t, map[string]string{
		"status": "status",
		"top?by=prefix&direction=both&limit=20&window=1h": "top-prefix",
		"top?by=country&direction=both&limit=5&window=1h": "top-country",
		"top?by=as&direction=in&limit=5&window=24h":       "top-as-in",
		"lookup?addr=175.45.177.10&window=1h":             "lookup-in-top",
		"lookup?addr=210.52.109.9&window=1h":              "lookup-labels-only",
		"lookup?addr=192.0.2.1&window=1h":                 "lookup-unknown",
		"alerts":                                          "alerts",
	})
	for _, tc := range []struct {
		golden string
		args   []string
	}{
		{"status.txt", []string{"status"}},
		{"top-prefix.txt", []string{"top"}},
		{"top-country.txt", []string{"top", "--by", "country", "--limit", "5"}},
		{"top-as-in.txt", []string{"top", "--by=as", "--direction=in", "--window", "24h", "--limit=5"}},
		{"lookup-in-top.txt", []string{"lookup", "175.45.177.10"}},
		{"lookup-labels-only.txt", []string{"lookup", "210.52.109.9"}},
		{"lookup-unknown.txt", []string{"lookup", "192.0.2.1"}},
		{"alerts.txt", []string{"alerts"}},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			r := run(t, Env{}, append([]string{"--addr", api.URL}, tc.args...)...)
			if r.err != nil || r.stderr != "" {
				t.Fatalf("%v: %v; stderr %q", tc.args, r.err, r.stderr)
			}
			golden(t, tc.golden, r.stdout)
		})
	}
}

// A sensor that has just started, one whose invariant broke, and one whose
// store refuses writes.
func TestOutputStates(t *testing.T) {
	for _, tc := range []struct {
		fixture string
		args    []string
		route   string
	}{
		{"status-fresh", []string{"status"}, "status"},
		{"status-broken", []string{"status"}, "status"},
		{"status-store-fault", []string{"status"}, "status"},
		{"top-fresh", []string{"top", "--by", "country"}, "top?by=country&direction=both&limit=20&window=1h"},
		{"alerts-none", []string{"alerts"}, "alerts"},
	} {
		t.Run(tc.fixture, func(t *testing.T) {
			api := newFixtureAPI(t, map[string]string{tc.route: tc.fixture})
			r := run(t, Env{}, append([]string{"--addr", api.URL}, tc.args...)...)
			if r.err != nil {
				t.Fatal(r.err)
			}
			golden(t, tc.fixture+".txt", r.stdout)
		})
	}
}

// --json prints the API's JSON as received, indented: same keys, same
// order, same numbers.
func TestJSON(t *testing.T) {
	api := newFixtureAPI(t, map[string]string{
		"status": "status",
		"top?by=country&direction=both&limit=5&window=1h": "top-country",
		"lookup?addr=210.52.109.9&window=1h":              "lookup-labels-only",
		"alerts":                                          "alerts",
	})
	for fixture, args := range map[string][]string{
		"status":             {"--json", "status"},
		"top-country":        {"top", "--by", "country", "--limit", "5", "--json"},
		"lookup-labels-only": {"lookup", "210.52.109.9", "--json"},
		"alerts":             {"alerts", "--json=true"},
	} {
		r := run(t, Env{}, append([]string{"--addr", api.URL}, args...)...)
		if r.err != nil {
			t.Fatalf("%v: %v", args, r.err)
		}
		raw, err := os.ReadFile(filepath.Join("testdata", fixture+".json"))
		if err != nil {
			t.Fatal(err)
		}
		var want bytes.Buffer
		if err := json.Indent(&want, bytes.TrimSpace(raw), "", "  "); err != nil {
			t.Fatal(err)
		}
		want.WriteByte('\n')
		if r.stdout != want.String() {
			t.Errorf("%v:\n%s\nwant\n%s", args, r.stdout, want.String())
		}
	}
}

// The flags become the API's parameters, wherever they are on the line.
func TestFlagsToQuery(t *testing.T) {
	api := newFixtureAPI(t, nil)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"top"}, "top?by=prefix&direction=both&limit=20&window=1h"},
		{[]string{"--json", "top", "--by", "as", "--window", "7d", "--direction", "out", "--limit", "3"}, "top?by=as&direction=out&limit=3&window=7d"},
		{[]string{"lookup", "2001:db8::1", "--window", "15m"}, "lookup?addr=2001%3Adb8%3A%3A1&window=15m"},
		{[]string{"lookup", "--", "::ffff:192.0.2.1"}, "lookup?addr=%3A%3Affff%3A192.0.2.1&window=1h"},
		{[]string{"status", "--json"}, "status"},
		{[]string{"alerts"}, "alerts"},
		{[]string{"--", "alerts"}, "alerts"},
	} {
		api.mu.Lock()
		api.requests = nil
		api.mu.Unlock()
		r := run(t, Env{}, append([]string{"--addr", api.URL}, tc.args...)...)
		api.mu.Lock()
		got := api.requests
		api.mu.Unlock()
		if len(got) != 1 || got[0] != tc.want {
			t.Errorf("%v: asked %q, want %q (%v)", tc.args, got, tc.want, r.err)
		}
	}
}

func TestAddr(t *testing.T) {
	api := newFixtureAPI(t, map[string]string{"status": "status"})
	hostPort := strings.TrimPrefix(api.URL, "http://")
	for name, env := range map[string]Env{
		"from $PEERWATCH_ADDR":   {Getenv: func(k string) string { return map[string]string{AddrEnv: api.URL}[k] }},
		"without a scheme":       {Getenv: func(k string) string { return map[string]string{AddrEnv: hostPort + "/"}[k] }},
		"--addr before $default": {Getenv: func(k string) string { return map[string]string{AddrEnv: "http://192.0.2.1:1"}[k] }},
	} {
		args := []string{"status"}
		if strings.HasPrefix(name, "--addr") {
			args = []string{"status", "--addr", hostPort}
		}
		if r := run(t, env, args...); r.err != nil || !strings.Contains(r.stdout, "akl-ix-01") {
			t.Errorf("%s: %v %q", name, r.err, r.stdout)
		}
	}
}

// Errors are one line that says what failed; the command failed: exit 1.
func TestErrors(t *testing.T) {
	// A port with nothing behind it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()

	answer := func(code int, contentType, body string) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", contentType)
			w.WriteHeader(code)
			fmt.Fprint(w, body)
		}))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	badRequest := answer(http.StatusBadRequest, "application/json; charset=utf-8", `{"error":"window: 800d is more than 730 days"}`+"\n")
	unauthorized := answer(http.StatusUnauthorized, "application/json; charset=utf-8", `{"error":"authentication required"}`+"\n")
	failing := answer(http.StatusInternalServerError, "application/json; charset=utf-8",
		`{"error":"read the last interval: store: database is closed"}`+"\n")
	notFound := answer(http.StatusNotFound, "application/json; charset=utf-8", `{"error":"no such endpoint: /api/v1/alerts"}`+"\n")
	proxy := answer(http.StatusBadGateway, "text/html", "<html><body>502 Bad Gateway</body></html>\n")
	notJSON := answer(http.StatusOK, "text/html; charset=utf-8", "<html>a router's login page</html>")
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}))
	t.Cleanup(slow.Close)

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--addr", closed, "status"},
			"cannot reach sensord at " + closed + ": connection refused (is sensord running? see --addr)"},
		{[]string{"--addr", closed, "top", "--json"},
			"cannot reach sensord at " + closed + ": connection refused (is sensord running? see --addr)"},
		{[]string{"--addr", slow.URL, "--timeout", "100ms", "alerts"},
			"cannot reach sensord at " + slow.URL + ": no answer within 100ms (see --timeout) (is sensord running? see --addr)"},
		{[]string{"--addr", badRequest, "top", "--window", "700d"},
			"sensord refused the request: window: 800d is more than 730 days (400 Bad Request)"},
		{[]string{"--addr", unauthorized, "status"},
			"sensord at " + unauthorized + " refused the request: authentication required (401 Unauthorized; see --user and --password-file)"},
		{[]string{"--addr", unauthorized, "--user", "noc", "status", "--json"},
			"sensord at " + unauthorized + " refused the request: authentication required (401 Unauthorized; check --user and --password-file against sensord's http.basic_auth)"},
		{[]string{"--addr", failing, "status"},
			"sensord at " + failing + " failed: read the last interval: store: database is closed (500 Internal Server Error; see its log)"},
		{[]string{"--addr", notFound, "alerts"},
			"sensord at " + notFound + " does not serve /api/v1/alerts: no such endpoint: /api/v1/alerts (404 Not Found; is --addr a peerwatch sensor of this version?)"},
		{[]string{"--addr", proxy, "status"},
			"sensord at " + proxy + " failed: <html><body>502 Bad Gateway</body></html> (502 Bad Gateway; see its log)"},
		{[]string{"--addr", notJSON, "status"},
			`GET ` + notJSON + `/api/v1/status: the answer is "text/html; charset=utf-8", not JSON: is this a peerwatch sensor?`},
		{[]string{"--addr", closed, "version"},
			"cannot reach sensord at " + closed + ": connection refused (is sensord running? see --addr)"},
		{[]string{"--addr", closed, "--password-file", "/nonexistent/pw", "status"},
			"read the password file: open /nonexistent/pw: no such file or directory"},
	} {
		r := run(t, Env{}, tc.args...)
		if r.err == nil || r.err.Error() != tc.want || r.code() != 1 {
			t.Errorf("%v: exit %d, %v\nwant exit 1, %s", tc.args, r.code(), r.err, tc.want)
		}
		if strings.Contains(r.err.Error(), "\n") {
			t.Errorf("%v: a message of more than one line: %q", tc.args, r.err)
		}
	}
}

// Basic auth: --user and the password in --password-file.
func TestBasicAuth(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		if u, p, ok := r.BasicAuth(); !ok || u != "noc" || p != "s3cret pass" {
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprintln(w, `{"error":"authentication required"}`)
			return
		}
		b, _ := os.ReadFile(filepath.Join("testdata", "alerts-none.json"))
		_, _ = w.Write(b)
	}))
	defer srv.Close()
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("s3cret pass\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := run(t, Env{}, "--addr", srv.URL, "--user", "noc", "--password-file", pw, "alerts")
	if r.err != nil || r.stdout != "no alerts: none active, none recent\n" {
		t.Errorf("with the account: %v %q", r.err, r.stdout)
	}
	if r := run(t, Env{}, "--addr", srv.URL, "alerts"); r.code() != 1 || !strings.Contains(r.err.Error(), "401 Unauthorized") {
		t.Errorf("without: %v", r.err)
	}
}

// A command line that sensorctl does not understand: exit 2, one line
// naming the command and where its help is, nothing sent.
func TestUsageErrors(t *testing.T) {
	api := newFixtureAPI(t, nil)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "no command given (see sensorctl --help)"},
		{[]string{"stats"}, `"stats" is not a command: want status, top, lookup, alerts, reload, doctor, version (see sensorctl --help)`},
		{[]string{"--bogus", "status"}, "flag provided but not defined: -bogus (see sensorctl --help)"},
		{[]string{"status", "--bogus"}, "status: flag provided but not defined: -bogus (see sensorctl status --help)"},
		{[]string{"status", "now"}, `status: takes no arguments, got "now" (see sensorctl status --help)`},
		{[]string{"top", "--by", "city"}, `top: --by: "city" is not prefix, country or as (see sensorctl top --help)`},
		{[]string{"top", "--direction", "up"}, `top: --direction: "up" is not in, out or both (see sensorctl top --help)`},
		{[]string{"top", "--limit", "0"}, "top: --limit: 0 is not between 1 and 10000 (see sensorctl top --help)"},
		{[]string{"top", "--limit", "ten"}, `top: invalid value "ten" for flag -limit: parse error (see sensorctl top --help)`},
		{[]string{"top", "--window", "5x"}, `top: --window: "5x" is not a duration (like 15m, 6h or 7d) (see sensorctl top --help)`},
		{[]string{"top", "--window", "731d"}, "top: --window: 731d is more than 730 days (see sensorctl top --help)"},
		{[]string{"top", "--window", "-1h"}, "top: --window: -1h is not positive (see sensorctl top --help)"},
		{[]string{"lookup"}, "lookup: missing ADDR (see sensorctl lookup --help)"},
		{[]string{"lookup", "192.0.2.1", "192.0.2.2"}, `lookup: one ADDR only, got "192.0.2.1 192.0.2.2" (see sensorctl lookup --help)`},
		{[]string{"lookup", "999.1.1.1"}, `lookup: "999.1.1.1" is not an IPv4 or IPv6 address (see sensorctl lookup --help)`},
		{[]string{"lookup", "fe80::1%eth0"}, `lookup: "fe80::1%eth0" is not an IPv4 or IPv6 address (see sensorctl lookup --help)`},
		{[]string{"--addr", "ftp://sensor", "status"}, `status: --addr: "ftp://sensor" is not an http:// or https:// address like http://127.0.0.1:9100 (see sensorctl status --help)`},
		{[]string{"--timeout", "0s", "alerts"}, "alerts: --timeout: 0s is not positive (see sensorctl alerts --help)"},
		{[]string{"help", "nope"}, `help: "nope" is not a command: want status, top, lookup, alerts, reload, doctor, version (see sensorctl --help)`},
	} {
		args := tc.args
		if len(args) > 0 && !strings.HasPrefix(strings.Join(args, " "), "--addr") {
			args = append([]string{"--addr", api.URL}, args...)
		}
		r := run(t, Env{}, args...)
		if r.code() != 2 || r.err == nil || r.err.Error() != tc.want {
			t.Errorf("%q: exit %d, %v\nwant exit 2, %s", tc.args, r.code(), r.err, tc.want)
		}
	}
	api.mu.Lock()
	defer api.mu.Unlock()
	if len(api.requests) > 0 {
		t.Errorf("usage errors sent requests: %q", api.requests)
	}
}

// --help, for sensorctl and each command, goes to stdout and exits 0.
func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}} {
		r := run(t, Env{}, args...)
		if r.err != nil || !strings.HasPrefix(r.stdout, "Usage: sensorctl [flags] COMMAND") || !strings.Contains(r.stdout, "  reload  ") {
			t.Errorf("%v: %v\n%s", args, r.err, r.stdout)
		}
	}
	for _, c := range commands {
		for _, args := range [][]string{{c.name, "--help"}, {"help", c.name}, {"--json", c.name, "-h"}} {
			r := run(t, Env{}, args...)
			if r.err != nil || !strings.HasPrefix(r.stdout, "Usage: sensorctl "+c.name+" [flags]") ||
				!strings.Contains(r.stdout, "--addr string") || r.stderr != "" {
				t.Errorf("%v: %v\n%s", args, r.err, r.stdout)
			}
		}
	}
	r := run(t, Env{}, "top", "--help")
	for _, flag := range []string{"--by string", "--window string", "--direction string", "--limit int", "(default 20)"} {
		if !strings.Contains(r.stdout, flag) {
			t.Errorf("top --help does not mention %s:\n%s", flag, r.stdout)
		}
	}
	if r := run(t, Env{}, "reload", "--help"); !strings.Contains(r.stdout, "--pid-file string") || !strings.Contains(r.stdout, DefaultPidFile) {
		t.Errorf("reload --help:\n%s", r.stdout)
	}
}

func TestVersion(t *testing.T) {
	r := run(t, Env{}, "--version")
	if r.err != nil || !strings.HasPrefix(r.stdout, "sensorctl ") || strings.Count(r.stdout, "\n") != 1 {
		t.Errorf("--version: %v %q", r.err, r.stdout)
	}
	api := newFixtureAPI(t, map[string]string{"status": "status"})
	r = run(t, Env{}, "--addr", api.URL, "version")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if r.err != nil || len(lines) != 2 || !strings.HasPrefix(lines[0], "sensorctl ") ||
		lines[1] != "sensord 0.4.1 on sensor akl-ix-01 (board nanopi-r6s, kernel 6.12.20-arm64) at "+api.URL {
		t.Errorf("version: %v %q", r.err, r.stdout)
	}
	r = run(t, Env{}, "--addr", api.URL, "version", "--json")
	var v map[string]string
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || v["sensord"] != "0.4.1" || v["sensor"] != "akl-ix-01" || v["sensorctl"] == "" {
		t.Errorf("version --json: %v %q", err, r.stdout)
	}
	if r := run(t, Env{}, "--addr", "http://127.0.0.1:1", "version", "--client"); r.err != nil || !strings.HasPrefix(r.stdout, "sensorctl ") {
		t.Errorf("version --client: %v %q", r.err, r.stdout)
	}
}

func TestReload(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "sensord.pid")
	procs := map[int]string{4242: "sensord", 4343: "bash"}
	procName := func(pid int) (string, error) {
		if n, ok := procs[pid]; ok {
			return n, nil
		}
		return "", fmt.Errorf("open /proc/%d/comm: %w", pid, fs.ErrNotExist)
	}
	var sent []string
	kill := func(pid int, sig syscall.Signal) error {
		if pid == 4444 {
			return syscall.EPERM
		}
		sent = append(sent, fmt.Sprintf("%d %v", pid, sig))
		return nil
	}
	env := Env{ProcName: procName, Kill: kill}
	for _, tc := range []struct {
		content string // of the pid file; "" for none
		pid     int
		want    string // the error; "" for success
	}{
		{"4242\n", 4242, ""},
		{"", 0, "no pid file " + pidFile + ": is sensord running? (its pid file is <data_dir>/sensord.pid; see --pid-file)"},
		{"sensord\n", 0, "the pid file " + pidFile + ` holds "sensord", not a process id`},
		{"4141\n", 0, "the pid file " + pidFile + " names pid 4141, which is not running: is sensord running? (the file is stale)"},
		{"4343\n", 0, "the pid file " + pidFile + ` names pid 4343, which is "bash", not sensord: not signalling it (the file is stale)`},
	} {
		os.Remove(pidFile)
		if tc.content != "" {
			if err := os.WriteFile(pidFile, []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		sent = nil
		r := run(t, env, "reload", "--pid-file", pidFile)
		switch {
		case tc.want == "":
			want := fmt.Sprintf("sent SIGHUP to sensord (pid %d): tables and watch lists reload; see its log\n", tc.pid)
			if r.err != nil || r.stdout != want || len(sent) != 1 || sent[0] != fmt.Sprintf("%d hangup", tc.pid) {
				t.Errorf("pid file %q: %v %q, sent %v", tc.content, r.err, r.stdout, sent)
			}
		case r.err == nil || r.err.Error() != tc.want || r.code() != 1 || len(sent) > 0:
			t.Errorf("pid file %q: exit %d, %v, sent %v\nwant exit 1, %s", tc.content, r.code(), r.err, sent, tc.want)
		}
	}
	procs[4444] = "sensord"
	if err := os.WriteFile(pidFile, []byte("4444"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := run(t, env, "reload", "--pid-file", pidFile)
	if want := "send SIGHUP to sensord (pid 4444): operation not permitted (run as root or as sensord's user)"; r.err == nil || r.err.Error() != want {
		t.Errorf("not permitted: %v, want %s", r.err, want)
	}
	if r := run(t, env, "reload", "now"); r.code() != 2 {
		t.Errorf("reload now: exit %d %v", r.code(), r.err)
	}
}

// The real /proc: this test's own process is not sensord.
func TestProcName(t *testing.T) {
	name, err := procName(os.Getpid())
	if err != nil || name == "" {
		t.Fatalf("own process: %q %v", name, err)
	}
	if _, err := procName(1 << 30); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("no such process: %v", err)
	}
	pidFile := filepath.Join(t.TempDir(), "sensord.pid")
	if err := os.WriteFile(pidFile, []byte(fmt.Sprint(os.Getpid())), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := sensordPid(pidFile, procName); err == nil || !strings.Contains(err.Error(), "not sensord") {
		t.Errorf("a pid file naming this test: %v", err)
	}
}
