//go:build drillclock

package wallclock

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// setOffset writes the offset file the way the drill does: a new file
// renamed into place.
func setOffset(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// near fails unless got is want within a second (wall clock).
func near(t *testing.T, what string, got, want time.Time) {
	t.Helper()
	if d := got.Round(0).Sub(want.Round(0)); d < -time.Second || d > time.Second {
		t.Errorf("%s: %s, want %s (off by %s)", what, got.Round(0), want.Round(0), d)
	}
}

func TestDrillOffset(t *testing.T) {
	if !Drill {
		t.Fatal("Drill is false in a drillclock build")
	}
	path := filepath.Join(t.TempDir(), "offset")
	t.Setenv(OffsetFileEnv, path)

	near(t, "no file", Now(), time.Now())
	setOffset(t, path, "1h\n")
	before := Now()
	near(t, "+1h", before, time.Now().Add(time.Hour))
	if !strings.Contains(Describe(), path) || !strings.Contains(Describe(), "1h0m0s") {
		t.Errorf("Describe() = %q: want the file and the offset", Describe())
	}

	// A step back by two hours: the wall clock jumps, the monotonic
	// reading that Sub uses does not.
	setOffset(t, path, "-1h")
	after := Now()
	near(t, "-1h", after, time.Now().Add(-time.Hour))
	if d := after.Sub(before); d < 0 || d > time.Second {
		t.Errorf("Sub across the step = %s: want the small positive monotonic difference", d)
	}
	if d := after.Round(0).Sub(before.Round(0)); d > -2*time.Hour+time.Second || d < -2*time.Hour-time.Second {
		t.Errorf("wall difference across the step = %s: want about -2h", d)
	}

	// What is wrong with the file keeps the last good offset.
	for _, bad := range []string{"an hour", strings.Repeat("1", maxOffsetFile+1), "1h 2h"} {
		setOffset(t, path, bad)
		near(t, "bad offset "+bad[:min(len(bad), 10)], Now(), time.Now().Add(-time.Hour))
	}
	if _, err := readOffset(path); err == nil || !strings.Contains(err.Error(), path+":1: offset") {
		t.Errorf("readOffset(%q) = %v: want an error naming the file and line", "1h 2h", err)
	}
	setOffset(t, path, "-90m")
	near(t, "-90m", Now(), time.Now().Add(-90*time.Minute))

	// No file: no offset.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	near(t, "file removed", Now(), time.Now())
}

// BenchmarkNow is the cost of the seam in a drill build: a stat per call.
func BenchmarkNow(b *testing.B) {
	path := filepath.Join(b.TempDir(), "offset")
	b.Setenv(OffsetFileEnv, path)
	if err := os.WriteFile(path, []byte("1h"), 0o644); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		Now()
	}
}

// TestWallOnly: the offset moves the wall clock and leaves the monotonic
// reading, and a time without one (Round(0)) simply moves.
func TestWallOnly(t *testing.T) {
	now := time.Now()
	for _, off := range []time.Duration{time.Hour, -time.Hour, 90 * time.Minute, -time.Nanosecond} {
		got := wallOnly(now, off)
		if got.Sub(now) != 0 || got.Round(0).Sub(now.Round(0)) != off {
			t.Errorf("%s: monotonic difference %s, wall difference %s", off, got.Sub(now), got.Round(0).Sub(now.Round(0)))
		}
		if bare := wallOnly(now.Round(0), off); !bare.Equal(now.Round(0).Add(off)) {
			t.Errorf("%s without a monotonic reading: %s, want %s", off, bare, now.Round(0).Add(off))
		}
	}
}
