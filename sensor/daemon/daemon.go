// Package daemon is sensord: it loads the counter program and the tables,
// follows the configured interfaces, drains the counters into the store
// every interval, evaluates the watch lists, and serves the status page,
// the JSON API and /metrics.
package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/peerwatch/peerwatch/sensor/aggregate"
	"github.com/peerwatch/peerwatch/sensor/config"
	"github.com/peerwatch/peerwatch/sensor/datapath"
	"github.com/peerwatch/peerwatch/sensor/linkwatch"
	"github.com/peerwatch/peerwatch/sensor/prefixes"
	"github.com/peerwatch/peerwatch/sensor/store"
	"github.com/peerwatch/peerwatch/sensor/summary"
	"github.com/peerwatch/peerwatch/sensor/traffic"
	"github.com/peerwatch/peerwatch/sensor/uplink"
	"github.com/peerwatch/peerwatch/sensor/version"
	"github.com/peerwatch/peerwatch/sensor/wallclock"
	"github.com/peerwatch/peerwatch/sensor/watch"
	"github.com/peerwatch/peerwatch/sensor/web"
)

// Daemon is a running sensord.
type Daemon struct {
	cfgPath string
	log     *slog.Logger
	started time.Time
	kernel  string

	dp      *datapath.Datapath
	store   *store.Store
	links   *linkwatch.Watcher
	uplink  *uplink.Uplink
	pidFile string // written once the store is open, removed at exit

	mu        sync.Mutex
	cfg       *config.Config
	tables    *datapath.Tables // the tables of the hot path now
	labels    []*prefixes.Table
	summarize *aggregate.Summarizer
	alerts    *watch.Engine
	// recentBefore are the alerts that had ended before this start.
	recentBefore []watch.Alert
	alertsSaved  time.Time
	lastDrain    time.Time
	drainDur     time.Duration
	invariant    error
	totals       traffic.Globals
	remote       traffic.Counters

	// unstored are drained intervals that the store refused to write (a
	// full or read-only data partition), oldest first, until a Put
	// succeeds. The kernel keeps the last of them until the next drain,
	// which waits until they are stored (see drainOnce).
	unstored        []unstoredInterval
	unstoredDropped uint64
	writeErr        error // the last failed Put, nil once one succeeds
	writeErrSince   time.Time
	writeErrors     uint64
	writeErrLogged  time.Time
}

// unstoredInterval is a summary waiting for the store.
type unstoredInterval struct {
	s      *summary.Summary
	origin store.Origin
}

// maxUnstored bounds the intervals held in memory while the store refuses
// writes. Since the kernel is not drained meanwhile, only intervals closed
// by table reloads add to them; past the bound the oldest is given up,
// counted and reported.
const maxUnstored = 360

// Run runs sensord with cfg, read from cfgPath, until ctx is done,
// then drains one last time and closes the store. SIGHUP reloads the
// tables and watch lists from the configuration file.
func Run(ctx context.Context, cfg *config.Config, cfgPath string, log *slog.Logger) error {
	d := &Daemon{cfgPath: cfgPath, cfg: cfg, log: log, started: wallclock.Now(), kernel: kernelRelease()}
	if err := d.open(); err != nil {
		d.close()
		return err
	}
	defer d.close()

	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return d.links.Run(ctx) })
	g.Go(func() error { return d.drainLoop(ctx) })
	g.Go(func() error { return d.reloadOnHangup(ctx) })
	g.Go(func() error { return d.uplink.Run(ctx) })
	g.Go(func() error { return d.notifySystemd(ctx) })
	h := web.New(&source{d}, web.Options{BasicAuth: d.basicAuth(), Now: wallclock.Now}, log)
	g.Go(func() error {
		return web.ListenAndServe(ctx, cfg.HTTP.Listen, cfg.HTTP.TLS.CertFile, cfg.HTTP.TLS.KeyFile, h)
	})
	log.Info("sensord running", "version", version.Version, "sensor", cfg.Sensor.ID, "board", cfg.Sensor.Board,
		"listen", cfg.HTTP.Listen, "interfaces", len(cfg.Interfaces), "drain", cfg.Drain.Interval, "clock", wallclock.Describe())
	err := g.Wait()
	log.Info("sensord stopped", "error", err)
	return err
}

