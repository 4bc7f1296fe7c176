// Package uplink publishes the sensor's outbox to an MQTT broker (paho,
// MQTT 3.1.1, QoS 1), strictly in sequence order, and removes an item from
// the outbox only after the broker's PUBACK. The outbox (sensor/store) is
// the source of truth for delivery: paho keeps nothing on disk and no
// session state is relied on, so a broker outage, a lost connection or a
// reboot delays messages but loses none; at most the message in flight at
// the cut is delivered twice. docs/uplink.md describes topics and
// semantics.
package uplink

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/peerwatch/peerwatch/sensor/mqttlog"
	"github.com/peerwatch/peerwatch/sensor/summary"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/peerwatch/peerwatch/sensor/store"
	"github.com/peerwatch/peerwatch/sensor/wallclock"
)

// Defaults of Config.
const (
	DefaultTopicPrefix    = "peerwatch"
	DefaultKeepAlive      = 30 * time.Second
	DefaultPublishTimeout = 10 * time.Second
	DefaultPoll           = 5 * time.Second
	DefaultMaxBackoff     = time.Minute
)

// Topic kinds, the last level of a topic.
const (
	KindSummary = "summary"
	KindAlert   = "alert"
	KindStatus  = "status"
)

// batch is how many outbox items one read takes.
const batch = 64

// ErrConfig: the configuration is invalid.
var ErrConfig = errors.New("invalid uplink config")

// Config of the uplink. An empty Broker disables it.
type Config struct {
	// Broker is the broker's URL: tcp://host:1883, ssl://host:8883 (also
	// mqtt://, mqtts://, tls://).
	Broker   string
	SensorID string // the topic level that names the sensor
	ClientID string // default "peerwatch-<SensorID>"
	// TopicPrefix is the first level(s) of every topic (default
	// "peerwatch").
	TopicPrefix string
	Username    string
	Password    string
	// CAFile verifies the broker (default: the system roots); CertFile and
	// KeyFile are the client certificate, both or neither.
	CAFile, CertFile, KeyFile string
	KeepAlive                 time.Duration // default 30 s
	// PublishTimeout bounds the wait for a PUBACK (default 10 s).
	PublishTimeout time.Duration
	// Poll is how often the outbox is read without a Notify (default 5 s).
	Poll time.Duration
	// MaxBackoff caps the wait between retries and reconnects (default
	// 1 min).
	MaxBackoff time.Duration
	// Version and Board go into the online status message.
	Version, Board string
	// Resend looks up a summary the collector asks for again (gap repair,
	// resend.go); nil turns gap repair off: the uplink does not subscribe
	// to its resend topic.
	Resend ResendSource
	// ResendPerMinute bounds the summaries looked up for the collector per
	// minute (default DefaultResendPerMinute).
	ResendPerMinute int
}

// Enabled reports whether a broker is configured.
func (c Config) Enabled() bool { return c.Broker != "" }

// Validate names the first field that is wrong and why. A disabled config
// is valid.
func (c Config) Validate() error {
	if !c.Enabled() {
		return nil
	}
	u, err := url.Parse(c.Broker)
	if err != nil {
		return fmt.Errorf("%w: Broker %q: %w", ErrConfig, c.Broker, err)
	}
	switch u.Scheme {
	case "tcp", "mqtt", "ssl", "tls", "mqtts":
	default:
		return fmt.Errorf("%w: Broker %q: want tcp://, mqtt://, ssl://, tls:// or mqtts://", ErrConfig, c.Broker)
	}
	if u.Host == "" {
		return fmt.Errorf("%w: Broker %q: no host", ErrConfig, c.Broker)
	}
	if err := ValidateSensorID(c.SensorID); err != nil {
		return fmt.Errorf("%w: SensorID: %w", ErrConfig, err)
	}
	if p := c.TopicPrefix; p != "" {
		if strings.ContainsAny(p, "+#\x00") || !utf8.ValidString(p) || strings.HasPrefix(p, "/") ||
			strings.HasSuffix(p, "/") || strings.Contains(p, "//") || strings.HasPrefix(p, "$") {
			return fmt.Errorf("%w: TopicPrefix %q: want topic levels without '+', '#', '$' at the start, or empty levels", ErrConfig, p)
		}
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return fmt.Errorf("%w: CertFile and KeyFile: want both or neither", ErrConfig)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"KeepAlive", c.KeepAlive}, {"PublishTimeout", c.PublishTimeout}, {"Poll", c.Poll}, {"MaxBackoff", c.MaxBackoff}} {
		if d.v < 0 {
			return fmt.Errorf("%w: %s %v: want 0 (default) or more", ErrConfig, d.name, d.v)
		}
	}
	if c.ResendPerMinute < 0 {
		return fmt.Errorf("%w: ResendPerMinute %d: want 0 (default) or more", ErrConfig, c.ResendPerMinute)
	}
	if c.KeepAlive > 0 && c.KeepAlive < time.Second {
		return fmt.Errorf("%w: KeepAlive %v: want at least 1s", ErrConfig, c.KeepAlive)
	}
	return nil
}

