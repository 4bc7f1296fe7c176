package main

import (
	"math"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/peerwatch/peerwatch/sensor/summary"
	"github.com/peerwatch/peerwatch/sensor/traffic"
	"github.com/peerwatch/peerwatch/sensor/trafficgen"
)

func TestParseProcStat(t *testing.T) {
	m, err := parseProcStat([]byte("cpu  1000 10 500 8000 200 0 90 5 7 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n"))
	if err != nil {
		t.Fatal(err)
	}
	// busy: user 1000 + nice 10 + system 500 + irq 0 + softirq 90 + steal 5 (guest is in user)
	if m.Busy != 16050*time.Millisecond || m.Idle != 82*time.Second || m.Softirq != 900*time.Millisecond {
		t.Errorf("got %+v", m)
	}
	if _, err := parseProcStat([]byte("intr 1 2 3\n")); err == nil || !strings.Contains(err.Error(), "not the cpu line") {
		t.Errorf("bad first line: err %v", err)
	}
	if _, err := parseProcStat([]byte("cpu 1 2 x 4 5 6 7 8\n")); err == nil || !strings.Contains(err.Error(), "field 3") {
		t.Errorf("bad field: err %v", err)
	}
}

func TestParsePidStat(t *testing.T) {
	// comm with a space and a parenthesis, utime 250, stime 50 (ticks of 10 ms)
	line := "4242 (pmacctd: Core (x)) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 100 1000 10\n"
	d, err := parsePidStat([]byte(line))
	if err != nil || d != 3*time.Second {
		t.Errorf("got %v, %v; want 3s", d, err)
	}
	if _, err := parsePidStat([]byte("4242 (x) S 1 2")); err == nil {
		t.Error("short line: no error")
	}
}

func TestParseCPUStat(t *testing.T) {
	d, err := parseCPUStat([]byte("usage_usec 1234567\nuser_usec 1000000\nsystem_usec 234567\n"))
	if err != nil || d != 1234567*time.Microsecond {
		t.Errorf("got %v, %v", d, err)
	}
	if _, err := parseCPUStat([]byte("user_usec 1\n")); err == nil {
		t.Error("no usage_usec: no error")
	}
}

func TestParseMemory(t *testing.T) {
	status := "Name:\tsensord\nVmPeak:\t 900000 kB\nVmHWM:\t  223456 kB\nVmRSS:\t 100 kB\n"
	if got := parseKB([]byte(status), "VmHWM:"); got != 223456*1024 {
		t.Errorf("VmHWM: got %d", got)
	}
	id, mem := parseMapFdinfo([]byte("pos:\t0\nflags:\t02000002\nmap_type:\t5\nmemlock:\t70123520\nmap_id:\t42\n"))
	if id != "42" || mem != 70123520 {
		t.Errorf("fdinfo: got %q %d", id, mem)
	}
}

func TestParsePmacct(t *testing.T) {
	local := []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8:1::/48")}
	out := `{"net_src": "103.189.211.0", "net_dst": "192.0.2.0", "mask_src": 24, "mask_dst": 24, "packets": 3, "bytes": 2671}
{"net_src": "192.0.2.0", "net_dst": "103.189.211.0", "mask_src": 24, "mask_dst": 24, "packets": 2, "bytes": 120}
{"net_src": "2001:db8::", "net_dst": "2403:fbc0::", "mask_src": 32, "mask_dst": 32, "packets": 1, "bytes": 60}
`
	c, err := parsePmacct([]byte(out), local)
	if err != nil {
		t.Fatal(err)
	}
	want := map[netip.Prefix]uint64{netip.MustParsePrefix("103.189.211.0/24"): 5, netip.MustParsePrefix("2403:fbc0::/32"): 1}
	if c.Total != 6 || len(c.Prefixes) != 2 || c.Prefixes[netip.MustParsePrefix("103.189.211.0/24")] != 5 ||
		c.Prefixes[netip.MustParsePrefix("2403:fbc0::/32")] != 1 {
		t.Errorf("got %+v, want total 6 and %v", c, want)
	}
	_, err = parsePmacct([]byte("{\"net_src\": \"x\", \"net_dst\": \"192.0.2.0\"}\n"), local)
	if err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("bad network: err %v", err)
	}
}

func TestPromValue(t *testing.T) {
	b := []byte("# HELP x\nfastnetmon_total_simple_packets_processed 19797\nfastnetmon_total_unparsed_packets 3\n")
	if v, err := promValue(b, "fastnetmon_total_simple_packets_processed"); err != nil || v != 19797 {
		t.Errorf("got %d, %v", v, err)
	}
	if _, err := promValue(b, "nope"); err == nil {
		t.Error("missing metric: no error")
	}
}

