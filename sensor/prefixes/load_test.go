package prefixes

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
)

func TestLoadFixtures(t *testing.T) {
	tests := []struct {
		file  string
		load  func(io.Reader, string, *TableBuilder) (LoadStats, error)
		want  LoadStats
		addrs map[string]Entry // expected labels of some addresses (Prefix checked too); zero Entry = no match
	}{
		{
			file: "country.csv",
			load: LoadIPLocationCountry,
			want: LoadStats{
				Source: "country.csv", Lines: 19, Added: 10, Ignored: 1, CIDRs: 17, DuplicateCIDRs: 1,
				Malformed: 5, UnknownFamily: 1, StartAfterEnd: 1, Duplicate: 1,
				FirstSkipped: []string{
					"country.csv:5: duplicate: 175.45.176.0/22 already in the table",
					"country.csv:6: malformed: want 3 fields start,end,country",
					`country.csv:7: malformed: bad end address "1.0.8.256"`,
					"country.csv:8: unknown family: start 10.0.0.0 is IPv4, end 2001:db8:: is IPv6",
					"country.csv:9: start after end: 10.0.0.255 > 10.0.0.0",
				},
			},
			addrs: map[string]Entry{
				"1.0.2.9":        {Prefix: pfx("1.0.2.0/23"), Country: "CN"},
				"175.45.177.1":   {Prefix: pfx("175.45.176.0/22"), Country: "KP"}, // the later US line lost
				"175.45.178.1":   {Prefix: pfx("175.45.178.0/24"), Country: "NZ"}, // partial overlap: nested
				"192.0.2.1":      {Prefix: pfx("192.0.2.0/24"), Country: "XX"},    // 4in6 range, upper-cased
				"192.0.3.1":      {Prefix: pfx("192.0.3.0/24")},
				"198.51.100.1":   {Prefix: pfx("198.51.100.0/24"), Country: "DE"}, // CRLF line
				"198.51.101.1":   {Prefix: pfx("198.51.101.0/25"), Country: "FR"}, // no final newline
				"2001:208::1":    {Prefix: pfx("2001:200::/28"), Country: "AU"},
				"2001:db8::1":    {},
				"10.0.1.1":       {},
				"198.51.101.200": {},
			},
		},
		{
			file: "asn.csv",
			load: LoadIPLocationASN,
			want: LoadStats{
				Source: "asn.csv", Lines: 14, Added: 8, CIDRs: 10, DuplicateCIDRs: 1, Malformed: 5, Duplicate: 1,
				FirstSkipped: []string{
					`asn.csv:7: malformed: bad AS number "AS16509"`,
					`asn.csv:8: malformed: bad AS number "4294967296"`,
					"asn.csv:9: malformed: want 4 fields start,end,asn,as_name",
					`asn.csv:10: malformed: unterminated quote in "\"Amazon, unterminated"`,
					`asn.csv:11: malformed: text after quoted name "\"Amazon\" trailing"`,
				},
			},
			addrs: map[string]Entry{
				"1.0.0.1":    {Prefix: pfx("1.0.0.0/24"), ASN: 13335, ASName: "Cloudflare, Inc."},
				"2.26.210.1": {Prefix: pfx("2.26.208.0/21"), ASN: 201907, ASName: `LLC "SPUTNIK"`},
				"2.56.170.1": {Prefix: pfx("2.56.170.0/24"), ASN: 213300, ASName: `accompio SmarTec GmbH"`},
				"2.57.133.1": {Prefix: pfx("2.57.132.0/22"), ASN: 201893, ASName: `Pawel Walczuk trading as "BLUE-DOT" S.C.`},
				"2001::1":    {Prefix: pfx("2001::/32"), ASN: 6939, ASName: "Hurricane Electric LLC"},
				"3.0.5.1":    {Prefix: pfx("3.0.5.0/24")},
				"3.0.6.1":    {Prefix: pfx("3.0.6.0/24"), ASN: 64512, ASName: "Plain, with a comma"},
				"3.0.0.1":    {},
			},
		},
		{
			file: "list.txt",
			load: func(r io.Reader, name string, b *TableBuilder) (LoadStats, error) {
				return LoadCIDRList(r, name, b, Entry{Country: "WL", ASName: "watch list"})
			},
			want: LoadStats{
				Source: "list.txt", Lines: 14, Added: 6, Ignored: 3, CIDRs: 7, DuplicateCIDRs: 1, Malformed: 4, Duplicate: 1,
				FirstSkipped: []string{
					"list.txt:9: duplicate: 10.0.0.0/8 already in the table",
					"list.txt:10: malformed: 10.0.0.1/8 has host bits set (10.0.0.0/8?)",
					`list.txt:11: malformed: bad prefix "300.0.0.0/8"`,
					`list.txt:12: malformed: bad prefix "2001:db8::/129"`,
					`list.txt:13: malformed: bad address "fe80::1%eth0"`,
				},
			},
			addrs: map[string]Entry{
				"10.9.9.9":     {Prefix: pfx("10.0.0.0/8"), Country: "WL", ASName: "watch list"},
				"10.1.9.9":     {Prefix: pfx("10.1.0.0/16"), Country: "WL", ASName: "watch list"},
				"192.0.2.1":    {Prefix: pfx("192.0.2.1/32"), Country: "WL", ASName: "watch list"},
				"192.0.2.2":    {},
				"2001:db8::1":  {Prefix: pfx("2001:db8::1/128"), Country: "WL", ASName: "watch list"},
				"2001:db8::2":  {Prefix: pfx("2001:db8::/32"), Country: "WL", ASName: "watch list"},
				"198.51.100.7": {Prefix: pfx("198.51.100.0/24"), Country: "WL", ASName: "watch list"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			f, err := os.Open(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			b := NewTable(tt.file)
			got, err := tt.load(f, tt.file, b)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("stats\ngot  %+v\nwant %+v", got, tt.want)
			}
			if got.Lines != got.Added+got.Skipped()+got.Ignored {
				t.Errorf("lines %d != added %d + skipped %d + ignored %d", got.Lines, got.Added, got.Skipped(), got.Ignored)
			}
			tbl, st := b.Build()
			if n := st.Entries4 + st.Entries6; n != got.CIDRs-got.DuplicateCIDRs {
				t.Errorf("table has %d entries, loader added %d", n, got.CIDRs-got.DuplicateCIDRs)
			}
			for a, want := range tt.addrs {
				e, ok := tbl.Lookup(netip.MustParseAddr(a))
				if ok != want.Prefix.IsValid() || e != want {
					t.Errorf("Lookup(%s) = %+v %v, want %+v", a, e, ok, want)
				}
			}
		})
	}
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func TestLoadLineLength(t *testing.T) {
	pad := func(n int) string { // an ASN line of exactly n bytes
		line := "1.0.0.0,1.0.0.255,1,"
		return line + strings.Repeat("x", n-len(line))
	}
	tests := []struct {
		name      string
		input     string
		added     int
		malformed int
	}{
		{"at the limit", pad(MaxLineLength) + "\n", 1, 0},
		{"at the limit with CRLF", pad(MaxLineLength) + "\r\n", 1, 0},
		{"one over", pad(MaxLineLength+1) + "\n", 0, 1},
		{"far over, then a good line", pad(200_000) + "\n2.0.0.0,2.0.0.255,2,B\n", 1, 1},
		{"far over at the end", "2.0.0.0,2.0.0.255,2,B\n" + pad(100_000), 1, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := LoadIPLocationASN(strings.NewReader(tt.input), "x.csv", NewTable("x"))
			if err != nil {
				t.Fatal(err)
			}
			if st.Added != tt.added || st.Malformed != tt.malformed || st.Lines != tt.added+tt.malformed {
				t.Errorf("got %v", st)
			}
		})
	}
}

func TestLoadReadError(t *testing.T) {
	fail := errors.New("disk on fire")
	r := io.MultiReader(strings.NewReader("1.0.0.0,1.0.0.255,AU\n"), iotest.ErrReader(fail))
	st, err := LoadIPLocationCountry(r, "country.csv", NewTable("x"))
	if !errors.Is(err, fail) || !strings.Contains(err.Error(), "country.csv") {
		t.Errorf("error %v, want one wrapping %v and naming the file", err, fail)
	}
	if st.Added != 1 {
		t.Errorf("lines before the error: added %d, want 1", st.Added)
	}
}

func TestOpenFile(t *testing.T) {
	dir := t.TempDir()
	content := "1.0.0.0,1.0.0.255,AU\n"
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(content))
	zw.Close()
	files := map[string][]byte{
		"plain.csv":     []byte(content),
		"packed.csv.gz": gz.Bytes(),
		"broken.csv.gz": []byte("not gzip at all"),
		"cut.csv.gz":    gz.Bytes()[:gz.Len()-6], // a truncated download: fails while reading
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name    string
		openErr bool
		readErr bool
	}{
		{"plain.csv", false, false},
		{"packed.csv.gz", false, false},
		{"broken.csv.gz", true, false},
		{"cut.csv.gz", false, true},
		{"missing.csv", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, tt.name)
			rc, err := OpenFile(path)
			if (err != nil) != tt.openErr {
				t.Fatalf("OpenFile error %v, want error: %v", err, tt.openErr)
			}
			if err != nil {
				if !strings.Contains(err.Error(), tt.name) {
					t.Errorf("error %q does not name the file", err)
				}
				return
			}
			defer rc.Close()
			got, err := io.ReadAll(rc)
			if (err != nil) != tt.readErr {
				t.Fatalf("read error %v, want error: %v", err, tt.readErr)
			}
			if err == nil && string(got) != content {
				t.Errorf("read %q, want %q", got, content)
			}
			if err := rc.Close(); err != nil && !tt.readErr {
				t.Errorf("close: %v", err)
			}
		})
	}
}

