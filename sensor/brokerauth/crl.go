package brokerauth

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"
)

// MaxCRLFile is the largest CRL file read: some 400,000 revoked
// certificates.
const MaxCRLFile = 16 << 20

// ErrRevoked: a client certificate is listed in the CRL.
var ErrRevoked = errors.New("certificate revoked")

// Revocations are the client certificates that a CRL file lists as
// revoked. The file is read again when it changes (its modification time
// or size), at the next handshake: an operator replaces it, as with
// mosquitto's crlfile, without a restart. A file that no longer reads or
// verifies is logged and the previous list kept.
type Revocations struct {
	path    string
	issuers []*x509.Certificate
	log     *slog.Logger

	mu      sync.Mutex
	modTime time.Time
	size    int64
	revoked map[string]bool // issuer's raw subject + serial
	next    time.Time       // the earliest NextUpdate of the CRLs
	failed  error           // why the file as it is now was not read
	warned  time.Time       // last warning about a stale CRL or a failed reload
}

// LoadRevocations reads the CRLs (PEM "X509 CRL" blocks, one per CA, as
// openssl ca -gencrl writes) of path; each must be signed by one of
// issuers, the client CAs. Errors name the file and the line of the block.
func LoadRevocations(path string, issuers []*x509.Certificate, log *slog.Logger) (*Revocations, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Revocations{path: path, issuers: issuers, log: log}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("crl: %w", err)
	}
	r.modTime, r.size = fi.ModTime(), fi.Size()
	if err := r.load(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *Revocations) load() error {
	f, err := os.Open(r.path)
	if err != nil {
		return fmt.Errorf("crl: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxCRLFile+1))
	if err != nil {
		return fmt.Errorf("crl %s: %w", r.path, err)
	}
	if len(b) > MaxCRLFile {
		return fmt.Errorf("%w: crl %s: larger than %d bytes", ErrFile, r.path, MaxCRLFile)
	}
	revoked := make(map[string]bool)
	var next time.Time
	n := 0
	for rest := b; ; {
		at := len(b) - len(rest)
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			if len(bytes.TrimSpace(rest)) > 0 {
				line := 1 + bytes.Count(b[:at], []byte("\n"))
				return fmt.Errorf("%w: crl %s:%d: not a PEM block", ErrFile, r.path, line)
			}
			break
		}
		line := 1 + bytes.Count(b[:at+bytes.Index(b[at:], []byte("-----BEGIN"))], []byte("\n"))
		if block.Type != "X509 CRL" {
			return fmt.Errorf("%w: crl %s:%d: a %s block, want X509 CRL", ErrFile, r.path, line, block.Type)
		}
		n++
		crl, err := x509.ParseRevocationList(block.Bytes)
		if err != nil {
			return fmt.Errorf("%w: crl %s:%d: %w", ErrFile, r.path, line, err)
		}
		issuer := r.issuerOf(crl)
		if issuer == nil {
			return fmt.Errorf("%w: crl %s:%d: issued by %q, which is not a client CA, or its signature does not verify",
				ErrFile, r.path, line, crl.Issuer.String())
		}
		for _, e := range crl.RevokedCertificateEntries {
			revoked[string(issuer.RawSubject)+e.SerialNumber.String()] = true
		}
		if next.IsZero() || crl.NextUpdate.Before(next) {
			next = crl.NextUpdate
		}
	}
	if n == 0 {
		return fmt.Errorf("%w: crl %s: no PEM X509 CRL block in it", ErrFile, r.path)
	}
	r.revoked, r.next = revoked, next
	return nil
}

// issuerOf is the client CA that signed crl, or nil.
func (r *Revocations) issuerOf(crl *x509.RevocationList) *x509.Certificate {
	for _, ca := range r.issuers {
		if bytes.Equal(ca.RawSubject, crl.RawIssuer) && crl.CheckSignatureFrom(ca) == nil {
			return ca
		}
	}
	return nil
}

// Len is the number of revoked certificates listed.
func (r *Revocations) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.revoked)
}

// VerifyConnection refuses a client whose certificate is revoked; it is a
// tls.Config.VerifyConnection for a listener that verifies client
// certificates.
func (r *Revocations) VerifyConnection(cs tls.ConnectionState) error {
	if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return nil // no client certificate: ClientAuth decides
	}
	leaf := cs.VerifiedChains[0][0]
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.refresh(now)
	if r.revoked[string(leaf.RawIssuer)+leaf.SerialNumber.String()] {
		return fmt.Errorf("%w: %q, serial %s, is listed in %s", ErrRevoked, leaf.Subject.CommonName, leaf.SerialNumber, r.path)
	}
	return nil
}

// refresh reads the file again if it changed; r.mu is held.
func (r *Revocations) refresh(now time.Time) {
	fi, err := os.Stat(r.path)
	switch {
	case err != nil:
		r.failed = fmt.Errorf("crl: %w", err)
	case !fi.ModTime().Equal(r.modTime) || fi.Size() != r.size:
		r.modTime, r.size = fi.ModTime(), fi.Size()
		if r.failed = r.load(); r.failed == nil {
			r.log.Info("crl read again", "file", r.path, "revoked", len(r.revoked), "next_update", r.next)
		}
	}
	if now.Sub(r.warned) < time.Minute {
		return
	}
	switch {
	case r.failed != nil:
		r.warned = now
		r.log.Error("crl unreadable: the previous list of revoked certificates stays in force", "err", r.failed)
	case !r.next.IsZero() && now.After(r.next):
		r.warned = now
		r.log.Warn("crl past its next update: make a new one (openssl ca -gencrl); it stays in force", "file", r.path, "next_update", r.next)
	}
}
