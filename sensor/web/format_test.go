package web

import (
	"testing"
	"time"
)

func TestFormatSpan(t *testing.T) {
	for d, want := range map[time.Duration]string{
		time.Hour: "1h", 90 * time.Minute: "1h30m", 10 * time.Minute: "10m",
		45 * time.Second: "45s", 7 * 24 * time.Hour: "7d", 36 * time.Hour: "36h",
	} {
		if got := formatSpan(d); got != want {
			t.Errorf("formatSpan(%v) = %q, want %q", d, got, want)
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