func (d *Daemon) open() error {
	cfg := d.cfg
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return fmt.Errorf("data_dir: %w", err)
	}
	pidFile := filepath.Join(cfg.DataDir, pidFileName)
	if err := checkPidFile(pidFile); err != nil { // before a second sensord touches the store
		return err
	}
	st, err := store.Open(cfg.Store.Path, storeOptions(cfg), d.log)
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	d.store = st
	if err := writePidFile(pidFile, d.log); err != nil {
		return err
	}
	d.pidFile = pidFile
	if aside, reason := st.Recovered(); aside != "" {
		d.log.Error("the store was damaged and moved aside; a fresh one was started", "moved_to", aside, "reason", reason)
	}

	tables, labels, err := d.loadTables(cfg)
	if err != nil {
		return err
	}
	if err := ensureBPFFS(cfg.BPFFSDir, d.log); err != nil {
		return err
	}
	dp, err := datapath.Open(datapath.Config{
		PinDir:         cfg.BPFFSDir,
		CounterEntries: cfg.Datapath.CounterEntries,
		V4SplitEntries: cfg.Datapath.V4SplitEntries,
		V6SplitEntries: cfg.Datapath.V6SplitEntries,
		V4KeyLen:       cfg.Datapath.V4KeyLen,
		V6KeyLen:       cfg.Datapath.V6KeyLen,
		XDPDrop:        cfg.Datapath.XDPDrop,
	}, d.log)
	if err != nil {
		return err
	}
	d.dp = dp
	if err := dp.SetTables(tables); err != nil {
		return fmt.Errorf("load tables into the kernel: %w", err)
	}
	d.tables, d.labels = tables, labels
	d.summarize, d.alerts = d.watchLists(cfg)
	recent, err := loadAlerts(cfg.DataDir, d.alerts)
	if err != nil {
		d.log.Error("alert state", "error", err)
	}
	d.recentBefore = recent

	sel := make([]linkwatch.Selector, len(cfg.Interfaces))
	for i, ifc := range cfg.Interfaces {
		sel[i] = linkwatch.Selector{Name: ifc.Name, MAC: ifc.MAC, Altname: ifc.AltName}
	}
	d.links = linkwatch.New(sel, &attacher{dp: dp, ifaces: cfg.Interfaces}, d.log)

	upCfg := uplink.Config{
		Broker: cfg.Uplink.Broker, SensorID: cfg.Sensor.ID, TopicPrefix: cfg.Uplink.TopicPrefix,
		Username: cfg.Uplink.Username, CAFile: cfg.Uplink.CAFile, CertFile: cfg.Uplink.CertFile, KeyFile: cfg.Uplink.KeyFile,
		Version: version.Version, Board: cfg.Sensor.Board,
		Resend: func(seq uint64) ([]byte, error) { return uplink.StoreSource(st, d.encodeOptions())(seq) },
	}
	if cfg.Uplink.PasswordFile != "" {
		pw, err := os.ReadFile(cfg.Uplink.PasswordFile)
		if err != nil {
			return fmt.Errorf("uplink.password_file: %w", err)
		}
		upCfg.Password = string(trimNewline(pw))
	}
	d.uplink = uplink.New(upCfg, st, d.log)
	return nil
}

func (d *Daemon) close() {
	if d.alerts != nil && d.store != nil {
		if err := saveAlerts(d.cfg.DataDir, d.alerts); err != nil {
			d.log.Error("save alert state", "error", err)
		}
	}
	if d.dp != nil {
		if err := d.dp.Close(); err != nil {
			d.log.Warn("close datapath", "error", err)
		}
	}
	if d.store != nil {
		if err := d.store.Close(); err != nil {
			d.log.Error("close store", "error", err)
		}
	}
	if d.pidFile != "" { // last: the next sensord may start once it is gone
		removePidFile(d.pidFile, d.log)
	}
}

