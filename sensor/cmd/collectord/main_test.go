package main

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestRunBadFiles: a bad password or certificate file stops collectord at
// start with the file and line.
func TestRunBadFiles(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "passwd")
	if err := os.WriteFile(pw, []byte("sA:$7$101$fUG4OzfjWlYdRlb7$AAAA\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	crt := filepath.Join(dir, "broker.crt")
	if err := os.WriteFile(crt, []byte("\n\n-----BEGIN CERTIFICATE-----\n!!!\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--embedded-broker", "127.0.0.1:0", "--embedded-password-file", pw}, pw + ":1: user \"sA\": hash: want 64 bytes"},
		{[]string{"--embedded-broker", "127.0.0.1:0", "--embedded-cert", crt, "--embedded-key", crt}, "broker certificate " + crt + ":3: PEM block does not decode"},
		{[]string{"--broker", "tcp://127.0.0.1:1", "--broker-ca", crt}, "needs TLS: ssl://"},
		{[]string{"--embedded-broker", "127.0.0.1:0", "--embedded-readers", "c1, c2"}, "readers: need a client CA or a password file"},
	} {
		err := run(context.Background(), tc.args)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("collectord %s: %v, want %q", strings.Join(tc.args, " "), err, tc.want)
		}
	}
}

// TestDocCommands parses every collectord command line of the documents
// with collectord's flags, so that they name no flag that does not exist.
func TestDocCommands(t *testing.T) {
	n := 0
	for _, doc := range []string{"../../../docs/broker.md", "../../../docs/collectord.md"} {
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		text := strings.ReplaceAll(string(b), "\\\n", " ")
		for line := range strings.Lines(text) {
			line = strings.TrimSpace(line)
			if !strings.HasPrefix(line, "collectord --") {
				continue
			}
			line, _, _ = strings.Cut(line, "#")
			args := slices.DeleteFunc(strings.Fields(line)[1:], func(a string) bool { return a == "..." })
			n++
			// --version: parse every flag, then print the version and return.
			if err := run(context.Background(), append(args, "--version")); err != nil {
				t.Errorf("%s: %q: %v", doc, line, err)
			}
		}
	}
	if n < 8 {
		t.Errorf("%d command lines in the documents, want at least 8", n)
	}
}