// ValidateSensorID checks that id is 1 to 64 of A-Z a-z 0-9 . _ -
// (docs/mqtt.md), so that it is always one topic level, never '+', '#'
// or '/'.
func ValidateSensorID(id string) error {
	if !summary.ValidSensorID(id) {
		return fmt.Errorf("%q: want 1 to 64 of A-Z a-z 0-9 . _ -", id)
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.TopicPrefix == "" {
		c.TopicPrefix = DefaultTopicPrefix
	}
	if c.ClientID == "" {
		c.ClientID = "peerwatch-" + c.SensorID
	}
	if c.KeepAlive == 0 {
		c.KeepAlive = DefaultKeepAlive
	}
	if c.PublishTimeout == 0 {
		c.PublishTimeout = DefaultPublishTimeout
	}
	if c.Poll == 0 {
		c.Poll = DefaultPoll
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = DefaultMaxBackoff
	}
	if c.ResendPerMinute == 0 {
		c.ResendPerMinute = DefaultResendPerMinute
	}
	return c
}

// Topic returns "<prefix>/<sensor id>/<kind>".
func Topic(prefix, sensorID, kind string) string {
	if prefix == "" {
		prefix = DefaultTopicPrefix
	}
	return prefix + "/" + sensorID + "/" + kind
}

// Queue is the outbox the uplink drains; *store.Store satisfies it.
type Queue interface {
	Outbox(limit int) ([]store.OutboxItem, error)
	Ack(seq uint64) error
	OutboxLen() int
	// Enqueue is used by PublishAlert.
	Enqueue(topic string, payload []byte, seq uint64) error
}

var _ Queue = (*store.Store)(nil)

// Status of the uplink, for the status page.
type Status struct {
	// State is "disabled", "connecting", "connected" or
	// "backing off: <error>".
	State     string
	Outbox    int       // items waiting in the outbox
	Published uint64    // items acknowledged by the broker since start
	LastAck   time.Time // zero: none yet
	// Gap repair since start: summaries queued again for the collector,
	// seqs reported lost (not held any more), resend requests refused.
	Resent, ReportedLost, ResendRefused uint64
}

// Uplink publishes the outbox. Run it once; its other methods are safe
// for concurrent use.
type Uplink struct {
	cfg  Config
	q    Queue
	log  *slog.Logger
	wake chan struct{}
	lost chan struct{} // the connection was lost: stop waiting for a PUBACK
	err  error         // of the config, reported by Run

	mu        sync.Mutex
	state     string
	published uint64
	lastAck   time.Time
	lastAlert uint64 // outbox number of the last alert (or lost report)
	rs        resendState
}

// New returns an uplink for cfg. An invalid cfg is reported by Run.
func New(cfg Config, q Queue, log *slog.Logger) *Uplink {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "uplink")
	mqttlog.Route(log)
	u := &Uplink{q: q, log: log, wake: make(chan struct{}, 1), lost: make(chan struct{}, 1), state: "disabled"}
	u.err = cfg.Validate()
	u.cfg = cfg.withDefaults()
	return u
}

// Enabled reports whether a broker is configured.
func (u *Uplink) Enabled() bool { return u.cfg.Enabled() }

// SummaryTopic is the topic sensord enqueues summaries under.
func (u *Uplink) SummaryTopic() string { return u.topic(KindSummary) }

func (u *Uplink) topic(kind string) string { return Topic(u.cfg.TopicPrefix, u.cfg.SensorID, kind) }

// Notify wakes the uplink up after an Enqueue; it never blocks.
func (u *Uplink) Notify() {
	select {
	case u.wake <- struct{}{}:
	default:
	}
}

