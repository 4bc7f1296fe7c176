// Package version tells which build of peerwatch is running.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Version is set at build time (make build: git describe); "dev" otherwise.
var Version = "dev"

// String is the version line of --version.
func String(program string) string {
	rev := ""
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				rev = " (" + s.Value[:12] + ")"
			}
		}
	}
	return fmt.Sprintf("%s %s%s %s/%s %s", program, Version, rev, runtime.GOOS, runtime.GOARCH, runtime.Version())
}
