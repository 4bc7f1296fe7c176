package web

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/peerwatch/peerwatch/internal/testutil"
)

// serveUntilCancel runs ListenAndServe and returns its result channel once
// url answers.
func serveUntilCancel(t *testing.T, ctx context.Context, addr, cert, key string, client *http.Client, url string) chan error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- ListenAndServe(ctx, addr, cert, key, newHandler(newFreshSource(), Options{})) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		res, err := client.Get(url)
		if err == nil {
			res.Body.Close()
			if res.StatusCode != http.StatusOK {
				t.Fatalf("GET %s: %d", url, res.StatusCode)
			}
			return done
		}
		select {
		case err := <-done:
			t.Fatalf("ListenAndServe ended: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %v", url, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestListenAndServe(t *testing.T) {
	addr := testutil.FreeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := serveUntilCancel(t, ctx, addr, "", "", http.DefaultClient, "http://"+addr+"/api/v1/status")

	// The address is taken while it serves.
	if err := ListenAndServe(context.Background(), addr, "", "", http.NotFoundHandler()); err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("second server on %s: %v", addr, err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ListenAndServe did not return after cancel")
	}

	if err := ListenAndServe(context.Background(), addr, "cert.pem", "", nil); err == nil || err.Error() != "serve http on "+addr+": tls needs both a certificate and a key" {
		t.Errorf("cert without key: %v", err)
	}
	if err := ListenAndServe(context.Background(), addr, "/nonexistent/cert.pem", "/nonexistent/key.pem", nil); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing cert: %v", err)
	}
}

func TestListenAndServeTLS(t *testing.T) {
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sensor"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(must(x509.ParseCertificate(der)))
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}

	addr := testutil.FreeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := serveUntilCancel(t, ctx, addr, certFile, keyFile, client, "https://"+addr+"/")
	cancel()
	if err := <-done; err != nil {
		t.Errorf("after cancel: %v", err)
	}
}
