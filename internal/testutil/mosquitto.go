package testutil

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// debianMosquitto is the broker of Debian's mosquitto package.
const debianMosquitto = "/usr/sbin/mosquitto"

// RequireMosquitto skips the test when mosquitto is not installed.
func RequireMosquitto(tb testing.TB) {
	tb.Helper()
	RequireNative(tb)
	if _, err := os.Stat(debianMosquitto); err != nil {
		tb.Skipf("%s not installed (scripts/install-deps installs the mosquitto package): %v", debianMosquitto, err)
	}
}

// SharedTempDir is a temporary directory that other users may read and
// write (mode 0777, and its parent 0755): mosquitto started as root drops
// to the user mosquitto and must still read the test's certificates and
// write its persistence file.
func SharedTempDir(tb testing.TB) string {
	tb.Helper()
	dir := tb.TempDir()
	for _, d := range []struct {
		path string
		mode os.FileMode
	}{{filepath.Dir(dir), 0o755}, {dir, 0o777}} {
		if err := os.Chmod(d.path, d.mode); err != nil {
			tb.Fatal(err)
		}
	}
	return dir
}

// StartMosquitto writes conf to dir/mosquitto.conf, starts mosquitto with
// it and waits until every address in addrs accepts TCP connections. The
// broker is killed when the test ends, or earlier by kill (SIGKILL, and
// the wait for its exit); its output is logged if the test failed.
func StartMosquitto(tb testing.TB, dir, conf string, addrs ...string) (kill func()) {
	tb.Helper()
	RequireMosquitto(tb)
	path := filepath.Join(dir, "mosquitto.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		tb.Fatal(err)
	}
	out := &SyncBuffer{}
	cmd := exec.Command(debianMosquitto, "-c", path)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	kill = func() {
		_ = cmd.Process.Kill()
		<-exited
	}
	tb.Cleanup(func() {
		kill()
		if tb.Failed() {
			tb.Logf("mosquitto output:\n%s", out.String())
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for _, addr := range addrs {
		for {
			select {
			case <-exited:
				tb.Fatalf("mosquitto exited:\n%s", out.String())
			default:
			}
			c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				tb.Fatalf("mosquitto not listening on %s after 10s:\n%s", addr, out.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return kill
}

// Mosquitto runs mosquitto (StartMosquitto) on a free loopback port,
// anonymous, without persistence, with conf appended to that
// configuration, until the test ends; it returns the broker's address. It
// skips the test when mosquitto is not installed.
func Mosquitto(tb testing.TB, conf string) string {
	tb.Helper()
	RequireMosquitto(tb)
	addr := FreeAddr(tb)
	_, port, _ := net.SplitHostPort(addr)
	base := "listener " + port + " 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\n"
	StartMosquitto(tb, tb.TempDir(), base+conf, addr)
	return addr
}

// SyncBuffer collects the output of a process or logger for a test; its
// methods are safe for concurrent use.
type SyncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
