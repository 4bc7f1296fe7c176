// Package collectord runs the fleet collector: it feeds the messages the
// sensors publish over MQTT (docs/mqtt.md) to a collector.Collector, either
// from an embedded mochi-mqtt broker or from a paho subscriber to an
// external broker, and serves the fleet's view as a JSON API
// (docs/collectord.md). With a data directory, the collector's state is
// kept in a store (sensor/fleetstore) across restarts and crashes.
package collectord

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
	"golang.org/x/sync/errgroup"

	"github.com/peerwatch/peerwatch/sensor/collector"
	"github.com/peerwatch/peerwatch/sensor/fleetstore"
	"github.com/peerwatch/peerwatch/sensor/mqttlog"
	"github.com/peerwatch/peerwatch/sensor/store"
)

// Defaults of Config.
const (
	DefaultTopicPrefix = collector.DefaultTopicPrefix
	DefaultListen      = "127.0.0.1:9200"
	// RejectLogInterval is how often a reject of one reason is logged.
	RejectLogInterval = time.Minute
	// DefaultDataDir is where the daemon keeps its store: the state
	// directory of the packaged systemd unit (user peerwatch-collector).
	DefaultDataDir = "/var/lib/peerwatch-collector"
	// DefaultFlushInterval is how often the collector's state is written.
	DefaultFlushInterval = 10 * time.Second
	// DefaultSync is the store's sync policy.
	DefaultSync = "always"
	// MaxKeep bounds the windows a level keeps.
	MaxKeep = 100_000
)

// ErrConfig: the configuration is invalid.
var ErrConfig = errors.New("invalid collectord config")

// Config of the collector daemon. Exactly one of EmbeddedBroker and Broker
// is set.
type Config struct {
	// EmbeddedBroker is the address the in-process broker listens on
	// (":1883"); the collector is fed from an inline subscription.
	EmbeddedBroker string
	// Broker is the URL of an external broker (tcp://host:1883).
	Broker string
	// EmbeddedSecurity is the embedded broker's TLS and authentication.
	EmbeddedSecurity EmbeddedSecurity
	// SubscriberSecurity is the TLS and credentials for Broker.
	SubscriberSecurity SubscriberSecurity
	// HTTPSecurity is the TLS and authentication of the dashboard, API
	// and metrics.
	HTTPSecurity HTTPSecurity
	// ShareGroup, with Broker, subscribes $share/<ShareGroup>/... so that
	// several collectors split the messages.
	ShareGroup string
	// ClientID of the subscriber to Broker (default
	// "peerwatch-collectord-<host>"). The session is persistent: the
	// broker queues the messages that arrive while the collector is away
	// for the next connection with this id.
	ClientID string
	// TopicPrefix is the first level(s) of the sensors' topics.
	TopicPrefix string
	// DataDir holds the store (fleetstore.FileName); "" keeps everything
	// in memory only.
	DataDir string
	// FlushInterval is how often the collector's state is written to the
	// store (default DefaultFlushInterval).
	FlushInterval time.Duration
	// Sync is the store's sync policy: always (default), everysecond or
	// never (see docs/collectord.md for the loss window of each).
	Sync string
	// Keep is how many windows each level keeps, by level name (1m, 1h,
	// 1d); missing levels keep their default (60, 48, 30).
	Keep map[string]int
	// KeepPerSensor is how many of those windows keep their per-sensor
	// views (whosees, per-sensor series), by level name; missing levels
	// keep it in every window they keep, and none more than it keeps.
	KeepPerSensor map[string]int
	// NoGapRepair turns gap repair off (repair.go): the sensors are not
	// asked for the summaries missing in their gaps. It is always off with
	// ShareGroup, where each collector sees only part of every sensor's
	// summaries.
	NoGapRepair bool
	// ResendGrace is how old a gap must be before the sensor is asked for
	// it (default DefaultResendGrace; negative: at once).
	ResendGrace time.Duration
	// ResendRetry is how often an unanswered request is published again
	// (default DefaultResendRetry).
	ResendRetry time.Duration
}

