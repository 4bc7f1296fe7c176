package daemon_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
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

// buildBinary builds a command of this module into dir.
func buildBinary(t *testing.T, dir, pkg string) string {
	t.Helper()
	out := filepath.Join(dir, filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-o", out, "github.com/peerwatch/peerwatch/"+pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", pkg, err, b)
	}
	return out
}

// nsClient is an HTTP client whose connections are made inside ns.
func nsClient(ns *testutil.Namespace) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var conn net.Conn
			err := ns.Do(func() (err error) {
				conn, err = (&net.Dialer{}).DialContext(ctx, network, addr)
				return err
			})
			return conn, err
		},
	}}
}

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
	sensord := buildBinary(t, dir, "sensor/cmd/sensord")

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
	logFile, err := os.Create(filepath.Join(dir, "sensord.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("nsenter", "--net=/var/run/netns/"+sensor.Name, sensord, "--config", cfg)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			b, _ := os.ReadFile(logFile.Name())
			t.Logf("sensord log:\n%s", b)
		}
	}()

	api := nsClient(sensor)
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
	log, _ := os.ReadFile(logFile.Name())
	if !strings.Contains(string(log), "sensord stopped") {
		t.Errorf("no final log line")
	}
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
