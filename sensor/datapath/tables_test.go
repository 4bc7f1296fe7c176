package datapath

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/peerwatch/peerwatch/bpf"
	"github.com/peerwatch/peerwatch/sensor/prefixes"
)

// table builds a prefix table from "prefix=country" pairs.
func table(tb testing.TB, name string, specs map[string]string) *prefixes.Table {
	tb.Helper()
	b := prefixes.NewTable(name)
	for p, cc := range specs {
		if err := b.Add(prefixes.Entry{Prefix: netip.MustParsePrefix(p), Country: cc}); err != nil {
			tb.Fatal(err)
		}
	}
	t, _ := b.Build()
	return t
}

func pfxs(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

func bitSet(words []uint64, i uint32) bool { return words[i>>6]&(1<<(i&63)) != 0 }

func TestBuildImageV4(t *testing.T) {
	country := table(t, "country", map[string]string{
		"198.51.0.0/16":    "AA",
		"198.51.100.64/26": "BB", // splits 198.51.100.0/24 into 0-63, 64-127, 128-255
		"203.0.113.0/24":   "CC", // whole /24: no split
	})
	asn := table(t, "asn", map[string]string{
		"198.51.100.0/25":   "", // boundary at .128 is already there
		"198.51.100.200/29": "", // adds 200 and 208
	})
	img, err := buildImage(&Tables{Local: pfxs("10.1.0.0/16", "192.0.2.128/26"), Prefix: []*prefixes.Table{country, asn}}, 24, 48)
	if err != nil {
		t.Fatal(err)
	}
	net := uint32(198<<16 | 51<<8 | 100)
	split, ok := img.v4Split[net]
	if !ok {
		t.Fatalf("198.51.100.0/24 not split; splits: %v", sortedKeys(img.v4Split))
	}
	wantStarts := map[int]uint8{0: 0, 63: 0, 64: 64, 127: 64, 128: 128, 199: 128, 200: 200, 207: 200, 208: 208, 255: 208}
	for host, want := range wantStarts {
		if got := split.Cell[host]; got != want {
			t.Errorf("cell of .%d = %d, want %d", host, got, want)
		}
	}
	if _, ok := img.v4Split[203<<16|0<<8|113]; ok {
		t.Error("203.0.113.0/24 is split but no boundary falls inside it")
	}
	// Local /16: 256 whole /24s, not split.
	for n := uint32(10<<16 | 1<<8); n <= 10<<16|1<<8|255; n++ {
		if img.v4Blocks[n>>6].Local&(1<<(n&63)) == 0 {
			t.Fatalf("/24 %#x of local 10.1.0.0/16 not marked local", n)
		}
	}
	// Local /26 inside 192.0.2.0/24: split with hosts 128-191 local.
	ls, ok := img.v4Split[192<<16|0<<8|2]
	if !ok {
		t.Fatal("192.0.2.0/24 holds a local /26 but is not split")
	}
	for h := uint32(0); h < 256; h++ {
		if got, want := bitSet(ls.Local[:], h), h >= 128 && h < 192; got != want {
			t.Fatalf("192.0.2.%d local = %v, want %v", h, got, want)
		}
	}
	if len(img.v4Split) != 2 {
		t.Errorf("%d split /24s, want 2", len(img.v4Split))
	}
}

func TestBuildImageV4KeyLength(t *testing.T) {
	country := table(t, "c", map[string]string{"198.51.100.128/25": "AA", "198.51.100.0/25": "BB"})
	// /25 keys: the boundary at .128 divides no key, so nothing is split.
	img, err := buildImage(&Tables{Prefix: []*prefixes.Table{country}}, 25, 48)
	if err != nil {
		t.Fatal(err)
	}
	if len(img.v4Split) != 0 {
		t.Errorf("split /24s with /25 keys: %v", sortedKeys(img.v4Split))
	}
	if _, err := buildImage(&Tables{Prefix: []*prefixes.Table{country}}, 20, 48); !errors.Is(err, errTableMode) {
		t.Errorf("/20 keys with a prefix table: err = %v, want %v", err, errTableMode)
	}
	if _, err := buildImage(&Tables{}, 20, 40); err != nil {
		t.Errorf("/20 keys without tables: %v", err)
	}
}

func TestBuildImageV6(t *testing.T) {
	country := table(t, "c", map[string]string{
		"2001:db8::/32":          "AA",
		"2001:db8:1:80::/57":     "BB", // splits 2001:db8:1::/48 to depth 57
		"2001:db8:2::/48":        "CC", // aligned to /48: no split
		"2001:db8:3:0:8000::/65": "DD", // depth 65
	})
	img, err := buildImage(&Tables{
		Local:  pfxs("2001:db8:ff00::/40", "2a00:100::/24", "2a00:2:0:100::/56"),
		Prefix: []*prefixes.Table{country},
	}, 24, 48)
	if err != nil {
		t.Fatal(err)
	}
	want := map[uint64]uint8{
		0x2001_0db8_0001_0000: 57,
		0x2001_0db8_0003_0000: 65,
	}
	if len(img.v6Split) != len(want) {
		t.Errorf("split /48s %x, want %x", img.v6Split, want)
	}
	for net, depth := range want {
		if img.v6Split[net] != depth {
			t.Errorf("depth of %x = %d, want %d", net, img.v6Split[net], depth)
		}
		w, bit := v6Bucket(uint32(net >> 32))
		if img.v6Filter[w].Split&bit == 0 {
			t.Errorf("filter bucket of %x has no split bit", net)
		}
	}
	all, partial := uint8(bpf.CounterLocal32StateLOCAL32ALL), uint8(bpf.CounterLocal32StateLOCAL32PARTIAL)
	// The /40 lies in one /32 (partial, trie), the /24 expands to 256 whole /32s.
	if got := img.v6Local32[0x2001_0db8]; got != partial {
		t.Errorf("2001:db8::/32 local state %d, want partial", got)
	}
	for n := uint32(0x2a00_0100); n <= 0x2a00_01ff; n++ {
		if img.v6Local32[n] != all {
			t.Fatalf("/32 %x of local 2a00:100::/24 not all local", n)
		}
	}
	if len(img.v6Trie) != 2 {
		t.Errorf("trie entries %v, want the /40 and the /56", img.v6Trie)
	}
	if _, err := buildImage(&Tables{Local: pfxs("2000::/8")}, 24, 48); err == nil {
		t.Error("a local /8 was accepted")
	}
}

func TestFingerprint(t *testing.T) {
	a, _ := buildImage(&Tables{Local: pfxs("10.0.0.0/8")}, 24, 48)
	b, _ := buildImage(&Tables{Local: pfxs("10.0.0.0/8")}, 24, 48)
	c, _ := buildImage(&Tables{Local: pfxs("10.0.0.0/9")}, 24, 48)
	if a.fingerprint() != b.fingerprint() {
		t.Error("same tables, different fingerprints")
	}
	if a.fingerprint() == c.fingerprint() {
		t.Error("different tables, same fingerprint")
	}
}

func TestKeyConversion(t *testing.T) {
	for _, s := range []string{"198.51.100.0", "2001:db8::1", "::ffff:0:1", "0.0.0.0"} {
		a := netip.MustParseAddr(s)
		if got := keyAddr(rawKey(a)); got != a.Unmap() {
			t.Errorf("%s -> %s", a, got)
		}
	}
}

// TestTrafficMatchesKernel checks that package traffic's directions and
// classes have the values of the kernel's enums.
func TestTrafficMatchesKernel(t *testing.T) {
	pairs := []struct {
		name      string
		go_, kern int
	}{
		{"In", int(In), int(bpf.CounterDirectionDIR_IN)},
		{"Out", int(Out), int(bpf.CounterDirectionDIR_OUT)},
		{"TCP", int(TCP), int(bpf.CounterProtoClassCLASS_TCP)},
		{"UDP", int(UDP), int(bpf.CounterProtoClassCLASS_UDP)},
		{"ICMP", int(ICMP), int(bpf.CounterProtoClassCLASS_ICMP)},
		{"Tunnel", int(Tunnel), int(bpf.CounterProtoClassCLASS_TUNNEL)},
		{"Other", int(Other), int(bpf.CounterProtoClassCLASS_OTHER)},
		{"NumClasses", NumClasses, int(bpf.CounterProtoClassCLASS_MAX)},
	}
	for _, p := range pairs {
		if p.go_ != p.kern {
			t.Errorf("%s is %d in package traffic, %d in the kernel", p.name, p.go_, p.kern)
		}
	}
}
