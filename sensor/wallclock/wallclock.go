// Package wallclock is sensord's one source of wall-clock time: the ends of
// the datapath's intervals, the store's placement and retention, the
// summaries, the uplink and the API's "now" all read Now.
//
// In a release build Now is time.Now. A build with the tag drillclock
// (only the clock drill of docs/reliability.md makes one) adds to it an
// offset read from the file named by the environment variable
// PEERWATCH_WALLCLOCK_OFFSET_FILE, so that a drill can step sensord's wall
// clock without stepping the host's: time namespaces do not offset
// CLOCK_REALTIME, and sensord is a static Go binary that no LD_PRELOAD fake
// reaches. The offset keeps Go's monotonic reading, as a real step does:
// the wall clock jumps, durations measured with Sub and Since do not.
package wallclock

// OffsetFileEnv names the environment variable that a drillclock build
// reads the offset file's path from.
const OffsetFileEnv = "PEERWATCH_WALLCLOCK_OFFSET_FILE"
