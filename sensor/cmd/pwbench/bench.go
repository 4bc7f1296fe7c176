package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/peerwatch/peerwatch/sensor/traffic"
	"github.com/peerwatch/peerwatch/sensor/trafficgen"
)

// Results is what a run measured: results.json.
type Results struct {
	Command  string    `json:"command"`
	Date     time.Time `json:"date"`
	Machine  Machine   `json:"machine"`
	Count    uint64    `json:"count"`
	Rates    []float64 `json:"rates"`
	Rounds   int       `json:"rounds"`
	Drain    float64   `json:"sensord_drain_seconds"`
	TopN     int       `json:"sensord_top_n,omitempty"`
	Tail     float64   `json:"tail_seconds"`
	BPFStats bool      `json:"bpf_stats"`
	Tools    []string  `json:"tools"`
	// Sender is the traffic source: "trafgen" or "go".
	Sender   string    `json:"sender,omitempty"`
	Runs     []ToolRun `json:"runs"`
	Duration float64   `json:"duration_seconds"`
}

// Machine describes where the run ran.
type Machine struct {
	Kernel  string  `json:"kernel"`
	CPUs    int     `json:"cpus"`
	Model   string  `json:"cpu_model"`
	Load1   float64 `json:"load1_at_start"`
	Load1E  float64 `json:"load1_at_end"`
	Go      string  `json:"go"`
	Pmacctd string  `json:"pmacctd"`
	FNM     string  `json:"fastnetmon"`
	Trafgen string  `json:"netsniff_ng,omitempty"`
}

// ToolRun is one start of one tool in one round, and its segments.
type ToolRun struct {
	Tool  string `json:"tool"`
	Mode  string `json:"mode,omitempty"`
	Round int    `json:"round"`
	// StartToCount is from the exec to the first probe packet counted.
	StartToCount float64   `json:"start_to_count_seconds,omitempty"`
	PeakRSS      uint64    `json:"peak_rss_bytes,omitempty"`
	KernelMaps   uint64    `json:"bpf_map_bytes,omitempty"`
	PSS          uint64    `json:"pss_bytes_at_end,omitempty"`
	Segments     []Segment `json:"segments"`
}

// Segment is one rate's traffic through one tool.
type Segment struct {
	Rate float64 `json:"rate"` // asked; 0 is as fast as the sender goes
	PPS  float64 `json:"pps"`  // achieved
	Sent uint64  `json:"sent"`
	// AtPort are the frames that reached the mirror port in the window
	// (its rx_packets), PortDropped those it dropped (rx_dropped): what
	// the lab's path carried to the tools. Accuracy is counted ÷ AtPort.
	AtPort      uint64  `json:"at_port"`
	PortDropped uint64  `json:"port_dropped,omitempty"`
	Counted     *uint64 `json:"counted,omitempty"` // nil for the baseline
	// Per remote prefix: how many prefixes were sent, how many were
	// counted exactly, and the packets counted under prefixes that were
	// not sent (attributed elsewhere).
	Prefixes      int    `json:"prefixes,omitempty"`
	PrefixesExact *int   `json:"prefixes_exact,omitempty"`
	Misattributed uint64 `json:"misattributed,omitempty"`
	// The same for IPv6 prefixes alone.
	PrefixesV6      int  `json:"prefixes_v6,omitempty"`
	PrefixesV6Exact *int `json:"prefixes_v6_exact,omitempty"`
	// ProgNS is the counter program's own run time per run (BPF stats:
	// --bpf-stats), ProgRuns its runs in the window: peerwatch only.
	ProgNS   float64 `json:"prog_ns_per_run,omitempty"`
	ProgRuns uint64  `json:"prog_runs,omitempty"`
	// Unparsed are packets the tool saw and did not count (FastNetMon's
	// total_unparsed_packets).
	Unparsed uint64 `json:"unparsed,omitempty"`
	// Examples are a few prefixes counted otherwise than sent.
	Examples []string `json:"examples,omitempty"`
	// CPU seconds in the window.
	ToolCPU   float64 `json:"tool_cpu"`
	SenderCPU float64 `json:"sender_cpu"`
	Ksoftirqd float64 `json:"ksoftirqd_cpu"`
	Machine   float64 `json:"machine_busy"`
	Idle      float64 `json:"machine_idle"`
	Window    float64 `json:"window_seconds"`
}

