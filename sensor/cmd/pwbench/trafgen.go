package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// The fast traffic source: trafgen (Debian's netsniff-ng) replays the
// segment's frames, made by pwbench send exactly as for the Go sender,
// from a packet configuration that lists each frame's bytes. A segment of
// COUNT packets is a cycle of at most --distinct different frames, which
// trafgen sends round robin (-n COUNT): frame i of the cycle is sent
// COUNT/len + (1 if i < COUNT%len), and the report adds it that often, so
// that the per-prefix report stays exact while the configuration stays
// small enough for trafgen to read in a second.
//
// trafgen runs with one worker (-P 1), which it pins to CPU 0 itself, in
// the peer's namespace, and sends every frame of both directions into the
// link from the peer's side: the mirror copies what enters the bridge, so
// the mirror port receives the same frames as when the local side sends
// its own. A rate is trafgen's -b (a sleep after every packet, sendto in
// between: it reaches less than asked, and the rate measured is the one
// reported); rate 0 is its fastest path (a PACKET_TX_RING, no pause).

// trafgenLimit bounds the frames of a cycle.
const trafgenLimit = 200_000

// cycleShare is how often frame i of a cycle of n frames is sent in a
// segment of count packets.
func cycleShare(i, n int, count uint64) uint64 {
	k := count / uint64(n)
	if uint64(i) < count%uint64(n) {
		k++
	}
	return k
}

// writeTrafgenConfig writes frames as trafgen packets, one a line.
func writeTrafgenConfig(w io.Writer, frames [][]byte) error {
	bw := bufio.NewWriterSize(w, 1<<16)
	const hex = "0123456789abcdef"
	fmt.Fprintf(bw, "# pwbench send: %d frames, sent round robin\n", len(frames))
	for _, f := range frames {
		if len(f) == 0 {
			return errors.New("trafgen configuration: an empty frame")
		}
		bw.WriteString("{ ")
		for i, b := range f {
			if i > 0 {
				bw.WriteString(", ")
			}
			bw.Write([]byte{'0', 'x', hex[b>>4], hex[b&15]})
		}
		bw.WriteString(" }\n")
	}
	return bw.Flush()
}

// trafgenArgs is the command line that sends count packets of cfg on dev
// in the network namespace netns at rate packets/s (0: as fast as it
// goes). --no-sock-mem and -Q: trafgen changes neither the machine's
// socket memory limits nor any interrupt's CPU affinity.
func trafgenArgs(trafgen, netns, dev, cfg string, count uint64, rate float64) []string {
	args := []string{"ip", "netns", "exec", netns, trafgen, "-i", cfg, "-o", dev,
		"-n", strconv.FormatUint(count, 10), "-P", "1", "--no-sock-mem", "-Q"}
	if rate > 0 {
		args = append(args, "-b", strconv.FormatUint(uint64(rate+0.5), 10)+"pps")
	}
	return args
}

// parseTrafgenOutgoing reads "N packets outgoing" from trafgen's summary.
func parseTrafgenOutgoing(out []byte) (uint64, error) {
	for line := range strings.SplitSeq(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && f[1] == "packets" && f[2] == "outgoing" {
			n, err := strconv.ParseUint(f[0], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("trafgen: %q: %w", line, err)
			}
			return n, nil
		}
	}
	return 0, fmt.Errorf("trafgen said no \"packets outgoing\": %q", bytes.TrimSpace(out))
}

// portCounter reads a counter of an interface in this namespace
// (statistics/rx_packets, …).
func portCounter(iface, name string) (uint64, error) {
	b, err := os.ReadFile(filepath.Join("/sys/class/net", iface, "statistics", name))
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
}

// trafgenRun is one segment sent by trafgen.
type trafgenRun struct {
	cmd  *exec.Cmd
	out  bytes.Buffer
	done chan error
}

// startTrafgen starts trafgen and returns once its first frame has
// reached the mirror port (its rx_packets moved), so that the segment's
// window opens when sending starts and not while trafgen reads its
// configuration.
func startTrafgen(ctx context.Context, args []string, port string) (*trafgenRun, error) {
	rx0, err := portCounter(port, "rx_packets")
	if err != nil {
		return nil, fmt.Errorf("mirror port: %w", err)
	}
	t := &trafgenRun{done: make(chan error, 1)}
	t.cmd = exec.CommandContext(ctx, args[0], args[1:]...)
	t.cmd.Stdout, t.cmd.Stderr = &t.out, &t.out
	if err := t.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start trafgen: %w", err)
	}
	go func() { t.done <- t.cmd.Wait() }()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		rx, err := portCounter(port, "rx_packets")
		if err != nil {
			return nil, fmt.Errorf("mirror port: %w", err)
		}
		if rx != rx0 {
			return t, nil
		}
		select {
		case err := <-t.done:
			t.done <- err
			return t, nil // sent everything before a look: wait reports it
		default:
		}
		if time.Now().After(deadline) {
			_ = t.cmd.Process.Kill()
			return nil, fmt.Errorf("trafgen sent nothing to %s within 2 minutes: %s", port, bytes.TrimSpace(t.out.Bytes()))
		}
		time.Sleep(200 * time.Microsecond)
	}
}

// wait waits for trafgen to end and returns the packets it sent.
func (t *trafgenRun) wait() (uint64, error) {
	if err := <-t.done; err != nil {
		return 0, fmt.Errorf("trafgen: %w: %s", err, bytes.TrimSpace(t.out.Bytes()))
	}
	return parseTrafgenOutgoing(t.out.Bytes())
}