// Validate names the first invalid field and the reason.
func (c Config) Validate() error {
	if err := c.validateSecurity(); err != nil {
		return err
	}
	if err := c.HTTPSecurity.validate(); err != nil {
		return err
	}
	switch {
	case c.EmbeddedBroker == "" && c.Broker == "":
		return fmt.Errorf("%w: one of embedded broker and broker is needed", ErrConfig)
	case c.EmbeddedBroker != "" && c.Broker != "":
		return fmt.Errorf("%w: embedded broker and broker are exclusive", ErrConfig)
	case c.ShareGroup != "" && c.Broker == "":
		return fmt.Errorf("%w: share group needs an external broker", ErrConfig)
	case strings.ContainsAny(c.ShareGroup, "/+#"):
		return fmt.Errorf("%w: share group %q: must not hold / + #", ErrConfig, c.ShareGroup)
	case strings.ContainsAny(c.TopicPrefix, "+#"):
		return fmt.Errorf("%w: topic prefix %q: must not hold + #", ErrConfig, c.TopicPrefix)
	}
	if c.ResendRetry < 0 {
		return fmt.Errorf("%w: resend retry %v: must not be negative", ErrConfig, c.ResendRetry)
	}
	if c.FlushInterval < 0 {
		return fmt.Errorf("%w: flush interval %v: must not be negative", ErrConfig, c.FlushInterval)
	}
	if c.Sync != "" {
		var p store.SyncPolicy
		if err := p.UnmarshalText([]byte(c.Sync)); err != nil {
			return fmt.Errorf("%w: sync %q: want always, everysecond or never", ErrConfig, c.Sync)
		}
	}
	if err := validateKeep("keep", c.Keep); err != nil {
		return err
	}
	if err := validateKeep("keep per sensor", c.KeepPerSensor); err != nil {
		return err
	}
	if c.Broker != "" {
		u, err := url.Parse(c.Broker)
		if err != nil || u.Host == "" {
			return fmt.Errorf("%w: broker %q: not a URL like tcp://host:1883", ErrConfig, c.Broker)
		}
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.TopicPrefix == "" {
		c.TopicPrefix = DefaultTopicPrefix
	}
	c.TopicPrefix = strings.TrimSuffix(c.TopicPrefix, "/")
	if c.ClientID == "" {
		host, _ := os.Hostname()
		c.ClientID = "peerwatch-collectord-" + host
	}
	if c.FlushInterval == 0 {
		c.FlushInterval = DefaultFlushInterval
	}
	if c.Sync == "" {
		c.Sync = DefaultSync
	}
	switch {
	case c.ResendGrace == 0:
		c.ResendGrace = DefaultResendGrace
	case c.ResendGrace < 0:
		c.ResendGrace = 0
	}
	if c.ResendRetry == 0 {
		c.ResendRetry = DefaultResendRetry
	}
	return c
}

func levelNames() []string {
	var out []string
	for _, w := range windowWidths() {
		out = append(out, collector.LevelName(w))
	}
	return out
}

// validateKeep checks counts of windows by level name (Keep,
// KeepPerSensor); what names them in errors.
func validateKeep(what string, counts map[string]int) error {
	for name, n := range counts {
		if !slices.Contains(levelNames(), name) {
			return fmt.Errorf("%w: %s %s: unknown level, want one of %s", ErrConfig, what, name, strings.Join(levelNames(), ", "))
		}
		if n < 1 || n > MaxKeep {
			return fmt.Errorf("%w: %s %s=%d: want 1 to %d windows", ErrConfig, what, name, n, MaxKeep)
		}
	}
	return nil
}

// Levels are the aggregation levels, finest first, with the windows each
// keeps (Config.Keep or the default) and of those the windows that keep
// per-sensor views (Config.KeepPerSensor, else all of them).
func (c Config) Levels() []collector.LevelState {
	var out []collector.LevelState
	keep := windowKeep()
	for i, w := range windowWidths() {
		name := collector.LevelName(w)
		n := keep[i]
		if k, ok := c.Keep[name]; ok {
			n = k
		}
		v := n
		if k, ok := c.KeepPerSensor[name]; ok {
			v = k
		}
		out = append(out, collector.LevelState{Name: name, Width: w, Keep: n, ViewKeep: min(v, n)})
	}
	return out
}

// FormatKeep writes the windows each level keeps as ParseKeep reads them:
// "1m=60,1h=48,1d=30".
func FormatKeep(levels []collector.LevelState) string {
	return formatCounts(levels, func(l collector.LevelState) int { return l.Keep })
}

// FormatKeepPerSensor writes the windows of each level that keep their
// per-sensor views, as ParseKeep reads them: "1m=60,1h=48,1d=30".
func FormatKeepPerSensor(levels []collector.LevelState) string {
	return formatCounts(levels, func(l collector.LevelState) int { return l.ViewKeep })
}

func formatCounts(levels []collector.LevelState, count func(collector.LevelState) int) string {
	parts := make([]string, len(levels))
	for i, l := range levels {
		parts[i] = fmt.Sprintf("%s=%d", l.Name, count(l))
	}
	return strings.Join(parts, ",")
}

// ParseKeep reads "1m=120,1d=60" into Config.Keep or Config.KeepPerSensor.
func ParseKeep(s string) (map[string]int, error) {
	out := map[string]int{}
	if s == "" {
		return out, nil
	}
	for _, kv := range strings.Split(s, ",") {
		name, n, ok := strings.Cut(strings.TrimSpace(kv), "=")
		count, err := strconv.Atoi(n)
		if !ok || err != nil || name == "" {
			return nil, fmt.Errorf("%w: keep %q: want LEVEL=COUNT, e.g. 1m=60", ErrConfig, kv)
		}
		out[name] = count
	}
	return out, nil
}

// Filters are the subscriptions that receive every sensor message:
// <prefix>/+/+, or with ShareGroup the sensors' summaries, alerts and lost
// reports as members of the group, and their status messages each: a
// broker does not send retained messages to a shared subscription, and
// every collector of the group needs to know which sensors are online.
func (c Config) Filters() []string {
	prefix := c.withDefaults().TopicPrefix
	if c.ShareGroup == "" {
		return []string{prefix + "/+/+"}
	}
	var out []string
	for _, kind := range []string{"summary", "alert", collector.KindLost} {
		out = append(out, "$share/"+c.ShareGroup+"/"+prefix+"/+/"+kind)
	}
	return append(out, prefix+"/+/status")
}

// Daemon is one collector with its message source and API.
type Daemon struct {
	cfg Config
	log *slog.Logger
	col *collector.Collector
	st  *fleetstore.Store // nil without DataDir
	now func() time.Time
	// subscribed: the subscription to the broker is in place.
	subscribed atomic.Bool
	sec        security
	// resendPublished counts the resend requests published (repair.go).
	resendPublished atomic.Uint64
	// broker is the embedded broker while it serves.
	broker  atomic.Pointer[mochi.Server]
	httpSec *httpSecurity

	mu        sync.Mutex
	rejectLog map[string]time.Time // reason -> last logged
	skipped   map[string]uint64    // reason -> rejects not logged since
}

// New returns a daemon; log may be nil.
func New(cfg Config, log *slog.Logger) (*Daemon, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	sec, err := loadSecurity(cfg, log)
	if err != nil {
		return nil, err
	}
	httpSec, err := loadHTTPSecurity(cfg.HTTPSecurity)
	if err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	opts := collector.Options{TopicPrefix: cfg.TopicPrefix}
	for _, l := range cfg.Levels() {
		opts.Windows = append(opts.Windows, l.Width)
		opts.Retention = append(opts.Retention, l.Keep)
		opts.ViewRetention = append(opts.ViewRetention, l.ViewKeep)
	}
	d := &Daemon{
		cfg:       cfg,
		sec:       sec,
		httpSec:   httpSec,
		log:       log.With("component", "collectord"),
		col:       collector.New(opts, log),
		now:       time.Now,
		rejectLog: make(map[string]time.Time),
		skipped:   make(map[string]uint64),
	}
	if cfg.DataDir != "" {
		var sync store.SyncPolicy
		_ = sync.UnmarshalText([]byte(cfg.Sync)) // checked by Validate
		st, err := fleetstore.Open(fleetstore.Path(cfg.DataDir), d.col, fleetstore.Options{Sync: sync}, log)
		if err != nil {
			return nil, fmt.Errorf("data dir %s: %w", cfg.DataDir, err)
		}
		d.st = st
	} else {
		d.log.Warn("no data dir: the collector's state is in memory only, a restart loses it")
	}
	return d, nil
}

// StoreStats returns the statistics of the store; false without one.
func (d *Daemon) StoreStats() (fleetstore.Stats, bool) {
	if d.st == nil {
		return fleetstore.Stats{}, false
	}
	return d.st.Stats(), true
}

// Close releases the store of a daemon that Run did not run (Run closes it
// when it returns).
func (d *Daemon) Close() error {
	if d.st == nil {
		return nil
	}
	err := d.st.Close()
	if errors.Is(err, store.ErrClosed) {
		return nil
	}
	return err
}

// flush writes the collector's state to the store, if there is one.
func (d *Daemon) flush() error {
	if d.st == nil {
		return nil
	}
	return d.st.Flush()
}

// Collector is the daemon's collector.
func (d *Daemon) Collector() *collector.Collector { return d.col }

// Subscribed tells whether the collector currently receives messages: the
// embedded broker is serving, or the subscription to Broker was
// acknowledged on the current connection.
func (d *Daemon) Subscribed() bool { return d.subscribed.Load() }

// handle takes one MQTT message. With a store, an accepted summary or
// alert is journaled before handle returns, and so before the message is
// acknowledged; the error is that of the journal write (a refused message
// is counted and logged, not returned).
func (d *Daemon) handle(topic string, payload []byte) error {
	errc := make(chan error, 1)
	d.handleAsync(topic, payload, func(err error) { errc <- err })
	return <-errc
}

// handleAsync is handle that calls done, maybe later and from another
// goroutine, instead of returning: after the journal write for an
// accepted summary or alert, at once for anything else. The journal
// writes the messages waiting for it together, with one fsync.
func (d *Daemon) handleAsync(topic string, payload []byte, done func(error)) {
	now := d.now()
	err := d.col.Handle(topic, payload, now)
	if err == nil {
		if d.st == nil || !(strings.HasSuffix(topic, "/summary") || strings.HasSuffix(topic, "/alert")) {
			done(nil)
			return
		}
		d.st.JournalAsync(topic, payload, now, func(err error) {
			if err != nil {
				if skipped, ok := d.logNow("journal", now); ok {
					d.log.Error("journal write failed: the message is counted, but only the next flush keeps it",
						"topic", topic, "err", err, "not_logged_since", skipped)
				}
			}
			done(err)
		})
		return
	}
	defer done(nil)
	reason := collector.Reason(err)
	if skipped, ok := d.logNow(reason, now); ok {
		d.log.Warn("rejected message", "reason", reason, "err", err, "not_logged_since", skipped)
	}
}

// logNow rate-limits the log lines of one kind to one per
// RejectLogInterval; it returns whether to log now and how many were
// not logged since the last one.
func (d *Daemon) logNow(kind string, now time.Time) (skipped uint64, ok bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	last, seen := d.rejectLog[kind]
	if seen && now.Sub(last) < RejectLogInterval {
		d.skipped[kind]++
		return 0, false
	}
	skipped = d.skipped[kind]
	d.rejectLog[kind] = now
	d.skipped[kind] = 0
	return skipped, true
}

// Run feeds the collector and serves the API on ln until ctx ends.
func (d *Daemon) Run(ctx context.Context, ln net.Listener) error {
	g, ctx := errgroup.WithContext(ctx)
	srv := &http.Server{Handler: d.Handler(), ReadHeaderTimeout: 10 * time.Second}
	if d.httpSec.tls != nil {
		ln = tls.NewListener(ln, d.httpSec.tls)
	}
	switch {
	case loopback(ln.Addr()):
	case d.httpSec.users == nil:
		d.log.Warn("the dashboard and API answer anyone who reaches them: add --listen-password-file, or listen on loopback", "addr", ln.Addr().String())
	case d.httpSec.tls == nil:
		d.log.Warn("the dashboard and API take passwords over plain HTTP: add --listen-cert and --listen-key", "addr", ln.Addr().String())
	}
	g.Go(func() error {
		d.log.Info("serving the dashboard and API", "addr", ln.Addr().String(),
			"https", d.httpSec.tls != nil, "authentication", d.httpSec.users != nil)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve api on %s: %w", ln.Addr(), err)
		}
		return nil
	})
	g.Go(func() error {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	})
	if d.cfg.EmbeddedBroker != "" {
		g.Go(func() error { return d.runEmbedded(ctx) })
	} else {
		g.Go(func() error { return d.runSubscriber(ctx) })
	}
	if d.st != nil {
		g.Go(func() error { d.flushLoop(ctx); return nil })
	}
	err := g.Wait()
	if d.st != nil {
		// The message source has stopped: the last flush.
		if ferr := d.flush(); ferr != nil {
			err = errors.Join(err, ferr)
		}
		if cerr := d.Close(); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}
	return err
}

