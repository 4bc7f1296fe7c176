package prefixes

import (
	"bytes"
	"errors"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
	"github.com/oschwald/maxminddb-golang/v2"
)

// mmdbNetwork is a network to write into a test database, with its record.
type mmdbNetwork struct {
	prefix string
	record mmdbtype.DataType
}

// buildMMDB writes a MaxMind DB with the given networks.
func buildMMDB(tb testing.TB, opts mmdbwriter.Options, networks ...mmdbNetwork) []byte {
	tb.Helper()
	opts.DatabaseType = "peerwatch-test"
	opts.BuildEpoch = 1_700_000_000
	w, err := mmdbwriter.New(opts)
	if err != nil {
		tb.Fatal(err)
	}
	for _, n := range networks {
		p := netip.MustParsePrefix(n.prefix)
		ipNet := &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
		if err := w.Insert(ipNet, n.record); err != nil {
			tb.Fatalf("insert %v: %v", p, err)
		}
	}
	var buf bytes.Buffer
	if _, err := w.WriteTo(&buf); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// geoCountry is a GeoIP2 country map.
func geoCountry(iso string, geonameID uint32, name string) mmdbtype.Map {
	return mmdbtype.Map{
		"geoname_id": mmdbtype.Uint32(geonameID),
		"iso_code":   mmdbtype.String(iso),
		"names":      mmdbtype.Map{"en": mmdbtype.String(name), "de": mmdbtype.String(name + " (de)")},
	}
}

// countryDB is shaped as GeoLite2-Country, an IPv6 database with the IPv4 subtree aliased at
// ::ffff:0:0/96, 2001::/32 and 2002::/16 as mmdbwriter does by default.
func countryDB(tb testing.TB) []byte {
	oceania := mmdbtype.Map{"code": mmdbtype.String("OC"), "geoname_id": mmdbtype.Uint32(6255151)}
	au := mmdbtype.Map{"continent": oceania, "country": geoCountry("AU", 2077456, "Australia"), "registered_country": geoCountry("AU", 2077456, "Australia")}
	cn := mmdbtype.Map{"country": geoCountry("CN", 1814991, "China"), "registered_country": geoCountry("CN", 1814991, "China")}
	return buildMMDB(tb, mmdbwriter.Options{RecordSize: 24},
		mmdbNetwork{"1.0.0.0/24", au},
		mmdbNetwork{"1.0.1.0/24", cn},
		mmdbNetwork{"1.0.2.0/23", cn}, // the same record as 1.0.1.0/24
		mmdbNetwork{"2.16.0.0/13", mmdbtype.Map{"registered_country": geoCountry("FR", 3017382, "France")}},
		mmdbNetwork{"41.0.0.0/11", mmdbtype.Map{"country": geoCountry("za", 953987, "South Africa")}},
		mmdbNetwork{"6.0.0.0/24", mmdbtype.Map{"continent": oceania}},
		mmdbNetwork{"7.0.0.0/24", mmdbtype.Map{"country": geoCountry("USA", 6252001, "United States")}},
		mmdbNetwork{"8.0.0.0/24", mmdbtype.Map{"country": mmdbtype.Map{"iso_code": mmdbtype.Uint32(840)}}},
		mmdbNetwork{"2001:200::/32", mmdbtype.Map{"country": geoCountry("JP", 1861060, "Japan")}},
		mmdbNetwork{"2a00:1450::/32", mmdbtype.Map{"country": geoCountry("IE", 2963597, "Ireland"), "registered_country": geoCountry("US", 6252001, "United States")}},
	)
}

// asnDB is shaped as GeoLite2-ASN, an IPv6 database with 28-bit records.
func asnDB(tb testing.TB) []byte {
	as := func(n uint32, org string) mmdbtype.Map {
		m := mmdbtype.Map{"autonomous_system_number": mmdbtype.Uint32(n)}
		if org != "" {
			m["autonomous_system_organization"] = mmdbtype.String(org)
		}
		return m
	}
	return buildMMDB(tb, mmdbwriter.Options{RecordSize: 28},
		mmdbNetwork{"1.0.0.0/24", as(13335, "CLOUDFLARENET")},
		mmdbNetwork{"1.0.4.0/22", as(38803, "Wirefreebroadband Pty Ltd")},
		mmdbNetwork{"1.0.64.0/18", as(18144, "Energia Communications,Inc.")},
		mmdbNetwork{"1.0.128.0/17", as(0, "")},
		mmdbNetwork{"2001:4860::/32", as(15169, "GOOGLE")},
		mmdbNetwork{"2c0f:f248::/32", as(37153, "")},
	)
}

// flatDB is shaped as the flat records of ipinfo, DB-IP and ip-location-db, in an IPv4
// database with 32-bit records, with bad records among them.
func flatDB(tb testing.TB) []byte {
	return buildMMDB(tb, mmdbwriter.Options{RecordSize: 32, IPVersion: 4},
		mmdbNetwork{"1.0.0.0/24", mmdbtype.Map{
			"asn": mmdbtype.String("AS13335"), "as_name": mmdbtype.String("Cloudflare, Inc."), "as_domain": mmdbtype.String("cloudflare.com"),
			"country_code": mmdbtype.String("AU"), "country": mmdbtype.String("Australia"), "continent_code": mmdbtype.String("OC"),
		}},
		mmdbNetwork{"1.0.4.0/22", mmdbtype.Map{"asn": mmdbtype.Uint32(38803), "name": mmdbtype.String("Wirefreebroadband"), "country_code": mmdbtype.String("au")}},
		mmdbNetwork{"1.0.16.0/20", mmdbtype.Map{"country_code": mmdbtype.String("JP"), "as_name": mmdbtype.String("a name without a number")}},
		mmdbNetwork{"1.0.32.0/19", mmdbtype.Map{"asn": mmdbtype.String(""), "country_code": mmdbtype.String("")}},
		mmdbNetwork{"1.0.64.0/18", mmdbtype.Map{"asn": mmdbtype.String("ASX")}},
		mmdbNetwork{"1.0.128.0/17", mmdbtype.Map{"asn": mmdbtype.Uint64(1 << 40)}},
		mmdbNetwork{"1.1.0.0/24", mmdbtype.Map{"asn": mmdbtype.Int32(-5)}},
		mmdbNetwork{"1.1.1.0/24", mmdbtype.Map{"asn": mmdbtype.Uint32(13335), "as_name": mmdbtype.Uint32(5)}},
		mmdbNetwork{"1.1.2.0/23", mmdbtype.Map{"country_code": mmdbtype.String("AU"), "asn": mmdbtype.String("13335")}},
		mmdbNetwork{"1.1.4.0/22", mmdbtype.String("not a map")},
		mmdbNetwork{"1.1.8.0/21", mmdbtype.Map{"asn": mmdbtype.Int32(64512), "country_code": mmdbtype.Float64(1.5)}},
	)
}

// unaliasedDB is an IPv6 database written without IPv4 aliases, whose IPv4-mapped and 6to4
// networks hold data of their own.
func unaliasedDB(tb testing.TB) []byte {
	c := func(iso string) mmdbtype.Map { return mmdbtype.Map{"country_code": mmdbtype.String(iso)} }
	return buildMMDB(tb, mmdbwriter.Options{RecordSize: 24, DisableIPv4Aliasing: true, IncludeReservedNetworks: true},
		mmdbNetwork{"1.0.0.0/24", c("AU")},
		mmdbNetwork{"::ffff:1.0.0.0/120", c("NZ")},
		mmdbNetwork{"::ffff:1.0.1.0/120", c("CN")},
		mmdbNetwork{"2002:100::/24", c("AU")},
	)
}

func TestLoadMMDB(t *testing.T) {
	tests := []struct {
		name    string
		db      func(testing.TB) []byte
		want    LoadStats
		entries []Entry // the whole table, in Entries order
	}{
		{
			name: "country",
			db:   countryDB,
			want: LoadStats{
				Source: "country", Lines: 10, Added: 7, CIDRs: 7, Malformed: 2, NoLabels: 1,
				FirstSkipped: []string{
					"country:6.0.0.0/24: no labels",
					`country:7.0.0.0/24: malformed: bad country code "USA"`,
					"country:8.0.0.0/24: malformed: country code 840 is a uint64",
				},
			},
			entries: []Entry{
				{Prefix: pfx("1.0.0.0/24"), Country: "AU"},
				{Prefix: pfx("1.0.1.0/24"), Country: "CN"},
				{Prefix: pfx("1.0.2.0/23"), Country: "CN"},
				{Prefix: pfx("2.16.0.0/13"), Country: "FR"},   // registered_country only
				{Prefix: pfx("41.0.0.0/11"), Country: "ZA"},   // upper-cased
				{Prefix: pfx("2001:200::/32"), Country: "JP"}, // no copy of the IPv4 networks under 2001::/32 or 2002::/16
				{Prefix: pfx("2a00:1450::/32"), Country: "IE"},
			},
		},
		{
			name: "asn",
			db:   asnDB,
			want: LoadStats{
				Source: "asn", Lines: 6, Added: 5, CIDRs: 5, NoLabels: 1,
				FirstSkipped: []string{"asn:1.0.128.0/17: no labels"},
			},
			entries: []Entry{
				{Prefix: pfx("1.0.0.0/24"), ASN: 13335, ASName: "CLOUDFLARENET"},
				{Prefix: pfx("1.0.4.0/22"), ASN: 38803, ASName: "Wirefreebroadband Pty Ltd"},
				{Prefix: pfx("1.0.64.0/18"), ASN: 18144, ASName: "Energia Communications,Inc."},
				{Prefix: pfx("2001:4860::/32"), ASN: 15169, ASName: "GOOGLE"},
				{Prefix: pfx("2c0f:f248::/32"), ASN: 37153},
			},
		},
		{
			name: "flat",
			db:   flatDB,
			want: LoadStats{
				Source: "flat", Lines: 11, Added: 4, CIDRs: 4, Malformed: 6, NoLabels: 1,
				FirstSkipped: []string{
					"flat:1.0.32.0/19: no labels",
					`flat:1.0.64.0/18: malformed: bad AS number "ASX"`,
					"flat:1.0.128.0/17: malformed: bad AS number 1099511627776",
					"flat:1.1.0.0/24: malformed: bad AS number -5",
					"flat:1.1.1.0/24: malformed: AS name 5 is a uint64",
				},
			},
			entries: []Entry{
				{Prefix: pfx("1.0.0.0/24"), Country: "AU", ASN: 13335, ASName: "Cloudflare, Inc."},
				{Prefix: pfx("1.0.4.0/22"), Country: "AU", ASN: 38803, ASName: "Wirefreebroadband"},
				{Prefix: pfx("1.0.16.0/20"), Country: "JP"}, // an AS name without a number is dropped
				{Prefix: pfx("1.1.2.0/23"), Country: "AU", ASN: 13335},
			},
		},
		{
			name: "unaliased",
			db:   unaliasedDB,
			want: LoadStats{
				Source: "unaliased", Lines: 4, Added: 3, CIDRs: 4, DuplicateCIDRs: 1, Duplicate: 1,
				FirstSkipped: []string{"unaliased:::ffff:1.0.0.0/120: duplicate: 1.0.0.0/24 already in the table"},
			},
			entries: []Entry{
				{Prefix: pfx("1.0.0.0/24"), Country: "AU"}, // from ::1.0.0.0/120, walked first
				{Prefix: pfx("1.0.1.0/24"), Country: "CN"}, // from ::ffff:1.0.1.0/120
				{Prefix: pfx("2002:100::/24"), Country: "AU"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := NewTable(tt.name)
			got, err := LoadMMDBBytes(tt.db(t), tt.name, b)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("stats\ngot  %+v\nwant %+v", got, tt.want)
			}
			tbl := checkLoad(t, got, b)
			if got := tbl.Entries(); !reflect.DeepEqual(got, tt.entries) {
				t.Errorf("entries\ngot  %v\nwant %v", got, tt.entries)
			}
		})
	}
}

// TestLoadMMDBNotMap checks the message for a record that is not a map, which the flat
// database has beyond the five quoted skips.
func TestLoadMMDBNotMap(t *testing.T) {
	data := buildMMDB(t, mmdbwriter.Options{RecordSize: 24, IPVersion: 4},
		mmdbNetwork{"1.1.4.0/22", mmdbtype.String("not a map")},
		mmdbNetwork{"1.1.8.0/21", mmdbtype.Map{"asn": mmdbtype.Int32(64512), "country_code": mmdbtype.Float64(1.5)}},
	)
	st, err := LoadMMDBBytes(data, "x", NewTable("x"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Malformed != 2 || len(st.FirstSkipped) != 2 ||
		!strings.HasPrefix(st.FirstSkipped[0], "x:1.1.4.0/22: malformed: decode record: ") ||
		st.FirstSkipped[1] != "x:1.1.8.0/21: malformed: country code 1.5 is a float64" {
		t.Errorf("got %v\n%q", st, st.FirstSkipped)
	}
}

func TestLoadMMDBFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "GeoLite2-ASN.mmdb")
	if err := os.WriteFile(path, asnDB(t), 0o644); err != nil {
		t.Fatal(err)
	}
	st, err := LoadMMDB(path, "GeoLite2-ASN.mmdb", NewTable("asn"))
	if err != nil || st.Added != 5 || st.Source != "GeoLite2-ASN.mmdb" {
		t.Errorf("LoadMMDB = %v, %v", st, err)
	}
	missing := filepath.Join(t.TempDir(), "missing.mmdb")
	if _, err := LoadMMDB(missing, "missing.mmdb", NewTable("asn")); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Errorf("LoadMMDB of a missing file: %v, want an error naming it", err)
	}
}

