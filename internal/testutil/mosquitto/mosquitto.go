// Package mosquitto runs Debian's mosquitto broker for a test, on loopback,
// with a configuration the test writes, and stops it at the test's end.
package mosquitto

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

// Bin is Debian's mosquitto, which scripts/install-deps installs.
const Bin = "/usr/sbin/mosquitto"

// Start runs mosquitto on a free loopback port, anonymous and without
// persistence, plus the lines of extraConf, and returns its address
// (127.0.0.1:port) once it accepts connections. The test is skipped when
// mosquitto is not installed; mosquitto's output is logged if the test fails.
func Start(t *testing.T, extraConf string) string {
	t.Helper()
	if testing.Short() {
		t.Skip("broker tier: skipped by -short (make test-unit runs the pure-Go tests only)")
	}
	if _, err := os.Stat(Bin); err != nil {
		t.Skipf("%s not installed (scripts/install-deps installs the mosquitto package): %v", Bin, err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, port, _ := net.SplitHostPort(addr)
	conf := filepath.Join(t.TempDir(), "mosquitto.conf")
	text := "listener " + port + " 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\n" + extraConf
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out := &syncBuilder{}
	cmd := exec.Command(Bin, "-c", conf)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", Bin, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("mosquitto output:\n%s", out.String())
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-exited:
			t.Fatalf("mosquitto exited:\n%s", out.String())
		default:
		}
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("mosquitto not listening on %s after 10 s: %v\n%s", addr, err, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type syncBuilder struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuilder) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuilder) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
