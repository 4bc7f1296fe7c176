//go:build !drillclock

package wallclock

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestReleaseIgnoresOffset: without the drillclock tag, Now is the
// system's clock whatever the environment says.
func TestReleaseIgnoresOffset(t *testing.T) {
	if Drill {
		t.Fatal("Drill is true without the drillclock tag")
	}
	path := filepath.Join(t.TempDir(), "offset")
	if err := os.WriteFile(path, []byte("1h"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv(OffsetFileEnv, path)
	if d := Now().Round(0).Sub(time.Now().Round(0)); d < -time.Second || d > time.Second {
		t.Errorf("Now is %s off the system clock in a release build", d)
	}
}
