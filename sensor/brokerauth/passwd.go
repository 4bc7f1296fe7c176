// Package brokerauth secures collectord's embedded MQTT broker: password
// files in the format mosquitto_passwd writes, TLS with the identity of a
// verified client certificate, and the per-sensor topic rules (a sensor
// publishes only under <prefix>/<its id>/). docs/broker.md describes the
// production setup, with mosquitto or the embedded broker.
package brokerauth

import (
	"bufio"
	"bytes"
	"crypto/pbkdf2"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// Limits of a password file.
const (
	// MaxPasswordFile is the largest password file read (4 MiB: some
	// 25,000 users).
	MaxPasswordFile = 4 << 20
	// MaxLine is the longest line of a password file.
	MaxLine = 1024
	// MaxIterations bounds the PBKDF2 iterations of one entry: every
	// connection pays them.
	MaxIterations = 1_000_000
	// MaxSecret is the longest password file for a client (its first
	// line is the password).
	MaxSecret = 1024
)

// ErrFile: a password, certificate or key file is invalid.
var ErrFile = errors.New("invalid file")

// hash kinds of mosquitto_passwd.
const (
	kindSHA512       = 6 // $6$salt$hash: SHA-512(password + salt), mosquitto 1.6 and older
	kindPBKDF2SHA512 = 7 // $7$iterations$salt$hash: PBKDF2-HMAC-SHA512, mosquitto 2.0's default
)

type passwordHash struct {
	kind       int
	iterations int
	salt, hash []byte
}

func (h passwordHash) sum(password string) []byte {
	switch h.kind {
	case kindSHA512:
		s := sha512.New()
		io.WriteString(s, password)
		s.Write(h.salt)
		return s.Sum(nil)
	default:
		k, err := pbkdf2.Key(sha512.New, password, h.salt, h.iterations, len(h.hash))
		if err != nil { // only for a length out of range, which parse refuses
			return nil
		}
		return k
	}
}

// Passwords are the users of a password file and their password hashes.
type Passwords struct {
	users map[string]passwordHash
	// dummy is hashed for an unknown user, so that the time of an answer
	// does not tell whether a user exists.
	dummy passwordHash
}

// LoadPasswords reads a password file in the format mosquitto_passwd
// writes: one "user:$7$iterations$salt$hash" (PBKDF2-HMAC-SHA512, base64
// salt and hash) or "user:$6$salt$hash" (SHA-512) per line. Empty lines
// and lines starting with '#' are skipped. Errors name the file and line.
func LoadPasswords(path string) (*Passwords, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("password file: %w", err)
	}
	defer f.Close()
	return ParsePasswords(path, f)
}

// ParsePasswords reads a password file from r; name is the file's name in
// errors.
func ParsePasswords(name string, r io.Reader) (*Passwords, error) {
	b, err := io.ReadAll(io.LimitReader(r, MaxPasswordFile+1))
	if err != nil {
		return nil, fmt.Errorf("password file %s: %w", name, err)
	}
	if len(b) > MaxPasswordFile {
		return nil, fmt.Errorf("%w: %s: larger than %d bytes", ErrFile, name, MaxPasswordFile)
	}
	p := &Passwords{users: make(map[string]passwordHash)}
	lineOf := make(map[string]int)
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, MaxLine+1), MaxLine+1)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSuffix(sc.Text(), "\r")
		if len(text) > MaxLine {
			return nil, fmt.Errorf("%w: %s:%d: line longer than %d bytes", ErrFile, name, line, MaxLine)
		}
		if strings.TrimSpace(text) == "" || strings.HasPrefix(text, "#") {
			continue
		}
		user, hash, ok := strings.Cut(text, ":")
		if !ok || user == "" {
			return nil, fmt.Errorf("%w: %s:%d: want user:$7$iterations$salt$hash (mosquitto_passwd)", ErrFile, name, line)
		}
		h, err := parseHash(hash)
		if err != nil {
			return nil, fmt.Errorf("%w: %s:%d: user %q: %w", ErrFile, name, line, user, err)
		}
		if first, dup := lineOf[user]; dup {
			return nil, fmt.Errorf("%w: %s:%d: user %q again (first on line %d)", ErrFile, name, line, user, first)
		}
		lineOf[user] = line
		p.users[user] = h
		if h.kind == kindPBKDF2SHA512 && h.iterations > p.dummy.iterations {
			p.dummy = h
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("%w: %s:%d: line longer than %d bytes", ErrFile, name, line+1, MaxLine)
		}
		return nil, fmt.Errorf("password file %s: %w", name, err)
	}
	if len(p.users) == 0 {
		return nil, fmt.Errorf("%w: %s: no user in it", ErrFile, name)
	}
	if p.dummy.kind == 0 {
		for _, h := range p.users {
			p.dummy = h
			break
		}
	}
	return p, nil
}

func parseHash(s string) (passwordHash, error) {
	f := strings.Split(s, "$")
	var h passwordHash
	var salt, sum string
	switch {
	case len(f) == 5 && f[0] == "" && f[1] == "7":
		h.kind = kindPBKDF2SHA512
		it, err := strconv.Atoi(f[2])
		if err != nil || it < 1 || it > MaxIterations {
			return h, fmt.Errorf("iterations %q: want 1 to %d", f[2], MaxIterations)
		}
		h.iterations, salt, sum = it, f[3], f[4]
	case len(f) == 4 && f[0] == "" && f[1] == "6":
		h.kind, salt, sum = kindSHA512, f[2], f[3]
	case len(f) > 1 && f[0] == "":
		return h, fmt.Errorf("hash type $%s$: want $7$ (PBKDF2-SHA512) or $6$ (SHA-512)", f[1])
	default:
		return h, errors.New("not a hash: want $7$iterations$salt$hash as mosquitto_passwd writes (a plain password must be hashed with mosquitto_passwd -U)")
	}
	var err error
	if h.salt, err = base64.StdEncoding.DecodeString(salt); err != nil || len(h.salt) == 0 {
		return h, fmt.Errorf("salt %q: not base64", salt)
	}
	if h.hash, err = base64.StdEncoding.DecodeString(sum); err != nil || len(h.hash) != sha512.Size {
		return h, fmt.Errorf("hash: want %d bytes in base64", sha512.Size)
	}
	return h, nil
}

// Len is the number of users.
func (p *Passwords) Len() int { return len(p.users) }

// Verify reports whether password is user's password. It takes about as
// long for an unknown user.
func (p *Passwords) Verify(user, password string) bool {
	h, ok := p.users[user]
	if !ok {
		p.dummy.sum(password)
		return false
	}
	return subtle.ConstantTimeCompare(h.sum(password), h.hash) == 1
}

// ReadSecret reads a client's password from a file: its first line,
// without the line end. The file must hold at most MaxSecret bytes.
func ReadSecret(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("password file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxSecret+1))
	if err != nil {
		return "", fmt.Errorf("password file %s: %w", path, err)
	}
	if len(b) > MaxSecret {
		return "", fmt.Errorf("%w: %s: larger than %d bytes", ErrFile, path, MaxSecret)
	}
	first, _, _ := strings.Cut(string(b), "\n")
	first = strings.TrimSuffix(first, "\r")
	if first == "" {
		return "", fmt.Errorf("%w: %s:1: empty password", ErrFile, path)
	}
	return first, nil
}
