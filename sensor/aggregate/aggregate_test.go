package aggregate

import (
	"net/netip"
	"testing"

	"github.com/peerwatch/peerwatch/sensor/datapath"
	"github.com/peerwatch/peerwatch/sensor/prefixes"
	"github.com/peerwatch/peerwatch/sensor/traffic"
)

func mkTable(t *testing.T, name string, entries ...prefixes.Entry) *prefixes.Table {
	t.Helper()
	b := prefixes.NewTable(name)
	for _, e := range entries {
		if err := b.Add(e); err != nil {
			t.Fatal(err)
		}
	}
	tbl, _ := b.Build()
	return tbl
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func in(n uint64, class traffic.Class) traffic.Counters {
	c := traffic.Counters{Packets: [2]uint64{n, 0}, Bytes: [2]uint64{100 * n, 0}}
	c.Class[class] = n
	return c
}

func TestSummarize(t *testing.T) {
	country := mkTable(t, "country",
		prefixes.Entry{Prefix: pfx("175.45.176.0/22"), Country: "KP"},
		prefixes.Entry{Prefix: pfx("202.36.0.0/16"), Country: "NZ"},
		prefixes.Entry{Prefix: pfx("2001:db8::/32"), Country: "NZ"},
	)
	asn := mkTable(t, "asn",
		prefixes.Entry{Prefix: pfx("175.45.176.0/22"), ASN: 131279, ASName: "Star Joint Venture Co. Ltd."},
		prefixes.Entry{Prefix: pfx("202.36.128.0/17"), ASN: 9503, ASName: "One NZ"},
	)
	watch := []WatchList{
		{Name: "kp", Countries: []string{"KP"}},
		{Name: "onenz", ASNs: []uint32{9503}},
		{Name: "doc", Prefixes: []netip.Prefix{pfx("198.51.100.0/24")}},
	}
	iv := &datapath.Interval{
		Tables:  &datapath.Tables{Prefix: []*prefixes.Table{country, asn, WatchTable(watch)}},
		Globals: traffic.Globals{Seen: 1 + 2 + 3 + 4 + 5 + 6 + 7, Malformed: 7},
		Remote: []datapath.RemoteCount{
			{Key: netip.MustParseAddr("175.45.176.0"), Counters: in(1, traffic.TCP)},
			{Key: netip.MustParseAddr("175.45.177.0"), Counters: in(2, traffic.Tunnel)},
			{Key: netip.MustParseAddr("202.36.1.0"), Counters: in(3, traffic.UDP)},
			{Key: netip.MustParseAddr("202.36.200.0"), Counters: in(4, traffic.UDP)},
			{Key: netip.MustParseAddr("198.51.100.0"), Counters: in(5, traffic.ICMP)},
			{Key: netip.MustParseAddr("2001:db8:1::"), Counters: in(6, traffic.TCP)},
		},
	}
	s := New(watch, 24, 48, 3).Summarize(iv)
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
	// Top 3 by packets: the IPv6 /32 (6), the doc /24 (5), One NZ's /17 (4); the rest in Other.
	want := []struct {
		prefix  string
		country string
		asn     uint32
		packets uint64
	}{
		{"2001:db8::/32", "NZ", 0, 6},
		{"198.51.100.0/24", "", 0, 5},
		{"202.36.128.0/17", "NZ", 9503, 4},
	}
	if len(s.Prefixes) != len(want) {
		t.Fatalf("prefixes %+v", s.Prefixes)
	}
	for i, w := range want {
		p := s.Prefixes[i]
		if p.Prefix != pfx(w.prefix) || p.Country != w.country || p.ASN != w.asn || p.Total() != w.packets {
			t.Errorf("prefix %d: %s %s AS%d %d packets, want %+v", i, p.Prefix, p.Country, p.ASN, p.Total(), w)
		}
	}
	if s.Other.Total() != 1+2+3 {
		t.Errorf("other %d packets, want 6 (KP 3, NZ /16 3)", s.Other.Total())
	}
	countries := map[string]uint64{}
	for _, c := range s.Countries {
		countries[c.Country] = c.Total()
	}
	if countries["KP"] != 3 || countries["NZ"] != 13 || countries[""] != 5 || len(countries) != 3 {
		t.Errorf("countries %v", countries)
	}
	ases := map[uint32]uint64{}
	for _, a := range s.ASes {
		ases[a.ASN] = a.Total()
	}
	if ases[131279] != 3 || ases[9503] != 4 || ases[0] != 14 {
		t.Errorf("ases %v", ases)
	}
	watched := map[string]traffic.Counters{}
	for _, w := range s.Watch {
		watched[w.List] = w.Counters
	}
	if watched["kp"].Total() != 3 || watched["kp"].Class[traffic.Tunnel] != 2 || watched["onenz"].Total() != 4 || watched["doc"].Total() != 5 {
		t.Errorf("watch lists %+v", watched)
	}
}

func TestSummarizeWithoutTables(t *testing.T) {
	iv := &datapath.Interval{
		Globals: traffic.Globals{Seen: 3},
		Remote: []datapath.RemoteCount{
			{Key: netip.MustParseAddr("198.51.100.0"), Counters: in(2, traffic.TCP)},
			{Key: netip.MustParseAddr("2001:db8:1::"), Counters: in(1, traffic.UDP)},
		},
	}
	s := New(nil, 24, 48, 10).Summarize(iv)
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
	if s.Prefixes[0].Prefix != pfx("198.51.100.0/24") || s.Prefixes[1].Prefix != pfx("2001:db8:1::/48") {
		t.Errorf("fixed-length prefixes %v", s.Prefixes)
	}
}
