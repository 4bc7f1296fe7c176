package uplink

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/peerwatch/peerwatch/internal/testutil"
	"github.com/peerwatch/peerwatch/sensor/store"
)

const (
	testSensor = "pw-test"
	n          = 50
)

// message is one message a subscriber got.
type message struct {
	topic, payload string
}

// collector keeps the messages a subscriber gets.
type collector struct {
	mu   sync.Mutex
	msgs []message
	// on, when set, is called (in a goroutine) with each payload.
	on func(payload string)
}

func (c *collector) add(topic string, payload []byte) {
	c.mu.Lock()
	c.msgs = append(c.msgs, message{topic, string(payload)})
	on := c.on
	c.mu.Unlock()
	if on != nil {
		go on(string(payload))
	}
}

// seqs returns the sequence numbers of the summaries received, in order.
func (c *collector) seqs(tb testing.TB) []uint64 {
	tb.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	var seqs []uint64
	for _, m := range c.msgs {
		if m.topic != Topic("", testSensor, KindSummary) {
			continue
		}
		seq, err := strconv.ParseUint(strings.TrimPrefix(m.payload, "summary "), 10, 64)
		if err != nil {
			tb.Fatalf("payload %q: %v", m.payload, err)
		}
		seqs = append(seqs, seq)
	}
	return seqs
}

// lastStatus returns the state in the last status message received.
func (c *collector) lastStatus(tb testing.TB) statusMessage {
	tb.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	var s statusMessage
	for _, m := range c.msgs {
		if m.topic == Topic("", testSensor, KindStatus) {
			s = statusMessage{}
			if err := json.Unmarshal([]byte(m.payload), &s); err != nil {
				tb.Fatalf("status %q: %v", m.payload, err)
			}
		}
	}
	return s
}

// states returns the states of the status messages received, in order.
func (c *collector) states() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var states []string
	for _, m := range c.msgs {
		var s statusMessage
		if m.topic == Topic("", testSensor, KindStatus) && json.Unmarshal([]byte(m.payload), &s) == nil {
			states = append(states, s.State)
		}
	}
	return states
}

func (c *collector) count(topic string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := 0
	for _, m := range c.msgs {
		if m.topic == topic {
			k++
		}
	}
	return k
}

func waitFor(tb testing.TB, what string, d time.Duration, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func testLog(tb testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	return slog.New(slog.DiscardHandler)
}

// startMochi starts the embedded broker on addr; with col, an inline
// subscriber on peerwatch/# feeds it from the start.
func startMochi(tb testing.TB, addr string, col *collector) (*mochi.Server, func()) {
	tb.Helper()
	s := mochi.New(&mochi.Options{InlineClient: true, Logger: slog.New(slog.DiscardHandler)})
	if err := s.AddHook(new(auth.AllowHook), nil); err != nil {
		tb.Fatal(err)
	}
	if err := s.AddListener(listeners.NewTCP(listeners.Config{ID: "tcp", Address: addr})); err != nil {
		tb.Fatal(err)
	}
	if col != nil {
		if err := s.Subscribe("peerwatch/#", 1, func(_ *mochi.Client, _ packets.Subscription, pk packets.Packet) {
			col.add(pk.TopicName, pk.Payload)
		}); err != nil {
			tb.Fatal(err)
		}
	}
	var err error
	for range 50 { // the port of a broker just closed may take a moment
		if err = s.Serve(); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		tb.Fatal(err)
	}
	var once sync.Once
	stop := func() { once.Do(func() { _ = s.Close() }) }
	tb.Cleanup(stop)
	return s, stop
}

// subscribe connects a paho subscriber to peerwatch/#.
func subscribe(tb testing.TB, addr string) *collector {
	tb.Helper()
	col := &collector{}
	o := mqtt.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("test-sub").SetCleanSession(true).
		SetAutoReconnect(false).SetOrderMatters(true)
	c := mqtt.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		tb.Fatalf("subscriber connect: %v", tok.Error())
	}
	tok := c.Subscribe("peerwatch/#", 1, func(_ mqtt.Client, m mqtt.Message) { col.add(m.Topic(), m.Payload()) })
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		tb.Fatalf("subscribe: %v", tok.Error())
	}
	tb.Cleanup(func() { c.Disconnect(100) })
	return col
}

