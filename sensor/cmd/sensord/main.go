// Command sensord is the peerwatch sensor daemon: it counts every packet
// per remote prefix in the kernel, stores the counts, evaluates watch lists
// and serves the status page, the JSON API and /metrics.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/peerwatch/peerwatch/sensor/config"
	"github.com/peerwatch/peerwatch/sensor/daemon"
	"github.com/peerwatch/peerwatch/sensor/version"
)

const (
	defaultConfig      = "/etc/peerwatch/sensord.yaml"
	defaultMemoryLimit = 200 << 20
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "sensord:", err)
		os.Exit(1)
	}
}

func run() error {
	fs := flag.NewFlagSet("sensord", flag.ContinueOnError)
	cfgPath := fs.String("config", defaultConfig, "the configuration file (YAML; see docs/configuration.md)")
	check := fs.Bool("check", false, "check the configuration file and exit")
	showVersion := fs.Bool("version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `Usage: sensord [--config FILE] [--check] [--version]

sensord counts every packet per remote prefix, country and AS with an eBPF
program, stores the counts and serves the status page, the JSON API and
/metrics. It needs CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON (or root).

Signals: SIGTERM/SIGINT drain once more and stop; SIGHUP reloads the
tables and watch lists without losing counts.

Under systemd (Type=notify, see board/common/systemd/peerwatch-sensord.service) it
sends READY=1 once the program is attached, and WATCHDOG=1 while the drain
loop runs and the counts follow the packets the interfaces receive.

Flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(os.Args[1:]); err != nil {
		if err == flag.ErrHelp {
			return nil
		}
		return err
	}
	if *showVersion {
		fmt.Println(version.String("sensord"))
		return nil
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	for _, w := range cfg.Warnings() {
		fmt.Fprintln(os.Stderr, "sensord: warning:", w)
	}
	if *check {
		fmt.Printf("%s: configuration is valid\n", *cfgPath)
		return nil
	}

	// A soft memory limit keeps the garbage collector's headroom small while
	// the tables load: a board has little memory to spare. GOMEMLIMIT wins.
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(defaultMemoryLimit)
	}
	log := newLogger(cfg.Log)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return daemon.Run(ctx, cfg, *cfgPath, log)
}

func newLogger(c config.Log) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == config.LogJSON {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}
