//go:build !drillclock

package wallclock

import "time"

// Drill reports whether this build has the drill's clock seam (the
// drillclock tag). A release build does not.
const Drill = false

// Now is the wall-clock time: time.Now.
func Now() time.Time { return time.Now() }

// Describe says where the wall clock comes from, for sensord's start-up log.
func Describe() string { return "system clock" }
