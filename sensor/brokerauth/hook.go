package brokerauth

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/peerwatch/peerwatch/sensor/summary"
)

// DefaultTopicPrefix is the prefix of Rules without one.
const DefaultTopicPrefix = "peerwatch"

// RefusalLogInterval is how often a refusal of one kind is logged.
const RefusalLogInterval = time.Minute

// Rules say who may connect to the embedded broker and which topics each
// identity may use.
type Rules struct {
	// TopicPrefix is the first level(s) of the sensors' topics
	// ("peerwatch").
	TopicPrefix string
	// ClientCerts: the listener requires verified client certificates
	// and the identity of a client is its certificate's common name (as
	// mosquitto's use_identity_as_username).
	ClientCerts bool
	// Passwords, when set, must hold the client's username and password.
	// With ClientCerts too, the username must be the certificate's common
	// name: both are needed.
	Passwords *Passwords
	// Readers are identities that may subscribe to every topic under the
	// prefix (other collectors, as $share/<group>/... too) and publish
	// nothing. Every other identity is a sensor: it must be a valid sensor
	// id, and may publish and subscribe only under <prefix>/<identity>/,
	// and not publish to <prefix>/<identity>/resend (the collector's).
	Readers []string
}

// Enabled reports whether the rules authenticate anybody; without, the
// broker lets every client in.
func (r Rules) Enabled() bool { return r.ClientCerts || r.Passwords != nil }

func (r Rules) prefix() string {
	if r.TopicPrefix == "" {
		return DefaultTopicPrefix
	}
	return strings.TrimSuffix(r.TopicPrefix, "/")
}

// IsReader reports whether identity is one of the Readers.
func (r Rules) IsReader(identity string) bool { return slices.Contains(r.Readers, identity) }

// Allowed reports whether identity may publish to (write) or subscribe to
// and receive from (read) topic, a topic name or a subscription filter.
func (r Rules) Allowed(identity, topic string, write bool) bool {
	if identity == "" {
		return false
	}
	p := r.prefix() + "/"
	if r.IsReader(identity) {
		if write {
			return false
		}
		if rest, ok := strings.CutPrefix(topic, "$share/"); ok {
			group, filter, ok := strings.Cut(rest, "/")
			if !ok || group == "" {
				return false
			}
			topic = filter
		}
		return strings.HasPrefix(topic, p)
	}
	// A valid sensor id holds no '+', '#' or '/', so every topic or
	// filter with this literal start lies under the sensor's own level.
	// The sensor's resend topic is the collector's to write (gap repair):
	// the sensor may only read it.
	own := p + identity + "/"
	if write && topic == own+ResendKind {
		return false
	}
	return summary.ValidSensorID(identity) && strings.HasPrefix(topic, own)
}

// ResendKind is the last level of a sensor's resend topic, which only the
// collector (the broker's inline client) publishes to.
const ResendKind = "resend"

// Stats count what the hook refused since start.
type Stats struct {
	ConnectsRefused uint64 `json:"connects_refused"`
	PublishesDenied uint64 `json:"publishes_denied"`
	// SubscribesDenied also counts messages not delivered to a
	// subscriber (none, since its subscriptions were checked).
	SubscribesDenied uint64 `json:"subscribes_denied"`
}

// Hook is a mochi-mqtt hook that authenticates clients and applies the
// topic rules. The broker's inline client (the collector's own
// subscription) bypasses it.
type Hook struct {
	mochi.HookBase
	rules Rules
	log   *slog.Logger
	// clients finds the broker's client (or kept session) with a client
	// id; nil: client ids are not checked.
	clients func(id string) (*mochi.Client, bool)

	connects, publishes, subscribes atomic.Uint64

	mu      sync.Mutex
	logged  map[string]time.Time // kind -> last logged
	skipped map[string]uint64    // kind -> refusals not logged since
}

// NewHook returns a hook for rules; log may be nil.
func NewHook(rules Rules, log *slog.Logger) *Hook {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Hook{rules: rules, log: log.With("component", "brokerauth"),
		logged: make(map[string]time.Time), skipped: make(map[string]uint64)}
}

// BindClientIDs makes the hook refuse a client whose client id belongs to
// a client or session of another identity (which the broker would
// otherwise disconnect and take over), and the id of the broker's inline
// client. Pass the server's Clients.Get.
func (h *Hook) BindClientIDs(clients func(id string) (*mochi.Client, bool)) { h.clients = clients }

