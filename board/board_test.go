package board

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/peerwatch/peerwatch/internal/testutil"
	"github.com/peerwatch/peerwatch/sensor/config"
	"github.com/peerwatch/peerwatch/sensor/doctor"
)

// boards are the profiles there must be, with the kernel memory of their
// default configuration on their CPUs (datapath.KernelMemory, bytes).
var boards = map[string]uint64{
	"generic-arm64":  65994752,   // 63 MiB
	"nanopi-r5s-r6s": 218562560,  // 208 MiB
	"rpi4":           139919360,  // 133 MiB
	"rpi5":           238485504,  // 227 MiB
	"x86-64":         1437007872, // 1370 MiB
}

func loadConfig(t *testing.T, name string) *config.Config {
	t.Helper()
	cfg, err := config.Load(filepath.Join(name, "sensord.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestProfiles(t *testing.T) {
	names, err := Names(".")
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for n := range boards {
		want = append(want, n)
	}
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Fatalf("boards %v, want %v", names, want)
	}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			p, err := Load(name)
			if err != nil {
				t.Fatal(err)
			}
			cfg := loadConfig(t, name)
			if w := cfg.Warnings(); len(w) > 0 {
				t.Errorf("warnings: %q", w)
			}
			if cfg.Sensor.Board != name {
				t.Errorf("sensor.board %q", cfg.Sensor.Board)
			}
			// The configuration counts on the profile's counted interfaces,
			// with the hook their driver calls for.
			var counted []config.Interface
			for _, ifc := range p.Interfaces {
				if ifc.Counted {
					counted = append(counted, config.Interface{Name: ifc.Name, Hook: ifc.Hook()})
				}
			}
			if !slices.Equal(cfg.Interfaces, counted) {
				t.Errorf("interfaces %+v, want the profile's counted ones %+v", cfg.Interfaces, counted)
			}
			// Maps, store and process in half the memory.
			need := doctor.MemoryNeed(cfg, p.CPUs)
			if need.Total() > uint64(p.Memory)/2 {
				t.Errorf("needs %s, over half of %s", need, p.Memory)
			}
			if need.Kernel != boards[name] {
				t.Errorf("kernel memory %d bytes on %d CPUs, want %d", need.Kernel, p.CPUs, boards[name])
			}
			t.Logf("%s: %s of %s", name, need, p.Memory)
			// The README names every interface and its XDP mode.
			readme, err := os.ReadFile(filepath.Join(name, "README.md"))
			if err != nil {
				t.Fatal(err)
			}
			for _, ifc := range p.Interfaces {
				if !strings.Contains(string(readme), ifc.Name) {
					t.Errorf("README.md does not mention %s", ifc.Name)
				}
			}
		})
	}
}

func TestProfileErrors(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tiny")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ yaml, err string }{
		{"name: other\n", `name: "other" is not the folder's name "tiny"`},
		{"name: tiny\ntitle: t\narch: riscv64\n", `arch: "riscv64" is neither arm64 nor amd64`},
		{"name: tiny\ntitle: t\narch: arm64\ncpus: 4\nmemory: 128MiB\n", "memory: 128MiB is under 256MiB"},
		{"name: tiny\ntitle: t\narch: arm64\ncpus: 4\nmemory: 1GiB\ninterfaces: [{name: eth0, driver: x, role: y, xdp: fast}]\n",
			`interfaces[0].xdp: "fast" is not native, generic or auto`},
		{"name: tiny\nram: 1GiB\n", `unknown field "ram"`},
	} {
		if err := os.WriteFile(filepath.Join(dir, "profile.yaml"), []byte(tc.yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := Load(dir)
		if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), "profile.yaml") {
			t.Errorf("%q: %v, want %q", tc.yaml, err, tc.err)
		}
	}
}

// TestSensordCheck checks each board's configuration as an operator does.
func TestSensordCheck(t *testing.T) {
	if testing.Short() {
		t.Skip("builds sensord")
	}
	bin := testutil.Build(t, t.TempDir(), "sensor/cmd/sensord")
	names, _ := Names(".")
	for _, name := range names {
		path := filepath.Join(name, "sensord.yaml")
		cmd := exec.Command(bin, "--check", "--config", path)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil || string(out) != path+": configuration is valid\n" || stderr.Len() > 0 {
			t.Errorf("sensord --check --config %s: %v\n%s%s", path, err, out, stderr.String())
		}
	}
}
