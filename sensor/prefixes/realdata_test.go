package prefixes

import (
	"encoding/csv"
	"io"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"
)

// ipdbDir holds the real ip-location-db files the boards ship (see
// ../../board/common/ipdb/README.md). The tests that need them skip when
// they are absent, with a message that says so.
const ipdbDir = "../../board/common/ipdb"

// realFile is one real data file and the loader for its format.
type realFile struct {
	name string
	load func(io.Reader, string, *TableBuilder) (LoadStats, error)
}

var (
	countryFiles = []realFile{
		{"geo-whois-asn-country-ipv4.csv.gz", LoadIPLocationCountry},
		{"geo-whois-asn-country-ipv6.csv.gz", LoadIPLocationCountry},
	}
	asnFiles = []realFile{
		{"asn-ipv4.csv.gz", LoadIPLocationASN},
		{"asn-ipv6.csv.gz", LoadIPLocationASN},
	}
)

// skipWithoutRealData skips tb when -short is given or a real data file is absent.
func skipWithoutRealData(tb testing.TB, files []realFile) {
	tb.Helper()
	if testing.Short() {
		tb.Skip("loading the real ip-location-db tables takes seconds: skipped with -short")
	}
	for _, f := range files {
		if _, err := os.Stat(filepath.Join(ipdbDir, f.name)); err != nil {
			tb.Skipf("real data not present (%v): copy the ip-location-db files there to run this", err)
		}
	}
}

// loadReal builds one table from real files, skipping the test when a file is absent.
func loadReal(tb testing.TB, name string, files []realFile) (*Table, []LoadStats) {
	tb.Helper()
	skipWithoutRealData(tb, files)
	b := NewTable(name)
	var stats []LoadStats
	for _, f := range files {
		rc, err := OpenFile(filepath.Join(ipdbDir, f.name))
		if err != nil {
			tb.Fatal(err)
		}
		st, err := f.load(rc, f.name, b)
		rc.Close()
		if err != nil {
			tb.Fatal(err)
		}
		stats = append(stats, st)
	}
	t, _ := b.Build()
	return t, stats
}

// Real tables are loaded once and shared by the tests and benchmarks that need them.
var (
	realOnce            sync.Once
	realCountry, realAS *Table
)

func realTables(tb testing.TB) (country, asn *Table) {
	tb.Helper()
	skipWithoutRealData(tb, append(countryFiles, asnFiles...))
	realOnce.Do(func() {
		realCountry, _ = loadReal(tb, "country", countryFiles)
		realAS, _ = loadReal(tb, "asn", asnFiles)
	})
	return realCountry, realAS
}

// TestRealCountryIPv4 checks the conversion of the real IPv4 country table against the counts
// measured when the package was written (ip-location-db 2.3.2026061719): 493,646 CIDRs, 208,716
// of them longer than /24, counted independently of the loader with encoding/csv. Sixteen of those
// CIDRs repeat a CIDR of an earlier line (ranges that overlap), so the table holds 493,630
// prefixes, 208,710 of them longer than /24, and nine lines add nothing.
func TestRealCountryIPv4(t *testing.T) {
	skipWithoutRealData(t, countryFiles[:1])
	rc, err := OpenFile(filepath.Join(ipdbDir, countryFiles[0].name))
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	rows, err := csv.NewReader(rc).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	cidrs, longer := 0, 0
	for _, row := range rows {
		ps, err := RangeToPrefixes(netip.MustParseAddr(row[0]), netip.MustParseAddr(row[1]))
		if err != nil {
			t.Fatal(err)
		}
		cidrs += len(ps)
		for _, p := range ps {
			if p.Bits() > 24 {
				longer++
			}
		}
	}
	t.Logf("%d lines -> %d IPv4 CIDRs, %d longer than /24", len(rows), cidrs, longer)
	if cidrs != 493_646 || longer != 208_716 {
		t.Errorf("got %d CIDRs, %d longer than /24; want 493646, 208716", cidrs, longer)
	}

	tbl, stats := loadReal(t, "country", countryFiles[:1])
	st := stats[0]
	t.Log(st)
	v4, _ := tbl.Len()
	longer = 0
	for _, e := range tbl.Entries() {
		if e.Prefix.Bits() > 24 {
			longer++
		}
	}
	t.Logf("table: %d IPv4 prefixes, %d longer than /24", v4, longer)
	if st.CIDRs != 493_646 || st.DuplicateCIDRs != 16 || st.Duplicate != 9 || st.Skipped() != 9 {
		t.Errorf("loader: %v; want 493646 prefixes with 16 duplicates, 9 duplicate lines, nothing else skipped", st)
	}
	if v4 != 493_630 || longer != 208_710 {
		t.Errorf("table: %d prefixes, %d longer than /24; want 493630, 208710", v4, longer)
	}
}