// ID names the hook.
func (h *Hook) ID() string { return "peerwatch-auth" }

// Provides tells mochi which hook methods are implemented.
func (h *Hook) Provides(b byte) bool {
	return b == mochi.OnConnectAuthenticate || b == mochi.OnACLCheck
}

// Stats returns the refusals since start.
func (h *Hook) Stats() Stats {
	return Stats{ConnectsRefused: h.connects.Load(), PublishesDenied: h.publishes.Load(), SubscribesDenied: h.subscribes.Load()}
}

// refused logs a refusal at most once per kind per RefusalLogInterval.
func (h *Hook) refused(kind string, args ...any) {
	now := time.Now()
	h.mu.Lock()
	last, ok := h.logged[kind]
	if ok && now.Sub(last) < RefusalLogInterval {
		h.skipped[kind]++
		h.mu.Unlock()
		return
	}
	skipped := h.skipped[kind]
	h.logged[kind] = now
	h.skipped[kind] = 0
	h.mu.Unlock()
	h.log.Warn("broker refused a client", append(args, "refused", kind, "not_logged_since", skipped)...)
}

// identity authenticates a CONNECT: it returns the client's identity, or
// the reason it is refused.
func (h *Hook) identity(cl *mochi.Client, pk packets.Packet) (string, string) {
	user := string(pk.Connect.Username)
	var id string
	if h.rules.ClientCerts {
		tc, ok := cl.Net.Conn.(*tls.Conn)
		if !ok {
			return "", "no TLS connection"
		}
		st := tc.ConnectionState()
		if len(st.VerifiedChains) == 0 || len(st.VerifiedChains[0]) == 0 {
			return "", "no verified client certificate"
		}
		id = st.VerifiedChains[0][0].Subject.CommonName
		if id == "" {
			return "", "client certificate without a common name"
		}
	}
	if p := h.rules.Passwords; p != nil {
		if !pk.Connect.UsernameFlag || user == "" {
			return "", "no username"
		}
		if id != "" && user != id {
			return "", fmt.Sprintf("username %q is not the certificate's common name %q", user, id)
		}
		if !p.Verify(user, string(pk.Connect.Password)) {
			return "", fmt.Sprintf("wrong password for %q or no such user", user)
		}
		id = user
	}
	if !h.rules.IsReader(id) && !summary.ValidSensorID(id) {
		return "", fmt.Sprintf("identity %q is neither a reader nor a sensor id (1 to 64 of A-Z a-z 0-9 . _ -)", id)
	}
	if h.clients != nil {
		if cl.ID == mochi.InlineClientId {
			return "", fmt.Sprintf("client id %q is the broker's own", cl.ID)
		}
		if old, ok := h.clients(cl.ID); ok && old != cl && string(old.Properties.Username) != id {
			return "", fmt.Sprintf("client id %q belongs to another identity", cl.ID)
		}
	}
	if pk.Connect.WillFlag && !h.rules.Allowed(id, pk.Connect.WillTopic, true) {
		return "", fmt.Sprintf("last will on %q, outside what %q may publish", pk.Connect.WillTopic, id)
	}
	return id, ""
}

// OnConnectAuthenticate admits a client whose certificate and/or password
// check out; its identity becomes its username, which the ACL checks read.
func (h *Hook) OnConnectAuthenticate(cl *mochi.Client, pk packets.Packet) bool {
	id, reason := h.identity(cl, pk)
	if reason != "" {
		h.connects.Add(1)
		h.refused("connect", "remote", cl.Net.Remote, "client_id", cl.ID, "reason", reason)
		return false
	}
	cl.Properties.Username = []byte(id)
	return true
}

// OnACLCheck applies Rules.Allowed to the client's identity.
func (h *Hook) OnACLCheck(cl *mochi.Client, topic string, write bool) bool {
	id := string(cl.Properties.Username)
	if h.rules.Allowed(id, topic, write) {
		return true
	}
	if write {
		h.publishes.Add(1)
		h.refused("publish", "identity", id, "client_id", cl.ID, "topic", topic)
	} else {
		h.subscribes.Add(1)
		h.refused("subscribe", "identity", id, "client_id", cl.ID, "topic", topic)
	}
	return false
}