func openStore(tb testing.TB) *store.Store {
	tb.Helper()
	st, err := store.Open(filepath.Join(tb.TempDir(), "store.db"), store.Options{Sync: store.SyncNever}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = st.Close() })
	return st
}

func enqueueRange(tb testing.TB, st *store.Store, from, to uint64) {
	tb.Helper()
	for seq := from; seq <= to; seq++ {
		if err := st.Enqueue(Topic("", testSensor, KindSummary), fmt.Appendf(nil, "summary %d", seq), seq); err != nil {
			tb.Fatal(err)
		}
	}
}

func testConfig(addr string) Config {
	return Config{Broker: "tcp://" + addr, SensorID: testSensor, Version: "v9.9.9", Board: "testboard",
		Poll: 200 * time.Millisecond, MaxBackoff: 500 * time.Millisecond, PublishTimeout: 2 * time.Second}
}

// startUplink runs an uplink until the test ends or the returned stop is
// called; stop waits for Run to return.
func startUplink(tb testing.TB, cfg Config, st Queue) (*Uplink, func()) {
	tb.Helper()
	up := New(cfg, st, testLog(tb))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- up.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			testutil.WaitReturn(tb, "Run", done)
		})
	}
	tb.Cleanup(stop)
	return up, stop
}

func inOrder(tb testing.TB, seqs []uint64, want int, maxDups int) {
	tb.Helper()
	dups := 0
	distinct := map[uint64]bool{}
	for i, s := range seqs {
		distinct[s] = true
		switch {
		case i == 0 && s != 1:
			tb.Errorf("first summary %d, want 1", s)
		case i > 0 && s == seqs[i-1]:
			dups++
		case i > 0 && s != seqs[i-1]+1:
			tb.Errorf("summary %d after %d: out of order", s, seqs[i-1])
		}
	}
	if len(distinct) != want || dups > maxDups {
		tb.Errorf("%d distinct summaries and %d duplicates, want %d and at most %d: %v", len(distinct), dups, want, maxDups, seqs)
	}
}

// deliverAll is test 1 against the broker at addr: the outbox is published
// in order and emptied, the status is online, then offline after the stop.
// The uplink connects to uplinkAddr. kill, when set, cuts the uplink's
// connection so that the broker sends its last will.
func deliverAll(t *testing.T, addr, uplinkAddr string, kill func()) {
	col := subscribe(t, addr)
	st := openStore(t)
	enqueueRange(t, st, 1, n)
	up, stop := startUplink(t, testConfig(uplinkAddr), st)
	waitFor(t, "all summaries", 20*time.Second, func() bool { return len(col.seqs(t)) >= n && st.OutboxLen() == 0 })
	inOrder(t, col.seqs(t), n, 0)
	waitFor(t, "online status", 5*time.Second, func() bool { return col.lastStatus(t).State == "online" })
	if s := col.lastStatus(t); s.Version != "v9.9.9" || s.Board != "testboard" {
		t.Errorf("online status %+v", s)
	}
	if s := up.State(); s.State != "connected" || s.Outbox != 0 || s.Published != n {
		t.Errorf("State %+v", s)
	}

	// An alert goes through the outbox too.
	if err := up.PublishAlert([]byte(`{"alert":1}`)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "alert", 5*time.Second, func() bool { return col.count(Topic("", testSensor, KindAlert)) == 1 })
	if s, err := st.NextSeq(); err != nil || s != 1 {
		t.Errorf("NextSeq after an alert: %d, %v; want 1 (alerts spend no summary number)", s, err)
	}

	// A retained status is there for a late subscriber.
	late := subscribe2(t, addr, "late-sub")
	waitFor(t, "retained online status", 5*time.Second, func() bool { return late.lastStatus(t).State == "online" })

	if kill != nil {
		before := len(col.states())
		kill()
		waitFor(t, "offline status from the last will, then online", 10*time.Second, func() bool {
			return strings.Contains(strings.Join(col.states()[before:], " "), "offline online")
		})
		enqueueRange(t, st, n+1, n+1)
		up.Notify()
		waitFor(t, "summary after reconnecting", 10*time.Second, func() bool { return len(col.seqs(t)) >= n+1 })
		inOrder(t, col.seqs(t), n+1, 0)
	}
	stop()
	waitFor(t, "offline status", 5*time.Second, func() bool { return col.lastStatus(t).State == "offline" })
	if st.OutboxLen() != 0 {
		t.Errorf("outbox holds %d items", st.OutboxLen())
	}
}