func FuzzLoadIPLocationASN(f *testing.F) {
	f.Add([]byte("::,ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff,1,all\n0.0.0.0,255.255.255.255,2,\"all, v4\"\r\n"))
	f.Add([]byte("\n\n\r\n\"\"\"\n,,,\n"))
	fuzzLoader(f, "asn.csv", LoadIPLocationASN)
}

func FuzzLoadIPLocationCountry(f *testing.F) {
	f.Add([]byte("175.45.176.0,175.45.179.255,KP\n::,::ffff,ZZ\r\n1.0.0.0,0.255.255.255,AU\n"))
	fuzzLoader(f, "country.csv", LoadIPLocationCountry)
}

func FuzzLoadCIDRList(f *testing.F) {
	f.Add([]byte("# comment\n10.0.0.0/8\n2001:db8::/32 # trailing\n10.0.0.1/8\n\n::1\n"))
	fuzzLoader(f, "list.txt", func(r io.Reader, name string, b *TableBuilder) (LoadStats, error) {
		return LoadCIDRList(r, name, b, Entry{Country: "ZZ"})
	})
}

// fuzzLoader checks a text loader on arbitrary input: no error from memory,
// and what checkLoad checks of any load.
func fuzzLoader(f *testing.F, seedFile string, load func(io.Reader, string, *TableBuilder) (LoadStats, error)) {
	seed, err := os.ReadFile(filepath.Join("testdata", seedFile))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	for _, line := range strings.SplitAfter(string(seed), "\n") {
		f.Add([]byte(line))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		b := NewTable("fuzz")
		st, err := load(bytes.NewReader(data), "fuzz", b)
		if err != nil {
			t.Fatalf("error from an in-memory reader: %v", err)
		}
		checkLoad(t, st, b)
	})
}