// flushLoop flushes every FlushInterval until ctx ends.
func (d *Daemon) flushLoop(ctx context.Context) {
	t := time.NewTicker(d.cfg.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := d.flush(); err != nil {
				if skipped, ok := d.logNow("flush", d.now()); ok {
					d.log.Error("flush failed; the journal keeps the messages, the next flush writes everything",
						"err", err, "not_logged_since", skipped)
				}
			}
		}
	}
}

// collectHook feeds the collector from the embedded broker. It runs in
// OnPublish, which mochi calls before it sends the PUBACK to the sensor
// (server.go, processPublish, v2.7.9), whereas inline subscriptions are
// called after the PUBACK: so a summary is journaled before the sensor
// drops it from its outbox. A journal write that fails rejects the
// packet: no PUBACK, and the sensor publishes it again.
type collectHook struct {
	mochi.HookBase
	d      *Daemon
	prefix string // "<topic prefix>/"
}

func (h *collectHook) ID() string { return "peerwatch-collector" }

func (h *collectHook) Provides(b byte) bool { return b == mochi.OnPublish }

func (h *collectHook) OnPublish(_ *mochi.Client, pk packets.Packet) (packets.Packet, error) {
	rest, ok := strings.CutPrefix(pk.TopicName, h.prefix)
	if !ok || strings.Count(rest, "/") != 1 {
		return pk, nil // not <prefix>/+/+
	}
	if err := h.d.handle(pk.TopicName, pk.Payload); err != nil {
		return pk, packets.ErrRejectPacket
	}
	return pk, nil
}

