package summary

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/peerwatch/peerwatch/sensor/traffic"
)

// generated builds a consistent, sorted summary that looks like a real
// interval: n top prefixes (IPv4 /24s and some IPv6 /48s) out of n+n/2 seen,
// the rest in Other, with countries and ASes that sum to the same total.
func generated(n int, seed uint64) *Summary {
	rng := rand.New(rand.NewPCG(seed, 42))
	countries := []string{"NZ", "AU", "US", "DE", "JP", "GB", "FR", "NL", "SG", "KP", "CN", "BR", "IN", "CA", "SE", "", "ZA", "KR", "IT", "ES"}
	nAS := n/3 + 1
	t0 := time.Date(2026, 3, 14, 12, 0, 0, 0, time.UTC)
	s := &Summary{Schema: SchemaVersion, Sensor: "akl-ix-01", Seq: 4711, Start: t0, End: t0.Add(10 * time.Second)}
	cidx := map[string]int{}
	aidx := map[uint32]int{}
	seen := map[netip.Prefix]bool{}
	for len(s.Prefixes) < n+n/2 {
		var p netip.Prefix
		if rng.IntN(5) == 0 {
			var a [16]byte
			a[0], a[1] = 0x20, 0x01
			for i := 2; i < 6; i++ {
				a[i] = byte(rng.IntN(256))
			}
			p = netip.PrefixFrom(netip.AddrFrom16(a), 48)
		} else {
			p = netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(1 + rng.IntN(222)), byte(rng.IntN(256)), byte(rng.IntN(256)), 0}), 24)
		}
		if seen[p] {
			continue
		}
		seen[p] = true
		in, out := uint64(rng.ExpFloat64()*5000)+1, uint64(rng.ExpFloat64()*3000)
		c := traffic.Counters{Packets: [2]uint64{in, out}, Bytes: [2]uint64{in * uint64(60+rng.IntN(1400)), out * uint64(60+rng.IntN(1400))}}
		left := in + out
		for k := range traffic.NumClasses - 1 {
			x := uint64(rng.Float64() * float64(left) / 2)
			c.Class[k] = x
			left -= x
		}
		c.Class[traffic.NumClasses-1] = left
		country := countries[rng.IntN(len(countries))]
		asn := uint32(0)
		if country != "" {
			asn = 64496 + uint32(rng.IntN(nAS))
		}
		pc := PrefixCount{Prefix: p, Country: country, ASN: asn, Counters: c}
		if asn != 0 {
			pc.ASName = fmt.Sprintf("EXAMPLE-NET-%d", asn)
		}
		s.Prefixes = append(s.Prefixes, pc)
		s.Remote.Add(c)
		if i, ok := cidx[country]; ok {
			s.Countries[i].Add(c)
		} else {
			cidx[country] = len(s.Countries)
			s.Countries = append(s.Countries, CountryCount{Country: country, Counters: c})
		}
		if i, ok := aidx[asn]; ok {
			s.ASes[i].Add(c)
		} else {
			aidx[asn] = len(s.ASes)
			s.ASes = append(s.ASes, ASCount{ASN: asn, ASName: pc.ASName, Counters: c})
		}
		if country == "KP" {
			if len(s.Watch) == 0 {
				s.Watch = []WatchCount{{List: "kp-ranges"}}
			}
			s.Watch[0].Add(c)
		}
	}
	s.Globals = traffic.Globals{NonIP: 12, Malformed: 1, BothLocal: 300, NeitherLocal: 2}
	s.Globals.Seen = s.Remote.Total() + s.Globals.Buckets()
	s.Sort()
	s.TopN(n)
	return s
}

// canonical makes two summaries comparable with reflect.DeepEqual: times in
// UTC without monotonic readings, empty lists nil.
func canonical(s *Summary) *Summary {
	c := *s
	c.Start, c.End = s.Start.UTC().Round(0), s.End.UTC().Round(0)
	if len(c.Prefixes) == 0 {
		c.Prefixes = nil
	}
	if len(c.Countries) == 0 {
		c.Countries = nil
	}
	if len(c.ASes) == 0 {
		c.ASes = nil
	}
	if len(c.Watch) == 0 {
		c.Watch = nil
	}
	return &c
}

func assertEqual(t testing.TB, got, want *Summary) {
	t.Helper()
	if !reflect.DeepEqual(canonical(got), canonical(want)) {
		g, _ := json.Marshal(got)
		w, _ := json.Marshal(want)
		t.Fatalf("summaries differ:\n got %s\nwant %s", g, w)
	}
}

