// Command sensorctl is the operator's command line over a peerwatch
// sensor's local JSON API: status, top lists, address lookups, alerts, and
// a reload of sensord's tables and watch lists. docs/sensorctl.md documents
// it; sensor/ctl holds its logic.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/peerwatch/peerwatch/sensor/ctl"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "sensorctl:", err)
		os.Exit(ctl.ExitCode(err))
	}
}

func run(ctx context.Context) error {
	return ctl.Run(ctx, os.Args[1:], ctl.Env{})
}
