// Package testutil holds the helpers that peerwatch's root-only test tiers
// share: the BPF tests (tier 2) and the integration tests (tier 3).
//
// Only _test.go files import it.
package testutil

import (
	"fmt"
	"os"
	"sync"
	"testing"

	"github.com/cilium/ebpf/rlimit"
)

// SkipNotRoot is the message of the skip that RequireRoot issues.
const SkipNotRoot = "needs root (CAP_BPF, CAP_NET_ADMIN): run as root; CI does"

// SkipShort is the message of the skip that RequireRoot issues under -short,
// which make test-unit uses to run the pure-Go tier alone.
const SkipShort = "root tier: skipped by -short (make test-unit runs the pure-Go tests only)"

// geteuid is a seam so that RequireRoot is tested without changing user.
var geteuid = os.Geteuid

// RequireRoot skips the test unless it runs as root. The BPF and integration
// tiers load programs, create maps and build network namespaces, which need
// CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN; CI runs them as root.
func RequireRoot(tb testing.TB) {
	tb.Helper()
	if testing.Short() {
		tb.Skip(SkipShort)
	}
	if geteuid() != 0 {
		tb.Skip(SkipNotRoot)
	}
}

var memlock struct {
	once sync.Once
	err  error
}

// RemoveMemlock lifts RLIMIT_MEMLOCK once per process, for kernels that
// still charge BPF maps to it (before 5.11). On newer kernels, which charge
// them to the memory cgroup, it does nothing.
func RemoveMemlock(tb testing.TB) {
	tb.Helper()
	memlock.once.Do(func() {
		if err := rlimit.RemoveMemlock(); err != nil {
			memlock.err = fmt.Errorf("remove memlock rlimit: %w", err)
		}
	})
	if memlock.err != nil {
		tb.Fatal(memlock.err)
	}
}

// RequireBPF is RequireRoot followed by RemoveMemlock: the setup of every
// test that loads a BPF program.
func RequireBPF(tb testing.TB) {
	tb.Helper()
	RequireRoot(tb)
	RemoveMemlock(tb)
}

// EmulatorEnv names the emulator that runs the test binaries, when one
// does: make test-arm64 sets it to qemu-aarch64-static.
const EmulatorEnv = "PEERWATCH_EMULATOR"

// RequireNative skips a test that starts processes when the test binary
// runs under an emulator. Debian 12's qemu-user (7.2) now and then hangs
// in the fork of os/exec: CI saw TestLabScriptRefusesBadInput wait 10
// minutes in syscall.forkExec. make test runs these tests natively.
func RequireNative(tb testing.TB) {
	tb.Helper()
	if emu := os.Getenv(EmulatorEnv); emu != "" {
		tb.Skipf("starts a process, which hangs now and then under %s (%s=%s; its fork emulation): make test runs this natively", emu, EmulatorEnv, emu)
	}
}