func subscribe2(tb testing.TB, addr, id string) *collector {
	tb.Helper()
	col := &collector{}
	o := mqtt.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).SetCleanSession(true).SetAutoReconnect(false)
	c := mqtt.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		tb.Fatalf("subscriber connect: %v", tok.Error())
	}
	tok := c.Subscribe(Topic("", testSensor, KindStatus), 1, func(_ mqtt.Client, m mqtt.Message) { col.add(m.Topic(), m.Payload()) })
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		tb.Fatalf("subscribe: %v", tok.Error())
	}
	tb.Cleanup(func() { c.Disconnect(100) })
	return col
}

func TestDeliverEmbeddedBroker(t *testing.T) {
	addr := testutil.FreeAddr(t)
	_, _ = startMochi(t, addr, nil)
	deliverAll(t, addr, addr, nil)
}

func TestLastWillEmbeddedBroker(t *testing.T) {
	addr := testutil.FreeAddr(t)
	_, _ = startMochi(t, addr, nil)
	// The uplink goes through a proxy whose cut holds the uplink off for
	// a moment, so that the broker sees the connection drop (and sends the
	// will) before the uplink reconnects.
	p := startProxy(t, addr)
	deliverAll(t, addr, p.addr, p.cut)
}

// proxy forwards TCP connections to a broker.
type proxy struct {
	addr string
	mu   sync.Mutex
	hold time.Time // refuse connections until then
	conn []net.Conn
}

func startProxy(tb testing.TB, target string) *proxy {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = l.Close() })
	p := &proxy{addr: l.Addr().String()}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			held := time.Now().Before(p.hold)
			p.mu.Unlock()
			if held {
				_ = c.Close()
				continue
			}
			b, err := net.Dial("tcp", target)
			if err != nil {
				_ = c.Close()
				continue
			}
			p.mu.Lock()
			p.conn = append(p.conn, c, b)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(b, c); _ = b.Close() }()
			go func() { _, _ = io.Copy(c, b); _ = c.Close() }()
		}
	}()
	return p
}

// cut closes every connection and refuses new ones for a second.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hold = time.Now().Add(time.Second)
	for _, c := range p.conn {
		_ = c.Close()
	}
	p.conn = nil
}

func TestBrokerOutage(t *testing.T) {
	addr := testutil.FreeAddr(t)
	col := &collector{}
	_, stopBroker := startMochi(t, addr, col)
	cut := make(chan struct{})
	col.on = func(payload string) {
		if payload == "summary 10" {
			stopBroker() // mid-stream, from the broker's side
			close(cut)
		}
	}
	st := openStore(t)
	enqueueRange(t, st, 1, 30)
	// Slow acks keep the stream going while the broker stops.
	up, _ := startUplink(t, testConfig(addr), slowQueue{st, 20 * time.Millisecond})
	select {
	case <-cut:
	case <-time.After(20 * time.Second):
		t.Fatal("timed out waiting for summary 10")
	}
	col.mu.Lock()
	col.on = nil
	col.mu.Unlock()
	enqueueRange(t, st, 31, n)
	up.Notify()
	time.Sleep(time.Second)
	if st.OutboxLen() == 0 {
		t.Fatal("the outbox drained while the broker was down")
	}
	waitFor(t, "state not connected", 5*time.Second, func() bool { return up.State().State != "connected" })
	t.Logf("during the outage: %+v, %d received", up.State(), len(col.seqs(t)))
	_, _ = startMochi(t, addr, col)
	waitFor(t, "all summaries after the outage", 30*time.Second, func() bool {
		seqs := col.seqs(t)
		return len(seqs) > 0 && seqs[len(seqs)-1] == n && st.OutboxLen() == 0
	})
	inOrder(t, col.seqs(t), n, 1)
	t.Logf("received %d messages for %d summaries", len(col.seqs(t)), n)
}

