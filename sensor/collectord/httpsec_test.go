package collectord

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/peerwatch/peerwatch/internal/testutil"
	"github.com/peerwatch/peerwatch/sensor/brokerauth"
)

// TestHTTPSecurity: with --listen-cert/--listen-key and
// --listen-password-file, every path is served over HTTPS and only to the
// users of the password file (mosquitto_passwd's format, both hash kinds).
func TestHTTPSecurity(t *testing.T) {
	dir := t.TempDir()
	ca := testutil.NewCA(t, dir, "ops")
	srv := ca.Server(t, "collectord")
	// alice/secret ($7$, PBKDF2) and carol/secret ($6$), by mosquitto_passwd.
	passwd, err := filepath.Abs("../brokerauth/testdata/passwd")
	if err != nil {
		t.Fatal(err)
	}
	_, api := startDaemon(t, Config{EmbeddedBroker: testutil.FreeAddr(t),
		HTTPSecurity: HTTPSecurity{CertFile: srv.CertFile, KeyFile: srv.KeyFile, PasswordFile: passwd}})
	base := strings.Replace(strings.TrimSuffix(api, "/api/v1"), "http://", "https://", 1)

	pem, err := os.ReadFile(ca.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	client := &http.Client{Timeout: 10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}

	get := func(path, user, pass string) (*http.Response, string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, base+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		res, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res, string(b)
	}
	for _, path := range []string{"/", "/api/v1/sensors", "/metrics", "/static/style.css"} {
		for _, c := range []struct{ user, pass string }{{"", ""}, {"alice", "wrong"}, {"mallory", "secret"}, {"alice", ""}} {
			res, body := get(path, c.user, c.pass)
			if res.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(res.Header.Get("WWW-Authenticate"), "Basic ") {
				t.Errorf("GET %s as %q/%q: %d, WWW-Authenticate %q; want 401 with a Basic challenge",
					path, c.user, c.pass, res.StatusCode, res.Header.Get("WWW-Authenticate"))
			}
			if strings.HasPrefix(path, "/api/") {
				var e struct{ Error string }
				if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error != "authentication required" {
					t.Errorf("GET %s refused: body %q, want the JSON error", path, body)
				}
			}
		}
		for _, user := range []string{"alice", "carol"} {
			if res, body := get(path, user, "secret"); res.StatusCode != http.StatusOK {
				t.Errorf("GET %s as %s: %d %s, want 200", path, user, res.StatusCode, body)
			}
		}
	}
	// Twice in a row (the second from the cache of verified credentials),
	// and the cache does not let another password through.
	for range 2 {
		if res, _ := get("/api/v1/sensors", "alice", "secret"); res.StatusCode != http.StatusOK {
			t.Errorf("GET as alice again: %d", res.StatusCode)
		}
	}
	if res, _ := get("/api/v1/sensors", "alice", "secret2"); res.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET as alice with another password after a good one: %d, want 401", res.StatusCode)
	}

	// Plain HTTP to the HTTPS port gets no page.
	plain, err := http.Get(strings.Replace(base, "https://", "http://", 1) + "/api/v1/sensors")
	if err == nil {
		plain.Body.Close()
		if plain.StatusCode == http.StatusOK {
			t.Errorf("plain HTTP to the HTTPS listener: 200")
		}
	}
	// A client that does not trust the CA is refused by its own TLS.
	if _, err := http.Get(base + "/"); err == nil {
		t.Errorf("a client without the CA connected")
	}
}

func TestHTTPSecurityConfigErrors(t *testing.T) {
	dir := t.TempDir()
	ca := testutil.NewCA(t, dir, "ops")
	srv := ca.Server(t, "collectord")
	bad := filepath.Join(dir, "passwd")
	if err := os.WriteFile(bad, []byte("alice:$7$101$notbase64!$xx\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		sec  HTTPSecurity
		want string
		is   error
	}{
		{"cert without key", HTTPSecurity{CertFile: srv.CertFile}, "listen certificate and key: want both or neither", ErrConfig},
		{"missing key file", HTTPSecurity{CertFile: srv.CertFile, KeyFile: filepath.Join(dir, "none.key")}, "none.key", nil},
		{"bad password file", HTTPSecurity{PasswordFile: bad}, bad + ":1", brokerauth.ErrFile},
		{"missing password file", HTTPSecurity{PasswordFile: filepath.Join(dir, "nope")}, "nope", nil},
	} {
		_, err := New(Config{EmbeddedBroker: "127.0.0.1:0", HTTPSecurity: c.sec}, nil)
		if err == nil || !strings.Contains(err.Error(), c.want) || (c.is != nil && !errors.Is(err, c.is)) {
			t.Errorf("%s: %v, want an error with %q", c.name, err, c.want)
		}
	}
}
