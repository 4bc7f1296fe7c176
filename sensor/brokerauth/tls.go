package brokerauth

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"time"
)

// MaxPEMFile is the largest certificate or key file read.
const MaxPEMFile = 1 << 20

func readPEMFile(what, path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxPEMFile+1))
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", what, path, err)
	}
	if len(b) > MaxPEMFile {
		return nil, fmt.Errorf("%w: %s %s: larger than %d bytes", ErrFile, what, path, MaxPEMFile)
	}
	return b, nil
}

// parseCertificates decodes every CERTIFICATE block of a PEM file; errors
// name the file and the line the bad block starts on. Blocks of other types
// (a key in front of the chain) are skipped.
func parseCertificates(what, path string, b []byte) ([]*x509.Certificate, error) {
	begin := []byte("-----BEGIN ")
	var starts []int
	for i := 0; ; {
		k := bytes.Index(b[i:], begin)
		if k < 0 {
			break
		}
		starts = append(starts, i+k)
		i += k + len(begin)
	}
	var certs []*x509.Certificate
	for n, at := range starts {
		end := len(b)
		if n+1 < len(starts) {
			end = starts[n+1]
		}
		line := 1 + bytes.Count(b[:at], []byte("\n"))
		block, _ := pem.Decode(b[at:end])
		if block == nil {
			return nil, fmt.Errorf("%w: %s %s:%d: PEM block does not decode (bad base64 or no END line)", ErrFile, what, path, line)
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: %s %s:%d: certificate %d: %w", ErrFile, what, path, line, len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%w: %s %s: no PEM CERTIFICATE block in it", ErrFile, what, path)
	}
	return certs, nil
}

// LoadCertificates reads the certificates of a PEM file.
func LoadCertificates(what, path string) ([]*x509.Certificate, error) {
	b, err := readPEMFile(what, path)
	if err != nil {
		return nil, err
	}
	return parseCertificates(what, path, b)
}

// LoadCertPool reads the CA certificates of a PEM file.
func LoadCertPool(what, path string) (*x509.CertPool, error) {
	certs, err := LoadCertificates(what, path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, nil
}

// LoadKeyPair reads a certificate chain and its private key; it refuses a
// certificate that is expired or not valid yet at now.
func LoadKeyPair(what, certFile, keyFile string, now time.Time) (tls.Certificate, error) {
	cb, err := readPEMFile(what+" certificate", certFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	certs, err := parseCertificates(what+" certificate", certFile, cb)
	if err != nil {
		return tls.Certificate{}, err
	}
	kb, err := readPEMFile(what+" key", keyFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	pair, err := tls.X509KeyPair(cb, kb)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("%w: %s certificate %s and key %s: %w", ErrFile, what, certFile, keyFile, err)
	}
	leaf := certs[0]
	if now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
		return tls.Certificate{}, fmt.Errorf("%w: %s certificate %s: valid from %s to %s, not now (%s)", ErrFile, what, certFile,
			leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	return pair, nil
}

// ServerTLS is the TLS configuration of a broker listener: its certificate
// and key, and, with clientCAFile, client certificates required and
// verified against that CA.
func ServerTLS(certFile, keyFile, clientCAFile string) (*tls.Config, error) {
	pair, err := LoadKeyPair("broker", certFile, keyFile, time.Now())
	if err != nil {
		return nil, err
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{pair}}
	if clientCAFile != "" {
		pool, err := LoadCertPool("client CA", clientCAFile)
		if err != nil {
			return nil, err
		}
		tc.ClientCAs = pool
		tc.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return tc, nil
}

// ClientTLS is the TLS configuration of an MQTT client: the CA that signs
// the broker's certificate (empty: the system's roots) and, optionally, the
// client's certificate and key.
func ClientTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pool, err := LoadCertPool("broker CA", caFile)
		if err != nil {
			return nil, err
		}
		tc.RootCAs = pool
	}
	if certFile != "" {
		pair, err := LoadKeyPair("client", certFile, keyFile, time.Now())
		if err != nil {
			return nil, err
		}
		tc.Certificates = []tls.Certificate{pair}
	}
	return tc, nil
}
