// Package sdnotify tells systemd about a service's state: the sd_notify
// protocol of a Type=notify unit (READY=1, STATUS=…, WATCHDOG=1,
// STOPPING=1), one unix datagram to the socket that $NOTIFY_SOCKET names.
//
// Outside systemd, where $NOTIFY_SOCKET is unset, every call does nothing.
package sdnotify

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// The messages sensord sends.
const (
	Ready    = "READY=1"
	Stopping = "STOPPING=1"
	Watchdog = "WATCHDOG=1"
)

// Status is the STATUS= message: one line that systemctl status shows.
func Status(s string) string {
	return "STATUS=" + strings.ReplaceAll(s, "\n", " ")
}

// maxMessage bounds a message; systemd reads datagrams of a few kilobytes.
const maxMessage = 4096

// Notifier sends to one notification socket. The zero value sends nothing.
type Notifier struct {
	addr *net.UnixAddr
}

// FromEnv is the notifier of $NOTIFY_SOCKET: a path, or an abstract socket
// written with a leading "@". An unset variable gives a notifier that sends
// nothing.
func FromEnv() (*Notifier, error) {
	return New(os.Getenv("NOTIFY_SOCKET"))
}

// New is the notifier of a socket address as $NOTIFY_SOCKET writes it;
// empty: one that sends nothing.
func New(socket string) (*Notifier, error) {
	switch {
	case socket == "":
		return &Notifier{}, nil
	case socket[0] == '@': // abstract namespace
		return &Notifier{addr: &net.UnixAddr{Name: "\x00" + socket[1:], Net: "unixgram"}}, nil
	case socket[0] == '/':
		return &Notifier{addr: &net.UnixAddr{Name: socket, Net: "unixgram"}}, nil
	}
	return nil, fmt.Errorf("NOTIFY_SOCKET: %q is neither a path nor an abstract socket (@name)", socket)
}

// Enabled reports whether the notifier sends anywhere.
func (n *Notifier) Enabled() bool { return n != nil && n.addr != nil }

// Notify sends the messages, joined by newlines, in one datagram.
func (n *Notifier) Notify(msgs ...string) error {
	if !n.Enabled() {
		return nil
	}
	payload := strings.Join(msgs, "\n")
	if len(payload) > maxMessage {
		return fmt.Errorf("sd_notify: message of %d bytes is over %d", len(payload), maxMessage)
	}
	conn, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(payload)); err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	return nil
}

// WatchdogInterval is how often the service must send WATCHDOG=1: the
// $WATCHDOG_USEC that systemd sets from WatchdogSec=, when $WATCHDOG_PID is
// unset or names this process. Zero: no watchdog.
func WatchdogInterval() (time.Duration, error) {
	return watchdogInterval(os.Getenv("WATCHDOG_USEC"), os.Getenv("WATCHDOG_PID"), os.Getpid())
}

// ErrWatchdogValue is a $WATCHDOG_USEC or $WATCHDOG_PID that is no number.
var ErrWatchdogValue = errors.New("not a positive number")

func watchdogInterval(usec, pid string, self int) (time.Duration, error) {
	if usec == "" {
		return 0, nil
	}
	if pid != "" {
		p, err := strconv.Atoi(pid)
		if err != nil || p <= 0 {
			return 0, fmt.Errorf("WATCHDOG_PID %q: %w", pid, ErrWatchdogValue)
		}
		if p != self {
			return 0, nil // meant for another process
		}
	}
	u, err := strconv.ParseUint(usec, 10, 63)
	if err != nil || u == 0 {
		return 0, fmt.Errorf("WATCHDOG_USEC %q: %w", usec, ErrWatchdogValue)
	}
	if u > uint64(time.Duration(1<<62)/time.Microsecond) {
		return 0, fmt.Errorf("WATCHDOG_USEC %q: too large", usec)
	}
	return time.Duration(u) * time.Microsecond, nil
}
