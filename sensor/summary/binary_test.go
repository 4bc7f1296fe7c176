package summary

import (
	"bytes"
	"errors"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/peerwatch/peerwatch/sensor/traffic"
)

func TestBinaryRoundTrip(t *testing.T) {
	small := sample(time.Unix(1_700_000_000, 0), 3, 4)
	small.Seq = 1
	small.OutboxDropped = 7
	v6 := generated(50, 7)
	v6.Prefixes[0].Prefix = netip.MustParsePrefix("2001:db8:8000::/33")
	v6.Prefixes[1].Prefix = netip.MustParsePrefix("::/0")
	v6.Prefixes[2].Prefix = netip.MustParsePrefix("0.0.0.0/0")
	v6.Prefixes[3].Prefix = netip.MustParsePrefix("2001:db8::1/128")
	v6.Sort()
	for _, tc := range []struct {
		name string
		s    *Summary
	}{
		{"small", small},
		{"1000 prefixes", generated(1000, 1)},
		{"v6 and edge lengths", v6},
		{"empty lists", &Summary{Schema: SchemaVersion, Sensor: "x", Seq: 9, Start: time.Unix(1, 0), End: time.Unix(1, 0), Globals: traffic.Globals{Seen: 3, NonIP: 3}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bin, err := Encode(tc.s, EncodeOptions{Format: FormatBinary, MaxBytes: 1 << 30})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(bin, []byte("PWB")) {
				t.Fatalf("binary payload starts with %q", bin[:min(8, len(bin))])
			}
			got, err := Decode(bin, Limits{})
			if err != nil {
				t.Fatal(err)
			}
			assertEqual(t, got, tc.s)
			js, err := Encode(tc.s, EncodeOptions{MaxBytes: 1 << 30})
			if err != nil {
				t.Fatal(err)
			}
			fromJSON, err := Decode(js, Limits{})
			if err != nil {
				t.Fatal(err)
			}
			assertEqual(t, got, fromJSON)
			t.Logf("%d prefixes: binary %d bytes, JSON (gzip when it pays) %d bytes", len(tc.s.Prefixes), len(bin), len(js))
		})
	}
}

// TestBinaryTruncated cuts a valid payload at every length: each cut is
// refused with a sentinel, none panics.
func TestBinaryTruncated(t *testing.T) {
	bin, err := Encode(generated(30, 3), EncodeOptions{Format: FormatBinary})
	if err != nil {
		t.Fatal(err)
	}
	for n := range len(bin) {
		_, err := Decode(bin[:n], Limits{})
		if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrVersion) && !errors.Is(err, ErrInconsistent) && !errors.Is(err, ErrTooLarge) {
			t.Fatalf("cut at %d of %d: %v", n, len(bin), err)
		}
	}
}

func TestBinaryRejects(t *testing.T) {
	s := sample(time.Unix(1_700_000_000, 0), 3, 4)
	s.Seq = 1
	bin, err := Encode(s, EncodeOptions{Format: FormatBinary})
	if err != nil {
		t.Fatal(err)
	}
	edit := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(bin)) }
	for _, tc := range []struct {
		name    string
		payload []byte
		lim     Limits
		want    error
	}{
		{"valid", bin, Limits{}, nil},
		{"schema 2", edit(func(b []byte) []byte { b[3] = 2; return b }), Limits{}, ErrVersion},
		{"trailing byte", append(bytes.Clone(bin), 0), Limits{}, ErrMalformed},
		{"seen off by one", func() []byte { o := *s; o.Globals.Seen++; return encodeBinary(&o) }(), Limits{}, ErrInconsistent},
		{"v6 length 129", func() []byte {
			o := *s
			o.Prefixes = append([]PrefixCount(nil), s.Prefixes...)
			o.Prefixes[0].Prefix = netip.MustParsePrefix("2001:db8::/32")
			b := encodeBinary(&o)
			i := bytes.Index(b, []byte{v6Bits + 32, 0x20, 0x01, 0x0d, 0xb8})
			b[i] = v6Bits + 129
			return b
		}(), Limits{}, ErrMalformed},
		{"huge string table", append([]byte("PWB\x01\xff\xff\xff\xff\x0f"), make([]byte, 20)...), Limits{}, ErrMalformed},
		{"string index past the table", []byte("PWB\x01\x01\x01a\x05"), Limits{}, ErrMalformed},
		// Country codes are "" or two capital letters: the collector keeps
		// them per sensor and window, and its store reads them back.
		{"long country", withCountry(s, "NZNZNZNZNZNZNZNZN", false), Limits{}, ErrMalformed},
		{"lower-case country of a prefix", withCountry(s, "nz", true), Limits{}, ErrMalformed},
		{"too large", bin, Limits{MaxDecompressed: len(bin) - 1}, ErrTooLarge},
		{"too many prefixes", bin, Limits{MaxPrefixes: len(s.Prefixes) - 1}, ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode(tc.payload, tc.lim)
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

// withCountry encodes s with the country of its first country (or of its
// first prefix) replaced by cc.
func withCountry(s *Summary, cc string, prefix bool) []byte {
	o := *s
	o.Prefixes = append([]PrefixCount(nil), s.Prefixes...)
	o.Countries = append([]CountryCount(nil), s.Countries...)
	if prefix {
		o.Prefixes[0].Country = cc
	} else {
		o.Countries[0].Country = cc
	}
	return encodeBinary(&o)
}

// TestDecoderMatchesDecode decodes a run of payloads, big and small,
// binary and JSON, valid and not, with one Decoder: each result and each
// refusal is Decode's, whatever the Decoder kept from the payload before.
func TestDecoderMatchesDecode(t *testing.T) {
	var payloads [][]byte
	add := func(s *Summary, f Format) {
		p, err := Encode(s, EncodeOptions{Format: f, MaxBytes: 1 << 30})
		if err != nil {
			t.Fatal(err)
		}
		payloads = append(payloads, p)
	}
	small := sample(time.Unix(1_700_000_000, 0), 3, 4)
	small.Seq = 1
	add(generated(1000, 1), FormatBinary)
	add(small, FormatBinary)
	add(generated(300, 2), FormatBinary)
	add(&Summary{Schema: SchemaVersion, Sensor: "x", Seq: 9, Start: time.Unix(1, 0), End: time.Unix(1, 0), Globals: traffic.Globals{Seen: 3, NonIP: 3}}, FormatBinary)
	add(generated(200, 3), FormatJSON)
	add(generated(1000, 4), FormatBinary)
	bad := bytes.Clone(payloads[0])
	payloads = append(payloads, bad[:len(bad)/2]) // truncated
	dup := generated(20, 5)
	dup.Prefixes[1].Prefix = dup.Prefixes[0].Prefix
	payloads = append(payloads, encodeBinary(dup)) // duplicate prefix
	add(generated(1000, 1), FormatBinary)
	add(small, FormatBinary)

	d := NewDecoder(Limits{})
	for i, p := range payloads {
		want, wantErr := Decode(p, Limits{})
		got, err := d.Decode(p)
		if (err == nil) != (wantErr == nil) || (err != nil && err.Error() != wantErr.Error()) {
			t.Fatalf("payload %d: error %v, want %v", i, err, wantErr)
		}
		if err == nil {
			assertEqual(t, got, want)
			if !reflect.DeepEqual(got, want) { // nil and empty lists alike
				t.Fatalf("payload %d: %+v, want %+v", i, got, want)
			}
		}
	}
}

// TestInternerBounded: distinct strings never grow an interner past its
// bounds, and what it handed out stays valid.
func TestInternerBounded(t *testing.T) {
	var in interner
	long := bytes.Repeat([]byte("x"), maxStringLen)
	first := in.intern(long)
	for i := range 3 * maxInternedBytes / maxStringLen {
		b := append([]byte(nil), long...)
		b[0], b[1], b[2] = byte(i), byte(i>>8), byte(i>>16)
		in.intern(b)
		if in.bytes > maxInternedBytes || len(in.strings) > maxInterned {
			t.Fatalf("after %d strings: %d bytes, %d strings", i+1, in.bytes, len(in.strings))
		}
	}
	for i := range 2 * maxInterned {
		in.intern([]byte{byte(i), byte(i >> 8), byte(i >> 16)})
		if len(in.strings) > maxInterned {
			t.Fatalf("%d strings", len(in.strings))
		}
	}
	if first != string(long) {
		t.Error("a string handed out changed")
	}
	if s := in.intern([]byte("NZ")); s != "NZ" || in.intern([]byte("NZ")) != s {
		t.Error("interning NZ")
	}
}

// TestBinaryVarintWidths: counters of every varint width, 1 to 10 bytes,
// at the end of the payload too, decode exactly, with Decode and with a
// Decoder.
func TestBinaryVarintWidths(t *testing.T) {
	c := traffic.Counters{
		Packets: [2]uint64{1 << 62, 1<<56 - 1},
		Bytes:   [2]uint64{^uint64(0), 1 << 56},
		Class:   [traffic.NumClasses]uint64{0, 127, 128, 1<<49 + 3, 1 << 63},
	}
	s := &Summary{Schema: SchemaVersion, Sensor: "wide", Seq: MaxSeq, Start: time.Unix(1, 0).UTC(), End: time.Unix(11, 0).UTC(),
		Globals:   traffic.Globals{Seen: c.Total()},
		Remote:    c,
		Prefixes:  []PrefixCount{{Prefix: netip.MustParsePrefix("198.51.100.0/24"), Country: "NZ", ASN: 1<<32 - 1, Counters: c}},
		Countries: []CountryCount{{Country: "NZ", Counters: c}},
		ASes:      []ASCount{{ASN: 1<<32 - 1, Counters: c}},
		Watch:     []WatchCount{{List: "w", Counters: c}}, // the last counters of the payload
	}
	bin, err := Encode(s, EncodeOptions{Format: FormatBinary})
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(bin, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	assertEqual(t, got, s)
	got, err = NewDecoder(Limits{}).Decode(bin)
	if err != nil {
		t.Fatal(err)
	}
	assertEqual(t, got, s)
}