// alertBase is the start of the outbox numbers of alerts: the upper half
// of the number space, so that alerts never spend a summary's sequence
// number (the collector reports gaps in those) and sort after them.
const alertBase = uint64(1) << 63

// PublishAlert puts an alert in the outbox (topic <prefix>/<id>/alert)
// and wakes the uplink up. Its outbox number is alertBase + the Unix time
// in nanoseconds (kept increasing), so it is published after the
// summaries waiting in the outbox, and alerts in the order they came.
func (u *Uplink) PublishAlert(payload []byte) error {
	if !u.cfg.Enabled() {
		return nil
	}
	u.mu.Lock()
	seq := u.nextAlertSeqLocked()
	u.mu.Unlock()
	if err := u.q.Enqueue(u.topic(KindAlert), payload, seq); err != nil {
		return fmt.Errorf("publish alert: %w", err)
	}
	u.Notify()
	return nil
}

// nextAlertSeqLocked hands out the outbox number of an alert or a lost
// report; u.mu is held.
func (u *Uplink) nextAlertSeqLocked() uint64 {
	seq := max(alertBase|uint64(wallclock.Now().UnixNano()), u.lastAlert+1)
	u.lastAlert = seq
	return seq
}

// State returns the uplink's status.
func (u *Uplink) State() Status {
	u.mu.Lock()
	s := Status{State: u.state, Published: u.published, LastAck: u.lastAck,
		Resent: u.rs.resent, ReportedLost: u.rs.reportedLost, ResendRefused: u.rs.refused}
	u.mu.Unlock()
	s.Outbox = u.q.OutboxLen()
	return s
}

func (u *Uplink) setState(s string) {
	u.mu.Lock()
	u.state = s
	u.mu.Unlock()
}

type statusMessage struct {
	State   string `json:"state"`
	Version string `json:"version,omitempty"`
	Board   string `json:"board,omitempty"`
}

// Run connects to the broker and publishes the outbox until ctx is done;
// then it publishes the offline status and disconnects. It returns nil
// at once when the uplink is disabled, and an error when the config is
// invalid.
func (u *Uplink) Run(ctx context.Context) error {
	if u.err != nil {
		return u.err
	}
	if !u.cfg.Enabled() {
		u.setState("disabled")
		u.log.Info("uplink disabled: no broker configured")
		return nil
	}
	opts, err := u.clientOptions()
	if err != nil {
		return err
	}
	connected := make(chan struct{}, 1)
	opts.SetOnConnectHandler(func(c mqtt.Client) {
		u.setState("connected")
		u.log.Info("connected to the broker", "broker", u.cfg.Broker)
		u.publishStatus(c, "online")
		u.subscribeResend(c)
		select {
		case connected <- struct{}{}:
		default:
		}
	})
	opts.SetConnectionLostHandler(func(_ mqtt.Client, err error) {
		u.setState("connecting")
		u.log.Warn("connection to the broker lost; reconnecting", "broker", u.cfg.Broker, "err", err)
		select {
		case u.lost <- struct{}{}:
		default:
		}
	})
	c := mqtt.NewClient(opts)
	u.setState("connecting")
	c.Connect() // with ConnectRetry, paho keeps trying in the background
	defer u.shutdown(c)

	backoff := time.Duration(0)
	poll := time.NewTicker(u.cfg.Poll)
	defer poll.Stop()
	for {
		if !c.IsConnectionOpen() {
			select {
			case <-ctx.Done():
				return nil
			case <-connected:
			case <-poll.C:
			}
			continue
		}
		u.serveResendContext(ctx)
		n, err := u.drain(ctx, c)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			backoff = min(max(2*backoff, time.Second), u.cfg.MaxBackoff)
			u.setState("backing off: " + err.Error())
			u.log.Warn("publish failed; retrying", "err", err, "backoff", backoff)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(backoff):
			}
			if c.IsConnectionOpen() {
				u.setState("connected")
			} else {
				u.setState("connecting")
			}
			continue
		}
		backoff = 0
		if n > 0 {
			continue // there may be more
		}
		select {
		case <-ctx.Done():
			return nil
		case <-u.wake:
		case <-poll.C:
		case <-connected:
		}
	}
}

