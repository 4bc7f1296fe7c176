// Package human writes numbers for people: thousands separators, SI
// prefixes for rates and volumes, binary prefixes for storage, short
// durations and percentages. The status page and sensorctl both use it, so
// an operator reads the same figure in both; the status page's script
// (sensor/web/assets/static/chart.js) follows the same rules.
package human

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// GroupDigits writes n with thousands separators: 1,234,567.
func GroupDigits(n uint64) string {
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

// GroupFloat writes v with thousands separators and one decimal, or none when
// v is whole: 1,234,567.8.
func GroupFloat(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 || v >= 1e15 {
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	w, f, _ := strings.Cut(strconv.FormatFloat(v, 'f', 1, 64), ".")
	n, _ := strconv.ParseUint(w, 10, 64)
	if f == "0" {
		return GroupDigits(n)
	}
	return GroupDigits(n) + "." + f
}

var siPrefixes = []string{"", "k", "M", "G", "T", "P", "E"}

// SI writes v with an SI prefix before the unit: 850 pps, 1.2 Mpps, 34 Gb/s.
func SI(v float64, unit string) string {
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

func PPS(v float64) string { return SI(v, "pps") }
func BPS(v float64) string { return SI(v, "b/s") }

// Bytes writes a traffic volume with SI prefixes: 1.2 GB.
func Bytes(n uint64) string { return SI(float64(n), "B") }

// Count writes a count of packets briefly: 12.3 M.
func Count(n uint64) string {
	if n < 1000 {
		return strconv.FormatUint(n, 10)
	}
	return strings.TrimSpace(SI(float64(n), ""))
}

// IEC writes a storage size with binary prefixes: 48.0 MiB.
func IEC(n int64) string {
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

// Duration writes a duration in its two largest units: 3d 4h, 12m 5s,
// 5.2 s, 850 ms.
func Duration(d time.Duration) string {
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

// Percent is part of whole in percent; 0 when whole is 0.
func Percent(part, whole uint64) float64 {
	if whole == 0 {
		return 0
	}
	return float64(part) / float64(whole) * 100
}

// PercentOf writes part of whole: 12.3 %, <0.1 %, 100 %.
func PercentOf(part, whole uint64) string {
	p := Percent(part, whole)
	switch {
	case part == 0 || whole == 0:
		return "0 %"
	case part >= whole:
		return "100 %"
	case p < 0.05:
		return "<0.1 %"
	case p > 99.95:
		return ">99.9 %"
	}
	return strconv.FormatFloat(p, 'f', 1, 64) + " %"
}