func TestParseSegment(t *testing.T) {
	s, err := parseSegment("3 5000 30000 /tmp/r.json")
	if err != nil || s != (segment{Seed: 3, Rate: 5000, Count: 30000, Report: "/tmp/r.json"}) {
		t.Errorf("got %+v, %v", s, err)
	}
	if back, err := parseSegment(s.String()); err != nil || back != s {
		t.Errorf("round trip: %+v, %v", back, err)
	}
	for _, bad := range []string{"", "1 2 3", "x 1 1 f", "1 -5 1 f", "1 1 0 f", "1 1 2000000 f"} {
		if _, err := parseSegment(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestStat(t *testing.T) {
	s := statOf([]float64{3, 1, 2, math.NaN()})
	if s.Med != 2 || s.Min != 1 || s.Max != 3 || s.N != 3 {
		t.Errorf("odd: %+v", s)
	}
	if s := statOf([]float64{4, 1}); s.Med != 2.5 {
		t.Errorf("even: %+v", s)
	}
	if got := statOf([]float64{1.25, 1, 3}).format(2); got != "1.25 (1.00–3.00)" {
		t.Errorf("format: %q", got)
	}
	if got := statOf(nil).format(1); got != "n/a" {
		t.Errorf("empty: %q", got)
	}
}

func TestCompare(t *testing.T) {
	a, b, c := netip.MustParsePrefix("1.0.0.0/24"), netip.MustParsePrefix("2a02::/32"), netip.MustParsePrefix("2a02:c28::/32")
	pc := func(p netip.Prefix, in, out uint64) summary.PrefixCount {
		var k traffic.Counters
		k.Packets[traffic.In], k.Packets[traffic.Out] = in, out
		return summary.PrefixCount{Prefix: p, Counters: k}
	}
	rep := trafficgen.Report{Prefixes: []summary.PrefixCount{pc(a, 10, 5), pc(b, 7, 0)}}
	before := counts{Total: 100, Prefixes: map[netip.Prefix]uint64{a: 4}}
	after := counts{Total: 122, Prefixes: map[netip.Prefix]uint64{a: 19, b: 4, c: 3}}
	var seg Segment
	compare(&seg, rep, before, after)
	if *seg.Counted != 22 || seg.Prefixes != 2 || *seg.PrefixesExact != 1 || seg.PrefixesV6 != 1 || *seg.PrefixesV6Exact != 0 ||
		seg.Misattributed != 3 || len(seg.Examples) != 2 {
		t.Errorf("got %+v", seg)
	}
	// A tool without per-prefix counts: the total only.
	var seg2 Segment
	compare(&seg2, rep, counts{Total: 1}, counts{Total: 21})
	if *seg2.Counted != 20 || seg2.PrefixesExact != nil {
		t.Errorf("no prefixes: %+v", seg2)
	}
}

// TestSummarize checks the figures against the baseline of the same round.
func TestSummarize(t *testing.T) {
	u := func(v uint64) *uint64 { return &v }
	n := func(v int) *int { return &v }
	res := &Results{Rates: []float64{0}, Rounds: 1, Tools: []string{"baseline", "peerwatch-xdp-generic", "pmacctd"}, Count: 1_000_000,
		Runs: []ToolRun{
			{Tool: "baseline", Round: 1, Segments: []Segment{{Sent: 1_000_000, PPS: 20000, SenderCPU: 10}}},
			{Tool: "peerwatch-xdp-generic", Mode: "xdp-generic", Round: 1, StartToCount: 5, Segments: []Segment{
				{Sent: 1_000_000, AtPort: 1_000_000, PPS: 20000, Counted: u(1_000_000), Prefixes: 10, PrefixesExact: n(10), ToolCPU: 0.1, SenderCPU: 10.4}}},
			{Tool: "pmacctd", Round: 1, StartToCount: 9, Segments: []Segment{
				{Sent: 1_000_000, AtPort: 1_000_000, PPS: 20000, Counted: u(990_000), Prefixes: 10, PrefixesExact: n(8), ToolCPU: 2.0, SenderCPU: 10.5}}},
		}}
	sm := summarize(res)
	pw, pm := sm.cells["peerwatch-xdp-generic"][0], sm.cells["pmacctd"][0]
	near := func(a, b float64) bool { return math.Abs(a-b) < 1e-9 }
	if !near(pw.Total.Med, 0.5) || !near(pw.Kernel.Med, 0.4) || !near(pm.Total.Med, 2.5) || !near(pm.Accuracy.Med, 99) || !near(pm.Exact.Med, 80) {
		t.Errorf("peerwatch %+v, pmacctd %+v", pw, pm)
	}
	if r := sm.ratio["pmacctd"]["peerwatch-xdp-generic"][0]; !near(r.Med, 5) {
		t.Errorf("ratio %+v, want 5", r)
	}
	var md strings.Builder
	sm.markdown(&md)
	for _, want := range []string{"| peerwatch-xdp-generic | max | 20000 | 100.000 | 100.00 | 100.0 | 0.10 | n/a | 0.40 | 0.50 | 0.0 |", "| pmacctd | max | 5.0× |", "| pmacctd | max | 20.0× |"} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("markdown lacks %q:\n%s", want, md.String())
		}
	}

	// Frames lost on the way to the port: accuracy is against what
	// reached it, and per prefix it is not known.
	res.Runs[2].Segments[0].AtPort = 990_000
	md.Reset()
	sm = summarize(res)
	if pm := sm.cells["pmacctd"][0]; !near(pm.Accuracy.Med, 100) || pm.HasPrefixes || !near(pm.Port.Med, 99) {
		t.Errorf("pmacctd, 99 %% at the port: %+v", pm)
	}
	sm.markdown(&md)
	if want := "| pmacctd | max | 20000 | 99.000 | 100.00 | not known: the port did not receive all |"; !strings.Contains(md.String(), want) {
		t.Errorf("markdown lacks %q:\n%s", want, md.String())
	}
}

func TestParseProgFdinfo(t *testing.T) {
	id, ns, n := parseProgFdinfo([]byte("pos:\t0\nprog_type:\t6\nprog_id:\t5760\nrun_time_ns:\t1234567\nrun_cnt:\t30000\nrecursion_misses:\t0\n"))
	if id != "5760" || ns != 1234567 || n != 30000 {
		t.Errorf("got %q %d %d", id, ns, n)
	}
}
