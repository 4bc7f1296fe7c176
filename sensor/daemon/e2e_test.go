package daemon_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket/layers"

	"github.com/peerwatch/peerwatch/internal/testutil"
	"github.com/peerwatch/peerwatch/sensor/prefixes"
)

// Tier 3: sensord as a process on a veth in a network namespace, real
// traffic from real prefixes, exact counts through the API.

var ipdb, _ = filepath.Abs(filepath.Join("..", "..", "board", "common", "ipdb"))

func getJSON(t *testing.T, c *http.Client, url string, v any) error {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return fmt.Errorf("%s: %s: %s", url, resp.Status, b)
	}
	return json.Unmarshal(b, v)
}

type row struct {
	Country    string       `json:"country"`
	ASN        uint32       `json:"asn"`
	Prefix     netip.Prefix `json:"prefix"`
	PacketsIn  uint64       `json:"packets_in"`
	PacketsOut uint64       `json:"packets_out"`
}

type top struct {
	Rows  []row `json:"rows"`
	Total struct {
		PacketsIn  uint64 `json:"packets_in"`
		PacketsOut uint64 `json:"packets_out"`
	} `json:"total"`
}

func TestNetnsSensord(t *testing.T) {
	testutil.RequireBPF(t)
	if _, err := os.Stat(filepath.Join(ipdb, "asn-ipv4.csv.gz")); err != nil {
		t.Fatalf("the real tables are part of the repository: %v", err)
	}
	dir := t.TempDir()
	sensord := testutil.Build(t, dir, "sensor/cmd/sensord")
	sensorctl := testutil.Build(t, dir, "sensor/cmd/sensorctl")

	peer, sensor := testutil.NewNamespace(t), testutil.NewNamespace(t)
	testutil.Veth(t, peer, "pw-peer", sensor, "pw-sensor")
	from := testutil.NewSender(t, peer, "pw-peer")

	cfg := filepath.Join(dir, "sensord.yaml")
	err := os.WriteFile(cfg, []byte(fmt.Sprintf(`
sensor:
  id: e2e
data_dir: %[1]s
bpffs_dir: %[2]s
interfaces:
  - name: pw-sensor
    hook: xdp
local_prefixes: ["192.0.2.0/24", "2001:db8:1::/48"]
tables:
  - name: country
    format: ip-location-country
    files: [%[3]s/geo-whois-asn-country-ipv4.csv.gz, %[3]s/geo-whois-asn-country-ipv6.csv.gz]
  - name: asn
    format: ip-location-asn
    files: [%[3]s/asn-ipv4.csv.gz, %[3]s/asn-ipv6.csv.gz]
drain:
  interval: 1s
watch_lists:
  - name: kp
    countries: [KP]
    alert:
      any: true
http:
  listen: 127.0.0.1:19100
`, dir, testutil.PinDir(t), ipdb)), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	sd := startSensord(t, sensor, sensord, cfg, dir)
	cmd, exited := sd.cmd, sd.exited

	api := sensor.HTTPClient()
	base := "http://127.0.0.1:19100/api/v1/"
	var status struct {
		Interfaces []struct{ Name, Mode, State string } `json:"interfaces"`
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := getJSON(t, api, base+"status", &status)
		if err == nil && len(status.Interfaces) == 1 && status.Interfaces[0].State == "attached" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sensord not up and attached after 60 s: %v %+v", err, status)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Known traffic from real address space: KP, NZ, CN, US, IPv6 from JP;
	// in and out.
	local4, local6 := netip.MustParseAddr("192.0.2.9"), netip.MustParseAddr("2001:db8:1::9")
	plan := []struct {
		remote  string
		in, out int
	}{
		{"175.45.176.10", 120, 30}, // KP, AS131279
		{"202.36.5.5", 70, 10},     // NZ
		{"1.0.1.7", 40, 0},         // CN
		{"8.8.8.8", 25, 25},        // US, AS15169
		{"2001:200::1", 15, 5},     // JP
	}
	var frames [][]byte
	var sent uint64
	for _, p := range plan {
		remote := netip.MustParseAddr(p.remote)
		local := local4
		if remote.Is6() {
			local = local6
		}
		for range p.in {
			frames = append(frames, testutil.Frame{Src: remote, Dst: local, Proto: layers.IPProtocolTCP, SrcPort: 443, DstPort: 50000}.Bytes(t))
		}
		for range p.out {
			frames = append(frames, testutil.Frame{Src: local, Dst: remote, Proto: layers.IPProtocolUDP, SrcPort: 50000, DstPort: 4500}.Bytes(t))
		}
		sent += uint64(p.in + p.out)
	}
	if err := from.SendPaced(frames, 64); err != nil {
		t.Fatal(err)
	}

	// Expected per country and AS: the sent addresses resolved in the same
	// real tables.
	country, asn := loadTable(t, "ip-location-country", "geo-whois-asn-country"), loadTable(t, "ip-location-asn", "asn")
	wantCountry, wantAS := map[string][2]uint64{}, map[uint32][2]uint64{}
	for _, p := range plan {
		a := netip.MustParseAddr(p.remote)
		c, _ := country.Lookup(a)
		s, _ := asn.Lookup(a)
		w := wantCountry[c.Country]
		wantCountry[c.Country] = [2]uint64{w[0] + uint64(p.in), w[1] + uint64(p.out)}
		w = wantAS[s.ASN]
		wantAS[s.ASN] = [2]uint64{w[0] + uint64(p.in), w[1] + uint64(p.out)}
	}
	if wantCountry["KP"] != [2]uint64{120, 30} || wantAS[131279] != [2]uint64{120, 30} {
		t.Fatalf("the real tables do not place 175.45.176.10 in KP/AS131279: %v %v", wantCountry, wantAS)
	}

	var byCountry top
	deadline = time.Now().Add(20 * time.Second)
	for {
		if err := getJSON(t, api, base+"top?by=country&window=1h&limit=100", &byCountry); err != nil {
			t.Fatal(err)
		}
		if byCountry.Total.PacketsIn+byCountry.Total.PacketsOut >= sent || time.Now().After(deadline) {
			break
		}
		time.Sleep(300 * time.Millisecond)
	}
	if got := byCountry.Total.PacketsIn + byCountry.Total.PacketsOut; got != sent {
		t.Fatalf("sensord counted %d remote packets, %d were sent", got, sent)
	}
	gotCountry := map[string][2]uint64{}
	for _, r := range byCountry.Rows {
		gotCountry[r.Country] = [2]uint64{r.PacketsIn, r.PacketsOut}
	}
	for cc, w := range wantCountry {
		if gotCountry[cc] != w {
			t.Errorf("country %q: counted in/out %v, sent %v", cc, gotCountry[cc], w)
		}
	}
	var byAS top
	if err := getJSON(t, api, base+"top?by=as&window=1h&limit=100", &byAS); err != nil {
		t.Fatal(err)
	}
	gotAS := map[uint32][2]uint64{}
	for _, r := range byAS.Rows {
		gotAS[r.ASN] = [2]uint64{r.PacketsIn, r.PacketsOut}
	}
	for as, w := range wantAS {
		if gotAS[as] != w {
			t.Errorf("AS%d: counted in/out %v, sent %v", as, gotAS[as], w)
		}
	}
	var byPrefix top
	if err := getJSON(t, api, base+"top?by=prefix&window=1h&limit=100", &byPrefix); err != nil {
		t.Fatal(err)
	}
	for _, r := range byPrefix.Rows {
		if r.Prefix.Contains(netip.MustParseAddr("175.45.176.10")) && r.PacketsIn+r.PacketsOut != 150 {
			t.Errorf("prefix %s holding the KP address: %d packets, sent 150", r.Prefix, r.PacketsIn+r.PacketsOut)
		}
	}

	// The watch list "kp" raised an alert.
	var alerts struct {
		Active, Recent []struct {
			List    string `json:"list"`
			Packets uint64 `json:"packets"`
		}
	}
	if err := getJSON(t, api, base+"alerts", &alerts); err != nil {
		t.Fatal(err)
	}
	var kp uint64
	for _, a := range append(alerts.Active, alerts.Recent...) {
		if a.List == "kp" {
			kp += a.Packets
		}
	}
	if kp != 150 {
		t.Errorf("kp alerts carry %d packets, sent 150: %+v", kp, alerts)
	}

	// sensorctl, inside the sensor's namespace, says what the API says.
	ctl := func(args ...string) string {
		t.Helper()
		c := exec.Command("nsenter", append([]string{"--net=/var/run/netns/" + sensor.Name, sensorctl, "--addr", "http://127.0.0.1:19100"}, args...)...)
		var stderr strings.Builder
		c.Stderr = &stderr
		out, err := c.Output()
		if err != nil {
			t.Fatalf("sensorctl %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.String())
		}
		return string(out)
	}
	countries := func(rows []row) map[string][2]uint64 {
		m := map[string][2]uint64{}
		for _, r := range rows {
			m[r.Country] = [2]uint64{r.PacketsIn, r.PacketsOut}
		}
		return m
	}
	if err := getJSON(t, api, base+"top?by=country&window=1h&limit=100", &byCountry); err != nil {
		t.Fatal(err)
	}
	var ctlTop top
	if err := json.Unmarshal([]byte(ctl("top", "--by", "country", "--json")), &ctlTop); err != nil {
		t.Fatalf("sensorctl top --json: %v", err)
	}
	if got, want := countries(ctlTop.Rows), countries(byCountry.Rows); !maps.Equal(got, want) || ctlTop.Total != byCountry.Total {
		t.Errorf("sensorctl top --by country --json: %v total %+v; the API: %v total %+v", got, ctlTop.Total, want, byCountry.Total)
	}
	text := ctl("top", "--by", "country")
	gotText, totalText := parseCountryTable(t, text)
	wantText := map[string][2]uint64{}
	for cc, n := range countries(byCountry.Rows) {
		if cc == "" {
			cc = "unknown"
		}
		wantText[cc] = n
	}
	if !maps.Equal(gotText, wantText) || totalText != [2]uint64{byCountry.Total.PacketsIn, byCountry.Total.PacketsOut} {
		t.Errorf("sensorctl top --by country: %v total %v; the API: %v total %+v\n%s", gotText, totalText, wantText, byCountry.Total, text)
	}

	statusText := ctl("status")
	var invariantOK, attached bool
	for _, line := range strings.Split(statusText, "\n") {
		f := strings.Fields(line)
		invariantOK = invariantOK || (len(f) == 2 && f[0] == "invariant" && f[1] == "OK")
		attached = attached || (len(f) >= 3 && f[0] == "pw-sensor" && f[2] == "attached")
	}
	if !invariantOK || !attached {
		t.Errorf("sensorctl status: invariant OK %v, pw-sensor attached %v:\n%s", invariantOK, attached, statusText)
	}

	// The pid file names sensord; a second sensord with the same data_dir
	// refuses to start.
	pidFile := filepath.Join(dir, "sensord.pid")
	if b, err := os.ReadFile(pidFile); err != nil || strings.TrimSpace(string(b)) != fmt.Sprint(cmd.Process.Pid) {
		t.Errorf("pid file %s: %q %v, want %d", pidFile, b, err, cmd.Process.Pid)
	}
	second, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	out, err := exec.CommandContext(second, sensord, "--config", cfg).CombinedOutput()
	cancel()
	if err == nil || !strings.Contains(string(out), fmt.Sprintf("another sensord (pid %d, pid file %s)", cmd.Process.Pid, pidFile)) {
		t.Errorf("a second sensord with the same data_dir: %v\n%s", err, out)
	}

	// sensorctl reload: SIGHUP, the tables and watch lists reload, and
	// sensord keeps counting every packet.
	if got, want := ctl("reload", "--pid-file", pidFile),
		fmt.Sprintf("sent SIGHUP to sensord (pid %d): tables and watch lists reload; see its log\n", cmd.Process.Pid); got != want {
		t.Errorf("sensorctl reload: %q, want %q", got, want)
	}
	deadline = time.Now().Add(60 * time.Second)
	for {
		log, _ := os.ReadFile(sd.log)
		if strings.Contains(string(log), "reloaded tables and watch lists") {
			break
		}
		if strings.Contains(string(log), "reload refused") || time.Now().After(deadline) {
			t.Fatalf("sensord did not log the reload within 60 s")
		}
		time.Sleep(200 * time.Millisecond)
	}
	before := byCountry
	nz := netip.MustParseAddr("202.36.5.5")
	frames = frames[:0]
	const moreIn, moreOut = 17, 6
	for range moreIn {
		frames = append(frames, testutil.Frame{Src: nz, Dst: local4, Proto: layers.IPProtocolTCP, SrcPort: 443, DstPort: 50001}.Bytes(t))
	}
	for range moreOut {
		frames = append(frames, testutil.Frame{Src: local4, Dst: nz, Proto: layers.IPProtocolUDP, SrcPort: 50001, DstPort: 53}.Bytes(t))
	}
	if err := from.SendPaced(frames, 64); err != nil {
		t.Fatal(err)
	}
	var after top
	deadline = time.Now().Add(20 * time.Second)
	for {
		if err := getJSON(t, api, base+"top?by=country&window=1h&limit=100", &after); err != nil {
			t.Fatal(err)
		}
		if after.Total.PacketsIn+after.Total.PacketsOut >= sent+moreIn+moreOut || time.Now().After(deadline) {
			break
		}
		time.Sleep(300 * time.Millisecond)
	}
	time.Sleep(2 * time.Second) // two more drains: nothing else arrives
	if err := getJSON(t, api, base+"top?by=country&window=1h&limit=100", &after); err != nil {
		t.Fatal(err)
	}
	if after.Total.PacketsIn != before.Total.PacketsIn+moreIn || after.Total.PacketsOut != before.Total.PacketsOut+moreOut {
		t.Errorf("after the reload: total in/out %d/%d, want %d/%d", after.Total.PacketsIn, after.Total.PacketsOut,
			before.Total.PacketsIn+moreIn, before.Total.PacketsOut+moreOut)
	}
	nzBefore, nzAfter := countries(before.Rows)["NZ"], countries(after.Rows)["NZ"]
	if nzAfter != [2]uint64{nzBefore[0] + moreIn, nzBefore[1] + moreOut} {
		t.Errorf("after the reload: NZ in/out %v, was %v, sent %d/%d more", nzAfter, nzBefore, moreIn, moreOut)
	}

	// SIGTERM: a last drain, a clean exit.
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("sensord exited with %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("sensord did not stop within 20 s of SIGINT")
	}
	log, _ := os.ReadFile(sd.log)
	if !strings.Contains(string(log), "sensord stopped") {
		t.Errorf("no final log line")
	}
	if _, err := os.Stat(pidFile); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the pid file is still there after sensord stopped: %v", err)
	}
}

// parseCountryTable reads sensorctl top --by country's table: packets in
// and out by country, and the total.
func parseCountryTable(t *testing.T, text string) (rows map[string][2]uint64, total [2]uint64) {
	t.Helper()
	cols := regexp.MustCompile(`\s{2,}`)
	num := func(s string) uint64 {
		n, err := strconv.ParseUint(strings.ReplaceAll(s, ",", ""), 10, 64)
		if err != nil {
			t.Fatalf("%q in sensorctl's table is not a count: %v\n%s", s, err, text)
		}
		return n
	}
	rows = map[string][2]uint64{}
	for _, line := range strings.Split(text, "\n") {
		f := cols.Split(strings.TrimSpace(line), -1)
		switch {
		case len(f) == 8 && f[0] != "RANK": // rank, country, packets in, out, bytes in, out, share, tunnel
			rows[f[1]] = [2]uint64{num(f[2]), num(f[3])}
		case len(f) == 7 && f[0] == "total":
			total = [2]uint64{num(f[1]), num(f[2])}
		}
	}
	if len(rows) == 0 {
		t.Fatalf("no rows in sensorctl's table:\n%s", text)
	}
	return rows, total
}

func loadTable(t *testing.T, format, stem string) *prefixes.Table {
	t.Helper()
	b := prefixes.NewTable(stem)
	for _, fam := range []string{"ipv4", "ipv6"} {
		f, err := prefixes.OpenFile(filepath.Join(ipdb, stem+"-"+fam+".csv.gz"))
		if err != nil {
			t.Fatal(err)
		}
		if format == "ip-location-country" {
			_, err = prefixes.LoadIPLocationCountry(f, stem, b)
		} else {
			_, err = prefixes.LoadIPLocationASN(f, stem, b)
		}
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	tbl, _ := b.Build()
	return tbl
}

// sensordProc is sensord started by a test.
type sensordProc struct {
	cmd *exec.Cmd
	// exited gets sensord's exit (Wait's error) once.
	exited <-chan error
	// log holds its stdout and stderr.
	log string
}

// startSensord runs sensord --config cfg inside ns, with env added to the
// test's environment and its output in dir/sensord.log. When the test
// ends it is stopped (SIGINT, then SIGKILL after 10 s) if it still runs,
// and its log is shown if the test failed.
func startSensord(t *testing.T, ns *testutil.Namespace, sensord, cfg, dir string, env ...string) *sensordProc {
	t.Helper()
	log := filepath.Join(dir, "sensord.log")
	logFile, err := os.Create(log)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("nsenter", "--net=/var/run/netns/"+ns.Name, sensord, "--config", cfg)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited, done := make(chan error, 1), make(chan struct{})
	go func() {
		exited <- cmd.Wait()
		logFile.Close()
		close(done)
	}()
	t.Cleanup(func() {
		select {
		case <-done:
		default:
			_ = cmd.Process.Signal(os.Interrupt)
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				_ = cmd.Process.Kill()
				<-done
			}
		}
		if t.Failed() {
			b, _ := os.ReadFile(log)
			t.Logf("sensord log:\n%s", b)
		}
	})
	return &sensordProc{cmd: cmd, exited: exited, log: log}
}
