package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/peerwatch/peerwatch/internal/testutil"
)

var repo, _ = filepath.Abs(filepath.Join("..", "..", ".."))

// TestNetnsBenchPeersQuick runs scripts/bench-peers --quick as a user
// would (it installs pmacct, fastnetmon, netsniff-ng and gnuplot when
// missing; trafgen sends) under a
// random lab prefix, and checks the accuracy part exactly for peerwatch:
// in every attach mode and segment, counted == sent, in total and for
// every prefix, with nothing under a prefix that was not sent. The other
// tools' figures are measured, not asserted; the result files must exist
// and the plot be a PNG.
func TestNetnsBenchPeersQuick(t *testing.T) {
	testutil.RequireBPF(t)
	var rnd [2]byte
	_, _ = rand.Read(rnd[:])
	prefix := "pb" + hex.EncodeToString(rnd[:])
	out := filepath.Join(t.TempDir(), "bench")
	cmd := exec.Command(filepath.Join(repo, "scripts", "bench-peers"), "--quick")
	cmd.Env = append(os.Environ(), "BENCH_OUT="+out, "LAB_PREFIX="+prefix)
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	err := cmd.Run()
	t.Logf("scripts/bench-peers --quick:\n%s", log.String())
	if err != nil {
		t.Fatalf("scripts/bench-peers --quick: %v", err)
	}
	if b, err := exec.Command("ip", "netns", "list").Output(); err != nil || strings.Contains(string(b), prefix+"-") {
		t.Errorf("the lab's namespaces are left: %s (%v)", b, err)
	}

	b, err := os.ReadFile(filepath.Join(out, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var res Results
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	if res.Rounds != 1 || len(res.Rates) != 2 || res.Count != 5000 || res.Sender != "trafgen" {
		t.Errorf("quick mode: rounds %d, rates %v, count %d, sender %q; want 1, 2 rates, 5000, trafgen",
			res.Rounds, res.Rates, res.Count, res.Sender)
	}
	wantTools := []string{"baseline", "peerwatch-xdp-generic", "peerwatch-xdp", "peerwatch-tc", "pmacctd", "fastnetmon"}
	seen := map[string]bool{}
	wantMode := map[string]string{"peerwatch-xdp-generic": "xdp-generic", "peerwatch-xdp": "xdp-native", "peerwatch-tc": "tcx"}
	for _, r := range res.Runs {
		seen[r.Tool] = true
		if len(r.Segments) != 2 {
			t.Errorf("%s: %d segments, want 2", r.Tool, len(r.Segments))
		}
		for i, s := range r.Segments {
			if s.Sent != 5000 || s.AtPort != s.Sent {
				t.Errorf("%s segment %d: sent %d, %d reached the mirror port; want 5000 both", r.Tool, i, s.Sent, s.AtPort)
			}
			if r.Tool == "baseline" {
				if s.Counted != nil {
					t.Errorf("baseline segment %d counted %d", i, *s.Counted)
				}
				continue
			}
			if s.Counted == nil {
				t.Errorf("%s segment %d: no count", r.Tool, i)
				continue
			}
			if !strings.HasPrefix(r.Tool, "peerwatch") {
				continue
			}
			if r.Mode != wantMode[r.Tool] {
				t.Errorf("%s: attach mode %q, want %q", r.Tool, r.Mode, wantMode[r.Tool])
			}
			if *s.Counted != s.Sent || s.PrefixesExact == nil || *s.PrefixesExact != s.Prefixes || s.Prefixes < 500 ||
				s.Misattributed != 0 {
				exact := -1
				if s.PrefixesExact != nil {
					exact = *s.PrefixesExact
				}
				t.Errorf("%s segment %d: counted %d of %d, %d of %d prefixes exact, %d misattributed (%v)",
					r.Tool, i, *s.Counted, s.Sent, exact, s.Prefixes, s.Misattributed, s.Examples)
			}
		}
	}
	for _, tool := range wantTools {
		if !seen[tool] {
			t.Errorf("no run of %s", tool)
		}
	}
	md, err := os.ReadFile(filepath.Join(out, "results.md"))
	if err != nil || !bytes.Contains(md, []byte("| peerwatch-xdp-generic | xdp-generic |")) {
		t.Errorf("results.md: %v\n%s", err, md)
	}
	png, err := os.ReadFile(filepath.Join(out, "comparison.png"))
	if err != nil || !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) || len(png) < 10000 {
		t.Errorf("comparison.png: %v, %d bytes", err, len(png))
	}
}
