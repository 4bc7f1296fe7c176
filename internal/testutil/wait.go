package testutil

import (
	"runtime"
	"testing"
	"time"
)

// ReturnTimeout is how long WaitReturn waits: generous, because under
// qemu-aarch64-static (make test-arm64) on a loaded machine a clean
// shutdown that takes 50 ms natively can take seconds.
const ReturnTimeout = 30 * time.Second

// WaitReturn waits for what, a Run that was cancelled, to send its result
// on done. A non-nil result fails the test; so does no result within
// ReturnTimeout, and then the test's log holds every goroutine's stack, so
// that a shutdown that hangs shows where.
func WaitReturn(tb testing.TB, what string, done <-chan error) {
	tb.Helper()
	select {
	case err := <-done:
		if err != nil {
			tb.Errorf("%s: %v", what, err)
		}
	case <-time.After(ReturnTimeout):
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		tb.Errorf("%s did not return %v after cancel; goroutines:\n%s", what, ReturnTimeout, buf)
	}
}
