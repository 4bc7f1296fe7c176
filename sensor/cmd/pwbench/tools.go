package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/peerwatch/peerwatch/sensor/api"
	"github.com/peerwatch/peerwatch/sensor/config"
)

// counts is what a counter has counted since it started.
type counts struct {
	Total uint64
	// Prefixes are the packets per remote prefix; nil when the tool does
	// not count per remote prefix (FastNetMon counts per local host).
	Prefixes map[netip.Prefix]uint64
	// Unparsed are packets seen and not counted, where the tool says.
	Unparsed uint64
}

// counter is one tool under test, run on the lab's mirror port.
type counter interface {
	// start starts the tool in the control group, its files in dir.
	start(ctx context.Context, dir string, cg cgroup) error
	// total is the packets counted so far: cheap, for polling.
	total(ctx context.Context) (uint64, error)
	// counts is the total and the per-prefix counts.
	counts(ctx context.Context) (counts, error)
	// mode is how the tool is attached, once it counts.
	mode(ctx context.Context) string
	// counting reports whether the tool counts the packets it is given
	// now, and how long its counts may take to show (sensord shows them
	// at its next drain; 0 for the others, whose counts show at once).
	counting(ctx context.Context) (bool, time.Duration, error)
	// stop stops the tool and removes its state.
	stop() error
}

// benchEnv is what the tools share.
type benchEnv struct {
	drain    time.Duration // sensord's drain.interval
	topN     int           // sensord's drain.top_n
	bpfStats bool          // measure the program's run time
	tail     time.Duration // how long a window lasts after the last packet
	iface    string        // the mirror port
	bin      string        // sensord
	ipdb     string
	local    []netip.Prefix
	networks string // pmacct's networks_file
	log      io.Writer
}

// proc is a tool's process, started in a control group through a shell
// that moves itself there before exec, so that every process the tool
// forks is in it from the start.
type proc struct {
	cmd  *exec.Cmd
	done chan error
}

func startProc(cg cgroup, logPath string, name string, args ...string) (*proc, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	sh := append([]string{"-c", `echo $$ >"$0" && exec "$@"`, cg.procsFile(), name}, args...)
	cmd := exec.Command("/bin/sh", sh...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{cmd: cmd, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait(); logf.Close() }()
	return p, nil
}

// exited reports an early exit.
func (p *proc) exited() error {
	select {
	case err := <-p.done:
		p.done <- err
		return fmt.Errorf("%s exited: %v", filepath.Base(p.cmd.Args[3]), err)
	default:
		return nil
	}
}

// stop sends SIGTERM to the process group, and SIGKILL after 15 s.
func (p *proc) stop() error {
	if p == nil {
		return nil
	}
	pg := -p.cmd.Process.Pid
	_ = syscall.Kill(pg, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		_ = syscall.Kill(pg, syscall.SIGKILL)
		<-p.done
	}
	// Children of the group (pmacctd's plugins) that outlived the leader.
	_ = syscall.Kill(pg, syscall.SIGKILL)
	return nil
}

// freePort returns a free TCP port on the loopback.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// --- peerwatch ---

type peerwatch struct {
	env  *benchEnv
	hook string // xdp-generic, xdp, tc
	// defaults: sensord's own drain.interval and drain.top_n (a sensor in
	// the field) instead of the run's --drain and --top-n.
	defaults bool
	p        *proc
	api      *api.Client
	pins     string
}

func (w *peerwatch) start(ctx context.Context, dir string, cg cgroup) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	w.pins = fmt.Sprintf("/sys/fs/bpf/pwbench-%d-%s", os.Getpid(), filepath.Base(dir))
	_ = os.RemoveAll(w.pins)
	var local []string
	for _, p := range w.env.local {
		local = append(local, strconv.Quote(p.String()))
	}
	paths, err := tablePaths(w.env.ipdb)
	if err != nil {
		return err
	}
	drain := fmt.Sprintf("drain: {interval: %s, top_n: %d}", w.env.drain, w.env.topN)
	if w.defaults {
		drain = "# drain: sensord's defaults"
	}
	conf := fmt.Sprintf(`sensor: {id: bench, board: x86-64}
data_dir: %s
bpffs_dir: %s
interfaces:
  - {name: %s, hook: %s}
local_prefixes: [%s]
tables:
  - {name: country, format: ip-location-country, files: [%s, %s]}
  - {name: asn, format: ip-location-asn, files: [%s, %s]}
%s
http: {listen: "127.0.0.1:%d"}
`, filepath.Join(dir, "data"), w.pins, w.env.iface, w.hook, strings.Join(local, ", "),
		paths["country"][0], paths["country"][1], paths["asn"][0], paths["asn"][1], drain, port)
	cfg := filepath.Join(dir, "sensord.yaml")
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		return err
	}
	w.api = &api.Client{BaseURL: fmt.Sprintf("http://127.0.0.1:%d", port), HTTP: &http.Client{Timeout: 20 * time.Second}}
	w.p, err = startProc(cg, filepath.Join(dir, "sensord.log"), w.env.bin+"/sensord", "--config", cfg)
	return err
}