func storeOptions(cfg *config.Config) store.Options {
	opts := store.DefaultOptions()
	opts.MaxSize = int64(cfg.Store.MaxSize)
	opts.TopN = cfg.Drain.TopN
	switch cfg.Store.Sync {
	case config.SyncAlways:
		opts.Sync = store.SyncAlways
	case config.SyncNever:
		opts.Sync = store.SyncNever
	default:
		opts.Sync = store.SyncEverySecond
	}
	retention := []time.Duration{cfg.Store.Retention.Interval, cfg.Store.Retention.Minute, cfg.Store.Retention.Hour, cfg.Store.Retention.Day}
	for i := range opts.Levels {
		if i < len(retention) && retention[i] > 0 {
			opts.Levels[i].Retention = retention[i]
		}
	}
	return opts
}

// loadTables loads the local prefixes, the prefix tables and the watch
// lists' prefixes: everything the hot path's keys must respect.
func (d *Daemon) loadTables(cfg *config.Config) (*datapath.Tables, []*prefixes.Table, error) {
	inline := make([]netip.Prefix, 0, len(cfg.LocalPrefixes))
	for _, s := range cfg.LocalPrefixes {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, nil, err // Validate refused this already
		}
		inline = append(inline, p)
	}
	local, err := loadLocal(inline, cfg.LocalPrefixFiles)
	if err != nil {
		return nil, nil, err
	}
	var labels []*prefixes.Table
	for _, t := range cfg.Tables {
		tbl, err := loadTable(TableSpec{Name: t.Name, Format: string(t.Format), Files: t.Files,
			Labels: prefixes.Entry{Country: t.Labels.Country, ASN: t.Labels.ASN, ASName: t.Labels.ASName}}, d.log)
		if err != nil {
			return nil, nil, err
		}
		labels = append(labels, tbl)
	}
	all := append([]*prefixes.Table(nil), labels...)
	if lists := watchLists(cfg); len(lists) > 0 {
		all = append(all, aggregate.WatchTable(lists))
	}
	return &datapath.Tables{Local: local, Prefix: all}, labels, nil
}

func watchLists(cfg *config.Config) []aggregate.WatchList {
	var out []aggregate.WatchList
	for _, w := range cfg.WatchLists {
		l := aggregate.WatchList{Name: w.Name, Countries: w.Countries, ASNs: w.ASNs}
		for _, s := range w.Prefixes {
			if p, err := netip.ParsePrefix(s); err == nil {
				l.Prefixes = append(l.Prefixes, p)
			}
		}
		out = append(out, l)
	}
	return out
}

func (d *Daemon) watchLists(cfg *config.Config) (*aggregate.Summarizer, *watch.Engine) {
	lists := watchLists(cfg)
	var wl []watch.List
	var rules []watch.Rule
	for i, w := range cfg.WatchLists {
		wl = append(wl, watch.List{Name: w.Name, Countries: w.Countries, ASNs: w.ASNs, Prefixes: lists[i].Prefixes})
		if w.Alert.IsZero() {
			continue
		}
		rules = append(rules, watch.Rule{List: w.Name, Any: w.Alert.Any, PPS: w.Alert.PPS, BPS: w.Alert.BPS,
			BaselineFactor: w.Alert.BaselineFactor, MinDuration: w.Alert.MinDuration})
	}
	return aggregate.New(lists, cfg.Datapath.V4KeyLen, cfg.Datapath.V6KeyLen, cfg.Drain.TopN), watch.New(wl, rules, d.log)
}

// enqueue hands a stored summary to the uplink through the store's outbox.
func (d *Daemon) enqueue(s *summary.Summary) {
	if !d.uplink.Enabled() {
		return
	}
	payload, err := summary.Encode(s, d.encodeOptions())
	if err == nil {
		err = d.store.Enqueue(d.uplink.SummaryTopic(), payload, s.Seq)
	}
	if err != nil {
		d.log.Error("queue summary for the uplink", "seq", s.Seq, "error", err)
		return
	}
	d.uplink.Notify()
}

