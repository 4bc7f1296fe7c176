package drills_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/gopacket/layers"

	"github.com/peerwatch/peerwatch/internal/testutil"
	"github.com/peerwatch/peerwatch/sensor/api"
)

// envInt reads a drill's size from the environment (scripts/drills sets
// them for the record), def otherwise.
func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q: want a positive integer", name, s)
	}
	return n
}

// report prints the drill's one line when the test ends: PASS with the
// numbers, or FAIL with them and the first failure's reason.
type report struct {
	name   string
	mu     sync.Mutex
	fields []string
}

func newReport(t *testing.T, name string) *report {
	r := &report{name: name}
	start := time.Now()
	t.Cleanup(func() {
		verdict := "PASS"
		if t.Failed() {
			verdict = "FAIL"
		}
		if t.Skipped() {
			return
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		line := fmt.Sprintf("DRILL %s %s %s took=%.1fs", r.name, verdict, strings.Join(r.fields, " "), time.Since(start).Seconds())
		fmt.Println(line)
		t.Log(line)
	})
	return r
}

// set records a number of the drill's line.
func (r *report) set(key string, v any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f := fmt.Sprintf("%s=%v", key, v)
	for i, old := range r.fields {
		if strings.HasPrefix(old, key+"=") {
			r.fields[i] = f
			return
		}
	}
	r.fields = append(r.fields, f)
}

var bin struct {
	once sync.Once
	dir  string
	err  error
}

// sensordBinary builds sensord once per test process.
func sensordBinary(t *testing.T) string {
	t.Helper()
	bin.once.Do(func() {
		bin.dir, bin.err = os.MkdirTemp("", "peerwatch-drills-")
		if bin.err != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", bin.dir, "github.com/peerwatch/peerwatch/sensor/cmd/sensord")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			bin.err = fmt.Errorf("build sensord: %v\n%s", err, b)
		}
	})
	if bin.err != nil {
		t.Fatal(bin.err)
	}
	return filepath.Join(bin.dir, "sensord")
}

func TestMain(m *testing.M) {
	code := m.Run()
	if bin.dir != "" {
		os.RemoveAll(bin.dir)
	}
	os.Exit(code)
}

// lab is a sensor namespace joined by a veth pair to a peer namespace that
// sends the traffic; sensord runs in the sensor namespace.
type lab struct {
	t            *testing.T
	dir          string
	sensord      string
	peer, sensor *testutil.Namespace
	ifname       string
	selector     string // the interface's selector in the config: "name: pw-sensor"
	tables       string // the config's tables (YAML); none by default
	from         *testutil.Sender
	pins         string
	listen       string
	client       *api.Client
}

func newLab(t *testing.T) *lab {
	t.Helper()
	testutil.RequireBPF(t)
	l := &lab{t: t, dir: t.TempDir(), sensord: sensordBinary(t), ifname: "pw-sensor", selector: "name: pw-sensor", tables: "tables: []", listen: "127.0.0.1:19100"}
	l.peer, l.sensor = testutil.NewNamespace(t), testutil.NewNamespace(t)
	testutil.Veth(t, l.peer, "pw-peer", l.sensor, l.ifname)
	l.from = testutil.NewSender(t, l.peer, "pw-peer")
	l.pins = testutil.PinDir(t)
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var conn net.Conn
			err := l.sensor.Do(func() (err error) {
				conn, err = (&net.Dialer{}).DialContext(ctx, network, addr)
				return err
			})
			return conn, err
		},
	}}
	l.client = &api.Client{BaseURL: "http://" + l.listen, HTTP: hc}
	return l
}

// config writes a sensord configuration with l.tables (none by default:
// fixed /24 and /48 keys, so that a start takes a fraction of a second), a 1 s
// drain and the given data directory; extra is appended (YAML).
func (l *lab) config(dataDir, extra string) string {
	l.t.Helper()
	path := filepath.Join(l.dir, "sensord.yaml")
	err := os.WriteFile(path, []byte(fmt.Sprintf(`sensor:
  id: drill
data_dir: %s
bpffs_dir: %s
interfaces:
  - %s
    hook: xdp
local_prefixes: ["192.0.2.0/24", "2001:db8:1::/48"]
%s
drain:
  interval: 1s
http:
  listen: %s
%s`, dataDir, l.pins, l.selector, l.tables, l.listen, extra)), 0o600)
	if err != nil {
		l.t.Fatal(err)
	}
	return path
}