// mmdbLayout returns where the search tree and the data section of a database are.
func mmdbLayout(tb testing.TB, data []byte) (md maxminddb.Metadata, treeSize, dataStart, dataEnd int) {
	tb.Helper()
	db, err := maxminddb.OpenBytes(data)
	if err != nil {
		tb.Fatal(err)
	}
	md = db.Metadata
	treeSize = int(md.NodeCount * md.RecordSize / 4)
	return md, treeSize, treeSize + 16, bytes.LastIndex(data, []byte("\xab\xcd\xefMaxMind.com"))
}

// setNode writes the two records of a node of a database with 24-bit records.
func setNode(data []byte, node, left, right uint) {
	b := data[node*6:]
	b[0], b[1], b[2] = byte(left>>16), byte(left>>8), byte(left)
	b[3], b[4], b[5] = byte(right>>16), byte(right>>8), byte(right)
}

// corruptMMDBs are broken databases, each with part of the error it must give.
func corruptMMDBs(tb testing.TB) []struct {
	name, err string
	data      []byte
} {
	good := countryDB(tb)
	md, treeSize, _, _ := mmdbLayout(tb, good)
	n := md.NodeCount
	edit := func(f func([]byte)) []byte {
		d := bytes.Clone(good)
		f(d)
		return d
	}
	return []struct {
		name, err string
		data      []byte
	}{
		{"empty", "open x.mmdb as a MaxMind DB: error opening database: invalid MaxMind DB file", nil},
		{"text", "open x.mmdb as a MaxMind DB: error opening database: invalid MaxMind DB file", []byte("1.0.0.0,1.0.0.255,AU\n")},
		{"first half", "open x.mmdb as a MaxMind DB: error opening database: invalid MaxMind DB file", good[:len(good)/2]},
		{"metadata cut", "open x.mmdb as a MaxMind DB: ", good[:len(good)-20]},
		{"tree points past the data", "read x.mmdb at ::/1: the MaxMind DB file's search tree is corrupt", edit(func(d []byte) {
			for i := range treeSize {
				d[i] = 0xff
			}
		})},
		{"shared nodes", "nodes are shared", edit(func(d []byte) {
			// Node i points twice at node i+1, down to node 100 whose records are empty: 2^101
			// paths, none with data, in 101 nodes.
			for i := range uint(100) {
				setNode(d, i, i+1, i+1)
			}
			setNode(d, 100, n, n)
		})},
		{"cycle", "cycle through node 1", edit(func(d []byte) {
			setNode(d, 0, n, 1)
			setNode(d, 1, n, 1)
		})},
		{"::/96 back to the root", "::/96 leads back to the root", edit(func(d []byte) {
			setNode(d, 0, 1, n)
			setNode(d, 1, 0, n)
		})},
	}
}

