package collectord

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"

	"github.com/peerwatch/peerwatch/sensor/brokerauth"
	"github.com/peerwatch/peerwatch/sensor/summary"
)

// EmbeddedSecurity is the TLS and authentication of the embedded broker
// (docs/broker.md). Without ClientCAFile and PasswordFile every client may
// connect and publish.
type EmbeddedSecurity struct {
	// CertFile and KeyFile are the broker's certificate and key: the
	// listener speaks TLS (MQTT over TLS, port 8883 by custom).
	CertFile, KeyFile string
	// ClientCAFile makes client certificates required and verified
	// against it; a client's identity is its certificate's common name.
	ClientCAFile string
	// CRLFile lists revoked client certificates (PEM CRLs signed by the
	// client CA, as openssl ca -gencrl writes them); read again when it
	// changes. Needs ClientCAFile.
	CRLFile string
	// PasswordFile holds users and password hashes as mosquitto_passwd
	// writes them; a client's identity is its username. With ClientCAFile
	// too, the username must be the certificate's common name.
	PasswordFile string
	// Readers are identities that may subscribe to everything under the
	// topic prefix (other collectors) and publish nothing. Every other
	// identity is a sensor: it may publish and subscribe only under
	// <prefix>/<identity>/.
	Readers []string
}

// Enabled reports whether clients are authenticated.
func (s EmbeddedSecurity) Enabled() bool { return s.ClientCAFile != "" || s.PasswordFile != "" }

// SubscriberSecurity is the TLS and credentials of the subscriber to an
// external broker.
type SubscriberSecurity struct {
	// CAFile verifies the broker's certificate (default: the system's
	// roots); CertFile and KeyFile are the client certificate.
	CAFile, CertFile, KeyFile string
	// Username, and PasswordFile whose first line is the password.
	Username, PasswordFile string
}

func (s SubscriberSecurity) tls() bool { return s.CAFile != "" || s.CertFile != "" }

// tlsSchemes are the URL schemes with which paho speaks TLS.
var tlsSchemes = []string{"ssl", "tls", "mqtts", "mqtt+ssl", "tcps"}

// validateSecurity checks the combinations of the security fields; the
// files are read by New.
func (c Config) validateSecurity() error {
	e, s := c.EmbeddedSecurity, c.SubscriberSecurity
	if (e.CertFile != "" || e.KeyFile != "" || e.Enabled() || len(e.Readers) > 0) && c.EmbeddedBroker == "" {
		return fmt.Errorf("%w: embedded broker TLS and authentication need --embedded-broker", ErrConfig)
	}
	if (s != SubscriberSecurity{}) && c.Broker == "" {
		return fmt.Errorf("%w: broker TLS and credentials need --broker", ErrConfig)
	}
	switch {
	case (e.CertFile == "") != (e.KeyFile == ""):
		return fmt.Errorf("%w: embedded broker certificate and key: want both or neither", ErrConfig)
	case e.ClientCAFile != "" && e.CertFile == "":
		return fmt.Errorf("%w: embedded broker client CA %s: needs the broker's own certificate and key (TLS)", ErrConfig, e.ClientCAFile)
	case e.CRLFile != "" && e.ClientCAFile == "":
		return fmt.Errorf("%w: embedded broker CRL %s: needs a client CA", ErrConfig, e.CRLFile)
	case len(e.Readers) > 0 && !e.Enabled():
		return fmt.Errorf("%w: embedded broker readers: need a client CA or a password file", ErrConfig)
	case (s.CertFile == "") != (s.KeyFile == ""):
		return fmt.Errorf("%w: broker client certificate and key: want both or neither", ErrConfig)
	case (s.Username == "") != (s.PasswordFile == ""):
		return fmt.Errorf("%w: broker username and password file: want both or neither", ErrConfig)
	}
	for _, r := range e.Readers {
		if r == "" {
			return fmt.Errorf("%w: embedded broker readers: empty name", ErrConfig)
		}
	}
	if c.Broker != "" && s.tls() {
		if u, err := url.Parse(c.Broker); err == nil && !slices.Contains(tlsSchemes, u.Scheme) {
			return fmt.Errorf("%w: broker %q: a CA or client certificate needs TLS: ssl://host:8883", ErrConfig, c.Broker)
		}
	}
	return nil
}

// security is what New prepared from the security fields.
type security struct {
	// embeddedTLS is the embedded broker's listener TLS; nil: plain TCP.
	embeddedTLS *tls.Config
	// hook authenticates the embedded broker's clients; nil: allow all.
	hook *brokerauth.Hook
	// subscriberTLS is the subscriber's TLS; nil: the URL's scheme
	// decides (paho's default for ssl://).
	subscriberTLS *tls.Config
	password      string
}

