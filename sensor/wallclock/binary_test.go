package wallclock_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestSensordBinaries builds sensord as `make build` does and with the
// drillclock tag, and checks that only the tagged binary holds the seam:
// its build settings name the tag and its symbols the offset reader.
func TestSensordBinaries(t *testing.T) {
	if testing.Short() {
		t.Skip("builds sensord twice: not in -short")
	}
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		tags []string
		seam bool
	}{
		{"sensord-release", nil, false},
		{"sensord-drill", []string{"-tags", "drillclock"}, true},
	} {
		out := filepath.Join(dir, tc.name)
		args := append([]string{"build", "-trimpath", "-o", out}, tc.tags...)
		cmd := exec.Command("go", append(args, "github.com/peerwatch/peerwatch/sensor/cmd/sensord")...)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, b)
		}
		info, err := exec.Command("go", "version", "-m", out).CombinedOutput()
		if err != nil {
			t.Fatalf("go version -m %s: %v\n%s", out, err, info)
		}
		if got := strings.Contains(string(info), "-tags=drillclock"); got != tc.seam {
			t.Errorf("%s: build settings name the drillclock tag: %v, want %v", tc.name, got, tc.seam)
		}
		syms, err := exec.Command("go", "tool", "nm", out).CombinedOutput()
		if err != nil {
			t.Fatalf("go tool nm %s: %v\n%s", out, err, syms)
		}
		if got := strings.Contains(string(syms), "sensor/wallclock.offsetNow"); got != tc.seam {
			t.Errorf("%s: holds wallclock.offsetNow: %v, want %v", tc.name, got, tc.seam)
		}
	}
}