// encodeOptions are those of the summaries the uplink publishes.
func (d *Daemon) encodeOptions() summary.EncodeOptions {
	return summary.EncodeOptions{MaxBytes: int(d.cfg.Uplink.MaxPayload), Format: d.uplinkFormat()}
}

// uplinkFormat is the wire encoding of summaries that the config asks for.
func (d *Daemon) uplinkFormat() summary.Format {
	if d.cfg.Uplink.Encoding == "json" {
		return summary.FormatJSON
	}
	return summary.FormatBinary
}

// sendAlert hands an alert's start and end to the uplink.
func (d *Daemon) sendAlert(ev watch.Event) {
	if !d.uplink.Enabled() || ev.Kind == watch.Updated {
		return
	}
	payload, err := json.Marshal(struct {
		Sensor string      `json:"sensor"`
		Event  string      `json:"event"`
		Alert  watch.Alert `json:"alert"`
	}{d.cfg.Sensor.ID, ev.Kind.String(), ev.Alert})
	if err == nil {
		err = d.uplink.PublishAlert(payload)
	}
	if err != nil {
		d.log.Error("queue alert for the uplink", "id", ev.Alert.ID, "error", err)
	}
}

// alertSaveEvery is how often the alert engine's baselines are saved when
// no alert changes.
const alertSaveEvery = 5 * time.Minute

// drainLoop drains every interval, and once more when ctx is done.
func (d *Daemon) drainLoop(ctx context.Context) error {
	d.mu.Lock()
	every := d.cfg.Drain.Interval
	d.mu.Unlock()
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			d.drainOnce()
			return nil
		case <-tick.C:
			d.drainOnce()
		}
	}
}

// drainOnce reads the closed intervals, stores their summaries and feeds the
// alert engine. Errors are logged: the kernel keeps counting. A drain that
// fails leaves the interval in the kernel for the next one.
//
// An interval the store cannot write (disk full, read-only) is held in
// memory and retried first at every drain; while it is refused, the kernel
// is not drained: the refused interval stays in its epoch (a restart or a
// crash recovers it from there) and the active epoch goes on counting, so
// that when the store takes writes again one long interval holds the whole
// outage. Nothing is lost, not even when sensord dies meanwhile.
func (d *Daemon) drainOnce() {
	start := wallclock.Now()
	d.mu.Lock()
	if len(d.unstored) > 0 {
		d.storeUnstored(start)
		if len(d.unstored) > 0 {
			d.mu.Unlock()
			return
		}
	}
	d.mu.Unlock()
	ivs, err := d.dp.Drain()
	if err != nil {
		d.log.Error("drain", "error", err)
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, iv := range ivs {
		if err := iv.Check(); err != nil {
			d.invariant = err
			d.log.Error("interval does not reconcile", "generation", iv.Generation, "error", err)
		} else {
			d.invariant = nil
		}
		s := d.summarize.Summarize(iv)
		s.Sensor = d.cfg.Sensor.ID
		if s.Start.IsZero() { // recovered after a restart: its start is unknown
			s.Start = s.End
		}
		if s.End.IsZero() {
			s.End = start
			s.Start = start
		}
		d.unstored = append(d.unstored, unstoredInterval{s, store.Origin{Instance: iv.Instance, Generation: iv.Generation}})
	}
	if n := len(d.unstored) - maxUnstored; n > 0 {
		d.unstoredDropped += uint64(n)
		d.log.Error("too many intervals wait for the store: the oldest are given up, their counts lost",
			"dropped", n, "dropped_total", d.unstoredDropped, "held", maxUnstored)
		d.unstored = append(d.unstored[:0], d.unstored[n:]...)
	}
	d.storeUnstored(start)
	d.lastDrain = wallclock.Now()
	d.drainDur = time.Since(start)
}

// storeUnstored writes the waiting intervals, oldest first, and stops at the
// first the store refuses: the rest wait for the next drain, in order. A
// refused write is logged once a minute while it lasts; the status page
// and /metrics show it.
func (d *Daemon) storeUnstored(now time.Time) {
	done := 0
	defer func() { d.unstored = append(d.unstored[:0], d.unstored[done:]...) }()
	for _, u := range d.unstored {
		s := u.s
		stored, err := d.store.Put(s, u.origin)
		if errors.Is(err, store.ErrRefused) {
			// Its counters do not reconcile (the invariant card says so);
			// no retry would change that.
			d.log.Error("store refused the interval", "generation", u.origin.Generation, "error", err)
			done++
			continue
		}
		if err != nil {
			d.writeErrors++
			if d.writeErr == nil {
				d.writeErrSince = now
			}
			d.writeErr = err
			if now.Sub(d.writeErrLogged) >= time.Minute {
				d.log.Error("store interval: held in memory until the store takes it", "generation", u.origin.Generation,
					"held", len(d.unstored)-done, "error", err)
				d.writeErrLogged = now
			}
			return
		}
		done++
		if d.writeErr != nil {
			d.log.Info("the store takes intervals again", "failed_since", d.writeErrSince, "held", len(d.unstored)-done+1)
			d.writeErr, d.writeErrLogged = nil, time.Time{}
		}
		if !stored {
			d.log.Info("interval already stored, skipped", "generation", u.origin.Generation)
			continue
		}
		d.enqueue(s)
		d.totals.Add(s.Globals)
		d.remote.Add(s.Remote)
		events := d.alerts.Observe(s)
		for _, ev := range events {
			d.log.Info("alert "+ev.Kind.String(), "list", ev.Alert.List, "reason", ev.Alert.Reason, "id", ev.Alert.ID)
			d.sendAlert(ev)
		}
		// Alerts and learned baselines survive a restart: saved when an
		// alert changes, and every few minutes for the baselines.
		if len(events) > 0 || time.Since(d.alertsSaved) > alertSaveEvery {
			if err := saveAlerts(d.cfg.DataDir, d.alerts); err != nil {
				d.log.Error("save alert state", "error", err)
			}
			d.alertsSaved = time.Now()
		}
	}
}

// reloadOnHangup reloads tables and watch lists on SIGHUP. The kernel
// switches to the new tables between two packets: nothing is lost or
// counted twice.
func (d *Daemon) reloadOnHangup(ctx context.Context) error {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-hup:
			if err := d.Reload(); err != nil {
				d.log.Error("reload refused, keeping the running configuration", "error", err)
			}
		}
	}
}

// Reload reads the configuration file again and applies its tables and
// watch lists. Other changes need a restart, and are reported.
func (d *Daemon) Reload() error {
	cfg, err := config.Load(d.cfgPath)
	if err != nil {
		return err
	}
	tables, labels, err := d.loadTables(cfg)
	if err != nil {
		return err
	}
	if err := d.dp.SetTables(tables); err != nil {
		return fmt.Errorf("load tables into the kernel: %w", err)
	}
	summarize, alerts := d.watchLists(cfg)
	d.mu.Lock()
	d.tables, d.labels = tables, labels
	if state, err := d.alerts.MarshalState(); err == nil { // baselines and active alerts go on
		if err := alerts.RestoreState(state); err != nil {
			d.log.Warn("alert state not carried over the reload", "error", err)
		}
	}
	d.summarize, d.alerts = summarize, alerts
	d.cfg.Tables, d.cfg.WatchLists, d.cfg.LocalPrefixes, d.cfg.LocalPrefixFiles = cfg.Tables, cfg.WatchLists, cfg.LocalPrefixes, cfg.LocalPrefixFiles
	d.mu.Unlock()
	d.log.Info("reloaded tables and watch lists", "tables", len(labels), "watch_lists", len(cfg.WatchLists))
	return nil
}

func (d *Daemon) basicAuth() web.BasicAuth {
	ba := d.cfg.HTTP.BasicAuth
	if ba.User == "" {
		return web.BasicAuth{}
	}
	pw, err := os.ReadFile(ba.PasswordFile)
	if err != nil {
		d.log.Error("read the basic auth password file: the pages refuse every request", "file", ba.PasswordFile, "error", err)
		return web.BasicAuth{User: ba.User, Password: string(randomPassword())}
	}
	return web.BasicAuth{User: ba.User, Password: string(trimNewline(pw))}
}

func trimNewline(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

func randomPassword() []byte {
	b := make([]byte, 32)
	_, _ = unix.Getrandom(b, 0)
	return b
}

func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}

// ensureBPFFS mounts the bpffs at /sys/fs/bpf when the pin directory is
// below it and nothing is mounted there (systemd mounts it on most systems).
func ensureBPFFS(dir string, log *slog.Logger) error {
	const root = "/sys/fs/bpf"
	var fs unix.Statfs_t
	if err := unix.Statfs(root, &fs); err == nil && fs.Type == unix.BPF_FS_MAGIC {
		return nil
	}
	if len(dir) < len(root) || dir[:len(root)] != root {
		return nil // elsewhere: datapath checks it
	}
	if err := unix.Mount("bpf", root, "bpf", 0, "mode=0700"); err != nil {
		return fmt.Errorf("mount the bpffs on %s: %w", root, err)
	}
	log.Info("mounted the bpffs", "path", root)
	return nil
}

// pidFileName is sensord's pid file in data_dir. sensorctl reload reads it
// to send SIGHUP, and a second sensord with the same data_dir refuses to
// start while the process it names runs.
const pidFileName = "sensord.pid"

// checkPidFile refuses to start when the pid file names a running sensord
// other than this process. A stale file (a crash, a reboot, a process that
// reused the pid) is replaced by writePidFile.
func checkPidFile(path string) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read the pid file: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 || pid == os.Getpid() {
		return nil
	}
	if runningSensord(pid) {
		return fmt.Errorf("another sensord (pid %d, pid file %s) is running with data_dir %s: stop it first, or give this one another data_dir",
			pid, path, filepath.Dir(path))
	}
	return nil
}

// runningSensord tells whether pid is a running (not a zombie) process
// named like sensord or like this program.
func runningSensord(pid int) bool {
	name, state, ok := procStat(strconv.Itoa(pid))
	if !ok || state == "Z" || state == "X" {
		return false
	}
	self, _, _ := procStat("self")
	return strings.HasPrefix(name, "sensord") || (self != "" && name == self)
}

// procStat is a process's command name and state from /proc/PID/stat.
func procStat(pid string) (name, state string, ok bool) {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return "", "", false
	}
	s := string(b)
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return "", "", false
	}
	fields := strings.Fields(s[end+1:])
	if len(fields) == 0 {
		return "", "", false
	}
	return s[open+1 : end], fields[0], true
}

// writePidFile writes this process's pid into path, created exclusively so
// that of two sensords starting together one refuses; a stale file is
// replaced.
func writePidFile(path string, log *slog.Logger) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return fmt.Errorf("write the pid file: %w", err)
	}
	for range 3 {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, fs.ErrExist) {
			if err := checkPidFile(path); err != nil {
				return err
			}
			old, _ := os.ReadFile(path)
			log.Warn("replacing a stale pid file", "file", path, "pid", strings.TrimSpace(string(old)))
			if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("remove the stale pid file: %w", err)
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("write the pid file: %w", err)
		}
		_, err = fmt.Fprintf(f, "%d\n", os.Getpid())
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			_ = os.Remove(path)
			return fmt.Errorf("write the pid file: %w", err)
		}
		return nil
	}
	return fmt.Errorf("write the pid file %s: it keeps reappearing", path)
}

// removePidFile removes the pid file if it still names this process.
func removePidFile(path string, log *slog.Logger) {
	b, err := os.ReadFile(path)
	if err != nil {
		log.Warn("remove the pid file", "file", path, "error", err)
		return
	}
	if strings.TrimSpace(string(b)) != strconv.Itoa(os.Getpid()) {
		log.Warn("the pid file names another process: left in place", "file", path, "pid", strings.TrimSpace(string(b)))
		return
	}
	if err := os.Remove(path); err != nil {
		log.Warn("remove the pid file", "file", path, "error", err)
	}
}