func runBench(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("pwbench run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		lab     = fs.String("lab", "pwbench", "the lab's `PREFIX` (scripts/lab's LAB_PREFIX)")
		site    = fs.String("site", "b1", "the lab's `SITE`: traffic on its link, tools on its mirror port PREFIX-SITE")
		bin     = fs.String("bin", "bin", "`DIR` of sensord")
		ipdb    = fs.String("ipdb", "board/common/ipdb", "`DIR` of the country and AS tables")
		out     = fs.String("out", "", "`DIR` for results.json, results.md, the plot and the tools' logs")
		tools   = fs.String("tools", strings.Join(allTools, ","), "the `TOOLS` to compare (the baseline is always run)")
		rates   = fs.String("rates", "50000,100000,200000,400000,0", "packets/s of the segments, comma-separated; 0 is as fast as the sender goes")
		count   = fs.Uint64("count", 200000, "packets of every segment")
		rounds  = fs.Int("rounds", 3, "rounds: every tool is started once a round, in a rotated order")
		talkers = fs.Int("talkers", 1000, "remote hosts of the peering mix")
		local   = fs.String("local", defaultLocal, "the operator's `PREFIXES`")
		command = fs.String("command", "", "the command line to record in the results")
		drain   = fs.Duration("drain", 10*time.Second, "sensord's drain.interval")
		topN    = fs.Int("top-n", 100000, "sensord's drain.top_n (its default is 1000; the mix has about 980 remote prefixes a segment)")
		sendr   = fs.String("sender", "auto", "the traffic source: trafgen (netsniff-ng's), go (pwbench's own, up to about 20,000 packets/s), or auto: trafgen where installed")
		cycle   = fs.Int("distinct", 20000, "trafgen: the most different frames of a segment, sent round robin")
		stats   = fs.Bool("bpf-stats", false, "while peerwatch runs, set kernel.bpf_stats_enabled for its program's run time per packet (this slows every BPF program on the machine a little)")
	)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" {
		return errors.New("--out: no directory")
	}
	if *rounds < 1 || *rounds > 100 {
		return fmt.Errorf("--rounds: %d is not between 1 and 100", *rounds)
	}
	if *count < 100 || *count > 10_000_000 {
		return fmt.Errorf("--count: %d is not between 100 and 10000000", *count)
	}
	loc, err := parseLocal(*local)
	if err != nil {
		return err
	}
	var rateList []float64
	for s := range strings.SplitSeq(*rates, ",") {
		r, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil || r < 0 || r > 1e8 {
			return fmt.Errorf("--rates: %q is not a rate (0 to 1e8 packets/s)", s)
		}
		rateList = append(rateList, r)
	}
	toolList := []string{"baseline"}
	for t := range strings.SplitSeq(*tools, ",") {
		t = strings.TrimSpace(t)
		if t == "" || t == "baseline" {
			continue
		}
		if _, err := newCounter(t, nil); err != nil {
			return fmt.Errorf("--tools: %w (want %s or peerwatch-defaults)", err, strings.Join(allTools, ", "))
		}
		toolList = append(toolList, t)
	}
	var trafgenPath string
	switch *sendr {
	case "auto", "trafgen":
		p, err := exec.LookPath("trafgen")
		if err != nil && *sendr == "trafgen" {
			return fmt.Errorf("--sender trafgen: %w (apt-get install netsniff-ng; scripts/bench-peers installs it)", err)
		}
		trafgenPath = p
	case "go":
	default:
		return fmt.Errorf("--sender: %q is not trafgen, go or auto", *sendr)
	}
	if *cycle < 1 || *cycle > trafgenLimit {
		return fmt.Errorf("--distinct: %d is not between 1 and %d", *cycle, trafgenLimit)
	}
	iface := *lab + "-" + *site
	if _, err := os.Stat("/sys/class/net/" + iface); err != nil {
		return fmt.Errorf("mirror port %s: %w (is the lab up? LAB_PREFIX=%s LAB_SITES=%s scripts/lab up)", iface, err, *lab, *site)
	}
	for _, t := range toolList {
		need := map[string]string{"pmacctd": "pmacctd", "fastnetmon": "fastnetmon"}[t]
		if need == "" {
			continue
		}
		if _, err := exec.LookPath(need); err != nil {
			return fmt.Errorf("%s is not installed (apt-get install %s; scripts/bench-peers installs it)", need, map[string]string{"pmacctd": "pmacct", "fastnetmon": "fastnetmon"}[t])
		}
	}
	if err := os.MkdirAll(filepath.Join(*out, "logs"), 0o755); err != nil {
		return err
	}
	say := func(format string, a ...any) { fmt.Fprintf(stderr, "pwbench: "+format+"\n", a...) }
	began := time.Now()

	res := &Results{Command: *command, Date: began.UTC(), Count: *count, Rates: rateList, Rounds: *rounds, Tools: toolList, Drain: drain.Seconds()}
	res.Machine = describeMachine()
	res.Sender = "go"
	if trafgenPath != "" {
		res.Sender = "trafgen"
		res.Machine.Trafgen = pkgVersion("netsniff-ng")
	}

	root, err := cgroupRoot()
	if err != nil {
		return err
	}
	base, err := root.child(fmt.Sprintf("pwbench-%d", os.Getpid()))
	if err != nil {
		return err
	}
	defer base.remove()

	if *drain < time.Second || *drain > time.Minute {
		return fmt.Errorf("--drain: %s is not between 1s and 1m", *drain)
	}
	// Every window lasts this long after the last packet, for every tool
	// and the baseline alike: time for the tools to count what they
	// queued (sensord: one drain), and the same idle time for all.
	if *topN < 1 || *topN > 100000 {
		return fmt.Errorf("--top-n: %d is not between 1 and 100000", *topN)
	}
	res.TopN = *topN
	res.Tail = (*drain + time.Second).Seconds()
	res.BPFStats = *stats
	env := &benchEnv{bpfStats: *stats, drain: *drain, topN: *topN, tail: *drain + time.Second, iface: iface, bin: *bin, ipdb: *ipdb, local: loc, log: stderr}
	for _, t := range toolList {
		if t == "pmacctd" {
			env.networks = filepath.Join(*out, "networks.lst")
			say("writing pmacct's networks_file from the country and AS tables")
			n, err := writeNetworks(env.networks, *ipdb, loc)
			if err != nil {
				return err
			}
			say("%s: %d networks", env.networks, n)
		}
	}

	// The traffic source, in its own group for the whole run.
	sendCG, err := base.child("sender")
	if err != nil {
		return err
	}
	defer sendCG.remove()
	self, err := os.Executable()
	if err != nil {
		return err
	}
	sendArgs := []string{"send", "--lab", *lab, "--site", *site, "--ipdb", *ipdb, "--local", *local, "--talkers", strconv.Itoa(*talkers)}
	if trafgenPath != "" {
		sendArgs = append(sendArgs, "--trafgen", trafgenPath, "--distinct", strconv.Itoa(*cycle))
	}
	snd, err := startSender(sendCG, filepath.Join(*out, "logs", "sender.log"), self, sendArgs...)
	if err != nil {
		return err
	}
	defer snd.close()
	say("the traffic source is loading the tables")
	if err := snd.waitReady(ctx); err != nil {
		return err
	}
	probe, err := trafficgen.OpenPort(*lab+"-peer", *site)
	if err != nil {
		return err
	}
	defer probe.Close()

	for round := range *rounds {
		order := rotate(toolList, round)
		for _, t := range order {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			say("round %d/%d: %s", round+1, *rounds, t)
			tr, err := measureTool(ctx, t, round, env, base, snd, probe, rateList, *count, filepath.Join(*out, "logs"), say)
			if err != nil {
				return fmt.Errorf("round %d, %s: %w", round+1, t, err)
			}
			res.Runs = append(res.Runs, tr)
			if err := writeResults(*out, res); err != nil { // what is done is kept
				return err
			}
		}
	}
	res.Machine.Load1E = loadavg()
	res.Duration = time.Since(began).Seconds()
	if err := writeResults(*out, res); err != nil {
		return err
	}
	say("done in %s: %s", time.Since(began).Round(time.Second), filepath.Join(*out, "results.json"))
	return report(res, *out, stderr)
}

