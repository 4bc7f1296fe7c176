package web

import (
	"math"
	"testing"
	"time"
)

func TestFormat(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{groupDigits(0), "0"},
		{groupDigits(999), "999"},
		{groupDigits(1000), "1,000"},
		{groupDigits(1234567), "1,234,567"},
		{groupDigits(math.MaxUint64), "18,446,744,073,709,551,615"},
		{groupFloat(1234567.84), "1,234,567.8"},
		{groupFloat(1234567.96), "1,234,568"},
		{groupFloat(0.04), "0"},
		{groupFloat(12.5), "12.5"},
		{fmtPPS(0), "0 pps"},
		{fmtPPS(850), "850 pps"},
		{fmtPPS(5.26), "5.3 pps"},
		{fmtPPS(999.4), "999 pps"},
		{fmtPPS(999.6), "1.0 kpps"},
		{fmtPPS(1234567), "1.2 Mpps"},
		{fmtPPS(12_345_678), "12.3 Mpps"},
		{fmtPPS(123_456_789), "123 Mpps"},
		{fmtBPS(3.4e9), "3.4 Gb/s"},
		{fmtBPS(100e9), "100 Gb/s"},
		{fmtBPS(math.Inf(1)), "– b/s"},
		{fmtBytes(512), "512 B"},
		{fmtBytes(1_500_000_000_000), "1.5 TB"},
		{fmtCount(999), "999"},
		{fmtCount(12_300_000), "12.3 M"},
		{fmtIEC(0), "0 B"},
		{fmtIEC(1023), "1023 B"},
		{fmtIEC(1536), "1.5 KiB"},
		{fmtIEC(187 << 20), "187 MiB"},
		{fmtIEC(48<<20 + 1<<19), "48.5 MiB"},
		{fmtIEC(3 << 40), "3.0 TiB"},
		{fmtDuration(0), "0 s"},
		{fmtDuration(120 * time.Microsecond), "120 µs"},
		{fmtDuration(3200 * time.Microsecond), "3.2 ms"},
		{fmtDuration(850 * time.Millisecond), "850 ms"},
		{fmtDuration(2300 * time.Millisecond), "2.3 s"},
		{fmtDuration(42 * time.Second), "42 s"},
		{fmtDuration(12*time.Minute + 5*time.Second), "12m 5s"},
		{fmtDuration(4*time.Hour + 12*time.Minute), "4h 12m"},
		{fmtDuration(9*24*time.Hour + 4*time.Hour + 59*time.Minute), "9d 4h"},
		{fmtDuration(-2 * time.Second), "-2.0 s"},
		{fmtPercent(0, 0), "0 %"},
		{fmtPercent(0, 10), "0 %"},
		{fmtPercent(1, 3), "33.3 %"},
		{fmtPercent(1, 10_000), "<0.1 %"},
		{fmtPercent(9_989, 10_000), "99.9 %"},
		{fmtPercent(99_999, 100_000), ">99.9 %"},
		{fmtPercent(10, 10), "100 %"},
		{formatSpan(time.Hour), "1h"},
		{formatSpan(90 * time.Minute), "1h30m"},
		{formatSpan(10 * time.Minute), "10m"},
		{formatSpan(45 * time.Second), "45s"},
		{formatSpan(7 * 24 * time.Hour), "7d"},
		{formatSpan(36 * time.Hour), "36h"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

func TestParseSpan(t *testing.T) {
	for s, want := range map[string]time.Duration{"1h": time.Hour, "90s": 90 * time.Second, "1h30m": 90 * time.Minute, "7d": 7 * 24 * time.Hour, "730d": 730 * 24 * time.Hour} {
		if got, ok := parseSpan(s); !ok || got != want {
			t.Errorf("%s: %v %v, want %v", s, got, ok, want)
		}
	}
	for _, s := range []string{"", "d", "1.5d", "-1d", "1w", "5x", "99999d"} {
		if got, ok := parseSpan(s); ok {
			t.Errorf("%s: %v, want an error", s, got)
		}
	}
}