// runEmbedded runs mochi in-process and feeds the collector from an inline
// subscription: no network hop.
func (d *Daemon) runEmbedded(ctx context.Context) error {
	log := d.log.With("broker", "embedded", "addr", d.cfg.EmbeddedBroker)
	s := mochi.New(&mochi.Options{InlineClient: true, Logger: d.log.With("component", "mochi")})
	if err := d.addAuthHook(s); err != nil {
		return fmt.Errorf("embedded broker auth hook: %w", err)
	}
	ln, err := d.embeddedListener()
	if err != nil {
		return err
	}
	if err := s.AddListener(listeners.NewNet("tcp", ln)); err != nil {
		_ = ln.Close()
		return fmt.Errorf("embedded broker listener %s: %w", d.cfg.EmbeddedBroker, err)
	}
	if err := s.AddHook(&collectHook{d: d, prefix: d.cfg.TopicPrefix + "/"}, nil); err != nil {
		return fmt.Errorf("embedded broker collector hook: %w", err)
	}
	if err := s.Serve(); err != nil {
		_ = s.Close()
		return fmt.Errorf("embedded broker on %s: %w", d.cfg.EmbeddedBroker, err)
	}
	log.Info("embedded broker running", "filter", d.cfg.Filters(), "tls", d.sec.embeddedTLS != nil, "gap_repair", d.RepairEnabled())
	d.subscribed.Store(true)
	d.broker.Store(s)
	defer d.broker.Store(nil)
	// The requests go out through the inline client, which the ACL does
	// not restrict; sensors may read, not write, their resend topic.
	d.repairLoop(ctx, func(topic string, payload []byte) error { return s.Publish(topic, payload, true, 1) })
	<-ctx.Done()
	d.subscribed.Store(false)
	if err := s.Close(); err != nil {
		return fmt.Errorf("close embedded broker: %w", err)
	}
	return nil
}

