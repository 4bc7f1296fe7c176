package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// stat is the median and the spread of a figure over the rounds.
type stat struct {
	Med, Min, Max float64
	N             int
}

func statOf(v []float64) stat {
	v = slices.DeleteFunc(slices.Clone(v), math.IsNaN)
	if len(v) == 0 {
		return stat{Med: math.NaN(), Min: math.NaN(), Max: math.NaN()}
	}
	slices.Sort(v)
	m := v[len(v)/2]
	if len(v)%2 == 0 {
		m = (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return stat{Med: m, Min: v[0], Max: v[len(v)-1], N: len(v)}
}

// String is "median (min–max)" with the precision given.
func (s stat) format(prec int) string {
	if math.IsNaN(s.Med) {
		return "n/a"
	}
	f := "%." + fmt.Sprint(prec) + "f"
	if s.N < 2 || s.Min == s.Max {
		return fmt.Sprintf(f, s.Med)
	}
	return fmt.Sprintf(f+" ("+f+"–"+f+")", s.Med, s.Min, s.Max)
}

// cell is one tool at one rate, over the rounds.
type cell struct {
	PPS, Accuracy, Exact, ToolCPU, Kernel, Total, Machine, ProgNS, Core stat
	// Port is the share of the packets sent that reached the mirror port.
	Port stat
	// Own is the own CPU plus the program's run time (peerwatch, with BPF
	// stats), per million packets.
	Own                     stat
	Lost                    bool
	HasCounted, HasPrefixes bool
	Misattributed, Unparsed uint64
}

// figures are the figures of a run, per tool and rate.
type figures struct {
	res   *Results
	cells map[string][]cell // tool → per rate
	modes map[string]string
	start map[string]stat
	rss   map[string]stat
	pss   map[string]stat
	maps  map[string]stat
	// ratio[other][pw][rate] = other's CPU above the baseline / pw's, per round.
	ratio map[string]map[string][]stat
	// own[other][pw][rate] = other's own CPU / (pw's own CPU + its
	// program's run time), per round: the figures that the load of other
	// work on the machine hardly moves.
	own map[string]map[string][]stat
}

// segKey finds the segment of a tool, round and rate index.
func segOf(res *Results, tool string, round, rate int) *Segment {
	for i := range res.Runs {
		r := &res.Runs[i]
		if r.Tool == tool && r.Round == round && rate < len(r.Segments) {
			return &r.Segments[rate]
		}
	}
	return nil
}

// perMpkt is a CPU time per million packets sent.
func perMpkt(sec float64, sent uint64) float64 {
	if sent == 0 {
		return math.NaN()
	}
	return sec / (float64(sent) / 1e6)
}

// above is the CPU a tool's segment added: its own, and the kernel's
// (traffic source and ksoftirqd) above the baseline of the same round.
func above(s, b *Segment) (tool, kernel, machine float64) {
	tool = perMpkt(s.ToolCPU, s.Sent)
	if b == nil {
		return tool, math.NaN(), math.NaN()
	}
	kernel = perMpkt(s.SenderCPU+s.Ksoftirqd, s.Sent) - perMpkt(b.SenderCPU+b.Ksoftirqd, b.Sent)
	machine = perMpkt(s.Machine, s.Sent) - perMpkt(b.Machine, b.Sent)
	return tool, kernel, machine
}

// progPerMpkt is the counter program's run time per million packets
// sent (BPF stats), 0 without them.
func progPerMpkt(s *Segment) float64 {
	if s.ProgRuns == 0 || s.Sent == 0 {
		return 0
	}
	return s.ProgNS * float64(s.ProgRuns) / 1e9 / (float64(s.Sent) / 1e6)
}

func summarize(res *Results) *figures {
	sm := &figures{res: res, cells: map[string][]cell{}, modes: map[string]string{}, start: map[string]stat{},
		rss: map[string]stat{}, pss: map[string]stat{}, maps: map[string]stat{}, ratio: map[string]map[string][]stat{}, own: map[string]map[string][]stat{}}
	for _, tool := range res.Tools {
		var starts, rss, pss, maps []float64
		for _, r := range res.Runs {
			if r.Tool != tool {
				continue
			}
			if r.Mode != "" {
				sm.modes[tool] = r.Mode
			}
			if tool != "baseline" {
				starts = append(starts, r.StartToCount)
				rss = append(rss, float64(r.PeakRSS)/1e6)
				pss = append(pss, float64(r.PSS)/1e6)
				maps = append(maps, float64(r.KernelMaps)/1e6)
			}
		}
		sm.start[tool], sm.rss[tool], sm.pss[tool], sm.maps[tool] = statOf(starts), statOf(rss), statOf(pss), statOf(maps)
		for ri := range res.Rates {
			var c cell
			var pps, acc, exact, tcpu, kern, tot, mach, prog, core, own, port []float64
			for round := 1; round <= res.Rounds; round++ {
				s := segOf(res, tool, round, ri)
				if s == nil {
					continue
				}
				pps = append(pps, s.PPS)
				if s.ProgRuns > 0 {
					prog = append(prog, s.ProgNS)
				}
				// What a tool could count is what reached the mirror port
				// (results of before the port was measured: what was sent).
				reached := s.Sent
				if s.AtPort > 0 {
					reached = s.AtPort
					port = append(port, 100*float64(s.AtPort)/float64(s.Sent))
				}
				if s.Counted != nil {
					c.HasCounted = true
					acc = append(acc, 100*float64(*s.Counted)/float64(reached))
					if *s.Counted < reached {
						c.Lost = true
					}
				}
				// Per prefix only where every frame sent reached the port:
				// otherwise which were lost on the way is not known.
				if s.PrefixesExact != nil && s.Prefixes > 0 && reached == s.Sent {
					c.HasPrefixes = true
					exact = append(exact, 100*float64(*s.PrefixesExact)/float64(s.Prefixes))
					c.Misattributed += s.Misattributed
				}
				c.Unparsed += s.Unparsed
				if tool == "baseline" {
					continue
				}
				if s.Window > 0 {
					core = append(core, 100*s.ToolCPU/s.Window)
				}
				own = append(own, perMpkt(s.ToolCPU, s.Sent)+progPerMpkt(s))
				t, k, m := above(s, segOf(res, "baseline", round, ri))
				tcpu, kern, tot, mach = append(tcpu, t), append(kern, k), append(tot, t+k), append(mach, m)
			}
			c.PPS, c.Accuracy, c.Exact, c.ProgNS, c.Core, c.Own = statOf(pps), statOf(acc), statOf(exact), statOf(prog), statOf(core), statOf(own)
			c.Port = statOf(port)
			c.ToolCPU, c.Kernel, c.Total, c.Machine = statOf(tcpu), statOf(kern), statOf(tot), statOf(mach)
			sm.cells[tool] = append(sm.cells[tool], c)
		}
	}
	for _, other := range res.Tools {
		if other == "baseline" || strings.HasPrefix(other, "peerwatch") {
			continue
		}
		sm.ratio[other] = map[string][]stat{}
		sm.own[other] = map[string][]stat{}
		for _, pw := range res.Tools {
			if !strings.HasPrefix(pw, "peerwatch") {
				continue
			}
			for ri := range res.Rates {
				var v, o []float64
				for round := 1; round <= res.Rounds; round++ {
					so, sp, b := segOf(res, other, round, ri), segOf(res, pw, round, ri), segOf(res, "baseline", round, ri)
					if so != nil && sp != nil {
						o = append(o, perMpkt(so.ToolCPU, so.Sent)/(perMpkt(sp.ToolCPU, sp.Sent)+progPerMpkt(sp)))
					}
					if so == nil || sp == nil || b == nil {
						continue
					}
					to, ko, _ := above(so, b)
					tp, kp, _ := above(sp, b)
					if tp+kp <= 0 {
						v = append(v, math.NaN())
						continue
					}
					v = append(v, (to+ko)/(tp+kp))
				}
				sm.ratio[other][pw] = append(sm.ratio[other][pw], statOf(v))
				sm.own[other][pw] = append(sm.own[other][pw], statOf(o))
			}
		}
	}
	return sm
}

func (sm *figures) markdown(w io.Writer) {
	res := sm.res
	fmt.Fprintf(w, "Run of %s UTC, %.0f s: %s\n\n", res.Date.Format("2006-01-02 15:04"), res.Duration, res.Command)
	m := res.Machine
	fmt.Fprintf(w, "Machine: %d CPUs (%s), Linux %s, %s, pmacct %s, fastnetmon %s; load average %.1f at the start, %.1f at the end.\n",
		m.CPUs, m.Model, m.Kernel, m.Go, m.Pmacctd, m.FNM, m.Load1, m.Load1E)
	sender := "pwbench's Go sender"
	if res.Sender == "trafgen" {
		sender = fmt.Sprintf("trafgen (netsniff-ng %s), one worker on CPU 0", res.Machine.Trafgen)
	}
	fmt.Fprintf(w, "Traffic source: %s.\n", sender)
	fmt.Fprintf(w, "%d packets per segment, %d rounds, tools in a rotated order each round; sensord drains every %g s keeping the top %d prefixes; every CPU window ends %g s after the last packet.\n\n", res.Count, res.Rounds, res.Drain, res.TopN, res.Tail)
	fmt.Fprintf(w, "Figures are the median over the rounds, with the lowest and highest in brackets.\n\n")

	fmt.Fprintf(w, "| tool | attach mode | start → counting (s) | peak RSS, sum of processes (MB) | PSS at the end (MB) | BPF maps (MB) |\n| --- | --- | --- | --- | --- | --- |\n")
	for _, t := range res.Tools {
		if t == "baseline" {
			continue
		}
		maps := "–"
		if strings.HasPrefix(t, "peerwatch") {
			maps = sm.maps[t].format(1)
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s |\n", t, sm.modes[t], sm.start[t].format(1), sm.rss[t].format(0), sm.pss[t].format(0), maps)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "| tool | rate asked | packets/s sent | reached the port (%% of sent) | counted / reached (%%) | prefixes exact (%%) | own CPU (s/Mpkt) | own CPU (%% of a core) | kernel above baseline (s/Mpkt) | total above baseline (s/Mpkt) | machine above baseline (s/Mpkt) |\n")
	fmt.Fprintf(w, "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, t := range res.Tools {
		for ri, c := range sm.cells[t] {
			acc, exact := "–", "–"
			if c.HasCounted {
				acc = c.Accuracy.format(2)
				if c.Unparsed > 0 {
					acc += fmt.Sprintf("; %d unparsed", c.Unparsed)
				}
			}
			if c.HasPrefixes {
				exact = c.Exact.format(1)
				if c.Misattributed > 0 {
					exact += fmt.Sprintf("; %d packets under prefixes not sent", c.Misattributed)
				}
			} else if t != "baseline" && !strings.HasPrefix(t, "fastnetmon") {
				exact = "not known: the port did not receive all"
			} else if t != "baseline" {
				exact = "not counted per prefix"
			}
			if t == "baseline" {
				fmt.Fprintf(w, "| baseline | %s | %s | %s | – | – | – | – | – | – | – |\n", rateName(res.Rates[ri]), c.PPS.format(0), c.Port.format(3))
				continue
			}
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", t, rateName(res.Rates[ri]), c.PPS.format(0),
				c.Port.format(3), acc, exact, c.ToolCPU.format(2), c.Core.format(1), c.Kernel.format(2), c.Total.format(2), c.Machine.format(1))
		}
	}
	if res.BPFStats {
		fmt.Fprintf(w, "\npeerwatch's counter program alone (BPF stats, kernel.bpf_stats_enabled), ns per run:\n\n| tool | rate asked | ns per run |\n| --- | --- | --- |\n")
		for _, t := range res.Tools {
			if !strings.HasPrefix(t, "peerwatch") {
				continue
			}
			for ri, c := range sm.cells[t] {
				fmt.Fprintf(w, "| %s | %s | %s |\n", t, rateName(res.Rates[ri]), c.ProgNS.format(0))
			}
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "Own CPU per packet, another tool's against peerwatch's (sensord's own CPU plus its program's run time where measured; same round and rate, then the median):\n\n")
	sm.ratioTable(w, sm.own)
	fmt.Fprintln(w)
	fmt.Fprintf(w, "Total CPU above the baseline (own and kernel), another tool's against peerwatch's (same round and rate, then the median):\n\n")
	sm.ratioTable(w, sm.ratio)
}

func (sm *figures) ratioTable(w io.Writer, ratios map[string]map[string][]stat) {
	res := sm.res
	fmt.Fprintf(w, "| tool ÷ peerwatch | rate asked |")
	var pws []string
	for _, t := range res.Tools {
		if strings.HasPrefix(t, "peerwatch") {
			pws = append(pws, t)
			fmt.Fprintf(w, " ÷ %s |", t)
		}
	}
	fmt.Fprintf(w, "\n| --- | --- |%s\n", strings.Repeat(" --- |", len(pws)))
	for _, t := range res.Tools {
		r, ok := ratios[t]
		if !ok {
			continue
		}
		for ri := range res.Rates {
			fmt.Fprintf(w, "| %s | %s |", t, rateName(res.Rates[ri]))
			for _, pw := range pws {
				fmt.Fprintf(w, " %s× |", r[pw][ri].format(1))
			}
			fmt.Fprintln(w)
		}
	}
}

// plot writes the gnuplot data and script and runs gnuplot for the PNG.
func (sm *figures) plot(dir string) error {
	res := sm.res
	var own, tot, acc []string
	var i int
	for _, t := range res.Tools {
		if t == "baseline" {
			continue
		}
		i++
		var b strings.Builder
		fmt.Fprintf(&b, "# %s: pps own own_min own_max total total_min total_max accuracy acc_min acc_max (counted ÷ reached the port)\n", t)
		for _, c := range sm.cells[t] {
			a := c.Accuracy
			if !c.HasCounted {
				a = stat{Med: math.NaN(), Min: math.NaN(), Max: math.NaN()}
			}
			fmt.Fprintf(&b, "%.0f %.4f %.4f %.4f %.4f %.4f %.4f %.4f %.4f %.4f\n", c.PPS.Med, c.Own.Med, c.Own.Min, c.Own.Max,
				c.Total.Med, c.Total.Min, c.Total.Max, a.Med, a.Min, a.Max)
		}
		data := filepath.Join(dir, "plot-"+t+".dat")
		if err := os.WriteFile(data, []byte(strings.ReplaceAll(b.String(), "NaN", "nan")), 0o644); err != nil {
			return err
		}
		title := t
		if sm.modes[t] != "" {
			title += " (" + sm.modes[t] + ")"
		}
		own = append(own, fmt.Sprintf("'%s' using 1:2:3:4 with yerrorlines ls %d title '%s'", data, i, title))
		tot = append(tot, fmt.Sprintf("'%s' using 1:5:6:7 with yerrorlines ls %d title '%s'", data, i, title))
		acc = append(acc, fmt.Sprintf("'%s' using 1:8:9:10 with yerrorlines ls %d title '%s'", data, i, title))
	}
	ownLabel := "own CPU s per million packets"
	if res.BPFStats {
		ownLabel += " (peerwatch: sensord + its program)"
	}
	script := fmt.Sprintf(`set terminal pngcairo noenhanced size 1800,600 font "sans,10"
set output '%s'
set multiplot layout 1,3 title "peerwatch, pmacctd and FastNetMon on the same lab traffic (%s; median and range of %d rounds)"
set grid
unset key
set style line 1 lc rgb '#1b9e77' lw 2 pt 7
set style line 2 lc rgb '#66a61e' lw 2 pt 5
set style line 3 lc rgb '#7570b3' lw 2 pt 9
set style line 4 lc rgb '#d95f02' lw 2 pt 11
set style line 5 lc rgb '#e7298a' lw 2 pt 13
set xlabel 'packets/s sent'
set ylabel '%s'
set title "the tools' own CPU"
set yrange [0:*]
plot %s
set ylabel 'CPU s per million packets above the no-counter baseline'
set title 'the machine above the baseline: tools and kernel (noisy on a shared machine)'
set yrange [*:*]
plot %s
set ylabel 'packets counted / reached the mirror port (%%)'
set title 'accuracy (the key of all three)'
set key at graph 0.99, graph 0.8 right top box opaque
set yrange [*:100.2]
plot %s
unset multiplot
`, filepath.Join(dir, "comparison.png"), res.Date.Format("2006-01-02"), res.Rounds, ownLabel, strings.Join(own, ", "), strings.Join(tot, ", "), strings.Join(acc, ", "))
	gp := filepath.Join(dir, "comparison.gp")
	if err := os.WriteFile(gp, []byte(script), 0o644); err != nil {
		return err
	}
	out, err := exec.Command("gnuplot", gp).CombinedOutput()
	if err != nil {
		return fmt.Errorf("gnuplot %s: %w: %s", gp, err, out)
	}
	return nil
}

func report(res *Results, dir string, stderr io.Writer) error {
	sm := summarize(res)
	f, err := os.Create(filepath.Join(dir, "results.md"))
	if err != nil {
		return err
	}
	sm.markdown(f)
	if err := f.Close(); err != nil {
		return err
	}
	if _, err := exec.LookPath("gnuplot"); err != nil {
		return fmt.Errorf("no gnuplot for the plot (apt-get install gnuplot-nox): %w", err)
	}
	if err := sm.plot(dir); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "pwbench: %s, %s\n", filepath.Join(dir, "results.md"), filepath.Join(dir, "comparison.png"))
	return nil
}

func runReport(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("pwbench report", flag.ContinueOnError)
	fs.SetOutput(stderr)
	in := fs.String("results", "results.json", "the `FILE` a run wrote")
	out := fs.String("out", "", "`DIR` for results.md and the plot (default: the results' directory)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	b, err := os.ReadFile(*in)
	if err != nil {
		return err
	}
	var res Results
	if err := json.Unmarshal(b, &res); err != nil {
		return fmt.Errorf("%s: %w", *in, err)
	}
	if len(res.Tools) == 0 || len(res.Rates) == 0 || res.Rounds < 1 {
		return fmt.Errorf("%s: no tools, rates or rounds", *in)
	}
	if *out == "" {
		*out = filepath.Dir(*in)
	}
	return report(&res, *out, stderr)
}
