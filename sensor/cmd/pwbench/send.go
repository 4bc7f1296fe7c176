package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/peerwatch/peerwatch/sensor/prefixes"
	"github.com/peerwatch/peerwatch/sensor/traffic"
	"github.com/peerwatch/peerwatch/sensor/trafficgen"
)

// The traffic source is a child process of its own, so that its CPU time
// (the frames' way through the veth pairs, the bridge and the mirror, and
// whatever a counter adds to it in the kernel) is charged to a control
// group of its own. It loads the tables once, prints "ready", and then
// sends one segment per line on stdin, "SEED RATE COUNT REPORT": it makes
// the segment's frames, answers "go" when it starts sending them, and
// "sent N" when the segment's report is written.

// sendLimit bounds a segment: a line asking for more is refused.
const sendLimit = 1_000_000

// segment is one line of the send protocol.
type segment struct {
	Seed   uint64
	Rate   float64
	Count  uint64
	Report string
}

func (s segment) String() string {
	return fmt.Sprintf("%d %g %d %s", s.Seed, s.Rate, s.Count, s.Report)
}

func parseSegment(line string) (segment, error) {
	f := strings.Fields(line)
	if len(f) != 4 {
		return segment{}, fmt.Errorf("segment %q: want SEED RATE COUNT REPORT", line)
	}
	var s segment
	var err error
	if s.Seed, err = strconv.ParseUint(f[0], 10, 64); err != nil {
		return segment{}, fmt.Errorf("segment %q: seed: %w", line, err)
	}
	if s.Rate, err = strconv.ParseFloat(f[1], 64); err != nil || s.Rate < 0 || s.Rate > 1e9 {
		return segment{}, fmt.Errorf("segment %q: rate: want 0 to 1e9 packets/s", line)
	}
	if s.Count, err = strconv.ParseUint(f[2], 10, 64); err != nil || s.Count == 0 || s.Count > sendLimit {
		return segment{}, fmt.Errorf("segment %q: count: want 1 to %d", line, sendLimit)
	}
	s.Report = f[3]
	return s, nil
}

func runSend(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("pwbench send", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		ipdb    = fs.String("ipdb", "board/common/ipdb", "`DIR` of the country and AS tables")
		lab     = fs.String("lab", "pwbench", "the lab's `PREFIX`")
		site    = fs.String("site", "b1", "the lab's `SITE`")
		local   = fs.String("local", defaultLocal, "the operator's `PREFIXES`, comma-separated")
		talkers = fs.Int("talkers", 1000, "remote hosts of the peering mix")
		ipv6    = fs.Float64("ipv6", 0.25, "share of IPv6 talkers")
		tg      = fs.String("trafgen", "", "send with this `TRAFGEN` (netsniff-ng's) instead of from Go")
		cycle   = fs.Int("distinct", 20000, "trafgen: the most different frames of a segment, sent round robin")
	)
	if err := fs.Parse(args); err != nil {
		return err
	}
	loc, err := parseLocal(*local)
	if err != nil {
		return err
	}
	if *cycle < 1 || *cycle > trafgenLimit {
		return fmt.Errorf("--distinct: %d is not between 1 and %d", *cycle, trafgenLimit)
	}
	peer, err := trafficgen.OpenPort(*lab+"-peer", *site)
	if err != nil {
		return err
	}
	defer peer.Close()
	lcl, err := trafficgen.OpenPort(*lab+"-local", *site)
	if err != nil {
		return err
	}
	defer lcl.Close()
	tables, err := loadTables(*ipdb)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, "ready")
	var lastCfg string
	defer func() {
		if lastCfg != "" {
			os.Remove(lastCfg)
		}
	}()
	sc := bufio.NewScanner(stdin)
	for sc.Scan() {
		if ctx.Err() != nil {
			return nil
		}
		seg, err := parseSegment(sc.Text())
		if err != nil {
			return err
		}
		gen, err := trafficgen.New(trafficgen.Options{
			Profile: trafficgen.Peering, Seed: seg.Seed, Local: loc, Talkers: *talkers, IPv6: *ipv6,
		}, tables...)
		if err != nil {
			return err
		}
		// Every frame is made before the segment starts, so that the
		// segment's CPU time is the sending alone. trafgen sends a cycle
		// of at most --distinct frames round robin.
		n := seg.Count
		if *tg != "" {
			n = min(n, uint64(*cycle))
		}
		frames := make([][]byte, 0, n)
		var tally trafficgen.Tally
		var sentC traffic.Counters
		for i := range n {
			p, l := gen.Next()
			src, dst := trafficgen.PeerMAC, trafficgen.LocalMAC
			if p.Direction == traffic.Out {
				src, dst = trafficgen.LocalMAC, trafficgen.PeerMAC
			}
			f := p.Frame(nil, src, dst)
			if p.Direction == traffic.Out {
				f = append(f, 1) // the port: a last byte that is cut off again
			} else {
				f = append(f, 0)
			}
			frames = append(frames, f)
			times := uint64(1)
			if *tg != "" {
				times = cycleShare(int(i), int(n), seg.Count)
			}
			for range times {
				tally.Add(&p, l, len(f)-1)
			}
			sentC.Packets[p.Direction] += times
			sentC.Bytes[p.Direction] += times * uint64(len(f)-1)
			sentC.Class[p.Class] += times
		}
		var tgArgs []string
		cfg := seg.Report + ".trafgen"
		if *tg != "" {
			// The last segment's configuration goes now, outside any
			// window: tens of megabytes, the frames' bytes written out.
			if lastCfg != "" {
				os.Remove(lastCfg)
			}
			lastCfg = cfg
			if err := writeFrames(cfg, frames); err != nil {
				return err
			}
			tgArgs = trafgenArgs(*tg, *lab+"-peer", *site, cfg, seg.Count, seg.Rate)
		}
		// No garbage collection inside the window: collect now, and not
		// again until the segment is sent.
		runtime.GC()
		gc := debug.SetGCPercent(-1)
		var start, end time.Time
		var sendErr error
		if tgArgs != nil {
			var t *trafgenRun
			t, sendErr = startTrafgen(ctx, tgArgs, *lab+"-"+*site)
			start = time.Now()
			fmt.Fprintln(stdout, "go")
			if sendErr == nil {
				var out uint64
				out, sendErr = t.wait()
				if sendErr == nil && out != seg.Count {
					sendErr = fmt.Errorf("trafgen sent %d packets of %d", out, seg.Count)
				}
			}
		} else {
			fmt.Fprintln(stdout, "go")
			start = time.Now()
			sendErr = sendPaced(ctx, frames, seg.Rate, peer, lcl)
		}
		end = time.Now()
		debug.SetGCPercent(gc)
		rep := tally.Report()
		rep.Site = *site
		rep.Streams = []trafficgen.StreamReport{{Profile: gen.Profile(), Seed: gen.Seed(), Sent: sentC}}
		rep.Start, rep.End = start.UTC(), end.UTC()
		b, err := json.Marshal(rep)
		if err != nil {
			return err
		}
		if err := os.WriteFile(seg.Report, b, 0o644); err != nil {
			return fmt.Errorf("write report: %w", err)
		}
		if sendErr != nil {
			return sendErr
		}
		fmt.Fprintf(stdout, "sent %d\n", rep.Sent.Total())
	}
	return sc.Err()
}

