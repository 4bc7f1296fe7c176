// Command pwbench measures peerwatch side by side with pmacctd and
// FastNetMon on the lab's traffic (scripts/bench-peers, docs/comparison.md):
// packets counted against packets sent, per prefix and in total, CPU above
// the no-counter baseline per million packets, peak memory and the time
// from start until counting, repeated, and writes the results as JSON, a
// Markdown table and a PNG plot.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "pwbench:", err)
		os.Exit(1)
	}
}

const usage = `Usage: pwbench COMMAND [flags]

Commands:
  run       run the comparison on the lab (root; scripts/bench-peers runs it)
  report    write results.md and the plot again from a results.json
  networks  write pmacct's networks_file from the country and AS tables
  send      the traffic source of run (a child process; not for direct use)

pwbench COMMAND --help lists the flags of a command. See docs/comparison.md.
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command")
	}
	switch args[0] {
	case "run":
		return runBench(ctx, args[1:], stderr)
	case "report":
		return runReport(args[1:], stderr)
	case "networks":
		return runNetworks(args[1:], stderr)
	case "send":
		return runSend(ctx, args[1:], os.Stdin, stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", args[0])
}