func (w *peerwatch) total(ctx context.Context) (uint64, error) {
	if err := w.p.exited(); err != nil {
		return 0, err
	}
	st, err := w.api.Status(ctx)
	if err != nil {
		return 0, err
	}
	return st.Totals.Seen, nil
}

func (w *peerwatch) counts(ctx context.Context) (counts, error) {
	t, err := w.total(ctx)
	if err != nil {
		return counts{}, err
	}
	top, err := w.api.Top(ctx, "prefix", "1h", "both", 10000)
	if err != nil {
		return counts{}, err
	}
	c := counts{Total: t, Prefixes: map[netip.Prefix]uint64{}}
	for _, r := range top.PrefixRows() {
		c.Prefixes[r.Prefix] += r.Counters.Packets()
	}
	return c, nil
}

func (w *peerwatch) mode(ctx context.Context) string {
	st, err := w.api.Status(ctx)
	if err != nil || len(st.Interfaces) == 0 {
		return "?"
	}
	return st.Interfaces[0].Mode
}

// counting: the program counts from the moment it is attached; the
// counts show at the next drain.
func (w *peerwatch) counting(ctx context.Context) (bool, time.Duration, error) {
	if err := w.p.exited(); err != nil {
		return false, 0, err
	}
	st, err := w.api.Status(ctx)
	if err != nil {
		return false, 0, nil
	}
	return len(st.Interfaces) > 0 && st.Interfaces[0].State == api.Attached, w.interval(), nil
}

// interval is sensord's drain interval.
func (w *peerwatch) interval() time.Duration {
	if w.defaults {
		return config.Default().Drain.Interval
	}
	return w.env.drain
}

func (w *peerwatch) stop() error {
	err := w.p.stop()
	_ = os.RemoveAll(w.pins)
	return err
}

// --- pmacctd ---

type pmacctd struct {
	env  *benchEnv
	p    *proc
	pipe string
}

func (m *pmacctd) start(ctx context.Context, dir string, cg cgroup) error {
	m.pipe = filepath.Join(dir, "pmacct.pipe")
	// The memory plugin, aggregating by the networks of both ends: the
	// remote end is the one that is not local. The core hands records to
	// the plugin in buffers of 10 (plugin_buffer_size, 344 bytes a record
	// here): with the defaults the plugin's queue overflowed at 15,000
	// packets/s and lost 44 % of them ("Missing data detected").
	conf := fmt.Sprintf(`daemonize: false
pcap_interface: %s
pcap_interface_wait: false
aggregate: src_net, dst_net, src_mask, dst_mask
networks_file: %s
plugins: memory
imt_path: %s
imt_mem_pools_number: 0
plugin_buffer_size: 3440
plugin_pipe_size: 68800000
`, m.env.iface, m.env.networks, m.pipe)
	cfg := filepath.Join(dir, "pmacctd.conf")
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		return err
	}
	var err error
	m.p, err = startProc(cg, filepath.Join(dir, "pmacctd.log"), "pmacctd", "-f", cfg)
	return err
}

