package drills_test

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket/layers"

	"github.com/peerwatch/peerwatch/internal/testutil"
)

// wideMix is n frames from and to n distinct remote addresses drawn at
// random over the unicast IPv4 space (a quarter IPv6 in 2001::/16), so
// that the sensor's keys, table lookups and summaries are those of a busy
// link rather than of a handful of hosts.
func wideMix(t *testing.T, n int) [][]byte {
	local4, local6 := netip.MustParseAddr("192.0.2.9"), netip.MustParseAddr("2001:db8:1::9")
	rng := rand.New(rand.NewPCG(7, 8))
	frames := make([][]byte, 0, n)
	for i := range n {
		var remote, local netip.Addr
		if i%4 == 3 {
			var b [16]byte
			b[0], b[1] = 0x20, 0x01
			for k := 2; k < 16; k++ {
				b[k] = byte(rng.IntN(256))
			}
			b[2] = 0x02 // 2001:02xx: never the local 2001:db8:1::/48
			remote, local = netip.AddrFrom16(b), local6
		} else {
			remote, local = netip.AddrFrom4([4]byte{byte(1 + rng.IntN(223)), byte(rng.IntN(256)), byte(rng.IntN(256)), byte(1 + rng.IntN(254))}), local4
			if remote.As4()[0] == 192 || remote.As4()[0] == 127 || remote.As4()[0] == 10 {
				remote = netip.AddrFrom4([4]byte{100, 64 + byte(i%64), byte(i / 256), byte(i)})
			}
		}
		f := testutil.Frame{Src: remote, Dst: local, Proto: layers.IPProtocolTCP, SrcPort: 443, DstPort: 50000}
		if i%2 == 1 {
			f = testutil.Frame{Src: local, Dst: remote, Proto: layers.IPProtocolUDP, SrcPort: 50000, DstPort: 53}
		}
		frames = append(frames, f.Bytes(t))
	}
	return frames
}

// rssBytes is a process's resident set (VmRSS) from /proc.
func rssBytes(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// TestNetnsDrillSoak runs sensord with the real tables under traffic as
// fast as the sender goes (DRILL_SOAK_RATE, 20,000 packets/s asked) from
// 4,096 remote addresses for DRILL_SOAK_SECONDS (30 minutes in make
// drills-long, 5 for the record; skipped when unset), with retentions short
// enough (raw intervals 1 min, minutes 2 min) that the store reaches its
// steady size within the first third. It samples sensord's RSS and the
// store file's size every 5 s: after the first third, the peak of the last
// third may not exceed the peak of the middle third by more than 10 %
// (RSS) and 25 % (the store file, which buntdb appends to and rewrites), and
// the store must hold exactly the packets sent.
func TestNetnsDrillSoak(t *testing.T) {
	if os.Getenv("DRILL_SOAK_SECONDS") == "" {
		t.Skip("the soak runs when DRILL_SOAK_SECONDS is set (make drills-long: 1800; scripts/drills --record: 300)")
	}
	l := newLab(t)
	dur := time.Duration(envInt(t, "DRILL_SOAK_SECONDS", 300)) * time.Second
	r := newReport(t, "soak")
	l.tables = fmt.Sprintf(`tables:
  - {name: country, format: ip-location-country, files: [%[1]s/geo-whois-asn-country-ipv4.csv.gz, %[1]s/geo-whois-asn-country-ipv6.csv.gz]}
  - {name: asn, format: ip-location-asn, files: [%[1]s/asn-ipv4.csv.gz, %[1]s/asn-ipv6.csv.gz]}`, ipdb)
	data := filepath.Join(l.dir, "data")
	p := l.start(l.config(data, "store:\n  retention: {interval_10s: 1m, minute: 2m}\n"))
	l.waitAttached(p, 180*time.Second)
	tr := l.trafficFrames(envInt(t, "DRILL_SOAK_RATE", 20000), wideMix(t, 4096))
	start := time.Now()

	type sample struct {
		at         time.Duration
		rss, store int64
	}
	var samples []sample
	for time.Since(start) < dur {
		time.Sleep(5 * time.Second)
		if !p.running() {
			t.Fatalf("sensord exited: %v", p.err)
		}
		rss, err := rssBytes(p.cmd.Process.Pid)
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(filepath.Join(data, "sensord.db"))
		if err != nil {
			t.Fatal(err)
		}
		samples = append(samples, sample{time.Since(start), rss, fi.Size()})
	}
	tr.end()
	sent := tr.sent.Load()
	elapsed := time.Since(start)
	peak := func(from, to time.Duration) (rss, store int64) {
		for _, s := range samples {
			if s.at >= from && s.at < to {
				rss, store = max(rss, s.rss), max(store, s.store)
			}
		}
		return rss, store
	}
	third := elapsed / 3
	rssWarm, storeWarm := peak(0, third)
	rssMid, storeMid := peak(third, 2*third)
	rssEnd, storeEnd := peak(2*third, elapsed+time.Second)
	mib := func(n int64) string { return fmt.Sprintf("%.1fMiB", float64(n)/(1<<20)) }
	r.set("seconds", int(elapsed.Seconds()))
	r.set("rate", int(float64(sent)/elapsed.Seconds()))
	r.set("rss_peak_thirds", mib(rssWarm)+"/"+mib(rssMid)+"/"+mib(rssEnd))
	r.set("store_peak_thirds", mib(storeWarm)+"/"+mib(storeMid)+"/"+mib(storeEnd))
	if float64(rssEnd) > 1.10*float64(rssMid) {
		t.Errorf("RSS grows after the warm-up: peak %s in the middle third, %s in the last", mib(rssMid), mib(rssEnd))
	}
	if float64(storeEnd) > 1.25*float64(storeMid) {
		t.Errorf("the store grows after the warm-up: peak %s in the middle third, %s in the last", mib(storeMid), mib(storeEnd))
	}
	// Only the retained intervals remain in the store, so the exact check
	// is the sensor's own since-start total against the packets sent.
	l.waitDrains(2, 15*time.Second)
	st, err := l.status()
	if err != nil {
		t.Fatal(err)
	}
	got := st.Remote.PacketsIn + st.Remote.PacketsOut
	r.set("sent", sent)
	r.set("counted", got)
	if got != sent {
		t.Errorf("sensord counted %d remote packets since its start, %d were sent", got, sent)
	}
	p.stop(t)
}