// TestRealLoad loads the four real files into a country and an AS table, as the sensor does,
// and logs what each loader did, the time each file took and the heap the two tables hold. For
// the peak heap while loading, run it with GODEBUG=gctrace=1.
func TestRealLoad(t *testing.T) {
	skipWithoutRealData(t, append(countryFiles, asnFiles...))
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	var tables []*Table
	for _, set := range []struct {
		name  string
		files []realFile
	}{{"country", countryFiles}, {"asn", asnFiles}} {
		b := NewTable(set.name)
		for _, f := range set.files {
			start := time.Now()
			rc, err := OpenFile(filepath.Join(ipdbDir, f.name))
			if err != nil {
				t.Fatal(err)
			}
			st, err := f.load(rc, f.name, b)
			rc.Close()
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%v, in %v", st, time.Since(start).Round(time.Millisecond))
			for _, s := range st.FirstSkipped {
				t.Logf("\t%s", s)
			}
		}
		start := time.Now()
		tbl, st := b.Build()
		t.Logf("%s table built in %v: %+v", set.name, time.Since(start).Round(time.Millisecond), st)
		tables = append(tables, tbl)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	t.Logf("heap held by the two tables: %.1f MiB; allocated while loading: %.0f MiB",
		float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), float64(after.TotalAlloc-before.TotalAlloc)/(1<<20))
	runtime.KeepAlive(tables)
}

// TestRealBoundaries reports how table boundaries fall inside /24s (IPv4) and /48s (IPv6): how
// many of them have a boundary strictly inside, and the most cells (boundary-delimited pieces)
// in any one. These decide the sizes of the kernel's maps.
func TestRealBoundaries(t *testing.T) {
	country, asn := realTables(t)
	for _, c := range []struct {
		name   string
		tables []*Table
	}{{"country", []*Table{country}}, {"asn", []*Table{asn}}, {"country+asn", []*Table{country, asn}}} {
		for _, f := range []Family{IPv4, IPv6} {
			block := 24
			if f == IPv6 {
				block = 48
			}
			bounds := MergeBoundaries(f, c.tables...)
			split, cells, maxCells, worst := blocksSplit(bounds, block)
			t.Logf("%s %v: %d boundaries; %d /%d blocks with a boundary inside, cut into %d cells in all, at most %d in one (%v)",
				c.name, f, len(bounds), split, block, cells, maxCells, worst)
		}
	}
}

// blocksSplit counts the /block prefixes that contain a boundary other than their first address,
// the cells (boundary-delimited pieces) they are cut into, and the most cells in any one of them.
func blocksSplit(bounds []netip.Addr, block int) (split, cells, maxCells int, worst netip.Prefix) {
	var cur netip.Prefix
	n := 0 // cells in cur
	for _, a := range bounds {
		p := netip.PrefixFrom(a, block).Masked()
		if p.Addr() == a { // at the start of a block: does not split it
			continue
		}
		if p != cur {
			cur, n = p, 1
			split++
			cells++
		}
		n++
		cells++
		if n > maxCells {
			maxCells, worst = n, p
		}
	}
	return split, cells, maxCells, worst
}

// BenchmarkLookup looks up, in the real tables, addresses spread over the address space
// ("space") and addresses inside randomly chosen prefixes of the table ("prefixes").
func BenchmarkLookup(b *testing.B) {
	country, asn := realTables(b)
	for _, tbl := range []*Table{country, asn} {
		for _, f := range []Family{IPv4, IPv6} {
			rng := rand.New(rand.NewPCG(7, 8))
			b.Run(tbl.Name()+"/"+f.String()+"/space", func(b *testing.B) {
				benchmarkLookup(b, tbl, randomAddrs(rng, f))
			})
			b.Run(tbl.Name()+"/"+f.String()+"/prefixes", func(b *testing.B) {
				benchmarkLookup(b, tbl, addrsInTable(rng, tbl, f))
			})
		}
	}
}

// BenchmarkLoad loads and builds each real file as a table of its own.
func BenchmarkLoad(b *testing.B) {
	for _, f := range append(countryFiles, asnFiles...) {
		b.Run(f.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				loadReal(b, f.name, []realFile{f})
			}
		})
	}
}
