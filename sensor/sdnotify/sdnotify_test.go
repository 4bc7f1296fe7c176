package sdnotify

import (
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// listen opens a datagram socket like systemd's notification socket and
// returns its address as $NOTIFY_SOCKET writes it.
func listen(t *testing.T, abstract bool) (*net.UnixConn, string) {
	t.Helper()
	name := filepath.Join(t.TempDir(), "notify")
	env := name
	if abstract {
		env = "@peerwatch-test-" + filepath.Base(t.TempDir())
		name = "\x00" + env[1:]
	}
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, env
}

func read(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 8192)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	return string(buf[:n])
}

func TestNotify(t *testing.T) {
	for _, abstract := range []bool{false, true} {
		c, env := listen(t, abstract)
		n, err := New(env)
		if err != nil {
			t.Fatal(err)
		}
		if !n.Enabled() {
			t.Fatalf("%s: not enabled", env)
		}
		if err := n.Notify(Ready, Status("counting on eth1\n(xdp-native)")); err != nil {
			t.Fatal(err)
		}
		if got, want := read(t, c), "READY=1\nSTATUS=counting on eth1 (xdp-native)"; got != want {
			t.Errorf("%s: got %q, want %q", env, got, want)
		}
		if err := n.Notify(Watchdog); err != nil {
			t.Fatal(err)
		}
		if got := read(t, c); got != "WATCHDOG=1" {
			t.Errorf("%s: got %q", env, got)
		}
	}
}

func TestNotifyDisabled(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	n, err := FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if n.Enabled() {
		t.Fatal("enabled without NOTIFY_SOCKET")
	}
	if err := n.Notify(Ready); err != nil {
		t.Fatal(err)
	}
	var nilNotifier *Notifier
	if err := nilNotifier.Notify(Ready); err != nil {
		t.Fatal(err)
	}
}

func TestNotifyErrors(t *testing.T) {
	if _, err := New("relative/path"); err == nil || !strings.Contains(err.Error(), "NOTIFY_SOCKET") {
		t.Errorf("relative path: %v", err)
	}
	n, _ := New(filepath.Join(t.TempDir(), "nobody-listens"))
	if err := n.Notify(Ready); err == nil || !strings.HasPrefix(err.Error(), "sd_notify: ") {
		t.Errorf("no listener: %v", err)
	}
	_, env := listen(t, false)
	n, _ = New(env)
	if err := n.Notify(Status(strings.Repeat("x", maxMessage))); err == nil || !strings.Contains(err.Error(), "over 4096") {
		t.Errorf("long message: %v", err)
	}
}

func TestWatchdogInterval(t *testing.T) {
	for _, tc := range []struct {
		usec, pid string
		want      time.Duration
		err       string
	}{
		{"", "", 0, ""},
		{"30000000", "", 30 * time.Second, ""},
		{"30000000", "42", 30 * time.Second, ""},
		{"30000000", "43", 0, ""},
		{"0", "", 0, "WATCHDOG_USEC \"0\": not a positive number"},
		{"-5", "", 0, "WATCHDOG_USEC \"-5\": not a positive number"},
		{"1s", "", 0, "WATCHDOG_USEC \"1s\": not a positive number"},
		{"99999999999999999999", "", 0, "not a positive number"},
		{"9223372036854775", "", 0, "too large"},
		{"30000000", "x", 0, "WATCHDOG_PID \"x\": not a positive number"},
	} {
		got, err := watchdogInterval(tc.usec, tc.pid, 42)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q %q: error %v, want %q", tc.usec, tc.pid, err, tc.err)
			}
			if strings.Contains(tc.err, "positive") && !errors.Is(err, ErrWatchdogValue) {
				t.Errorf("%q %q: not ErrWatchdogValue: %v", tc.usec, tc.pid, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q %q: %v %v, want %v", tc.usec, tc.pid, got, err, tc.want)
		}
	}
}