// runSubscriber subscribes to an external broker, again after every
// reconnect, until ctx ends.
func (d *Daemon) runSubscriber(ctx context.Context) error {
	log := d.log.With("broker", d.cfg.Broker, "client_id", d.cfg.ClientID)
	mqttlog.Route(log)
	filters := make(map[string]byte)
	for _, f := range d.cfg.Filters() {
		filters[f] = 1 // QoS 1
	}
	// paho acknowledges a message when the handler calls Ack, after handle
	// journaled it. The session is persistent (clean session off, a
	// stable client id): the broker keeps the subscription and queues what
	// arrives while the collector is away, and sends that right after
	// CONNECT, before the SUBSCRIBE below is sent again; the default
	// handler takes those.
	// A message whose journal write failed is not acknowledged: the broker
	// sends it again on the next connection (the collector drops it as a
	// duplicate if the state that holds it was flushed meanwhile).
	// The handler does not wait for the journal: the ack follows its write,
	// so the writes of messages that arrive meanwhile share one fsync. It
	// hands each message to a worker of its sensor (dispatch.go).
	disp := newDispatcher(d.handleAsync)
	handler := func(_ mqtt.Client, m mqtt.Message) {
		disp.send(message{topic: m.Topic(), payload: m.Payload(), ack: m.Ack})
	}
	o := mqtt.NewClientOptions().AddBroker(d.cfg.Broker).SetClientID(d.cfg.ClientID).
		SetCleanSession(false).SetDefaultPublishHandler(handler).SetAutoAckDisabled(true).SetAutoReconnect(true).SetConnectRetry(true).SetConnectRetryInterval(5 * time.Second).
		SetMaxReconnectInterval(time.Minute).SetKeepAlive(30 * time.Second)
	// conn numbers the connections, so that the SUBACK of one that was
	// lost meanwhile does not mark the collector subscribed.
	var connMu sync.Mutex
	conn := 0
	o.SetOnConnectHandler(func(c mqtt.Client) {
		log.Info("connected; subscribing", "filters", d.cfg.Filters())
		connMu.Lock()
		conn++
		this := conn
		connMu.Unlock()
		// The handler runs inline in paho's router and only queues the
		// message for its worker, which waits neither for the lock long
		// nor for the journal: it does not block the connection for long.
		tok := c.SubscribeMultiple(filters, handler)
		go func() {
			// A broker that holds a backlog for the session sends it
			// before the SUBACK, which then takes as long as the
			// collector takes the backlog: wait on.
			for waited := 30 * time.Second; !tok.WaitTimeout(30 * time.Second); waited += 30 * time.Second {
				if ctx.Err() != nil {
					return // shutting down
				}
				log.Warn("no SUBACK yet; waiting on (a broker sends the session's backlog first)", "filters", d.cfg.Filters(), "waited", waited)
			}
			switch {
			case tok.Error() != nil && ctx.Err() != nil:
				log.Debug("subscribe ended by the shutdown", "err", tok.Error())
			case tok.Error() != nil:
				log.Error("subscribe failed", "filters", d.cfg.Filters(), "err", tok.Error())
			default:
				for f, qos := range tok.(*mqtt.SubscribeToken).Result() {
					if qos > 2 {
						log.Error("subscription refused by the broker", "filter", f, "code", qos)
						return
					}
				}
				connMu.Lock()
				if conn == this {
					d.subscribed.Store(true)
				}
				connMu.Unlock()
			}
		}()
	})
	o.SetConnectionLostHandler(func(_ mqtt.Client, err error) {
		connMu.Lock()
		conn++
		d.subscribed.Store(false)
		connMu.Unlock()
		log.Warn("connection lost; reconnecting", "err", err)
	})
	d.secureSubscriber(o)
	if u, err := url.Parse(d.cfg.Broker); err == nil && slices.Contains(bufferedSchemes, u.Scheme) {
		o.SetCustomOpenConnectionFn(dialBroker)
	}
	c := mqtt.NewClient(o)
	c.Connect() // with ConnectRetry it retries in the background
	d.repairLoop(ctx, func(topic string, payload []byte) error {
		tok := c.Publish(topic, 1, true, payload)
		if !tok.WaitTimeout(10 * time.Second) {
			return errors.New("no PUBACK in 10s")
		}
		return tok.Error()
	})
	<-ctx.Done()
	c.Disconnect(250)
	disp.close()
	return nil
}
