// Package collectord runs the fleet collector: it feeds the messages the
// sensors publish over MQTT (docs/mqtt.md) to a collector.Collector, either
// from an embedded mochi-mqtt broker or from a paho subscriber to an
// external broker, and serves the fleet's view as a JSON API
// (docs/collectord.md).
package collectord

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
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
)

// Defaults of Config.
const (
	DefaultTopicPrefix = collector.DefaultTopicPrefix
	DefaultListen      = "127.0.0.1:9200"
	// RejectLogInterval is how often a reject of one reason is logged.
	RejectLogInterval = time.Minute
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
	// ShareGroup, with Broker, subscribes $share/<ShareGroup>/... so that
	// several collectors split the messages.
	ShareGroup string
	// ClientID of the subscriber to Broker (default
	// "peerwatch-collectord-<host>-<pid>").
	ClientID string
	// TopicPrefix is the first level(s) of the sensors' topics.
	TopicPrefix string
}

// Validate names the first invalid field and the reason.
func (c Config) Validate() error {
	if err := c.validateSecurity(); err != nil {
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
		c.ClientID = fmt.Sprintf("peerwatch-collectord-%s-%d", host, os.Getpid())
	}
	return c
}

// Filter is the subscription that receives every sensor message.
func (c Config) Filter() string {
	f := c.withDefaults().TopicPrefix + "/+/+"
	if c.ShareGroup != "" {
		f = "$share/" + c.ShareGroup + "/" + f
	}
	return f
}

// Daemon is one collector with its message source and API.
type Daemon struct {
	cfg Config
	log *slog.Logger
	col *collector.Collector
	now func() time.Time
	// subscribed: the subscription to the broker is in place.
	subscribed atomic.Bool
	sec        security

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
	cfg = cfg.withDefaults()
	return &Daemon{
		cfg:       cfg,
		sec:       sec,
		log:       log.With("component", "collectord"),
		col:       collector.New(collector.Options{TopicPrefix: cfg.TopicPrefix, Windows: windowWidths(), Retention: windowKeep()}, log),
		now:       time.Now,
		rejectLog: make(map[string]time.Time),
		skipped:   make(map[string]uint64),
	}, nil
}

// Collector is the daemon's collector.
func (d *Daemon) Collector() *collector.Collector { return d.col }

// Subscribed tells whether the collector currently receives messages: the
// embedded broker is serving, or the subscription to Broker was
// acknowledged on the current connection.
func (d *Daemon) Subscribed() bool { return d.subscribed.Load() }

// handle takes one MQTT message; it never blocks on I/O.
func (d *Daemon) handle(topic string, payload []byte) {
	now := d.now()
	err := d.col.Handle(topic, payload, now)
	if err == nil {
		return
	}
	reason := collector.Reason(err)
	d.mu.Lock()
	last, ok := d.rejectLog[reason]
	if ok && now.Sub(last) < RejectLogInterval {
		d.skipped[reason]++
		d.mu.Unlock()
		return
	}
	skipped := d.skipped[reason]
	d.rejectLog[reason] = now
	d.skipped[reason] = 0
	d.mu.Unlock()
	d.log.Warn("rejected message", "reason", reason, "err", err, "not_logged_since", skipped)
}

// Run feeds the collector and serves the API on ln until ctx ends.
func (d *Daemon) Run(ctx context.Context, ln net.Listener) error {
	g, ctx := errgroup.WithContext(ctx)
	srv := &http.Server{Handler: d.Handler(), ReadHeaderTimeout: 10 * time.Second}
	g.Go(func() error {
		d.log.Info("serving the API", "addr", ln.Addr().String())
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
	return g.Wait()
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
	if err := s.Subscribe(d.cfg.Filter(), 1, func(_ *mochi.Client, _ packets.Subscription, pk packets.Packet) {
		d.handle(pk.TopicName, pk.Payload)
	}); err != nil {
		return fmt.Errorf("embedded broker subscribe %s: %w", d.cfg.Filter(), err)
	}
	if err := s.Serve(); err != nil {
		_ = s.Close()
		return fmt.Errorf("embedded broker on %s: %w", d.cfg.EmbeddedBroker, err)
	}
	log.Info("embedded broker running", "filter", d.cfg.Filter(), "tls", d.sec.embeddedTLS != nil)
	d.subscribed.Store(true)
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
	filter := d.cfg.Filter()
	o := mqtt.NewClientOptions().AddBroker(d.cfg.Broker).SetClientID(d.cfg.ClientID).
		SetCleanSession(true).SetAutoReconnect(true).SetConnectRetry(true).SetConnectRetryInterval(5 * time.Second).
		SetMaxReconnectInterval(time.Minute).SetKeepAlive(30 * time.Second)
	o.SetOnConnectHandler(func(c mqtt.Client) {
		log.Info("connected; subscribing", "filter", filter)
		// The handler runs inline in paho's router; collector.Handle is
		// in-memory and fast, so it does not block the connection.
		tok := c.Subscribe(filter, 1, func(_ mqtt.Client, m mqtt.Message) { d.handle(m.Topic(), m.Payload()) })
		go func() {
			switch {
			case !tok.WaitTimeout(30 * time.Second):
				log.Error("subscribe timed out", "filter", filter)
			case tok.Error() != nil:
				log.Error("subscribe failed", "filter", filter, "err", tok.Error())
			default:
				d.subscribed.Store(true)
			}
		}()
	})
	o.SetConnectionLostHandler(func(_ mqtt.Client, err error) {
		d.subscribed.Store(false)
		log.Warn("connection lost; reconnecting", "err", err)
	})
	d.secureSubscriber(o)
	c := mqtt.NewClient(o)
	c.Connect() // with ConnectRetry it retries in the background
	<-ctx.Done()
	c.Disconnect(250)
	return nil
}
