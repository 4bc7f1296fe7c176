package testutil

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// CA is a certificate authority made for a test with crypto/x509.
type CA struct {
	Name     string
	CertFile string // PEM of the CA's certificate
	cert     *x509.Certificate
	key      *ecdsa.PrivateKey
	dir      string
	serial   int64
	// crlNumber is the number of the last CRL written.
	crlNumber int64
}

// Issued is a certificate and key a CA issued, as PEM files.
type Issued struct {
	CertFile, KeyFile string
	Serial            *big.Int
}

// NewCA makes a CA whose files go into dir.
func NewCA(tb testing.TB, dir, name string) *CA {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"peerwatch test"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	ca := &CA{Name: name, cert: cert, key: key, dir: dir, serial: 1,
		CertFile: filepath.Join(dir, name+".crt")}
	writePEM(tb, ca.CertFile, "CERTIFICATE", der)
	return ca
}

// Server issues a broker certificate for 127.0.0.1 and localhost.
func (ca *CA) Server(tb testing.TB, cn string) Issued {
	tb.Helper()
	return ca.issue(tb, cn, true, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
}

// Client issues a client certificate with common name cn.
func (ca *CA) Client(tb testing.TB, cn string) Issued {
	tb.Helper()
	return ca.issue(tb, cn, false, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
}

// Expired issues a client certificate that expired an hour ago.
func (ca *CA) Expired(tb testing.TB, cn string) Issued {
	tb.Helper()
	return ca.issue(tb, cn, false, time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour))
}

func (ca *CA) issue(tb testing.TB, cn string, server bool, from, to time.Time) Issued {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	ca.serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(ca.serial),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    from,
		NotAfter:     to,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		tmpl.DNSNames = []string{"localhost"}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		tb.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	base := filepath.Join(ca.dir, ca.Name+"-"+cn)
	is := Issued{CertFile: base + ".crt", KeyFile: base + ".key", Serial: tmpl.SerialNumber}
	writePEM(tb, is.CertFile, "CERTIFICATE", der)
	writePEM(tb, is.KeyFile, "PRIVATE KEY", kder)
	return is
}

// WriteCRL writes to path the CA's certificate revocation list (PEM, as
// openssl ca -gencrl writes it), listing revoked, valid for a day. The file
// is replaced whole (renamed into place).
func (ca *CA) WriteCRL(tb testing.TB, path string, revoked ...Issued) {
	tb.Helper()
	ca.crlNumber++
	tmpl := &x509.RevocationList{
		Number:     big.NewInt(ca.crlNumber),
		ThisUpdate: time.Now().Add(-time.Minute),
		NextUpdate: time.Now().Add(24 * time.Hour),
	}
	for _, is := range revoked {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries,
			x509.RevocationListEntry{SerialNumber: is.Serial, RevocationTime: time.Now().Add(-time.Minute)})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, ca.cert, ca.key)
	if err != nil {
		tb.Fatal(err)
	}
	writePEM(tb, path+".new", "X509 CRL", der)
	if err := os.Rename(path+".new", path); err != nil {
		tb.Fatal(err)
	}
}

// writePEM writes a readable file (0644): a broker started by the test may
// run as another user.
func writePEM(tb testing.TB, path, typ string, der []byte) {
	tb.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o644); err != nil {
		tb.Fatal(err)
	}
}