func rotate(list []string, n int) []string {
	n %= len(list)
	return append(append([]string{}, list[n:]...), list[:n]...)
}

func writeResults(dir string, res *Results) error {
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, "results.json.tmp")
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, "results.json"))
}

// sender drives the `pwbench send` child.
type sender struct {
	p     *proc
	in    io.WriteCloser
	lines chan string
}

func startSender(cg cgroup, logPath, self string, args ...string) (*sender, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	sh := append([]string{"-c", `echo $$ >"$0" && exec "$@"`, cg.procsFile(), self}, args...)
	cmd := exec.Command("/bin/sh", sh...)
	cmd.Stderr = logf
	// One P: fewer runtime threads spinning while the pacing sleeps.
	cmd.Env = append(os.Environ(), "GOMAXPROCS=1")
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	outp, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &sender{p: &proc{cmd: cmd, done: make(chan error, 1)}, in: in, lines: make(chan string, 4)}
	go func() {
		sc := bufio.NewScanner(outp)
		for sc.Scan() {
			s.lines <- sc.Text()
		}
		close(s.lines)
		s.p.done <- cmd.Wait()
		logf.Close()
	}()
	return s, nil
}

func (s *sender) next(ctx context.Context) (string, error) {
	select {
	case l, ok := <-s.lines:
		if !ok {
			return "", errors.New("the traffic source stopped: see logs/sender.log")
		}
		return l, nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

func (s *sender) waitReady(ctx context.Context) error {
	l, err := s.next(ctx)
	if err == nil && l != "ready" {
		err = fmt.Errorf("traffic source: %q, want ready", l)
	}
	return err
}

// send sends one segment and waits for it to end.
//
// started is called when the frames are made and sending begins: the
// measurement window opens there.
func (s *sender) send(ctx context.Context, seg segment, started func() error) error {
	if _, err := fmt.Fprintln(s.in, seg.String()); err != nil {
		return fmt.Errorf("traffic source: %w", err)
	}
	l, err := s.next(ctx)
	if err != nil {
		return err
	}
	if l != "go" {
		return fmt.Errorf("traffic source: %q, want go", l)
	}
	if started != nil {
		if err := started(); err != nil {
			return err
		}
	}
	l, err = s.next(ctx)
	if err != nil {
		return err
	}
	if !strings.HasPrefix(l, "sent ") {
		return fmt.Errorf("traffic source: %q", l)
	}
	return nil
}

func (s *sender) close() {
	s.in.Close()
	select {
	case <-s.p.done:
	case <-time.After(10 * time.Second):
		_ = s.p.cmd.Process.Kill()
	}
}

// cpuSnap is the CPU accounting at one moment.
type cpuSnap struct {
	at                time.Time
	tool, sender, ksi time.Duration
	machine           machineCPU
}

func snap(tool *cgroup, sendCG cgroup, ksi []int) (cpuSnap, error) {
	s := cpuSnap{at: time.Now()}
	var err error
	if tool != nil {
		if s.tool, err = tool.cpu(); err != nil {
			return s, err
		}
	}
	if s.sender, err = sendCG.cpu(); err != nil {
		return s, err
	}
	s.ksi = sumProcCPU(ksi)
	s.machine, err = readMachineCPU()
	return s, err
}

// probeFrame is a packet from 1.0.0.1 (1.0.0.0/24 in the tables) to the
// first local IPv4 prefix: what the tools are asked to count first.
func probeFrame(local []netip.Prefix) []byte {
	dst := local[0].Addr().Next()
	src := netip.MustParseAddr("1.0.0.1")
	p := trafficgen.Packet{Src: src, Dst: dst, Remote: src, Direction: traffic.In, Class: traffic.UDP,
		Proto: 17, SrcPort: 40000, DstPort: 53, Payload: 32}
	return p.Frame(nil, trafficgen.PeerMAC, trafficgen.LocalMAC)
}

func measureTool(ctx context.Context, name string, round int, env *benchEnv, base cgroup, snd *sender,
	probe *trafficgen.Port, rates []float64, count uint64, logs string, say func(string, ...any)) (ToolRun, error) {
	tr := ToolRun{Tool: name, Round: round + 1}
	var c counter
	var cg *cgroup
	if name != "baseline" {
		var err error
		if c, err = newCounter(name, env); err != nil {
			return tr, err
		}
		g, err := base.child(name)
		if err != nil {
			return tr, err
		}
		cg = &g
		defer g.remove()
		dir := filepath.Join(logs, fmt.Sprintf("%s-%d", name, round+1))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return tr, err
		}
		start := time.Now()
		if err := c.start(ctx, dir, g); err != nil {
			return tr, err
		}
		defer c.stop()
		// Probe packets until the tool counts.
		frame := probeFrame(env.local)
		var lag time.Duration
		deadline := start.Add(3 * time.Minute)
		for {
			if err := probe.Send(frame); err != nil {
				return tr, err
			}
			ok, l, err := c.counting(ctx)
			if err != nil {
				return tr, fmt.Errorf("%w: see %s", err, dir)
			}
			if ok {
				tr.StartToCount, lag = time.Since(start).Seconds(), l
				break
			}
			if time.Now().After(deadline) {
				return tr, fmt.Errorf("counted nothing within 3 minutes of its start: see %s", dir)
			}
			select {
			case <-ctx.Done():
				return tr, ctx.Err()
			case <-time.After(50 * time.Millisecond):
			}
		}
		// A few more probes, then wait until they show, and then until
		// nothing more shows for a drain: the segments start from settled
		// counts. (Of the probes sent before, the tool counted some or
		// none; a busy sensord's first drain can come late.)
		for range 10 {
			if err := probe.Send(frame); err != nil {
				return tr, err
			}
		}
		if err := waitCounted(ctx, c, 10, time.Minute); err != nil {
			return tr, fmt.Errorf("%w: see %s", err, dir)
		}
		if _, err := settle(ctx, c, math.MaxUint64, 0, lag); err != nil {
			return tr, err
		}
		tr.Mode = c.mode(ctx)
		say("  %s counts (%s) %.1f s after its start", name, tr.Mode, tr.StartToCount)
	}
	var lag time.Duration
	stats := false
	if w, ok := c.(*peerwatch); ok {
		lag = w.interval()
		if env.bpfStats {
			restore, err := enableBPFStats()
			if err != nil {
				return tr, err
			}
			defer restore()
			stats = true
		}
	}
	ksi := ksoftirqdPIDs()
	var seq atomic.Uint64
	for i, rate := range rates {
		var before counts
		if c != nil {
			var err error
			if before, err = c.counts(ctx); err != nil {
				return tr, err
			}
		}
		report := filepath.Join(logs, fmt.Sprintf("sent-%s-%d-%d.json", name, round+1, seq.Add(1)))
		// The port's counters from before the first frame: the window
		// opens only once the sender has started.
		rx0, err := portCounter(env.iface, "rx_packets")
		if err != nil {
			return tr, err
		}
		drop0, err := portCounter(env.iface, "rx_dropped")
		if err != nil {
			return tr, err
		}
		var s0 cpuSnap
		var ns0, runs0 uint64
		// The same traffic for every tool: the seed depends on the
		// segment only.
		err = snd.send(ctx, segment{Seed: uint64(1 + i), Rate: rate, Count: count, Report: report}, func() (err error) {
			if stats {
				ns0, runs0 = progStats(cg.pids())
			}
			s0, err = snap(cg, sendCG(base), ksi)
			return err
		})
		if err != nil {
			return tr, err
		}
		sentAt := time.Now()
		rep, err := readReport(report)
		if err != nil {
			return tr, err
		}
		sent := sentTotal(rep.Sent)
		// The window closes the same time after the last packet for
		// every tool and the baseline, without asking the tool anything
		// in between: a query costs the tool CPU (pmacct's memory plugin
		// serves each one from a forked process).
		if d := time.Until(sentAt.Add(env.tail)); d > 0 {
			select {
			case <-ctx.Done():
				return tr, ctx.Err()
			case <-time.After(d):
			}
		}
		s1, err := snap(cg, sendCG(base), ksi)
		if err != nil {
			return tr, err
		}
		rx1, err := portCounter(env.iface, "rx_packets")
		if err != nil {
			return tr, err
		}
		drop1, err := portCounter(env.iface, "rx_dropped")
		if err != nil {
			return tr, err
		}
		var progNS, progRuns uint64
		if stats {
			ns1, runs1 := progStats(cg.pids())
			progNS, progRuns = ns1-ns0, runs1-runs0
		}
		// What reached the mirror port is what a tool can count (the lab's
		// path may drop frames before it at the highest rates).
		if c != nil {
			if _, err := settle(ctx, c, before.Total+min(sent, rx1-rx0), before.Total, lag); err != nil {
				return tr, err
			}
		}
		seg := Segment{
			Rate: rate, Sent: sent,
			PPS:         float64(sent) / rep.End.Sub(rep.Start).Seconds(),
			ToolCPU:     (s1.tool - s0.tool).Seconds(),
			SenderCPU:   (s1.sender - s0.sender).Seconds(),
			Ksoftirqd:   (s1.ksi - s0.ksi).Seconds(),
			Machine:     (s1.machine.Busy - s0.machine.Busy).Seconds(),
			Idle:        (s1.machine.Idle - s0.machine.Idle).Seconds(),
			Window:      s1.at.Sub(s0.at).Seconds(),
			AtPort:      rx1 - rx0,
			PortDropped: drop1 - drop0,
			ProgRuns:    progRuns,
		}
		if progRuns > 0 {
			seg.ProgNS = float64(progNS) / float64(progRuns)
		}
		if c != nil {
			after, err := c.counts(ctx)
			if err != nil {
				return tr, err
			}
			compare(&seg, rep, before, after)
			seg.Unparsed = after.Unparsed - before.Unparsed
		}
		tr.Segments = append(tr.Segments, seg)
		line := fmt.Sprintf("  %s: %d sent at %.0f/s", rateName(rate), sent, seg.PPS)
		if seg.Counted != nil {
			line += fmt.Sprintf(", %d counted", *seg.Counted)
			if seg.PrefixesExact != nil {
				line += fmt.Sprintf(", %d of %d prefixes exact", *seg.PrefixesExact, seg.Prefixes)
			}
		}
		if seg.ProgRuns > 0 {
			line += fmt.Sprintf("; program %.0f ns a run", seg.ProgNS)
		}
		say("%s; CPU: tool %.3f s, sender %.3f s, ksoftirqd %.3f s", line, seg.ToolCPU, seg.SenderCPU, seg.Ksoftirqd)
	}
	if cg != nil {
		pids := cg.pids()
		tr.PeakRSS = peakRSS(pids)
		tr.KernelMaps = bpfMapMemory(pids)
		tr.PSS = pss(pids)
	}
	return tr, nil
}

// sendCG is the traffic source's group.
func sendCG(base cgroup) cgroup { return cgroup{dir: filepath.Join(base.dir, "sender"), v2: base.v2} }

// waitCounted waits until the tool has counted at least want packets.
func waitCounted(ctx context.Context, c counter, want uint64, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		n, err := c.total(ctx)
		if err != nil {
			return err
		}
		if n >= want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("counted %d of the %d probes sent once it counted, within %s", n, want, limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// settle waits until the tool has counted want packets, or its count has
// not moved for two seconds after lag (a tool that lost packets), at most
// a minute.
func settle(ctx context.Context, c counter, want, from uint64, lag time.Duration) (uint64, error) {
	last, lastChange := from, time.Now()
	deadline := time.Now().Add(time.Minute)
	for {
		n, err := c.total(ctx)
		if err != nil {
			return 0, err
		}
		if n >= want {
			return n, nil
		}
		if n != last {
			last, lastChange = n, time.Now()
		}
		if time.Since(lastChange) >= lag+2*time.Second || time.Now().After(deadline) {
			return n, nil
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func readReport(path string) (trafficgen.Report, error) {
	var rep trafficgen.Report
	b, err := os.ReadFile(path)
	if err != nil {
		return rep, err
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		return rep, fmt.Errorf("%s: %w", path, err)
	}
	return rep, nil
}

// compare fills the segment's accuracy from the report and the counts
// before and after it.
func compare(seg *Segment, rep trafficgen.Report, before, after counts) {
	n := after.Total - before.Total
	seg.Counted = &n
	seg.Prefixes = len(rep.Prefixes)
	if after.Prefixes == nil {
		return
	}
	exact, exact6 := 0, 0
	sent := map[netip.Prefix]bool{}
	for _, p := range rep.Prefixes {
		sent[p.Prefix] = true
		v6 := p.Prefix.Addr().Is6()
		if v6 {
			seg.PrefixesV6++
		}
		got := after.Prefixes[p.Prefix] - before.Prefixes[p.Prefix]
		if got == p.Total() {
			exact++
			if v6 {
				exact6++
			}
		} else if len(seg.Examples) < 5 {
			seg.Examples = append(seg.Examples, fmt.Sprintf("%s: sent %d, counted %d", p.Prefix, p.Total(), got))
		}
	}
	for p, v := range after.Prefixes {
		if !sent[p] && v > before.Prefixes[p] {
			seg.Misattributed += v - before.Prefixes[p]
			if len(seg.Examples) < 10 {
				seg.Examples = append(seg.Examples, fmt.Sprintf("%s: not sent, counted %d", p, v-before.Prefixes[p]))
			}
		}
	}
	seg.PrefixesExact, seg.PrefixesV6Exact = &exact, &exact6
}

func rateName(r float64) string {
	if r == 0 {
		return "max"
	}
	return strconv.FormatFloat(r, 'f', -1, 64) + "/s"
}

func describeMachine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), Go: runtime.Version(), Load1: loadavg()}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				m.Model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	m.Pmacctd = pkgVersion("pmacct")
	m.FNM = pkgVersion("fastnetmon")
	return m
}

func pkgVersion(pkg string) string {
	out, err := exec.Command("dpkg-query", "-W", "-f=${Version}", pkg).Output()
	if err != nil {
		return ""
	}
	return string(out)
}

func loadavg() float64 {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}
