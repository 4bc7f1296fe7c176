package collectord

import (
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/peerwatch/peerwatch/sensor/brokerauth"
	"github.com/peerwatch/peerwatch/sensor/web"
)

// HTTPSecurity is the TLS and authentication of the dashboard, the API
// and /metrics (the --listen address). Without them, keep --listen on
// loopback or a management network.
type HTTPSecurity struct {
	// CertFile and KeyFile are the server's certificate and key: the
	// listener speaks HTTPS.
	CertFile, KeyFile string
	// PasswordFile holds users and password hashes as mosquitto_passwd
	// writes them; every path then asks for HTTP basic authentication.
	PasswordFile string
}

func (s HTTPSecurity) validate() error {
	if (s.CertFile == "") != (s.KeyFile == "") {
		return fmt.Errorf("%w: listen certificate and key: want both or neither", ErrConfig)
	}
	return nil
}

// httpSecurity is what New prepared from HTTPSecurity.
type httpSecurity struct {
	tls   *tls.Config           // nil: plain HTTP
	users *brokerauth.Passwords // nil: no authentication
	// verified caches the credentials that passed for a while, so that a
	// dashboard's burst of requests does not pay the password file's
	// PBKDF2 iterations each time.
	mu       sync.Mutex
	verified map[[sha256.Size]byte]time.Time
}

// Bounds of the cache of verified credentials.
const (
	authCacheTTL  = time.Minute
	authCacheSize = 256
)

func loadHTTPSecurity(s HTTPSecurity) (*httpSecurity, error) {
	h := &httpSecurity{}
	if s.CertFile != "" {
		pair, err := brokerauth.LoadKeyPair("listen", s.CertFile, s.KeyFile, time.Now())
		if err != nil {
			return nil, err
		}
		h.tls = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{pair}}
	}
	if s.PasswordFile != "" {
		users, err := brokerauth.LoadPasswords(s.PasswordFile)
		if err != nil {
			return nil, err
		}
		h.users = users
		h.verified = make(map[[sha256.Size]byte]time.Time)
	}
	return h, nil
}

// wrap puts the authentication, if any, in front of next.
func (h *httpSecurity) wrap(next http.Handler) http.Handler {
	if h == nil || h.users == nil {
		return next
	}
	return web.RequireAuth(h.verify, next)
}

func (h *httpSecurity) verify(user, password string) bool {
	// The key is a digest of both, so that the cache holds no password.
	key := sha256.Sum256([]byte(user + "\x00" + password))
	now := time.Now()
	h.mu.Lock()
	until, ok := h.verified[key]
	h.mu.Unlock()
	if ok && now.Before(until) {
		return true
	}
	if !h.users.Verify(user, password) {
		return false
	}
	h.mu.Lock()
	if len(h.verified) >= authCacheSize {
		clear(h.verified)
	}
	h.verified[key] = now.Add(authCacheTTL)
	h.mu.Unlock()
	return true
}

// loopback reports whether addr is a loopback address.
func loopback(addr net.Addr) bool {
	tcp, ok := addr.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}