// sensordProc is one sensord process.
type sensordProc struct {
	cmd    *exec.Cmd
	log    string
	exited chan struct{}
	err    error
}

// start runs sensord in the sensor namespace, its output appended to
// sensord.log in the lab's directory.
func (l *lab) start(cfg string) *sensordProc {
	l.t.Helper()
	logPath := filepath.Join(l.dir, "sensord.log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		l.t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command("nsenter", "--net=/var/run/netns/"+l.sensor.Name, l.sensord, "--config", cfg)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		l.t.Fatal(err)
	}
	p := &sensordProc{cmd: cmd, log: logPath, exited: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.exited) }()
	l.t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = cmd.Process.Kill()
			<-p.exited
		}
		if l.t.Failed() {
			b, _ := os.ReadFile(logPath)
			if len(b) > 20000 {
				b = b[len(b)-20000:]
			}
			l.t.Logf("sensord log (end):\n%s", b)
		}
	})
	return p
}

// kill9 sends SIGKILL (nsenter execs sensord, so the pid is sensord's) and
// waits until the process is gone.
func (p *sensordProc) kill9(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("sensord still runs 10 s after SIGKILL")
	}
}

// stop sends SIGTERM and waits for a clean exit.
func (p *sensordProc) stop(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		if p.err != nil {
			t.Errorf("sensord exited with %v after SIGTERM", p.err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("sensord still runs 20 s after SIGTERM")
	}
}

func (p *sensordProc) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// poll calls cond every 50 ms until it is true or within has passed.
func poll(t *testing.T, within time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(within)
	var last error
	for {
		ok, err := cond()
		if ok {
			return
		}
		last = err
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s (last error: %v)", what, within, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (l *lab) status() (*api.Status, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return l.client.Status(ctx)
}

// waitAttached waits until sensord answers and its interface is attached;
// p's exit ends the wait with a failure.
func (l *lab) waitAttached(p *sensordProc, within time.Duration) *api.Status {
	l.t.Helper()
	var st *api.Status
	poll(l.t, within, "sensord up and attached", func() (bool, error) {
		if !p.running() {
			l.t.Fatalf("sensord exited before it was up: %v", p.err)
		}
		var err error
		st, err = l.status()
		return err == nil && len(st.Interfaces) == 1 && st.Interfaces[0].State == "attached", err
	})
	return st
}

// stored is the remote packets (in + out) of every interval in the
// sensor's store, through the API.
func (l *lab) stored() (uint64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	top, err := l.client.Top(ctx, "prefix", "24h", "", 10)
	if err != nil {
		var he *api.HTTPError
		if errors.As(err, &he) && he.StatusCode == http.StatusNotFound {
			return 0, nil
		}
		return 0, err
	}
	return top.Total.PacketsIn + top.Total.PacketsOut, nil
}

// waitDrains waits until sensord has drained n more times.
func (l *lab) waitDrains(n int, within time.Duration) {
	l.t.Helper()
	st, err := l.status()
	if err != nil {
		l.t.Fatal(err)
	}
	var last time.Time
	if st.LastDrain != nil {
		last = *st.LastDrain
	}
	seen := 0
	poll(l.t, within, fmt.Sprintf("%d drains", n), func() (bool, error) {
		st, err := l.status()
		if err != nil {
			return false, err
		}
		// Any change, not only a later time: the clock drill steps
		// sensord's wall clock back.
		if st.LastDrain != nil && !st.LastDrain.Equal(last) {
			last = *st.LastDrain
			seen++
		}
		return seen >= n, nil
	})
}

// burst sends n frames of the traffic's mix, paced, and returns how many
// went out.
func (l *lab) burst(n int) uint64 {
	l.t.Helper()
	frames := mix(l.t)
	out := make([][]byte, n)
	for i := range out {
		out[i] = frames[i%len(frames)]
	}
	if err := l.from.SendPaced(out, 16); err != nil {
		l.t.Fatal(err)
	}
	return uint64(n)
}

// traffic sends frames from a fixed set of remote addresses (IPv4 and
// IPv6, both directions) at about rate packets per second until stopped.
type traffic struct {
	sent   atomic.Uint64
	stop   chan struct{}
	done   chan struct{}
	err    error
	frames [][]byte
}

func (l *lab) traffic(rate int) *traffic {
	l.t.Helper()
	return l.trafficFrames(rate, mix(l.t))
}

// trafficFrames sends frames over and over at about rate packets per
// second until stopped.
func (l *lab) trafficFrames(rate int, frames [][]byte) *traffic {
	l.t.Helper()
	tr := &traffic{stop: make(chan struct{}), done: make(chan struct{}), frames: frames}
	const burst = 16
	pause := time.Duration(float64(time.Second) * burst / float64(rate))
	from := l.from
	go func() {
		defer close(tr.done)
		next := time.Now()
		for i := 0; ; {
			select {
			case <-tr.stop:
				return
			default:
			}
			for range burst {
				if err := from.Send(tr.frames[i%len(tr.frames)]); err != nil {
					if errors.Is(err, syscall.ENOBUFS) {
						continue // not sent: not counted
					}
					tr.err = err
					return
				}
				tr.sent.Add(1)
				i++
			}
			next = next.Add(pause)
			if d := time.Until(next); d > 0 {
				time.Sleep(d)
			} else {
				next = time.Now()
			}
		}
	}()
	l.t.Cleanup(tr.end)
	return tr
}

// end stops the traffic and returns once the last frame was sent.
func (tr *traffic) end() {
	select {
	case <-tr.stop:
	default:
		close(tr.stop)
	}
	<-tr.done
}

// settle waits until the store holds want remote packets and holds still
// for two more drains; it fails with both numbers otherwise.
func (l *lab) settle(want uint64, within time.Duration) uint64 {
	l.t.Helper()
	var got uint64
	deadline := time.Now().Add(within)
	for {
		var err error
		got, err = l.stored()
		if err == nil && got >= want {
			break
		}
		if time.Now().After(deadline) {
			l.t.Errorf("the store holds %d remote packets %s after the traffic stopped, %d were sent (err %v)", got, within, want, err)
			return got
		}
		time.Sleep(100 * time.Millisecond)
	}
	l.waitDrains(2, 10*time.Second)
	got, err := l.stored()
	if err != nil {
		l.t.Fatal(err)
	}
	if got != want {
		l.t.Errorf("the store holds %d remote packets, %d were sent", got, want)
	}
	return got
}

type apiStatus = *api.Status

func httpRequest(ctx context.Context, url string) (*http.Request, error) {
	return http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
}

// mix is the drills' traffic: 64 frames from and to remote addresses
// (a quarter IPv6), half in, half out.
func mix(t *testing.T) [][]byte {
	local4, local6 := netip.MustParseAddr("192.0.2.9"), netip.MustParseAddr("2001:db8:1::9")
	rng := rand.New(rand.NewPCG(1, 2))
	var frames [][]byte
	for i := range 64 {
		var remote, local netip.Addr
		if i%4 == 3 {
			remote, local = netip.AddrFrom16([16]byte{0x20, 0x01, 0x02, 0x00, byte(i), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}), local6
		} else {
			remote, local = netip.AddrFrom4([4]byte{byte(11 + rng.IntN(100)), byte(rng.IntN(256)), byte(i), 7}), local4
		}
		f := testutil.Frame{Src: remote, Dst: local, Proto: layers.IPProtocolTCP, SrcPort: 443, DstPort: 50000}
		if i%2 == 1 {
			f = testutil.Frame{Src: local, Dst: remote, Proto: layers.IPProtocolUDP, SrcPort: 50000, DstPort: 53}
		}
		frames = append(frames, f.Bytes(t))
	}
	return frames
}
