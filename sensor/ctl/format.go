package ctl

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Numbers for a terminal. They follow the status page's rules (sensor/web's
// format.go: 1.2 Mpps, 3.4 Gb/s, 1,555,188,689); --json has the exact values.

// groupDigits writes n with thousands separators: 1,234,567.
func groupDigits(n uint64) string {
	s := strconv.FormatUint(n, 10)
	if len(s) <= 3 {
		return s
	}
	var b strings.Builder
	head := len(s) % 3
	if head > 0 {
		b.WriteString(s[:head])
	}
	for i := head; i < len(s); i += 3 {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(s[i : i+3])
	}
	return b.String()
}

var siPrefixes = []string{"", "k", "M", "G", "T", "P", "E"}

// si writes v with an SI prefix before the unit: 850 pps, 1.2 Mpps, 34 Gb/s.
func si(v float64, unit string) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "– " + unit
	}
	i := 0
	for math.Abs(v) >= 999.5 && i < len(siPrefixes)-1 {
		v /= 1000
		i++
	}
	var num string
	switch a := math.Abs(v); {
	case i == 0 && a == math.Trunc(a):
		num = strconv.FormatFloat(v, 'f', 0, 64)
	case a < 99.95:
		num = strconv.FormatFloat(v, 'f', 1, 64)
	default:
		num = strconv.FormatFloat(v, 'f', 0, 64)
	}
	return num + " " + siPrefixes[i] + unit
}

// fmtPPS writes packets per second: 1.2 Mpps.
func fmtPPS(v float64) string { return si(v, "pps") }

// fmtBPS writes bits per second: 3.4 Gb/s.
func fmtBPS(v float64) string { return si(v, "b/s") }

// fmtBytes writes a traffic volume with SI prefixes: 1.2 GB.
func fmtBytes(n uint64) string { return si(float64(n), "B") }

// fmtIEC writes a storage size with binary prefixes: 48.0 MiB.
func fmtIEC(n int64) string {
	if n < 1024 {
		return strconv.FormatInt(n, 10) + " B"
	}
	v := float64(n)
	units := []string{"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	i := -1
	for v >= 1023.95 && i < len(units)-1 {
		v /= 1024
		i++
	}
	if v < 99.95 {
		return strconv.FormatFloat(v, 'f', 1, 64) + " " + units[i]
	}
	return strconv.FormatFloat(v, 'f', 0, 64) + " " + units[i]
}

// fmtDuration writes a duration in its two largest units: 3d 4h, 12m 5s,
// 5.2 s, 850 ms.
func fmtDuration(d time.Duration) string {
	neg := ""
	if d < 0 {
		neg, d = "-", -d
	}
	day := 24 * time.Hour
	var s string
	switch {
	case d >= day:
		s = fmt.Sprintf("%dd %dh", d/day, d%day/time.Hour)
	case d >= time.Hour:
		s = fmt.Sprintf("%dh %dm", d/time.Hour, d%time.Hour/time.Minute)
	case d >= time.Minute:
		s = fmt.Sprintf("%dm %ds", d/time.Minute, d%time.Minute/time.Second)
	case d >= 10*time.Second:
		s = fmt.Sprintf("%.0f s", d.Seconds())
	case d >= time.Second:
		s = fmt.Sprintf("%.1f s", d.Seconds())
	case d >= 10*time.Millisecond:
		s = fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
	case d >= time.Millisecond:
		s = fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	case d > 0:
		s = fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond))
	default:
		s = "0 s"
	}
	return neg + s
}

// seconds is a duration of the API (float seconds).
func seconds(s float64) time.Duration {
	if math.IsNaN(s) || math.IsInf(s, 0) || math.Abs(s) > 1e9 {
		return 0
	}
	return time.Duration(math.Round(s * float64(time.Second)))
}

// fmtPercent writes part of whole: 12.3 %, <0.1 %, 100 %.
func fmtPercent(part, whole uint64) string {
	switch {
	case part == 0 || whole == 0:
		return "0 %"
	case part >= whole:
		return "100 %"
	}
	p := float64(part) / float64(whole) * 100
	switch {
	case p < 0.05:
		return "<0.1 %"
	case p > 99.95:
		return ">99.9 %"
	}
	return strconv.FormatFloat(p, 'f', 1, 64) + " %"
}

// fmtTime writes a time of the API in UTC to the second:
// 2026-03-14 11:59:50 UTC.
func fmtTime(t time.Time) string {
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

// fmtSpan writes a window [from, to): 2026-03-14 11:00:00 to 12:00:00 UTC,
// with the date of to only when it differs.
func fmtSpan(from, to time.Time) string {
	from, to = from.UTC(), to.UTC()
	layout := "15:04:05"
	if from.YearDay() != to.YearDay() || from.Year() != to.Year() {
		layout = "2006-01-02 15:04:05"
	}
	return from.Format("2006-01-02 15:04:05") + " to " + to.Format(layout) + " UTC"
}

// countryLabel is a country of the API: "" is traffic no table places.
func countryLabel(cc string) string {
	if cc == "" {
		return "unknown"
	}
	return cc
}

// asLabel is an AS number of the API: 0 is traffic no table places.
func asLabel(asn uint32) string {
	if asn == 0 {
		return "unknown"
	}
	return "AS" + strconv.FormatUint(uint64(asn), 10)
}

// shorten cuts s to n runes, marking the cut.
func shorten(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// plural is "1 packet", "2 packets".
func plural(n uint64, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return groupDigits(n) + " " + many
}