// drain publishes the oldest outbox items in order, each after the one
// before it was acknowledged and removed; it returns how many it
// published.
func (u *Uplink) drain(ctx context.Context, c mqtt.Client) (int, error) {
	items, err := u.q.Outbox(batch)
	if err != nil {
		return 0, err
	}
	for i, it := range items {
		if err := u.publish(ctx, c, it.Topic, it.Payload); err != nil {
			return i, fmt.Errorf("publish %d to %s: %w", it.Seq, it.Topic, err)
		}
		if err := u.q.Ack(it.Seq); err != nil {
			return i, fmt.Errorf("ack %d: %w", it.Seq, err)
		}
		u.mu.Lock()
		u.published++
		u.lastAck = wallclock.Now()
		u.mu.Unlock()
	}
	return len(items), nil
}

var errTimeout = errors.New("no PUBACK in time")

// publish sends one QoS 1 message and waits for its PUBACK.
func (u *Uplink) publish(ctx context.Context, c mqtt.Client, topic string, payload []byte) error {
	select {
	case <-u.lost: // a loss before this publish
	default:
	}
	if !c.IsConnectionOpen() {
		return mqtt.ErrNotConnected
	}
	tok := c.Publish(topic, 1, false, payload)
	t := time.NewTimer(u.cfg.PublishTimeout)
	defer t.Stop()
	select {
	case <-tok.Done():
		return tok.Error()
	case <-t.C:
		return fmt.Errorf("%w (%v)", errTimeout, u.cfg.PublishTimeout)
	case <-u.lost:
		// paho keeps no copy to resend (publishStore): publish it again.
		return errors.New("connection lost before the PUBACK")
	case <-ctx.Done():
		return ctx.Err()
	}
}

// publishStatus publishes the retained status without waiting (it runs in
// paho's handlers, which must not block).
func (u *Uplink) publishStatus(c mqtt.Client, state string) mqtt.Token {
	b, _ := json.Marshal(statusMessage{State: state, Version: u.cfg.Version, Board: u.cfg.Board})
	tok := c.Publish(u.topic(KindStatus), 1, true, b)
	go func() {
		if !tok.WaitTimeout(u.cfg.PublishTimeout) {
			u.log.Warn("publish status: no PUBACK in time", "state", state)
		} else if err := tok.Error(); err != nil {
			u.log.Warn("publish status", "state", state, "err", err)
		}
	}()
	return tok
}

// shutdown publishes the offline status (when connected) and disconnects.
func (u *Uplink) shutdown(c mqtt.Client) {
	if c.IsConnectionOpen() {
		tok := u.publishStatus(c, "offline")
		tok.WaitTimeout(2 * time.Second)
	}
	c.Disconnect(250)
	u.setState("disconnected")
	u.log.Info("disconnected from the broker")
}

func (u *Uplink) clientOptions() (*mqtt.ClientOptions, error) {
	will, _ := json.Marshal(statusMessage{State: "offline"})
	o := mqtt.NewClientOptions().
		AddBroker(u.cfg.Broker).
		SetClientID(u.cfg.ClientID).
		SetProtocolVersion(4). // MQTT 3.1.1
		// The outbox is the source of truth: no session state, nothing on
		// disk in paho.
		SetCleanSession(true).
		SetStore(newPublishStore()).
		SetKeepAlive(u.cfg.KeepAlive).
		SetPingTimeout(10*time.Second).
		SetConnectTimeout(10*time.Second).
		SetAutoReconnect(true).
		SetMaxReconnectInterval(u.cfg.MaxBackoff).
		SetConnectRetry(true).
		SetConnectRetryInterval(time.Second).
		SetWriteTimeout(u.cfg.PublishTimeout).
		SetBinaryWill(u.topic(KindStatus), will, 1, true)
	if u.cfg.Username != "" {
		o.SetUsername(u.cfg.Username)
		o.SetPassword(u.cfg.Password)
	}
	if s := u.cfg.Broker; strings.HasPrefix(s, "ssl:") || strings.HasPrefix(s, "tls:") || strings.HasPrefix(s, "mqtts:") {
		tc, err := u.tlsConfig()
		if err != nil {
			return nil, err
		}
		o.SetTLSConfig(tc)
	}
	return o, nil
}

func (u *Uplink) tlsConfig() (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if u.cfg.CAFile != "" {
		pem, err := os.ReadFile(u.cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("uplink CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("uplink CA file %s: no PEM certificate in it", u.cfg.CAFile)
		}
		tc.RootCAs = pool
	}
	if u.cfg.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(u.cfg.CertFile, u.cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("uplink client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}
