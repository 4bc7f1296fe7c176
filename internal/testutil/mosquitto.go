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

// MosquittoBin is the broker that Mosquitto runs (the Debian package).
const MosquittoBin = "/usr/sbin/mosquitto"

// Mosquitto runs MosquittoBin on a free loopback port, anonymous, without
// persistence, with conf appended to the configuration it writes, until
// the test ends; it returns the broker's address. It skips the test when
// mosquitto is not installed, and logs the broker's output when the test
// failed.
func Mosquitto(tb testing.TB, conf string) string {
	tb.Helper()
	if _, err := os.Stat(MosquittoBin); err != nil {
		tb.Skipf("%s not installed (scripts/install-deps installs the mosquitto package): %v", MosquittoBin, err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, port, _ := net.SplitHostPort(addr)
	path := filepath.Join(tb.TempDir(), "mosquitto.conf")
	base := "listener " + port + " 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\n"
	if err := os.WriteFile(path, []byte(base+conf), 0o644); err != nil {
		tb.Fatal(err)
	}
	out := new(lockedBuffer)
	cmd := exec.Command(MosquittoBin, "-c", path)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	tb.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if tb.Failed() {
			tb.Logf("mosquitto output:\n%s", out.String())
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-exited:
			tb.Fatalf("mosquitto exited:\n%s", out.String())
		default:
		}
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return addr
		}
		if time.Now().After(deadline) {
			tb.Fatalf("mosquitto not listening on %s after 10s:\n%s", addr, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
