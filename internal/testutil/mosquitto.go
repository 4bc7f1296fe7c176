package testutil

import (
	"net"
	"testing"
)

// Mosquitto runs mosquitto (StartMosquitto) on a free loopback port,
// anonymous, without persistence, with conf appended to that
// configuration, until the test ends; it returns the broker's address. It
// skips the test when mosquitto is not installed.
func Mosquitto(tb testing.TB, conf string) string {
	tb.Helper()
	RequireMosquitto(tb)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, port, _ := net.SplitHostPort(addr)
	base := "listener " + port + " 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\n"
	StartMosquitto(tb, tb.TempDir(), base+conf, addr)
	return addr
}