// pmacctEntry is a line of `pmacct -s -O json`.
type pmacctEntry struct {
	NetSrc  string `json:"net_src"`
	NetDst  string `json:"net_dst"`
	MaskSrc int    `json:"mask_src"`
	MaskDst int    `json:"mask_dst"`
	Packets uint64 `json:"packets"`
}

func (m *pmacctd) query(ctx context.Context) ([]byte, error) {
	if err := m.p.exited(); err != nil {
		return nil, err
	}
	if _, err := os.Stat(m.pipe); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "pmacct", "-p", m.pipe, "-s", "-O", "json").Output()
	if err != nil {
		return nil, fmt.Errorf("pmacct -s: %w", err)
	}
	return out, nil
}

func (m *pmacctd) total(ctx context.Context) (uint64, error) {
	c, err := m.counts(ctx)
	return c.Total, err
}

func (m *pmacctd) counts(ctx context.Context) (counts, error) {
	out, err := m.query(ctx)
	if err != nil {
		return counts{}, err
	}
	return parsePmacct(out, m.env.local)
}

// parsePmacct sums pmacct's JSON lines per remote network: of the two
// ends, the one that does not overlap a local prefix.
func parsePmacct(out []byte, local []netip.Prefix) (counts, error) {
	c := counts{Prefixes: map[netip.Prefix]uint64{}}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	sc.Buffer(nil, 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var e pmacctEntry
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			return counts{}, fmt.Errorf("pmacct output line %d: %w", n, err)
		}
		src, err1 := netip.ParseAddr(e.NetSrc)
		dst, err2 := netip.ParseAddr(e.NetDst)
		if err1 != nil || err2 != nil {
			return counts{}, fmt.Errorf("pmacct output line %d: bad network %q or %q", n, e.NetSrc, e.NetDst)
		}
		sp, dp := netip.PrefixFrom(src, e.MaskSrc), netip.PrefixFrom(dst, e.MaskDst)
		remote := sp
		if overlapsAny(sp, local) {
			remote = dp
		}
		c.Total += e.Packets
		c.Prefixes[remote] += e.Packets
	}
	return c, sc.Err()
}

func overlapsAny(p netip.Prefix, list []netip.Prefix) bool {
	for _, l := range list {
		if p.IsValid() && p.Overlaps(l) {
			return true
		}
	}
	return false
}

func (m *pmacctd) counting(ctx context.Context) (bool, time.Duration, error) {
	return countsSome(ctx, m)
}

// countsSome: a tool whose counts show at once counts when it has
// counted a probe.
func countsSome(ctx context.Context, c counter) (bool, time.Duration, error) {
	n, err := c.total(ctx)
	if err != nil && strings.Contains(err.Error(), "exited") {
		return false, 0, err
	}
	return err == nil && n > 0, 0, nil
}

func (m *pmacctd) mode(context.Context) string { return "libpcap (AF_PACKET)" }
func (m *pmacctd) stop() error                 { return m.p.stop() }

// --- FastNetMon ---

type fastnetmon struct {
	last []byte // the last metrics read
	env  *benchEnv
	p    *proc
	port int
}