// loadSecurity reads the certificate, key and password files of a valid
// cfg; errors name the file (and the line of a bad entry).
func loadSecurity(cfg Config, log *slog.Logger) (security, error) {
	var sec security
	e, s := cfg.EmbeddedSecurity, cfg.SubscriberSecurity
	var err error
	if e.CertFile != "" {
		if sec.embeddedTLS, err = brokerauth.ServerTLS(e.CertFile, e.KeyFile, e.ClientCAFile); err != nil {
			return sec, err
		}
		if e.CRLFile != "" {
			issuers, err := brokerauth.LoadCertificates("client CA", e.ClientCAFile)
			if err != nil {
				return sec, err
			}
			rev, err := brokerauth.LoadRevocations(e.CRLFile, issuers, log.With("component", "collectord"))
			if err != nil {
				return sec, err
			}
			log.Info("embedded broker refuses revoked client certificates", "component", "collectord", "crl", e.CRLFile, "revoked", rev.Len())
			sec.embeddedTLS.VerifyConnection = rev.VerifyConnection
		}
	}
	if e.Enabled() {
		rules := brokerauth.Rules{TopicPrefix: cfg.withDefaults().TopicPrefix, ClientCerts: e.ClientCAFile != "", Readers: e.Readers}
		if e.PasswordFile != "" {
			if rules.Passwords, err = brokerauth.LoadPasswords(e.PasswordFile); err != nil {
				return sec, err
			}
		}
		for _, r := range e.Readers {
			if summary.ValidSensorID(r) {
				log.Info("an embedded broker reader is also a valid sensor id: it may only read", "component", "collectord", "reader", r)
			}
		}
		sec.hook = brokerauth.NewHook(rules, log)
	}
	if s.tls() {
		if sec.subscriberTLS, err = brokerauth.ClientTLS(s.CAFile, s.CertFile, s.KeyFile); err != nil {
			return sec, err
		}
	}
	if s.PasswordFile != "" {
		if sec.password, err = brokerauth.ReadSecret(s.PasswordFile); err != nil {
			return sec, err
		}
	}
	return sec, nil
}

// addAuthHook adds the embedded broker's authentication, or allows every
// client (with a warning) when none is configured.
func (d *Daemon) addAuthHook(s *mochi.Server) error {
	e := d.cfg.EmbeddedSecurity
	if d.sec.hook == nil {
		d.log.Warn("embedded broker allows every client to connect and publish: no --embedded-client-ca or --embedded-password-file (lab use only)")
		return s.AddHook(new(auth.AllowHook), nil)
	}
	if d.sec.embeddedTLS == nil {
		d.log.Warn("embedded broker takes passwords over plain TCP: add --embedded-cert and --embedded-key")
	}
	d.log.Info("embedded broker authenticates clients", "client_certificates", e.ClientCAFile != "",
		"password_file", e.PasswordFile, "readers", e.Readers)
	d.sec.hook.BindClientIDs(s.Clients.Get)
	return s.AddHook(d.sec.hook, nil)
}

// connectTimeout bounds the time from a client's TCP connection to its
// CONNECT packet (the TLS handshake included) on the embedded broker;
// after CONNECT, mochi's keepalive deadline takes over.
var connectTimeout = 10 * time.Second

// embeddedListener listens on the embedded broker's address, with TLS
// when configured, and closes a connection that does not get to CONNECT
// in connectTimeout (mochi sets no deadline before CONNECT).
func (d *Daemon) embeddedListener() (net.Listener, error) {
	ln, err := net.Listen("tcp", d.cfg.EmbeddedBroker)
	if err != nil {
		return nil, fmt.Errorf("embedded broker listener: %w", err)
	}
	ln = connectDeadline{ln, connectTimeout}
	if d.sec.embeddedTLS != nil {
		ln = tls.NewListener(ln, d.sec.embeddedTLS)
	}
	return ln, nil
}

// connectDeadline sets a deadline on every accepted connection.
type connectDeadline struct {
	net.Listener
	timeout time.Duration
}

func (l connectDeadline) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		_ = c.SetDeadline(time.Now().Add(l.timeout))
	}
	return c, err
}

// BrokerRefusals counts what the embedded broker's authentication refused
// since start (zero without authentication).
func (d *Daemon) BrokerRefusals() brokerauth.Stats {
	if d.sec.hook == nil {
		return brokerauth.Stats{}
	}
	return d.sec.hook.Stats()
}

// secureSubscriber sets the TLS and credentials of the subscriber to an
// external broker.
func (d *Daemon) secureSubscriber(o *mqtt.ClientOptions) {
	if d.sec.subscriberTLS != nil {
		o.SetTLSConfig(d.sec.subscriberTLS)
	}
	if u := d.cfg.SubscriberSecurity.Username; u != "" {
		o.SetUsername(u).SetPassword(d.sec.password)
	}
}
