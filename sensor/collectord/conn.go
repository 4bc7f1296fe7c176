package collectord

import (
	"bufio"
	"crypto/tls"
	"net"
	"net/url"
	"slices"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// brokerReadBuffer is the read buffer of the connection to the broker: a
// few summaries of a thousand prefixes (about 75 KB each).
const brokerReadBuffer = 256 << 10

// brokerSchemes are the URL schemes Config.Broker takes: plain TCP, or TLS
// (tlsSchemes).
var brokerSchemes = append([]string{"tcp", "mqtt"}, tlsSchemes...)

// dialBroker opens paho's connection to the broker (its
// CustomOpenConnectionFn) as paho would for these schemes, and reads it
// through a buffer: paho reads each packet's fixed header a byte at a
// time, which on a bare socket is a system call per byte, several per
// summary at a thousand summaries a second.
func dialBroker(u *url.URL, o mqtt.ClientOptions) (net.Conn, error) {
	d := o.Dialer
	if d == nil {
		d = &net.Dialer{Timeout: o.ConnectTimeout}
	}
	var conn net.Conn
	var err error
	if slices.Contains(tlsSchemes, u.Scheme) {
		conn, err = tls.DialWithDialer(d, "tcp", u.Host, o.TLSConfig)
	} else {
		conn, err = d.Dial("tcp", u.Host)
	}
	if err != nil {
		return nil, err
	}
	return &bufferedConn{Conn: conn, r: bufio.NewReaderSize(conn, brokerReadBuffer)}, nil
}

// bufferedConn is a connection whose reads go through r.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }
