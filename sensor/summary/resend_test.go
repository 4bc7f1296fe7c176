package summary

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestResendRequestRoundTrip(t *testing.T) {
	r := &ResendRequest{Sensor: "akl-ix-01", Missing: []SeqRange{{5, 5}, {7, 9}, {100, 1000}}}
	b, err := EncodeResendRequest(r)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"sensor":"akl-ix-01","missing":[{"first":5,"last":5},{"first":7,"last":9},{"first":100,"last":1000}]}`; string(b) != want {
		t.Fatalf("encoded %s, want %s", b, want)
	}
	got, err := DecodeResendRequest(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.Sensor != r.Sensor || len(got.Missing) != 3 || got.Missing[2] != (SeqRange{100, 1000}) || got.Seqs() != 1+3+901 {
		t.Fatalf("decoded %+v (%d seqs)", got, got.Seqs())
	}
	if b, err := EncodeResendRequest(&ResendRequest{Sensor: "x"}); err != nil || b != nil {
		t.Fatalf("empty request: %q, %v; want the empty payload", b, err)
	}
	if got, err := DecodeResendRequest(nil); got != nil || err != nil {
		t.Fatalf("empty payload: %+v, %v; want no request", got, err)
	}
	lost := &LostReport{Sensor: "s1", Lost: []SeqRange{{1, 3}}}
	b, err = EncodeLostReport(lost)
	if err != nil {
		t.Fatal(err)
	}
	if gl, err := DecodeLostReport(b); err != nil || gl.Lost[0] != (SeqRange{1, 3}) || gl.Sensor != "s1" {
		t.Fatalf("lost report %+v, %v", gl, err)
	}
}

func TestResendRequestRefused(t *testing.T) {
	many := func(n int, step uint64) string {
		var parts []string
		for i := range n {
			s := uint64(i)*step + 1
			parts = append(parts, `{"first":`+itoa(s)+`,"last":`+itoa(s)+`}`)
		}
		return `{"sensor":"s1","missing":[` + strings.Join(parts, ",") + `]}`
	}
	for _, tc := range []struct {
		name, payload string
		want          error
		msg           string
	}{
		{"not json", "hello", ErrMalformed, "not a JSON object"},
		{"unknown field", `{"sensor":"s1","missing":[{"first":1,"last":1}],"x":1}`, ErrMalformed, `unknown field "x"`},
		{"trailing", `{"sensor":"s1","missing":[{"first":1,"last":1}]} {}`, ErrMalformed, "data after"},
		{"bad sensor", `{"sensor":"a/b","missing":[{"first":1,"last":1}]}`, ErrMalformed, "sensor id"},
		{"no ranges", `{"sensor":"s1","missing":[]}`, ErrMalformed, "no ranges"},
		{"seq 0", `{"sensor":"s1","missing":[{"first":0,"last":1}]}`, ErrMalformed, "seq 0"},
		{"reversed", `{"sensor":"s1","missing":[{"first":5,"last":1}]}`, ErrMalformed, "last 1 before first 5"},
		{"overlap", `{"sensor":"s1","missing":[{"first":1,"last":5},{"first":5,"last":6}]}`, ErrMalformed, "range 1: first 5"},
		{"touching", `{"sensor":"s1","missing":[{"first":1,"last":5},{"first":6,"last":6}]}`, ErrMalformed, "range 1: first 6"},
		{"unordered", `{"sensor":"s1","missing":[{"first":9,"last":9},{"first":2,"last":2}]}`, ErrMalformed, "range 1"},
		{"negative", `{"sensor":"s1","missing":[{"first":-1,"last":1}]}`, ErrMalformed, "cannot unmarshal"},
		{"too many seqs", `{"sensor":"s1","missing":[{"first":1,"last":1001}]}`, ErrTooLarge, "more than 1000 seqs"},
		{"huge range", `{"sensor":"s1","missing":[{"first":1,"last":9223372036854775807}]}`, ErrTooLarge, "more than 1000 seqs"},
		{"past the last seq", `{"sensor":"s1","missing":[{"first":1,"last":18446744073709551615}]}`, ErrMalformed, "above 2^63-1"},
		{"too many ranges", many(101, 2), ErrTooLarge, "101 ranges, limit 100"},
		{"too long", `{"sensor":"s1","missing":[` + strings.Repeat(" ", MaxRepairBytes) + `]}`, ErrTooLarge, "limit 65536"},
	} {
		_, err := DecodeResendRequest([]byte(tc.payload))
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: %v; want %v with %q", tc.name, err, tc.want, tc.msg)
		}
	}
	if _, err := DecodeLostReport(nil); !errors.Is(err, ErrMalformed) {
		t.Errorf("empty lost report: %v, want ErrMalformed", err)
	}
	// A lost report has no limit on seqs, only on ranges.
	if _, err := DecodeLostReport([]byte(`{"sensor":"s1","lost":[{"first":1,"last":1000000}]}`)); err != nil {
		t.Errorf("a long lost range: %v", err)
	}
}

func itoa(n uint64) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}

// FuzzDecodeResendRequest: any payload is refused with a sentinel or
// decodes into a request within the bounds that encodes back to the same
// meaning.
func FuzzDecodeResendRequest(f *testing.F) {
	f.Add([]byte(`{"sensor":"s1","missing":[{"first":1,"last":3},{"first":9,"last":9}]}`))
	f.Add([]byte(`{"sensor":"s1","lost":[{"first":1,"last":3}]}`))
	f.Add([]byte(`{"sensor":"s1","missing":[{"first":1,"last":1001}]}`))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, lost := range []bool{false, true} {
			var rs []SeqRange
			var sensor string
			var err error
			if lost {
				var r *LostReport
				if r, err = DecodeLostReport(b); err == nil {
					rs, sensor = r.Lost, r.Sensor
				}
			} else {
				var r *ResendRequest
				if r, err = DecodeResendRequest(b); err == nil && r != nil {
					rs, sensor = r.Missing, r.Sensor
					if r.Seqs() > MaxResendSeqs || len(rs) > MaxResendRanges {
						t.Fatalf("over the bounds: %+v", r)
					}
				}
			}
			if err != nil {
				if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTooLarge) {
					t.Fatalf("error without sentinel: %v", err)
				}
				continue
			}
			if rs == nil {
				continue
			}
			for i, r := range rs {
				if r.First == 0 || r.Last < r.First || (i > 0 && r.First <= rs[i-1].Last+1) {
					t.Fatalf("accepted bad ranges %+v", rs)
				}
			}
			var again []byte
			if lost {
				again, err = EncodeLostReport(&LostReport{Sensor: sensor, Lost: rs})
			} else {
				again, err = EncodeResendRequest(&ResendRequest{Sensor: sensor, Missing: rs})
			}
			if err != nil || len(again) > MaxRepairBytes || bytes.Contains(again, []byte("\n")) {
				t.Fatalf("re-encode: %q, %v", again, err)
			}
		}
	})
}
