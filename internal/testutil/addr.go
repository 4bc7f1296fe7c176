package testutil

import (
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
)

// Ports FreeAddr picks from: below Linux's ephemeral range (32768-60999
// by default), so that no outgoing connection, nor a listener on port 0,
// takes the port between FreeAddr and the test's own listen. A port taken
// from that range could be, and CI saw it: "bind: address already in
// use" for the embedded broker of a test while other packages' tests ran.
const (
	freePortLow  = 20000
	freePortHigh = 32000
)

// given are the addresses FreeAddr gave in this process: two calls
// before either server listens must not get the same one.
var given struct {
	sync.Mutex
	addrs map[string]bool
}

// FreeAddr is a loopback address, "127.0.0.1:<port>", that nothing listens
// on and that FreeAddr did not give before in this process, for a server
// that the test starts on it.
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	given.Lock()
	defer given.Unlock()
	if given.addrs == nil {
		given.addrs = map[string]bool{}
	}
	for range 100 {
		addr := fmt.Sprintf("127.0.0.1:%d", freePortLow+rand.IntN(freePortHigh-freePortLow))
		if given.addrs[addr] {
			continue
		}
		if l, err := net.Listen("tcp", addr); err == nil {
			l.Close()
			given.addrs[addr] = true
			return addr
		}
	}
	tb.Fatalf("no free port in %d-%d on 127.0.0.1 after 100 tries", freePortLow, freePortHigh-1)
	return ""
}
