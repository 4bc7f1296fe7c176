package ctl

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"

	"github.com/peerwatch/peerwatch/sensor/config"
	"github.com/peerwatch/peerwatch/sensor/doctor"
)

// DefaultConfig is sensord's configuration file, which doctor checks.
const DefaultConfig = "/etc/peerwatch/sensord.yaml"

// doctorSystem is the machine doctor looks at; tests replace it.
var doctorSystem doctor.System

var doctorCommand = &command{
	name:    "doctor",
	summary: "check that this board can run sensord",
	help: `Checks this machine for sensord, one line per check, PASS, WARN or FAIL
with the reason: the configuration, the kernel version, BTF, the bpffs,
the BPF JIT, the privileges, each configured interface, which attach modes
work (XDP native and generic, TCX), the memory the configuration needs
against the machine's, and clock synchronisation. It does not need
sensord to run, and needs root for the attach probe.

The attach probe loads a program that passes every packet and attaches it
for an instant in each mode, on a veth pair that it creates in a network
namespace of its own and removes, or with --interface on a real
interface (some drivers reset the link when a native XDP program is
attached: a short blip). Exit status: 0 when no check failed, 1 otherwise.`,
	flags: func(fs *flag.FlagSet, o *options) {
		fs.StringVar(&o.configPath, "config", "", "sensord's configuration file (default "+DefaultConfig+" if it exists)")
		fs.StringVar(&o.iface, "interface", "", "probe the attach modes on this interface instead of a scratch veth")
	},
	run: func(_ context.Context, c *cli, _ []string) error {
		o := doctor.Options{Interface: c.o.iface, System: doctorSystem}
		path := c.o.configPath
		if path == "" {
			if _, err := os.Stat(DefaultConfig); err == nil {
				path = DefaultConfig
			} else if !errors.Is(err, fs.ErrNotExist) {
				path = DefaultConfig // unreadable: say so
			}
		}
		if path != "" {
			o.ConfigPath = path
			o.Config, o.ConfigErr = config.Load(path)
		}
		report := doctor.Run(o)
		if c.g.json {
			if err := writeIndented(c, report); err != nil {
				return err
			}
		} else if err := report.Write(c.env.Stdout); err != nil {
			return err
		}
		if n := report.Failed(); n > 0 {
			return fmt.Errorf("doctor: %d of %d checks failed", n, len(report))
		}
		return nil
	},
}
