package brokerauth

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/peerwatch/peerwatch/internal/testutil"
)

func TestLoadRevocations(t *testing.T) {
	dir := t.TempDir()
	ca, other := testutil.NewCA(t, dir, "fleet"), testutil.NewCA(t, dir, "other")
	issuers, err := LoadCertificates("client CA", ca.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	sA, sB := ca.Client(t, "sA"), ca.Client(t, "sB")
	good := filepath.Join(dir, "good.crl")
	ca.WriteCRL(t, good, sB)
	rev, err := LoadRevocations(good, issuers, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rev.Len() != 1 {
		t.Errorf("%d revoked, want 1", rev.Len())
	}
	check := func(is testutil.Issued) error {
		certs, err := LoadCertificates("client", is.CertFile)
		if err != nil {
			t.Fatal(err)
		}
		return rev.VerifyConnection(tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{certs[0], issuers[0]}}})
	}
	if err := check(sA); err != nil {
		t.Errorf("sA: %v", err)
	}
	if err := check(sB); !errors.Is(err, ErrRevoked) || !strings.Contains(err.Error(), `"sB", serial `) {
		t.Errorf("sB: %v, want revoked", err)
	}
	// Another CA's certificate with sB's serial is not revoked by the
	// fleet's CRL.
	other.Client(t, "sA") // serials go in step with the fleet CA's
	oB := other.Client(t, "sB")
	if oB.Serial.Cmp(sB.Serial) != 0 {
		t.Fatalf("serials %v and %v: the test wants them equal", oB.Serial, sB.Serial)
	}
	otherCA, _ := LoadCertificates("other CA", other.CertFile)
	ocerts, _ := LoadCertificates("client", oB.CertFile)
	if err := rev.VerifyConnection(tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{ocerts[0], otherCA[0]}}}); err != nil {
		t.Errorf("other CA's sB: %v, want not revoked", err)
	}

	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	otherCRL := filepath.Join(dir, "other.crl")
	other.WriteCRL(t, otherCRL)
	goodPEM, _ := os.ReadFile(good)
	caPEM, _ := os.ReadFile(ca.CertFile)
	for _, c := range []struct{ name, path, want string }{
		{"another CA's CRL", otherCRL, otherCRL + `:1: issued by "CN=other,O=peerwatch test", which is not a client CA`},
		{"empty", write("empty.crl", ""), "empty.crl: no PEM X509 CRL block"},
		{"garbage", write("garbage.crl", "not pem\n"), "garbage.crl:1: not a PEM block"},
		{"a certificate", write("cert.crl", string(goodPEM)+string(caPEM)), "cert.crl:" + lineAfter(goodPEM) + ": a CERTIFICATE block, want X509 CRL"},
		{"missing", filepath.Join(dir, "none.crl"), "none.crl: no such file"},
	} {
		_, err := LoadRevocations(c.path, issuers, nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error with %q", c.name, err, c.want)
		}
	}
}

// lineAfter is the number of the line that follows b's last line.
func lineAfter(b []byte) string { return strconv.Itoa(1 + strings.Count(string(b), "\n")) }