func TestLoadMMDBCorrupt(t *testing.T) {
	for _, tt := range corruptMMDBs(t) {
		t.Run(tt.name, func(t *testing.T) {
			st, err := LoadMMDBBytes(tt.data, "x.mmdb", NewTable("x"))
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("error %v, want one containing %q", err, tt.err)
			}
			if st.Source != "x.mmdb" {
				t.Errorf("stats %v", st)
			}
		})
	}
}

// TestLoadMMDBBadData checks that records that cannot be decoded are skipped, not fatal.
func TestLoadMMDBBadData(t *testing.T) {
	data := asnDB(t)
	_, _, dataStart, dataEnd := mmdbLayout(t, data)
	for i := dataStart; i < dataEnd; i++ {
		data[i] = 0
	}
	st, err := LoadMMDBBytes(data, "x.mmdb", NewTable("x"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Lines != 6 || st.Malformed != 6 || len(st.FirstSkipped) != 5 ||
		!strings.HasPrefix(st.FirstSkipped[0], "x.mmdb:1.0.0.0/24: malformed: decode record: ") {
		t.Errorf("got %v\n%q", st, st.FirstSkipped)
	}
}

func FuzzLoadMMDBBytes(f *testing.F) {
	for _, db := range []func(testing.TB) []byte{countryDB, asnDB, flatDB, unaliasedDB} {
		f.Add(db(f))
	}
	for _, c := range corruptMMDBs(f) {
		f.Add(c.data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		b := NewTable("fuzz")
		st, err := LoadMMDBBytes(data, "fuzz.mmdb", b)
		if err != nil {
			return // a corrupt file; the point is that it did not panic or hang
		}
		checkLoad(t, st, b)
	})
}
