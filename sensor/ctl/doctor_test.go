package ctl

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/peerwatch/peerwatch/sensor/doctor"
)

// healthyBoard is a machine where every check passes.
func healthyBoard() doctor.System {
	files := map[string]string{
		"/proc/sys/net/core/bpf_jit_enable": "1\n",
		"/proc/self/status":                 "CapEff:\t000001ffffffffff\n",
		"/sys/devices/system/cpu/possible":  "0-3\n",
		"/proc/meminfo":                     "MemTotal:        4000000 kB\n",
	}
	return doctor.System{
		ReadFile: func(p string) ([]byte, error) {
			if s, ok := files[p]; ok {
				return []byte(s), nil
			}
			return nil, os.ErrNotExist
		},
		Stat:    func(string) error { return nil },
		Release: func() (string, error) { return "6.12.47", nil },
		FSType:  func(string) (int64, error) { return unix.BPF_FS_MAGIC, nil },
		Clock:   func() (bool, int64, error) { return true, 1000, nil },
		Links: func() ([]doctor.Link, error) {
			return []doctor.Link{{Name: "eth1", Index: 3, Up: true, Driver: "igb"}}, nil
		},
		Probe: func(string) ([]doctor.ModeProbe, error) {
			return []doctor.ModeProbe{{Mode: doctor.ModeXDPNative}, {Mode: doctor.ModeXDPGeneric}, {Mode: doctor.ModeTCX}}, nil
		},
	}
}

func TestDoctor(t *testing.T) {
	doctorSystem = healthyBoard()
	t.Cleanup(func() { doctorSystem = doctor.System{} })
	cfg := filepath.Join(t.TempDir(), "sensord.yaml")
	if err := os.WriteFile(cfg, []byte("interfaces: [{name: eth1}]\nlocal_prefixes: [192.0.2.0/24]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := run(t, Env{}, "doctor", "--config", cfg)
	if r.code() != 0 || strings.Count(r.stdout, "PASS  ") != 13 || !strings.HasPrefix(r.stdout, "PASS  config ") {
		t.Errorf("healthy board: exit %d %v\n%s", r.code(), r.err, r.stdout)
	}

	r = run(t, Env{}, "doctor", "--config", filepath.Join(t.TempDir(), "missing.yaml"), "--json")
	var report []doctor.Check
	if err := json.Unmarshal([]byte(r.stdout), &report); err != nil {
		t.Fatalf("--json: %v\n%s", err, r.stdout)
	}
	if r.code() != 1 || r.err.Error() != "doctor: 1 of 13 checks failed" || report[0].Result != doctor.Fail ||
		!strings.Contains(report[0].Reason, "missing.yaml: no such file or directory") {
		t.Errorf("missing config: exit %d %v\n%s", r.code(), r.err, r.stdout)
	}
}
