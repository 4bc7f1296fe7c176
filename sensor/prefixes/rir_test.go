package prefixes

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestLoadRIRDelegatedFixtures(t *testing.T) {
	tests := []struct {
		file    string
		want    LoadStats
		entries []Entry // the whole table, in Entries order
	}{
		{
			file: "delegated-apnic.txt",
			want: LoadStats{
				Source: "delegated-apnic.txt", Lines: 28, Added: 9, Ignored: 12, CIDRs: 11, DuplicateCIDRs: 1,
				Malformed: 5, UnknownFamily: 1, Duplicate: 1,
				FirstSkipped: []string{
					"delegated-apnic.txt:20: duplicate: 1.0.0.0/24 already in the table",
					`delegated-apnic.txt:21: malformed: bad country code "JPN"`,
					`delegated-apnic.txt:22: malformed: bad address count "0"`,
					"delegated-apnic.txt:23: malformed: 512 addresses from 255.255.255.0 pass 255.255.255.255",
					"delegated-apnic.txt:24: unknown family: type ipv4 but start 2001:db8:: is IPv6",
				},
			},
			entries: []Entry{
				{Prefix: pfx("1.0.0.0/24"), Country: "AU"},
				{Prefix: pfx("1.0.1.0/24"), Country: "CN"},
				{Prefix: pfx("1.0.2.0/23"), Country: "CN"},
				{Prefix: pfx("1.0.4.0/22"), Country: "AU"},
				{Prefix: pfx("1.6.0.0/15"), Country: "IN"},  // cc "in", upper-cased
				{Prefix: pfx("1.33.0.0/23"), Country: "JP"}, // 768 addresses: a /23 and a /24
				{Prefix: pfx("1.33.2.0/24"), Country: "JP"},
				{Prefix: pfx("2001:200::/35"), Country: "JP"},
				{Prefix: pfx("2001:df0:2e8::/48"), Country: "AU"},
				{Prefix: pfx("2001:df0:2e9::/48"), Country: "NZ"}, // after the bad lines and a second version line
			},
		},
		{
			file: "delegated-arin-extended.txt",
			want: LoadStats{
				Source: "delegated-arin-extended.txt", Lines: 26, Added: 10, Ignored: 10, CIDRs: 12, DuplicateCIDRs: 1,
				Malformed: 5, Duplicate: 1,
				FirstSkipped: []string{
					"delegated-arin-extended.txt:17: duplicate: 3.0.0.0/10 already in the table",
					`delegated-arin-extended.txt:18: malformed: bad country code "U5"`,
					"delegated-arin-extended.txt:19: malformed: no country code",
					`delegated-arin-extended.txt:20: malformed: bad start address "4.0.2"`,
					`delegated-arin-extended.txt:21: malformed: bad prefix length "129"`,
				},
			},
			entries: []Entry{
				{Prefix: pfx("3.0.0.0/10"), Country: "US"},
				{Prefix: pfx("8.8.8.0/24"), Country: "US"},
				{Prefix: pfx("23.16.0.0/12"), Country: "CA"},
				{Prefix: pfx("24.48.0.0/16"), Country: "PR"},
				{Prefix: pfx("24.50.0.0/24"), Country: "CA"},    // CRLF line
				{Prefix: pfx("24.50.1.0/24"), Country: "CA"},    // no final newline
				{Prefix: pfx("50.115.128.0/21"), Country: "US"}, // 3072 addresses: a /21 and a /22
				{Prefix: pfx("50.115.136.0/22"), Country: "US"},
				{Prefix: pfx("2001:400::/32"), Country: "US"},
				{Prefix: pfx("2600::/29"), Country: "US"},
				{Prefix: pfx("2607:f8b0::/32"), Country: "US"},
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
			got, err := LoadRIRDelegated(f, tt.file, b)
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

// TestLoadRIRDelegatedLines checks what becomes of each kind of line, and each skip message.
func TestLoadRIRDelegatedLines(t *testing.T) {
	const version = "2|apnic|20240601|71234|19830613|20240531|+1000\n"
	tests := []struct {
		name    string
		in      string
		ignored int
		skipped string  // the one quoted skip, if any
		entries []Entry // the whole table
	}{
		{name: "version line", in: version, ignored: 1},
		{name: "version line with a minor version", in: "2.3|arin|1717214400000|152365|19700101|20240531|-0400", ignored: 1},
		{name: "comments and blanks before the version line", in: "# delegated\n\n#\n" + version, ignored: 4},
		{name: "version line with 6 fields", in: "2|apnic|20240601|71234|19830613|20240531",
			skipped: "x:1: malformed: bad version line: want 7 fields version|registry|serial|records|startdate|enddate|UTCoffset"},
		{name: "version line without a registry", in: "2||20240601|71234|19830613|20240531|+1000",
			skipped: "x:1: malformed: bad version line: want 7 fields version|registry|serial|records|startdate|enddate|UTCoffset"},
		{name: "concatenated files", in: version + "apnic|AU|ipv4|1.0.0.0|256|20110811|assigned\n" +
			"2.3|arin|1717214400000|152365|19700101|20240531|-0400\narin|US|ipv4|3.0.0.0|4194304|20170601|allocated|5f1d",
			ignored: 2, entries: []Entry{{Prefix: pfx("1.0.0.0/24"), Country: "AU"}, {Prefix: pfx("3.0.0.0/10"), Country: "US"}}},
		{name: "registry not a word", in: "ap1c|AU|ipv4|1.0.0.0|256|20110811|assigned", skipped: `x:1: malformed: bad registry "ap1c"`},
		{name: "no version line", in: "arin|US|ipv4|3.0.0.0|4194304|20170601|allocated|5f1d",
			entries: []Entry{{Prefix: pfx("3.0.0.0/10"), Country: "US"}}},
		{name: "summary lines", in: version + "apnic|*|asn|*|12437|summary\napnic|*|ipv4|*|50215|summary\napnic|*|ipv6|*|8582|summary", ignored: 4},
		{name: "asn", in: "apnic|JP|asn|173|1|20020801|allocated\napnic|JP|asn|x|y|z|allocated", ignored: 2},
		{name: "available and reserved", in: "apnic|ZZ|ipv4|1.34.0.0|256||reserved\napnic||ipv4|1.36.0.0|1024||available\nripencc|ZZ|ipv6|2a00:1::|32||available|", ignored: 3},
		{name: "other statuses", in: "arin|US|ipv4|63.0.0.0|2048|19980101|returned\narin|US|ipv4|63.0.8.0|2048|19980101|", ignored: 2},
		{name: "status in upper case", in: "arin|US|ipv4|63.0.0.0|2048|19980101|ALLOCATED",
			entries: []Entry{{Prefix: pfx("63.0.0.0/21"), Country: "US"}}},
		{name: "extension fields", in: "lacnic|BR|ipv4|177.0.0.0|262144|20100909|allocated|123|extra|more",
			entries: []Entry{{Prefix: pfx("177.0.0.0/14"), Country: "BR"}}},
		{name: "too few fields", in: "apnic|AU|ipv4|1.0.0.0|256",
			skipped: "x:1: malformed: want 7 fields registry|cc|type|start|value|date|status, got 5"},
		{name: "empty registry", in: "|AU|ipv4|1.0.0.0|256|20110811|assigned", skipped: `x:1: malformed: bad registry ""`},
		{name: "unknown type", in: "apnic|AU|ipv5|1.0.0.0|256|20110811|assigned", skipped: `x:1: malformed: unknown type "ipv5"`},
		{name: "no country", in: "apnic||ipv4|1.0.0.0|256|20110811|assigned", skipped: "x:1: malformed: no country code"},
		{name: "bad country", in: "apnic|A1|ipv4|1.0.0.0|256|20110811|assigned", skipped: `x:1: malformed: bad country code "A1"`},
		{name: "country upper-cased", in: "ripencc|eu|ipv4|2.16.0.0|524288|20100712|allocated",
			entries: []Entry{{Prefix: pfx("2.16.0.0/13"), Country: "EU"}}},
		{name: "bad start", in: "apnic|AU|ipv4|1.0.0|256|20110811|assigned", skipped: `x:1: malformed: bad start address "1.0.0"`},
		{name: "start with a zone", in: "apnic|AU|ipv6|fe80::%eth0|64|20110811|assigned", skipped: `x:1: malformed: bad start address "fe80::%eth0"`},
		{name: "ipv4 with an IPv6 start", in: "apnic|AU|ipv4|2001:db8::|256|20110811|assigned",
			skipped: "x:1: unknown family: type ipv4 but start 2001:db8:: is IPv6"},
		{name: "ipv6 with an IPv4 start", in: "apnic|AU|ipv6|1.0.0.0|24|20110811|assigned",
			skipped: "x:1: unknown family: type ipv6 but start 1.0.0.0 is IPv4"},
		{name: "zero addresses", in: "apnic|AU|ipv4|1.0.0.0|0|20110811|assigned", skipped: `x:1: malformed: bad address count "0"`},
		{name: "negative count", in: "apnic|AU|ipv4|1.0.0.0|-1|20110811|assigned", skipped: `x:1: malformed: bad address count "-1"`},
		{name: "count past the end", in: "apnic|AU|ipv4|255.255.255.255|2|20110811|assigned",
			skipped: "x:1: malformed: 2 addresses from 255.255.255.255 pass 255.255.255.255"},
		{name: "count far past the end", in: "apnic|AU|ipv4|1.0.0.0|18446744073709551615|20110811|assigned",
			skipped: "x:1: malformed: 18446744073709551615 addresses from 1.0.0.0 pass 255.255.255.255"},
		{name: "count up to the end", in: "apnic|AU|ipv4|255.255.255.0|256|20110811|assigned",
			entries: []Entry{{Prefix: pfx("255.255.255.0/24"), Country: "AU"}}},
		{name: "the whole IPv4 space", in: "iana|ZZ|ipv4|0.0.0.0|4294967296|19810901|allocated",
			entries: []Entry{{Prefix: pfx("0.0.0.0/0"), Country: "ZZ"}}},
		{name: "count not a power of two", in: "apnic|JP|ipv4|1.33.0.0|768|20110412|allocated",
			entries: []Entry{{Prefix: pfx("1.33.0.0/23"), Country: "JP"}, {Prefix: pfx("1.33.2.0/24"), Country: "JP"}}},
		{name: "unaligned start", in: "arin|US|ipv4|8.8.8.128|384|20140403|assigned",
			entries: []Entry{{Prefix: pfx("8.8.8.128/25"), Country: "US"}, {Prefix: pfx("8.8.9.0/24"), Country: "US"}}},
		{name: "prefix length too long", in: "apnic|JP|ipv6|2001:200::|129|19990813|allocated", skipped: `x:1: malformed: bad prefix length "129"`},
		{name: "prefix length not a number", in: "apnic|JP|ipv6|2001:200::|/35|19990813|allocated", skipped: `x:1: malformed: bad prefix length "/35"`},
		{name: "host bits set", in: "apnic|JP|ipv6|2001:201::|16|19990813|allocated", skipped: "x:1: malformed: 2001:201::/16 has host bits set (2001::/16?)"},
		{name: "IPv4-mapped ipv6", in: "apnic|JP|ipv6|::ffff:1.0.0.0|120|19990813|allocated",
			entries: []Entry{{Prefix: pfx("1.0.0.0/24"), Country: "JP"}}},
		{name: "duplicate", in: "apnic|AU|ipv4|1.0.0.0|512|20110811|assigned\napnic|NZ|ipv4|1.0.0.0|512|20110811|assigned",
			skipped: "x:2: duplicate: 1.0.0.0/23 already in the table", entries: []Entry{{Prefix: pfx("1.0.0.0/23"), Country: "AU"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := NewTable("x")
			st, err := LoadRIRDelegated(strings.NewReader(tt.in), "x", b)
			if err != nil {
				t.Fatal(err)
			}
			var wantSkipped []string
			if tt.skipped != "" {
				wantSkipped = []string{tt.skipped}
			}
			if !reflect.DeepEqual(st.FirstSkipped, wantSkipped) || st.Ignored != tt.ignored {
				t.Errorf("skipped %q, ignored %d; want %q, %d", st.FirstSkipped, st.Ignored, wantSkipped, tt.ignored)
			}
			tbl := checkLoad(t, st, b)
			if got := tbl.Entries(); len(got)+len(tt.entries) > 0 && !reflect.DeepEqual(got, tt.entries) {
				t.Errorf("entries\ngot  %v\nwant %v", got, tt.entries)
			}
		})
	}
}

// checkLoad checks what holds after any load: every line is counted once, the quoted lines
// agree with the counts, and the table has the prefixes the loader says it added. It builds b
// and returns the table.
func checkLoad(t *testing.T, st LoadStats, b *TableBuilder) *Table {
	t.Helper()
	if st.Lines != st.Added+st.Skipped()+st.Ignored {
		t.Fatalf("lines %d != added %d + skipped %d + ignored %d", st.Lines, st.Added, st.Skipped(), st.Ignored)
	}
	if want := min(st.Skipped(), maxSkippedShown); len(st.FirstSkipped) != want {
		t.Fatalf("%d skipped lines quoted, want %d", len(st.FirstSkipped), want)
	}
	if st.Added > st.CIDRs-st.DuplicateCIDRs || st.Duplicate > st.DuplicateCIDRs {
		t.Fatalf("inconsistent counts: %v", st)
	}
	tbl, bs := b.Build()
	if n := bs.Entries4 + bs.Entries6; n != st.CIDRs-st.DuplicateCIDRs || bs.Duplicates != st.DuplicateCIDRs {
		t.Fatalf("table has %d entries (%d duplicates), loader says %v", n, bs.Duplicates, st)
	}
	for _, e := range tbl.Entries() { // each prefix's first address matches it or a longer prefix
		got, ok := tbl.Lookup(e.Prefix.Addr())
		if !ok || !got.Prefix.Contains(e.Prefix.Addr()) || got.Prefix.Bits() < e.Prefix.Bits() {
			t.Fatalf("Lookup(%v) = %v %v, want %v or a more specific prefix", e.Prefix.Addr(), got.Prefix, ok, e.Prefix)
		}
	}
	return tbl
}

func FuzzLoadRIRDelegated(f *testing.F) {
	for _, name := range []string{"delegated-apnic.txt", "delegated-arin-extended.txt"} {
		seed, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(seed)
		for _, line := range strings.SplitAfter(string(seed), "\n") {
			f.Add([]byte(line))
		}
	}
	f.Add([]byte("iana|ZZ|ipv4|0.0.0.0|4294967296|19810901|allocated\niana|ZZ|ipv6|::|0|19810901|allocated\r\n"))
	f.Add([]byte("2|x\n||||||\n|*|*|*|*|summary\n\n#\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		b := NewTable("fuzz")
		st, err := LoadRIRDelegated(bytes.NewReader(data), "fuzz.txt", b)
		if err != nil {
			t.Fatalf("error from an in-memory reader: %v", err)
		}
		checkLoad(t, st, b)
	})
}
