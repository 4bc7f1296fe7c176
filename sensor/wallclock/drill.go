//go:build drillclock

package wallclock

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
	"unsafe"
)

// Drill reports whether this build has the drill's clock seam (the
// drillclock tag).
const Drill = true

// maxOffsetFile bounds what is read of the offset file.
const maxOffsetFile = 64

// Now is time.Now plus the offset in the file named by
// PEERWATCH_WALLCLOCK_OFFSET_FILE, on the wall clock only: its monotonic
// reading is time.Now's, so that a change of the offset is what a real
// step is to a Go program (Sub and Since measure true durations across
// it). The file is looked at (stat) on every call and read again when its
// modification time, size or inode changed; a missing file is an offset
// of zero. What is wrong with it (unreadable, too
// long, not a duration) is written to stderr once per distinct error, and
// the last good offset stays.
func Now() time.Time {
	off := offsetNow()
	now := time.Now()
	if off == 0 {
		return now
	}
	return wallOnly(now, off)
}

// wallOnly is now with off added to its wall clock and not to its
// monotonic reading. time.Time.Add adds to both, and nothing in package
// time sets one alone, so the monotonic reading (the struct's second
// word, ext, while the wall word's top bit says there is one) is taken
// back by hand. It panics if the result does not check out: Sub (monotonic)
// must still say no time passed, and the wall clocks must differ by off.
func wallOnly(now time.Time, off time.Duration) time.Time {
	t := now.Add(off)
	w := (*struct {
		wall uint64
		ext  int64
	})(unsafe.Pointer(&t))
	if w.wall&(1<<63) == 0 {
		return t // no monotonic reading to take back
	}
	w.ext -= int64(off)
	if t.Sub(now) != 0 || t.Round(0).Sub(now.Round(0)) != off {
		panic(fmt.Sprintf("wallclock: cannot step the wall clock alone (time.Time's layout changed?): %s - %s", t, now))
	}
	return t
}

// Describe says where the wall clock comes from, for sensord's start-up log.
func Describe() string {
	path := os.Getenv(OffsetFileEnv)
	if path == "" {
		return "system clock (drillclock build, " + OffsetFileEnv + " unset)"
	}
	return fmt.Sprintf("system clock + the offset in %s (drillclock build), now %s", path, offsetNow())
}

var state struct {
	mu      sync.Mutex
	offset  time.Duration
	key     fileKey
	lastErr string
}

type fileKey struct {
	exists bool
	mtime  time.Time
	size   int64
	ino    uint64
}

func offsetNow() time.Duration {
	path := os.Getenv(OffsetFileEnv)
	if path == "" {
		return 0
	}
	state.mu.Lock()
	defer state.mu.Unlock()
	key, err := statKey(path)
	if err == nil && key == state.key {
		return state.offset
	}
	var off time.Duration
	if err == nil && key.exists {
		off, err = readOffset(path)
	}
	if err != nil {
		if msg := err.Error(); msg != state.lastErr {
			fmt.Fprintf(os.Stderr, "wallclock: %v (the offset stays %s)\n", err, state.offset)
			state.lastErr = msg
		}
		return state.offset
	}
	state.offset, state.key, state.lastErr = off, key, ""
	return off
}

func statKey(path string) (fileKey, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return fileKey{}, nil
	}
	if err != nil {
		return fileKey{}, err
	}
	return fileKey{exists: true, mtime: fi.ModTime(), size: fi.Size(), ino: inode(fi)}, nil
}

// readOffset reads the offset file: one Go duration ("1h", "-1h30m", "0s"),
// optionally followed by a newline.
func readOffset(path string) (time.Duration, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxOffsetFile+1))
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	if len(b) > maxOffsetFile {
		return 0, fmt.Errorf("%s: longer than %d bytes: want one duration such as 1h or -30m", path, maxOffsetFile)
	}
	s := strings.TrimSpace(string(b))
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%s:1: offset %q: want a duration such as 1h or -30m", path, s)
	}
	return d, nil
}
