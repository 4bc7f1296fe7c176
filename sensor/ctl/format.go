package ctl

import (
	"github.com/peerwatch/peerwatch/sensor/human"
	"math"
	"time"
)

// Numbers for a terminal. They follow the status page's rules (sensor/web's
// format.go: 1.2 Mpps, 3.4 Gb/s, 1,555,188,689); --json has the exact values.

// Numbers shared with the status page.
var (
	groupDigits = human.GroupDigits
	fmtPPS      = human.PPS
	fmtBPS      = human.BPS
	fmtBytes    = human.Bytes
	fmtIEC      = human.IEC
	fmtDuration = human.Duration
	fmtPercent  = human.PercentOf
)

// seconds is a duration of the API (float seconds).
func seconds(s float64) time.Duration {
	if math.IsNaN(s) || math.IsInf(s, 0) || math.Abs(s) > 1e9 {
		return 0
	}
	return time.Duration(math.Round(s * float64(time.Second)))
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