func (f *fastnetmon) start(ctx context.Context, dir string, cg cgroup) error {
	var err error
	if f.port, err = freePort(); err != nil {
		return err
	}
	var nets []string
	for _, p := range f.env.local {
		nets = append(nets, p.String())
	}
	if err := os.WriteFile(filepath.Join(dir, "networks_list"), []byte(strings.Join(nets, "\n")+"\n"), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "networks_whitelist"), nil, 0o644); err != nil {
		return err
	}
	// AF_PACKET on the mirror port, no bans, no usage report (it would
	// call home), no API; Prometheus on the loopback for the counters.
	conf := fmt.Sprintf(`logging_level = info
disable_usage_report = on
enable_ban = off
enable_ban_ipv6 = off
process_incoming_traffic = on
process_outgoing_traffic = on
networks_list_path = %[1]s/networks_list
white_list_path = %[1]s/networks_whitelist
check_period = 1
enable_connection_tracking = off
mirror_afpacket = on
mirror_af_packet_fanout_mode = cpu
interfaces = %[2]s
average_calculation_time = 5
speed_calculation_delay = 1
monitor_local_ip_addresses = off
pid_path = %[1]s/fastnetmon.pid
cli_stats_file_path = %[1]s/fastnetmon.dat
cli_stats_ipv6_file_path = %[1]s/fastnetmon_ipv6.dat
notify_script_path = %[1]s/none
enable_api = off
prometheus = on
prometheus_host = 127.0.0.1
prometheus_port = %[3]d
`, dir, f.env.iface, f.port)
	cfg := filepath.Join(dir, "fastnetmon.conf")
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		return err
	}
	f.p, err = startProc(cg, filepath.Join(dir, "fastnetmon.log"), "fastnetmon",
		"--configuration_file", cfg, "--log_to_console", "--disable_pid_logic")
	return err
}

func (f *fastnetmon) total(ctx context.Context) (uint64, error) {
	if err := f.p.exited(); err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("http://127.0.0.1:%d/metrics", f.port), nil)
	if err != nil {
		return 0, err
	}
	resp, err := (&http.Client{Timeout: 20 * time.Second}).Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return 0, err
	}
	f.last = b
	return promValue(b, "fastnetmon_total_simple_packets_processed")
}

// promValue is the value of an unlabelled metric in Prometheus text.
func promValue(b []byte, name string) (uint64, error) {
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil || f < 0 {
				return 0, fmt.Errorf("metric %s: %q is not a count", name, v)
			}
			return uint64(f), nil
		}
	}
	return 0, fmt.Errorf("no metric %s", name)
}

func (f *fastnetmon) counts(ctx context.Context) (counts, error) {
	t, err := f.total(ctx)
	if err != nil {
		return counts{}, err
	}
	u, _ := promValue(f.last, "fastnetmon_total_unparsed_packets")
	return counts{Total: t, Unparsed: u}, nil
}

func (f *fastnetmon) counting(ctx context.Context) (bool, time.Duration, error) {
	return countsSome(ctx, f)
}

func (f *fastnetmon) mode(context.Context) string { return "AF_PACKET, fanout per CPU" }
func (f *fastnetmon) stop() error                 { return f.p.stop() }

// newCounter returns the tool of a name.
func newCounter(name string, env *benchEnv) (counter, error) {
	switch name {
	case "peerwatch-xdp-generic":
		return &peerwatch{env: env, hook: "xdp-generic"}, nil
	case "peerwatch-xdp":
		return &peerwatch{env: env, hook: "xdp"}, nil
	case "peerwatch-tc":
		return &peerwatch{env: env, hook: "tc"}, nil
	case "peerwatch-defaults":
		return &peerwatch{env: env, hook: "xdp-generic", defaults: true}, nil
	case "pmacctd":
		return &pmacctd{env: env}, nil
	case "fastnetmon":
		return &fastnetmon{env: env}, nil
	}
	return nil, errors.New("unknown tool " + strconv.Quote(name))
}

// allTools are the tools a run measures by default, after the baseline.
// peerwatch-defaults (generic XDP at sensord's default drain interval and
// top_n) is not among them: name it in --tools.
var allTools = []string{"peerwatch-xdp-generic", "peerwatch-xdp", "peerwatch-tc", "pmacctd", "fastnetmon"}
