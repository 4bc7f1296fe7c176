// Package board reads the board profiles under board/: for each supported
// box, the CPUs and memory its default configuration is sized for, and
// the interfaces to expect with the XDP mode their drivers give.
//
// Each board/<name>/ holds profile.yaml (read here), sensord.yaml (the
// default configuration, which the packages install) and a README. The
// tests of this package check every configuration with sensord --check and
// its memory against the profile, and test the release packages.
package board

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/goccy/go-yaml"

	"github.com/peerwatch/peerwatch/sensor/config"
)

// Profile describes one board.
type Profile struct {
	// Name is the board's folder and sensor.board in its configuration.
	Name string `yaml:"name"`
	// Title names the boards the profile covers, for people.
	Title string `yaml:"title"`
	// Arch is the Go architecture of its packages: arm64 or amd64.
	Arch string `yaml:"arch"`
	// CPUs is the number of possible CPUs the configuration is sized for
	// (the per-CPU maps grow with it).
	CPUs int `yaml:"cpus"`
	// Memory is the smallest memory of the boards it covers.
	Memory config.ByteSize `yaml:"memory"`
	// Interfaces are the network interfaces to expect.
	Interfaces []Interface `yaml:"interfaces"`
}

// Interface is one network interface of a board.
type Interface struct {
	Name   string `yaml:"name"`
	Driver string `yaml:"driver"`
	// XDP is native or generic: whether the driver runs XDP programs
	// itself; auto where the board's drivers vary (hook xdp tries native
	// XDP and falls back to generic).
	XDP string `yaml:"xdp"`
	// Counted: sensord counts on it in the default configuration.
	Counted bool `yaml:"counted"`
	// Role says what the interface is for on the box.
	Role string `yaml:"role"`
}

// Load reads dir/profile.yaml.
func Load(dir string) (*Profile, error) {
	path := filepath.Join(dir, "profile.yaml")
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var p Profile
	if err := yaml.NewDecoder(bytes.NewReader(b), yaml.DisallowUnknownField()).Decode(&p); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := p.validate(filepath.Base(dir)); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &p, nil
}

func (p *Profile) validate(dir string) error {
	switch {
	case p.Name != dir:
		return fmt.Errorf("name: %q is not the folder's name %q", p.Name, dir)
	case p.Title == "":
		return fmt.Errorf("title: empty")
	case p.Arch != "arm64" && p.Arch != "amd64":
		return fmt.Errorf("arch: %q is neither arm64 nor amd64", p.Arch)
	case p.CPUs < 1 || p.CPUs > 1024:
		return fmt.Errorf("cpus: %d is out of range (1 to 1024)", p.CPUs)
	case p.Memory < 256*config.MiB:
		return fmt.Errorf("memory: %s is under 256MiB", p.Memory)
	case len(p.Interfaces) == 0:
		return fmt.Errorf("interfaces: none")
	}
	for i, ifc := range p.Interfaces {
		if ifc.Name == "" || ifc.Driver == "" || ifc.Role == "" {
			return fmt.Errorf("interfaces[%d]: name, driver and role are required", i)
		}
		if ifc.XDP != "native" && ifc.XDP != "generic" && ifc.XDP != "auto" {
			return fmt.Errorf("interfaces[%d].xdp: %q is not native, generic or auto", i, ifc.XDP)
		}
	}
	return nil
}

// Hook is the hook the default configuration gives an interface:
// xdp-generic where the driver has no native XDP (the same counts; it saves
// a failed native attempt at every attach), xdp otherwise.
func (i Interface) Hook() config.Hook {
	if i.XDP == "generic" {
		return config.HookXDPGeneric
	}
	return config.HookXDP
}

// Names lists the boards under root: the folders with a profile.yaml.
func Names(root string) ([]string, error) {
	matches, err := filepath.Glob(filepath.Join(root, "*", "profile.yaml"))
	if err != nil {
		return nil, err
	}
	var names []string
	for _, m := range matches {
		names = append(names, filepath.Base(filepath.Dir(m)))
	}
	slices.Sort(names)
	return names, nil
}
