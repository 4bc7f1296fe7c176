package human

import (
	"math"
	"testing"
	"time"
)

func TestFormat(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{GroupDigits(0), "0"},
		{GroupDigits(999), "999"},
		{GroupDigits(1000), "1,000"},
		{GroupDigits(1234567), "1,234,567"},
		{GroupDigits(math.MaxUint64), "18,446,744,073,709,551,615"},
		{GroupFloat(1234567.84), "1,234,567.8"},
		{GroupFloat(1234567.96), "1,234,568"},
		{GroupFloat(0.04), "0"},
		{GroupFloat(12.5), "12.5"},
		{PPS(0), "0 pps"},
		{PPS(850), "850 pps"},
		{PPS(5.26), "5.3 pps"},
		{PPS(999.4), "999 pps"},
		{PPS(999.6), "1.0 kpps"},
		{PPS(1234567), "1.2 Mpps"},
		{PPS(12_345_678), "12.3 Mpps"},
		{PPS(123_456_789), "123 Mpps"},
		{BPS(3.4e9), "3.4 Gb/s"},
		{BPS(100e9), "100 Gb/s"},
		{BPS(math.Inf(1)), "– b/s"},
		{Bytes(512), "512 B"},
		{Bytes(1_500_000_000_000), "1.5 TB"},
		{Count(999), "999"},
		{Count(12_300_000), "12.3 M"},
		{IEC(0), "0 B"},
		{IEC(1023), "1023 B"},
		{IEC(1536), "1.5 KiB"},
		{IEC(187 << 20), "187 MiB"},
		{IEC(48<<20 + 1<<19), "48.5 MiB"},
		{IEC(3 << 40), "3.0 TiB"},
		{Duration(0), "0 s"},
		{Duration(120 * time.Microsecond), "120 µs"},
		{Duration(3200 * time.Microsecond), "3.2 ms"},
		{Duration(850 * time.Millisecond), "850 ms"},
		{Duration(2300 * time.Millisecond), "2.3 s"},
		{Duration(42 * time.Second), "42 s"},
		{Duration(12*time.Minute + 5*time.Second), "12m 5s"},
		{Duration(4*time.Hour + 12*time.Minute), "4h 12m"},
		{Duration(9*24*time.Hour + 4*time.Hour + 59*time.Minute), "9d 4h"},
		{Duration(-2 * time.Second), "-2.0 s"},
		{PercentOf(0, 0), "0 %"},
		{PercentOf(0, 10), "0 %"},
		{PercentOf(1, 3), "33.3 %"},
		{PercentOf(1, 10_000), "<0.1 %"},
		{PercentOf(9_989, 10_000), "99.9 %"},
		{PercentOf(99_999, 100_000), ">99.9 %"},
		{PercentOf(10, 10), "100 %"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}