func TestRoundTrip(t *testing.T) {
	small := sample(time.Unix(1_700_000_000, 0), 3, 4)
	small.Seq = 1
	for _, tc := range []struct {
		name string
		s    *Summary
		gzip bool
	}{
		{"plain", small, false},
		{"gzip", generated(100, 1), true},
		{"empty lists", &Summary{Schema: SchemaVersion, Sensor: "x", Seq: 9, Start: time.Unix(1, 0), End: time.Unix(1, 0), Globals: traffic.Globals{Seen: 3, NonIP: 3}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.s.Check(); err != nil {
				t.Fatal(err)
			}
			payload, err := Encode(tc.s, EncodeOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if isGzip := bytes.HasPrefix(payload, []byte{0x1f, 0x8b}); isGzip != tc.gzip {
				t.Errorf("gzip = %v, want %v (%d bytes)", isGzip, tc.gzip, len(payload))
			}
			got, err := Decode(payload, Limits{})
			if err != nil {
				t.Fatal(err)
			}
			assertEqual(t, got, tc.s)
		})
	}
}

func TestEncodeLeavesInputAlone(t *testing.T) {
	s := generated(1000, 2)
	before, _ := json.Marshal(s)
	if _, err := Encode(s, EncodeOptions{MaxBytes: 16 << 10}); err != nil {
		t.Fatal(err)
	}
	after, _ := json.Marshal(s)
	if !bytes.Equal(before, after) {
		t.Error("Encode modified its input")
	}
}

func TestEncodeTruncates(t *testing.T) {
	s := generated(1000, 3)
	for _, max := range []int{16 << 10, 32 << 10, 48 << 10} {
		t.Run(fmt.Sprint(max), func(t *testing.T) {
			payload, err := Encode(s, EncodeOptions{MaxBytes: max})
			if err != nil {
				t.Fatal(err)
			}
			if len(payload) > max {
				t.Fatalf("%d bytes > MaxBytes %d", len(payload), max)
			}
			got, err := Decode(payload, Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if err := got.Check(); err != nil {
				t.Fatal(err)
			}
			kept := len(got.Prefixes)
			if kept == 0 || kept >= len(s.Prefixes) || got.Truncated != len(s.Prefixes)-kept {
				t.Fatalf("kept %d of %d, truncated %d", kept, len(s.Prefixes), got.Truncated)
			}
			// The top of the list is what stays; countries and ASes are exact.
			if !reflect.DeepEqual(got.Prefixes, s.Prefixes[:kept]) || !reflect.DeepEqual(got.Countries, s.Countries) || !reflect.DeepEqual(got.ASes, s.ASes) {
				t.Error("truncation changed more than the tail of the prefixes")
			}
			// One more prefix would not have fitted.
			more := cut(s, kept+1)
			if b, err := encodeAll(more, EncodeOptions{}.withDefaults()); err != nil || len(b) <= max {
				t.Errorf("%d prefixes would have fitted (%d bytes, %v)", kept+1, len(b), err)
			}
			t.Logf("MaxBytes %d: kept %d of %d prefixes, %d bytes", max, kept, len(s.Prefixes), len(payload))
		})
	}
}

func TestEncodeTooLargeEvenWithoutPrefixes(t *testing.T) {
	s := generated(3000, 4) // about 1000 ASes
	_, err := Encode(s, EncodeOptions{MaxBytes: 2 << 10})
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "even with no prefixes") {
		t.Fatalf("err = %v", err)
	}
}

func TestEncodeRefusesInvalid(t *testing.T) {
	s := sample(time.Unix(1_700_000_000, 0), 3, 4)
	s.Seq = 1
	s.Schema = 2
	if _, err := Encode(s, EncodeOptions{}); !errors.Is(err, ErrVersion) {
		t.Errorf("schema 2: %v", err)
	}
	s.Schema = 0 // Encode fills in the version
	s.Remote.Packets[0]++
	if _, err := Encode(s, EncodeOptions{}); !errors.Is(err, ErrInconsistent) {
		t.Errorf("inconsistent: %v", err)
	}
}

// validJSON is the plain payload of a valid summary, as a generic map that
// the rejection cases edit.
func validJSON(t *testing.T) map[string]any {
	t.Helper()
	s := sample(time.Unix(1_700_000_000, 0), 3, 4)
	s.Seq = 7
	s.Watch = []WatchCount{{List: "kp", Counters: counters(1, 0)}}
	b, err := Encode(s, EncodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func gz(t testing.TB, b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestDecodeRejects(t *testing.T) {
	list := func(m map[string]any, k string) []any { return m[k].([]any) }
	item := func(m map[string]any, k string, i int) map[string]any { return list(m, k)[i].(map[string]any) }
	for _, tc := range []struct {
		name string
		edit func(m map[string]any)
		raw  func(b []byte) []byte // applied after marshalling
		lim  Limits
		want error
	}{
		{name: "valid", want: nil},
		{name: "valid gzip", raw: func(b []byte) []byte { return gz(t, b) }, want: nil},
		{name: "schema 2", edit: func(m map[string]any) { m["schema"] = 2; m["new_field"] = true }, want: ErrVersion},
		{name: "schema 0", edit: func(m map[string]any) { m["schema"] = 0 }, want: ErrVersion},
		{name: "no schema", edit: func(m map[string]any) { delete(m, "schema") }, want: ErrVersion},
		{name: "schema string", edit: func(m map[string]any) { m["schema"] = "1" }, want: ErrMalformed},
		{name: "unknown field", edit: func(m map[string]any) { m["colour"] = "red" }, want: ErrMalformed},
		{name: "unknown nested field", edit: func(m map[string]any) { item(m, "prefixes", 0)["rtt"] = 3 }, want: ErrMalformed},
		{name: "empty sensor", edit: func(m map[string]any) { m["sensor"] = "" }, want: ErrMalformed},
		{name: "sensor with slash", edit: func(m map[string]any) { m["sensor"] = "a/b" }, want: ErrMalformed},
		{name: "sensor with wildcard", edit: func(m map[string]any) { m["sensor"] = "a+" }, want: ErrMalformed},
		{name: "sensor too long", edit: func(m map[string]any) { m["sensor"] = strings.Repeat("a", 65) }, want: ErrMalformed},
		{name: "sensor 64", edit: func(m map[string]any) { m["sensor"] = strings.Repeat("a", 64) }, want: nil},
		{name: "seq 0", edit: func(m map[string]any) { m["seq"] = 0 }, want: ErrMalformed},
		{name: "seq past 2^63-1", edit: func(m map[string]any) { m["seq"] = uint64(1 << 63) }, want: ErrMalformed},
		{name: "seq negative", edit: func(m map[string]any) { m["seq"] = -1 }, want: ErrMalformed},
		{name: "no start", edit: func(m map[string]any) { delete(m, "start") }, want: ErrMalformed},
		{name: "zero end", edit: func(m map[string]any) { m["end"] = "0001-01-01T00:00:00Z" }, want: ErrMalformed},
		{name: "end before start", edit: func(m map[string]any) { m["end"] = "2000-01-01T00:00:00Z" }, want: ErrMalformed},
		{name: "year 2262", edit: func(m map[string]any) { m["end"] = "2262-06-01T00:00:00Z" }, want: ErrMalformed},
		{name: "before 1970", edit: func(m map[string]any) { m["start"] = "1969-12-31T23:59:59Z" }, want: ErrMalformed},
		{name: "bad time", edit: func(m map[string]any) { m["start"] = "yesterday" }, want: ErrMalformed},
		{name: "negative truncated", edit: func(m map[string]any) { m["truncated"] = -1 }, want: ErrMalformed},
		{name: "unmasked prefix", edit: func(m map[string]any) { item(m, "prefixes", 0)["prefix"] = "198.51.100.1/24" }, want: ErrMalformed},
		{name: "bad prefix", edit: func(m map[string]any) { item(m, "prefixes", 0)["prefix"] = "198.51.100.0/33" }, want: ErrMalformed},
		{name: "missing prefix", edit: func(m map[string]any) { delete(item(m, "prefixes", 0), "prefix") }, want: ErrMalformed},
		{name: "duplicate prefix", edit: func(m map[string]any) { item(m, "prefixes", 1)["prefix"] = item(m, "prefixes", 0)["prefix"] }, want: ErrMalformed},
		{name: "duplicate country", edit: func(m map[string]any) { item(m, "countries", 1)["country"] = item(m, "countries", 0)["country"] }, want: ErrMalformed},
		{name: "duplicate as", edit: func(m map[string]any) { m["ases"] = append(list(m, "ases"), list(m, "ases")[0]) }, want: ErrMalformed},
		{name: "duplicate watch", edit: func(m map[string]any) { m["watch"] = append(list(m, "watch"), list(m, "watch")[0]) }, want: ErrMalformed},
		{name: "counters not numbers", edit: func(m map[string]any) { item(m, "prefixes", 0)["packets"] = []any{"1", "2"} }, want: ErrMalformed},
		{name: "counter overflow", edit: func(m map[string]any) { item(m, "prefixes", 0)["packets"] = []any{1e20, 0} }, want: ErrMalformed},
		{name: "three directions", edit: func(m map[string]any) {
			item(m, "prefixes", 0)["packets"] = append(item(m, "prefixes", 0)["packets"].([]any), 0)
		}, want: ErrMalformed},
		{name: "one direction", edit: func(m map[string]any) { item(m, "prefixes", 0)["bytes"] = item(m, "prefixes", 0)["bytes"].([]any)[:1] }, want: ErrMalformed},
		{name: "four classes", edit: func(m map[string]any) {
			item(m, "countries", 0)["class"] = item(m, "countries", 0)["class"].([]any)[:4]
		}, want: ErrMalformed},
		{name: "too many prefixes", lim: Limits{MaxPrefixes: 1}, want: ErrTooLarge},
		{name: "too many countries", lim: Limits{MaxCountries: 1}, want: ErrTooLarge},
		{name: "too many ases", edit: func(m map[string]any) {
			a := item(m, "ases", 0)
			b := map[string]any{"asn": 5, "packets": []any{0, 0}, "bytes": []any{0, 0}, "class": []any{0, 0, 0, 0, 0}}
			m["ases"] = []any{a, b}
		}, lim: Limits{MaxASes: 1}, want: ErrTooLarge},
		{name: "too many watch", edit: func(m map[string]any) {
			m["watch"] = append(list(m, "watch"), map[string]any{"list": "other"})
		}, lim: Limits{MaxWatch: 1}, want: ErrTooLarge},
		{name: "too long", lim: Limits{MaxDecompressed: 100}, want: ErrTooLarge},
		{name: "too long gzip", raw: func(b []byte) []byte { return gz(t, b) }, lim: Limits{MaxDecompressed: 100}, want: ErrTooLarge},
		{name: "seen off", edit: func(m map[string]any) { m["globals"].(map[string]any)["seen"] = 1 }, want: ErrInconsistent},
		{name: "country off", edit: func(m map[string]any) { item(m, "countries", 0)["packets"] = []any{0, 0} }, want: ErrInconsistent},
		{name: "empty", raw: func([]byte) []byte { return nil }, want: ErrMalformed},
		{name: "leading space", raw: func(b []byte) []byte { return append([]byte(" "), b...) }, want: ErrMalformed},
		{name: "array", raw: func([]byte) []byte { return []byte("[1]") }, want: ErrMalformed},
		{name: "trailing data", raw: func(b []byte) []byte { return append(b, []byte(" {}")...) }, want: ErrMalformed},
		{name: "truncated json", raw: func(b []byte) []byte { return b[:len(b)/2] }, want: ErrMalformed},
		{name: "truncated gzip", raw: func(b []byte) []byte { z := gz(t, b); return z[:len(z)-6] }, want: ErrMalformed},
		{name: "corrupt gzip checksum", raw: func(b []byte) []byte { z := gz(t, b); z[len(z)-5] ^= 0xff; return z }, want: ErrMalformed},
		{name: "gzip of garbage", raw: func([]byte) []byte { return gz(t, []byte("hello")) }, want: ErrMalformed},
		{name: "gzip magic only", raw: func([]byte) []byte { return []byte{0x1f, 0x8b} }, want: ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := validJSON(t)
			if tc.edit != nil {
				tc.edit(m)
			}
			b, err := json.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			if tc.raw != nil {
				b = tc.raw(b)
			}
			_, err = Decode(b, tc.lim)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			for _, other := range []error{ErrVersion, ErrTooLarge, ErrMalformed, ErrInconsistent} {
				if other != tc.want && errors.Is(err, other) {
					t.Errorf("err %v is also %v", err, other)
				}
			}
			t.Log(err)
		})
	}
}

func TestDecodeVersionMessage(t *testing.T) {
	_, err := Decode([]byte(`{"schema":2,"sensor":"x","whatever":[]}`), Limits{})
	if !errors.Is(err, ErrVersion) || !strings.Contains(err.Error(), "version 2") || !strings.Contains(err.Error(), "version 1") {
		t.Fatalf("err = %v", err)
	}
}

// TestDecodeGzipBomb: 100 MB of zeros compress to about 100 KB; Decode must
// refuse them without inflating them.
func TestDecodeGzipBomb(t *testing.T) {
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	zw.Write([]byte(`{"schema":1,"sensor":"`))
	zeros := make([]byte, 1<<20)
	for range 100 {
		zw.Write(zeros)
	}
	zw.Close()
	bomb := buf.Bytes()
	t.Logf("bomb: %d bytes compressed, 100 MiB inflated", len(bomb))

	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	_, err := Decode(bomb, Limits{})
	elapsed := time.Since(start)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v", err)
	}
	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("refused in %v, %d KiB allocated", elapsed, allocated>>10)
	if allocated >= 16<<20 {
		t.Errorf("allocated %d MiB", allocated>>20)
	}
	if elapsed > 2*time.Second {
		t.Errorf("took %v", elapsed)
	}
}

// TestWireSizes prints the sizes quoted in docs/mqtt.md (go test -run
// WireSizes -v).
func TestWireSizes(t *testing.T) {
	for _, n := range []int{10, 100, 1000} {
		s := generated(n, uint64(n))
		plain, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		payload, err := Encode(s, EncodeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		zipped, _ := encodeAll(s, EncodeOptions{CompressAbove: 1, MaxBytes: 1 << 30})
		if n >= 100 && len(payload) >= len(plain)/2 {
			t.Errorf("%d prefixes: payload %d bytes, plain %d: compression should pay", n, len(payload), len(plain))
		}
		t.Logf("%4d prefixes (%d countries, %d ases): plain %6d bytes, gzip %6d bytes (%.0f%%), sent %6d bytes",
			n, len(s.Countries), len(s.ASes), len(plain), len(zipped), 100*float64(len(zipped))/float64(len(plain)), len(payload))
	}
}

func FuzzDecode(f *testing.F) {
	s := sample(time.Unix(1_700_000_000, 0), 3, 4)
	s.Seq = 1
	plain, err := Encode(s, EncodeOptions{})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(plain)
	f.Add(gz(f, plain))
	big, err := Encode(generated(20, 5), EncodeOptions{})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(big)
	for _, src := range []*Summary{s, generated(20, 5)} {
		bin, err := Encode(src, EncodeOptions{Format: FormatBinary})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(bin)
	}
	f.Add([]byte("PWB\x01\x00"))
	f.Add([]byte(`{"schema":2}`))
	f.Add([]byte{0x1f, 0x8b})
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		s, err := Decode(payload, Limits{})
		if err != nil {
			for _, e := range []error{ErrVersion, ErrTooLarge, ErrMalformed, ErrInconsistent} {
				if errors.Is(err, e) {
					return
				}
			}
			t.Fatalf("error without a sentinel: %v", err)
		}
		for _, format := range []Format{FormatJSON, FormatBinary} {
			again, err := Encode(s, EncodeOptions{MaxBytes: 1 << 30, Format: format})
			if err != nil {
				t.Fatalf("accepted summary does not encode in format %d: %v", format, err)
			}
			s2, err := Decode(again, Limits{})
			if err != nil {
				t.Fatalf("summary re-encoded in format %d refused: %v", format, err)
			}
			assertEqual(t, s2, s)
		}
	})
}

// TestCountryCode: the numbers of the country codes run from "" through
// AA to ZZ, in the order of the strings, and CountryOf gives each back;
// anything else is -1.
func TestCountryCode(t *testing.T) {
	prev := ""
	for code := range CountryCodes {
		cc := CountryOf(code)
		if got := CountryCode(cc); got != code || !ValidCountry(cc) {
			t.Fatalf("CountryOf(%d) = %q, whose number is %d", code, cc, got)
		}
		if code > 0 && cc <= prev {
			t.Fatalf("%q (%d) after %q", cc, code, prev)
		}
		prev = cc
	}
	if prev != "ZZ" {
		t.Errorf("the last code is %q", prev)
	}
	for _, cc := range []string{"A", "aa", "Aa", "A1", "ABC", "Ä", "\x00\x00"} {
		if got := CountryCode(cc); got != -1 {
			t.Errorf("CountryCode(%q) = %d, want -1", cc, got)
		}
	}
	if CountryOf(-1) != "" || CountryOf(CountryCodes) != "" {
		t.Error("CountryOf out of range is not empty")
	}
}