// slowQueue waits before each Ack.
type slowQueue struct {
	*store.Store
	delay time.Duration
}

func (q slowQueue) Ack(seq uint64) error {
	time.Sleep(q.delay)
	return q.Store.Ack(seq)
}

func TestMosquitto(t *testing.T) {
	addr := testutil.FreeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	testutil.StartMosquitto(t, t.TempDir(), "listener "+port+" 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\n", addr)
	deliverAll(t, addr, addr, nil)
}

func TestConfig(t *testing.T) {
	for _, c := range []Config{
		{Broker: "tcp://h:1883", SensorID: "a+b"},
		{Broker: "tcp://h:1883", SensorID: "a/b"},
		{Broker: "tcp://h:1883", SensorID: "#"},
		{Broker: "tcp://h:1883", SensorID: "a b"},
		{Broker: "tcp://h:1883", SensorID: strings.Repeat("a", 65)},
		{Broker: "tcp://h:1883", SensorID: ""},
		{Broker: "http://h", SensorID: "a"},
		{Broker: "tcp://h:1883", SensorID: "a", TopicPrefix: "x/#"},
		{Broker: "ssl://h:8883", SensorID: "a", CertFile: "c.pem"},
	} {
		if err := c.Validate(); !errors.Is(err, ErrConfig) {
			t.Errorf("%+v: %v, want ErrConfig", c, err)
		}
		if err := New(c, nil, nil).Run(context.Background()); !errors.Is(err, ErrConfig) {
			t.Errorf("Run %+v: %v, want ErrConfig", c, err)
		}
	}
	if err := (Config{Broker: "ssl://h:8883", SensorID: "pw-1", TopicPrefix: "org/peerwatch"}).Validate(); err != nil {
		t.Error(err)
	}
	up := New(Config{}, nil, nil)
	if err := up.Run(context.Background()); err != nil || up.cfg.Enabled() {
		t.Errorf("disabled: %v", err)
	}
	if got := Topic("", "pw-1", KindSummary); got != "peerwatch/pw-1/summary" {
		t.Errorf("Topic %q", got)
	}
}

// TestRestartDuringOutage: sensord stops (uplink and store closed) while
// the broker is down, with summaries in its outbox, and starts again on
// the same store file; when the broker comes back, the backlog arrives
// complete and in order.
func TestRestartDuringOutage(t *testing.T) {
	addr := testutil.FreeAddr(t)
	col := &collector{}
	_, stopBroker := startMochi(t, addr, col)
	path := filepath.Join(t.TempDir(), "store.db")
	st, err := store.Open(path, store.Options{Sync: store.SyncAlways}, nil)
	if err != nil {
		t.Fatal(err)
	}
	enqueueRange(t, st, 1, 10)
	_, stopUplink := startUplink(t, testConfig(addr), st)
	waitFor(t, "the first ten summaries", 20*time.Second, func() bool { return len(col.seqs(t)) >= 10 && st.OutboxLen() == 0 })

	stopBroker()
	enqueueRange(t, st, 11, 40) // published while the broker is away
	time.Sleep(300 * time.Millisecond)
	stopUplink()
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	st2, err := store.Open(path, store.Options{Sync: store.SyncAlways}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st2.Close() })
	if n := st2.OutboxLen(); n != 30 {
		t.Fatalf("outbox after the restart holds %d summaries, want 30", n)
	}
	enqueueRange(t, st2, 41, 50) // the restarted sensor goes on
	startUplink(t, testConfig(addr), st2)
	_, _ = startMochi(t, addr, col)
	waitFor(t, "the backlog after the broker's return", 30*time.Second, func() bool {
		seqs := col.seqs(t)
		return len(seqs) > 0 && seqs[len(seqs)-1] == 50 && st2.OutboxLen() == 0
	})
	inOrder(t, col.seqs(t), 50, 1)
}
