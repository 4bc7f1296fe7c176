package collectord

import (
	"bufio"
	"context"
	"crypto/tls"
	"net"
	"net/url"
	"slices"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"golang.org/x/net/proxy"
)

// brokerReadBuffer is the read buffer of the connection to the broker: a
// few summaries of a thousand prefixes (about 75 KB each).
const brokerReadBuffer = 256 << 10

// bufferedSchemes are the broker URL schemes that dialBroker opens: plain
// TCP and TLS. paho opens the others (websockets, Unix sockets) itself.
var bufferedSchemes = append([]string{"tcp", "mqtt"}, tlsSchemes...)

// dialBroker opens paho's connection to the broker (its
// CustomOpenConnectionFn) as paho does, through the proxy the environment
// names if any (ALL_PROXY, NO_PROXY), with TLS for the TLS schemes, and
// reads it through a buffer: paho reads each packet's fixed header a byte
// at a time, which on a bare socket is a system call per byte, several per
// summary at a thousand summaries a second.
func dialBroker(u *url.URL, o mqtt.ClientOptions) (net.Conn, error) {
	d := o.Dialer
	if d == nil {
		d = &net.Dialer{Timeout: o.ConnectTimeout}
	}
	conn, err := proxy.FromEnvironmentUsing(d).Dial("tcp", u.Host)
	if err != nil {
		return nil, err
	}
	if slices.Contains(tlsSchemes, u.Scheme) {
		// As tls.DialWithDialer: the server's name from the URL unless
		// the configuration gives one, the dialer's timeout on the
		// handshake too.
		cfg := o.TLSConfig.Clone()
		if cfg == nil {
			cfg = &tls.Config{}
		}
		if cfg.ServerName == "" {
			cfg.ServerName = u.Hostname()
		}
		ctx := context.Background()
		if d.Timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, d.Timeout)
			defer cancel()
		}
		tc := tls.Client(conn, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			_ = conn.Close()
			return nil, err
		}
		conn = tc
	}
	return &bufferedConn{Conn: conn, r: bufio.NewReaderSize(conn, brokerReadBuffer)}, nil
}

// bufferedConn is a connection whose reads go through r.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }
