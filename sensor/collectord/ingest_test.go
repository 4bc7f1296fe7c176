package collectord

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/peerwatch/peerwatch/internal/testsum"
	"github.com/peerwatch/peerwatch/internal/testutil"
	"github.com/peerwatch/peerwatch/sensor/summary"
	"github.com/peerwatch/peerwatch/sensor/uplink"
)

// ingestLoad is n summaries of 1000 prefixes from a fleet of sensors,
// encoded beforehand: the payloads and their topics.
type ingestLoad struct {
	topics   []string
	payloads [][]byte
	bytes    int
}

// buildIngestLoad makes n summaries of sensors sensors, the last ones
// ending at end.
func buildIngestLoad(n, sensors int, format summary.Format, end time.Time) (*ingestLoad, error) {
	perSensor := (n + sensors - 1) / sensors
	l := &ingestLoad{topics: make([]string, n), payloads: make([][]byte, n)}
	// One sensor's base summary at a time: a fleet of 10,000 would hold
	// gigabytes of them.
	for sensor := range min(n, sensors) {
		base := testsum.Big(fmt.Sprintf("pw-%04d", sensor), 0, end, uint64(sensor), 1000)
		for i := sensor; i < n; i += sensors {
			seq := uint64(i/sensors + 1)
			s := *base
			s.Seq = seq
			s.End = end.Add(-time.Duration(uint64(perSensor)-seq) * testsum.Interval)
			s.Start = s.End.Add(-testsum.Interval)
			p, err := summary.Encode(&s, summary.EncodeOptions{Format: format})
			if err != nil {
				return nil, err
			}
			l.topics[i] = uplink.Topic("", s.Sensor, uplink.KindSummary)
			l.payloads[i] = p
			l.bytes += len(p)
		}
	}
	return l, nil
}

// pahoPublisherEnv set to 1 makes the publishers paho clients instead of
// rawPublish (rawpub_test.go), for comparison: paho costs the cores that
// collectord shares with the publishers about 0.8 ms per summary.
const pahoPublisherEnv = "PEERWATCH_INGEST_PAHO"

// publish sends the load over clients connections to the broker at addr,
// QoS 1, and waits for every PUBACK.
func (l *ingestLoad) publish(addr string, clients int) error {
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if os.Getenv(pahoPublisherEnv) != "1" {
				var idx []int
				for i := c; i < len(l.payloads); i += clients {
					idx = append(idx, i)
				}
				if err := l.rawPublish(addr, fmt.Sprintf("ingest-%d", c), idx); err != nil {
					errs <- fmt.Errorf("client %d: %w", c, err)
				}
				return
			}
			cl := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tcp://" + addr).
				SetClientID(fmt.Sprintf("ingest-%d", c)).SetAutoReconnect(false).SetWriteTimeout(30 * time.Second))
			if tok := cl.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
				errs <- fmt.Errorf("client %d: connect: %v", c, tok.Error())
				return
			}
			defer cl.Disconnect(250)
			var toks []mqtt.Token
			for i := c; i < len(l.payloads); i += clients {
				toks = append(toks, cl.Publish(l.topics[i], 1, false, l.payloads[i]))
			}
			for _, tok := range toks {
				if !tok.WaitTimeout(10*time.Minute) || tok.Error() != nil {
					errs <- fmt.Errorf("client %d: publish: %v", c, tok.Error())
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	var err error
	for e := range errs {
		err = errors.Join(err, e)
	}
	return err
}

// publisherEnv, when set, makes the test binary BenchmarkIngest's
// publisher process (TestMain): "<addr> <n> <sensors> <format> <clients>
// <end, Unix s>". It builds the load, writes "ready", waits for a line on
// stdin, publishes, and writes "cpu-us <its CPU time while publishing>".
const publisherEnv = "PEERWATCH_INGEST_PUBLISHER"

func TestMain(m *testing.M) {
	if spec := os.Getenv(publisherEnv); spec != "" {
		if err := runPublisher(spec, os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "ingest publisher:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func runPublisher(spec string, in io.Reader, out io.Writer) error {
	var addr string
	var n, sensors, format, clients int
	var end int64
	if _, err := fmt.Sscan(spec, &addr, &n, &sensors, &format, &clients, &end); err != nil {
		return fmt.Errorf("%s %q: %w", publisherEnv, spec, err)
	}
	load, err := buildIngestLoad(n, sensors, summary.Format(format), time.Unix(end, 0).UTC())
	if err != nil {
		return err
	}
	fmt.Fprintln(out, "ready", load.bytes)
	if _, err := bufio.NewReader(in).ReadString('\n'); err != nil {
		return fmt.Errorf("wait for go: %w", err)
	}
	before := cpuTime()
	if err := load.publish(addr, clients); err != nil {
		return err
	}
	fmt.Fprintln(out, "cpu-us", (cpuTime() - before).Microseconds())
	return nil
}

// childCPU is the CPU time (user and system) so far of this process's
// child named comm (the mosquitto the benchmark started), 0 when there is
// none. It reads /proc/<pid>/stat, in clock ticks of 10 ms.
func childCPU(comm string) time.Duration {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, path := range stats {
		b, err := os.ReadFile(path)
		if err != nil {
			continue // gone
		}
		// pid (comm) state ppid ... utime stime: fields 4, 14 and 15.
		head, rest, ok := strings.Cut(string(b), ") ")
		if !ok || !strings.HasSuffix(head, "("+comm) {
			continue
		}
		f := strings.Fields(rest)
		if len(f) < 13 || f[1] != strconv.Itoa(os.Getpid()) {
			continue
		}
		utime, _ := strconv.ParseInt(f[11], 10, 64)
		stime, _ := strconv.ParseInt(f[12], 10, 64)
		return time.Duration(utime+stime) * 10 * time.Millisecond
	}
	return 0
}

// cpuTime is the CPU time (user and system) of this process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// minorFaults is the minor page faults of this process so far: pages
// touched for the first time (or again after the runtime returned them).
func minorFaults() int64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Minflt
}

// publisherProcess is the test binary run as the publishers.
type publisherProcess struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines *bufio.Scanner
	bytes int       // of the payloads
	end   time.Time // of the last summaries
}

// startPublisher starts the publisher process and waits until its load
// is built.
func startPublisher(tb testing.TB, addr string, n, sensors int, format summary.Format, clients int) *publisherProcess {
	tb.Helper()
	end := time.Now().UTC().Truncate(testsum.Interval)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s %d %d %d %d %d", publisherEnv, addr, n, sensors, format, clients, end.Unix()))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	p := &publisherProcess{cmd: cmd, stdin: stdin, lines: bufio.NewScanner(stdout), end: end}
	tb.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	line := p.line(tb, "ready")
	if p.bytes, err = strconv.Atoi(line); err != nil {
		tb.Fatalf("publisher said ready %q", line)
	}
	return p
}

// line reads the publisher's next line, which must start with word, and
// returns the rest.
func (p *publisherProcess) line(tb testing.TB, word string) string {
	tb.Helper()
	if !p.lines.Scan() {
		tb.Fatalf("publisher process ended before %q: %v", word, p.lines.Err())
	}
	rest, ok := strings.CutPrefix(p.lines.Text(), word+" ")
	if !ok {
		tb.Fatalf("publisher said %q, want %q", p.lines.Text(), word)
	}
	return rest
}

// run tells the publisher to publish, and returns what it reports when
// every PUBACK is in: its CPU time.
func (p *publisherProcess) run(tb testing.TB) (cpu time.Duration) {
	tb.Helper()
	if _, err := io.WriteString(p.stdin, "go\n"); err != nil {
		tb.Fatal(err)
	}
	us, err := strconv.ParseInt(p.line(tb, "cpu-us"), 10, 64)
	if err != nil {
		tb.Fatal(err)
	}
	if err := p.cmd.Wait(); err != nil {
		tb.Fatalf("publisher process: %v", err)
	}
	return time.Duration(us) * time.Microsecond
}

// BenchmarkIngest measures the summaries per second that one collectord
// takes in from 100 sensors (or 10,000) over MQTT, journaled in its store (fsync per
// group commit) before each is acknowledged (docs/benchmarks.md). The 4
// publishing connections are another process (this test binary, run by
// startPublisher), on the same 2 cores: cpu-us/summary is collectord's
// own CPU time (with the embedded broker, the broker's too; mosquitto is
// a third process, mosquitto-cpu-us/summary), pub-cpu-us/summary the
// publishers'. mosquitto-backlog publishes while collectord is away (its
// persistent session queued by mosquitto) and measures the backlog taken
// when it comes back, restart included: the rate of one collectord with
// the cores to itself and its broker. The flush of the
// collector's state is measured apart: flush-cpu-ms, once per flush
// interval (10 s by default) whatever the rate. faults/summary is
// collectord's minor page faults. fleet-10000/mosquitto-backlog/binary/
// flushing is the target, 10,000 sensors, with collectord flushing every
// 10 s while it takes them in (flushes: how many). PEERWATCH_INGEST_CONNECTIONS sets the
// number of publishing connections (default 4): with 64, the journal's
// group commits take about 10 summaries per fsync instead of 2.
// PEERWATCH_INGEST_GC_PERCENT sets collectord's garbage collector target
// (debug.SetGCPercent) and not the publishers' (GOGC would set both).
//
//	go test -run '^$' -bench Ingest -benchtime 3000x ./sensor/collectord/
func BenchmarkIngest(b *testing.B) {
	publishers := 4
	if s := os.Getenv("PEERWATCH_INGEST_CONNECTIONS"); s != "" {
		publishers, _ = strconv.Atoi(s)
	}
	if s := os.Getenv("PEERWATCH_INGEST_GC_PERCENT"); s != "" {
		p, _ := strconv.Atoi(s)
		defer debug.SetGCPercent(debug.SetGCPercent(p))
	}
	for _, c := range []struct {
		name      string
		format    summary.Format
		mosquitto bool
		sensors   int
		// backlog: collectord is away while the fleet publishes, and
		// what is measured is how fast it takes the broker's backlog
		// when it comes back, without the publishers beside it.
		backlog bool
		// flushing: collectord flushes every 10 s (the default) while it
		// takes the summaries, rather than once at the end.
		flushing bool
	}{
		{"embedded/binary", summary.FormatBinary, false, 100, false, false},
		{"embedded/json-gzip", summary.FormatJSON, false, 100, false, false},
		{"mosquitto/binary", summary.FormatBinary, true, 100, false, false},
		{"mosquitto-backlog/binary", summary.FormatBinary, true, 100, true, false},
		// The fleet of the target, 10,000 sensors: the windows' per-sensor
		// views of countries and ASes, and so the checkpoints, grow with
		// it. Run it with -benchtime 10000x or more (every sensor once).
		{"fleet-10000/embedded/binary", summary.FormatBinary, false, 10_000, false, false},
		// The fleet of the target at its rate, with the flushes: run
		// it with -benchtime 30000x or more (three summaries a sensor,
		// several flushes).
		{"fleet-10000/mosquitto-backlog/binary/flushing", summary.FormatBinary, true, 10_000, true, true},
	} {
		b.Run(c.name, func(b *testing.B) {
			// No flush while the summaries come in: a flush costs the
			// same whatever the rate (it writes the windows and sensors
			// that changed), so it is measured on its own at the end and
			// reported per flush (flush-cpu-ms), for the reader to spread
			// over the summaries of a flush interval at the rate of
			// interest.
			cfg := Config{DataDir: b.TempDir(), FlushInterval: time.Hour}
			if c.flushing {
				cfg.FlushInterval = DefaultFlushInterval
			}
			var addr string
			if c.mosquitto {
				addr = testutil.Mosquitto(b, "max_queued_messages 1000000\nmax_inflight_messages 0\n")
				cfg.Broker, cfg.ClientID = "tcp://"+addr, "collectord-bench"
			} else {
				addr = testutil.FreeAddr(b)
				cfg.EmbeddedBroker = addr
			}
			d, _, stop := runDaemon(b, cfg)
			if c.mosquitto {
				waitFor(b, "the subscription", time.Minute, d.Subscribed)
			}
			if c.backlog {
				stop() // its persistent session stays, and mosquitto queues for it
			}
			pub := startPublisher(b, addr, b.N, c.sensors, c.format, publishers)
			before, faults, brokerBefore := cpuTime(), minorFaults(), childCPU("mosquitto")
			b.ResetTimer()
			pubCPU := pub.run(b)
			if c.backlog {
				b.ResetTimer()
				before, faults, brokerBefore = cpuTime(), minorFaults(), childCPU("mosquitto")
				d, _, stop = runDaemon(b, cfg)
			}
			waitFor(b, "every summary at the collector", 10*time.Minute, func() bool { return accepted(d) == b.N })
			b.StopTimer()
			cpu, faults := cpuTime()-before, minorFaults()-faults
			brokerCPU := childCPU("mosquitto") - brokerBefore
			beforeFlush := cpuTime()
			if err := d.flush(); err != nil {
				b.Fatal(err)
			}
			flushCPU := cpuTime() - beforeFlush
			// Exact: what the fleet sent is what the collector counts.
			want := fleetTotals(b.N, c.sensors, pub.end)
			got := d.Collector().Window("1m", pub.end.Add(-24*time.Hour), pub.end.Add(time.Minute))
			if got.Remote != want.Remote || got.Globals != want.Globals {
				b.Fatalf("collector: remote %+v, globals %+v; the fleet sent remote %+v, globals %+v", got.Remote, got.Globals, want.Remote, want.Globals)
			}
			st, _ := d.StoreStats()
			b.ReportMetric(float64(flushCPU.Milliseconds()), "flush-cpu-ms")
			b.ReportMetric(float64(st.LastFlushBytes)/1e6, "flush-MB")
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "summaries/s")
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-us/summary")
			b.ReportMetric(float64(faults)/float64(b.N), "faults/summary")
			if !c.backlog {
				b.ReportMetric(float64(pubCPU.Microseconds())/float64(b.N), "pub-cpu-us/summary")
			}
			if c.mosquitto {
				b.ReportMetric(float64(brokerCPU.Microseconds())/float64(b.N), "mosquitto-cpu-us/summary")
			}
			b.ReportMetric(float64(st.Journaled)/float64(max(st.JournalBatches, 1)), "summaries/fsync")
			if c.flushing {
				b.ReportMetric(float64(st.Flushes-1), "flushes") // the last one is the one at the end
			}
			if c.sensors >= 10_000 {
				// A restart of the fleet's collector: the store loaded
				// (view files included), the same totals.
				stop()
				began := time.Now()
				d2, _, _ := runDaemon(b, cfg)
				b.ReportMetric(float64(time.Since(began).Milliseconds()), "restart-ms")
				b.ReportMetric(float64(st.ViewBytes)/1e6, "view-MB")
				got := d2.Collector().Window("1m", pub.end.Add(-24*time.Hour), pub.end.Add(time.Minute))
				if got.Remote != want.Remote || got.Globals != want.Globals {
					b.Fatalf("after a restart: remote %+v, globals %+v; the fleet sent remote %+v, globals %+v", got.Remote, got.Globals, want.Remote, want.Globals)
				}
			}
			b.ReportMetric(float64(pub.bytes)/float64(b.N), "payload-B")
		})
	}
}

// fleetTotals is the sum of the n summaries buildIngestLoad makes.
func fleetTotals(n, sensors int, end time.Time) summary.Summary {
	var sum summary.Summary
	for i := range min(n, sensors) {
		base := testsum.Big(fmt.Sprintf("pw-%04d", i), 0, end, uint64(i), 1000)
		for range (n - i + sensors - 1) / sensors { // the summaries of sensor i
			sum.Remote.Add(base.Remote)
			sum.Globals.Add(base.Globals)
		}
	}
	return sum
}

// accepted is the number of summaries the collector took.
func accepted(d *Daemon) int {
	n := 0
	for _, s := range d.Collector().Sensors(time.Now()) {
		n += int(s.Summaries)
	}
	return n
}
