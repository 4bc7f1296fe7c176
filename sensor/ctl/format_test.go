package ctl

import (
	"bytes"
	"github.com/peerwatch/peerwatch/sensor/api"
	"math"
	"testing"
	"time"
)

func TestFormat(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{groupDigits(0), "0"},
		{groupDigits(999), "999"},
		{groupDigits(1000), "1,000"},
		{groupDigits(12345), "12,345"},
		{groupDigits(1555188689), "1,555,188,689"},
		{groupDigits(math.MaxUint64), "18,446,744,073,709,551,615"},
		{fmtPPS(0), "0 pps"},
		{fmtPPS(850), "850 pps"},
		{fmtPPS(999.4), "999 pps"},
		{fmtPPS(12.5), "12.5 pps"},
		{fmtPPS(999.5), "1.0 kpps"},
		{fmtPPS(1225437.2), "1.2 Mpps"},
		{fmtPPS(448274.8), "448 kpps"},
		{fmtPPS(math.NaN()), "– pps"},
		{fmtBPS(3.4e9), "3.4 Gb/s"},
		{fmtBPS(10854590376), "10.9 Gb/s"},
		{fmtBPS(654927408), "655 Mb/s"},
		{fmtBytes(999), "999 B"},
		{fmtBytes(1835122653020), "1.8 TB"},
		{fmtIEC(0), "0 B"},
		{fmtIEC(1023), "1023 B"},
		{fmtIEC(1024), "1.0 KiB"},
		{fmtIEC(187 << 20), "187 MiB"},
		{fmtIEC(512 << 20), "512 MiB"},
		{fmtIEC(3 << 30), "3.0 GiB"},
		{fmtDuration(0), "0 s"},
		{fmtDuration(450 * time.Microsecond), "450 µs"},
		{fmtDuration(3200 * time.Microsecond), "3.2 ms"},
		{fmtDuration(2300 * time.Millisecond), "2.3 s"},
		{fmtDuration(42 * time.Second), "42 s"},
		{fmtDuration(28 * time.Minute), "28m 0s"},
		{fmtDuration(90 * time.Minute), "1h 30m"},
		{fmtDuration(792720 * time.Second), "9d 4h"},
		{fmtDuration(-5 * time.Second), "-5.0 s"},
		{fmtPercent(0, 10), "0 %"},
		{fmtPercent(1, 0), "0 %"},
		{fmtPercent(10, 10), "100 %"},
		{fmtPercent(1, 3), "33.3 %"},
		{fmtPercent(1, 10000), "<0.1 %"},
		{fmtPercent(9999, 10000), ">99.9 %"},
		{fmtTime(time.Date(2026, 3, 14, 13, 0, 0, 0, time.FixedZone("NZDT", 13*3600))), "2026-03-14 00:00:00 UTC"},
		{fmtSpan(time.Date(2026, 3, 14, 11, 0, 0, 0, time.UTC), time.Date(2026, 3, 14, 12, 0, 0, 0, time.UTC)), "2026-03-14 11:00:00 to 12:00:00 UTC"},
		{fmtSpan(time.Date(2026, 3, 13, 12, 0, 0, 0, time.UTC), time.Date(2026, 3, 14, 12, 0, 0, 0, time.UTC)), "2026-03-13 12:00:00 to 2026-03-14 12:00:00 UTC"},
		{api.CountryLabel(""), "unknown"},
		{api.CountryLabel("KP"), "KP"},
		{api.ASLabel(0), "unknown"},
		{api.ASLabel(131279), "AS131279"},
		{shorten("CHINA169-BACKBONE", 30), "CHINA169-BACKBONE"},
		{shorten("CHINA169-BACKBONE CHINA UNICOM", 10), "CHINA169-…"},
		{plural(1, "summary", "summaries"), "1 summary"},
		{plural(1234, "summary", "summaries"), "1,234 summaries"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
	if d := seconds(0.0032); d != 3200*time.Microsecond {
		t.Errorf("seconds(0.0032) = %v", d)
	}
	if d := seconds(math.Inf(1)); d != 0 {
		t.Errorf("seconds(+Inf) = %v", d)
	}
}

func TestTable(t *testing.T) {
	tb := newTable("NAME", ">PACKETS", "NOTE")
	tb.add("eth0", "1,234", "")
	tb.add("µ-link", "5", "a note")
	tb.add("total", "1,239")
	var b bytes.Buffer
	if err := tb.write(&b, "  "); err != nil {
		t.Fatal(err)
	}
	want := "" +
		"  NAME    PACKETS  NOTE\n" +
		"  eth0      1,234\n" +
		"  µ-link        5  a note\n" +
		"  total     1,239\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}

	var f fields
	f.add("sensor", "akl-ix-01")
	f.add("drain lag", "2.3 s")
	f.add("", "more")
	b.Reset()
	if err := f.write(&b); err != nil {
		t.Fatal(err)
	}
	if want := "sensor     akl-ix-01\ndrain lag  2.3 s\n           more\n"; b.String() != want {
		t.Errorf("got\n%q\nwant\n%q", b.String(), want)
	}
}
