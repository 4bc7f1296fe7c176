package testutil

import (
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// Build builds the command pkg of this module (a path below the module,
// such as "sensor/cmd/sensord") into dir as a static binary, with the
// extra go build flags, and returns its path.
func Build(tb testing.TB, dir, pkg string, flags ...string) string {
	tb.Helper()
	out := filepath.Join(dir, filepath.Base(pkg))
	args := append([]string{"build", "-o", out}, flags...)
	cmd := exec.Command("go", append(args, "github.com/peerwatch/peerwatch/"+pkg)...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("build %s: %v\n%s", pkg, err, b)
	}
	return out
}

// HTTPClient is an HTTP client whose connections are made inside the
// namespace: for the API of a daemon that listens on its loopback.
func (ns *Namespace) HTTPClient() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var conn net.Conn
			err := ns.Do(func() (err error) {
				conn, err = (&net.Dialer{}).DialContext(ctx, network, addr)
				return err
			})
			return conn, err
		},
	}}
}

// NotifySocket listens at path like systemd's notification socket,
// writable by any user (for a daemon run under another uid), and hands over
// each datagram until the test ends.
func NotifySocket(tb testing.TB, path string) <-chan string {
	tb.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.Chmod(path, 0o777); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	ch := make(chan string, 1024)
	go func() {
		defer close(ch)
		buf := make([]byte, 8192)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			ch <- string(buf[:n])
		}
	}()
	return ch
}