// writeFrames writes the frames (without their port byte) as trafgen's
// packet configuration.
func writeFrames(path string, frames [][]byte) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	cut := make([][]byte, len(frames))
	for i, fr := range frames {
		cut[i] = fr[:len(fr)-1]
	}
	if err := writeTrafgenConfig(f, cut); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	return f.Close()
}

// sendPaced sends the frames (their last byte says the port: 0 the peer's,
// 1 the local network's) at rate packets/s (0: as fast as the pacing
// allows), in bursts of trafficgen.SendBurst with a pause after each, as
// pwtraffic does, so that the receiving queues never overflow.
func sendPaced(ctx context.Context, frames [][]byte, rate float64, peer, lcl *trafficgen.Port) error {
	start := time.Now()
	for i := 0; i < len(frames); {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		n := min(trafficgen.SendBurst, len(frames)-i)
		if rate > 0 {
			due := int(rate*time.Since(start).Seconds()) - i
			if due <= 0 {
				time.Sleep(time.Duration(float64(1-due) / rate * float64(time.Second)))
				continue
			}
			n = min(n, due)
		}
		for _, f := range frames[i : i+n] {
			port := peer
			if f[len(f)-1] == 1 {
				port = lcl
			}
			if err := port.Send(f[:len(f)-1]); err != nil {
				return err
			}
		}
		i += n
		if n == trafficgen.SendBurst {
			time.Sleep(100 * time.Microsecond) // let the receivers drain
		}
	}
	return nil
}

// defaultLocal are the lab's local prefixes (pwtraffic's default).
const defaultLocal = "192.0.2.0/24,2001:db8:1::/48"

func parseLocal(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for f := range strings.SplitSeq(s, ",") {
		p, err := netip.ParsePrefix(strings.TrimSpace(f))
		if err != nil {
			return nil, fmt.Errorf("--local: %w", err)
		}
		if p != p.Masked() {
			return nil, fmt.Errorf("--local: %s has host bits set", p)
		}
		out = append(out, p)
	}
	if len(out) == 0 {
		return nil, errors.New("--local: no prefix")
	}
	return out, nil
}

func loadTables(dir string) ([]*prefixes.Table, error) {
	paths, err := tablePaths(dir)
	if err != nil {
		return nil, err
	}
	var tables []*prefixes.Table
	for _, tf := range tableFiles {
		b := prefixes.NewTable(tf.name)
		for _, p := range paths[tf.name] {
			if _, err := prefixes.LoadFile(tf.format, p, prefixes.Entry{}, b); err != nil {
				return nil, fmt.Errorf("table %s: %w", tf.name, err)
			}
		}
		t, _ := b.Build()
		tables = append(tables, t)
	}
	return tables, nil
}

// sentTotal is the packets of both directions of a report.
func sentTotal(c traffic.Counters) uint64 { return c.Packets[traffic.In] + c.Packets[traffic.Out] }
