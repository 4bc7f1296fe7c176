// Package linkwatch keeps the counter program attached to the interfaces
// an operator configured while links come and go.
//
// An interface is configured by name, by MAC address or by altname. The
// Watcher follows the kernel's link updates and, on every update and every
// 30 seconds, matches each selector against the current links:
//
//   - a link that appears, or is recreated under a new ifindex, is attached;
//   - a link selected by MAC or altname that is renamed is detached under its
//     old name and attached under the new one (the attacher keys its work by
//     interface name);
//   - a link selected by name that is renamed no longer matches: the
//     configured interface is missing, and the program is detached from the
//     renamed link so that it does not count traffic nobody configured;
//   - a link that is administratively or operationally down stays attached
//     (XDP and TC programs stay on a down link) and is reported as down;
//   - a failed attach is reported and retried at the next reconcile.
//
// Nothing is detached when Run returns: the attacher pins its links so that
// a restarted daemon finds the program still counting.
package linkwatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Selector names one configured interface. Exactly one field is set; the
// configuration validates that.
type Selector struct {
	Name    string // interface name (eth0)
	MAC     string // hardware address, any form net.ParseMAC takes, any case
	Altname string // alternative name (ip link property add dev X altname Y)
}

func (s Selector) String() string {
	switch {
	case s.Name != "":
		return "name " + s.Name
	case s.MAC != "":
		return "mac " + s.MAC
	case s.Altname != "":
		return "altname " + s.Altname
	}
	return "empty selector"
}

// State is what became of a configured interface.
type State string

// States.
const (
	// StateAttached: the program runs on the interface, which is up.
	StateAttached State = "attached"
	// StateDown: the program is attached but the interface is
	// administratively or operationally down.
	StateDown State = "down"
	// StateMissing: no interface matches the selector.
	StateMissing State = "missing"
	// StateError: the interface exists but attaching failed; retried at
	// the next reconcile.
	StateError State = "error"
)

// Status is the state of one configured interface.
type Status struct {
	Selector Selector
	Ifname   string // current name; empty when missing
	Ifindex  int    // current ifindex; 0 when missing
	State    State
	Mode     string    // how the program is attached, from the Attacher
	Err      string    // the attach error in StateError
	Since    time.Time // when State, Ifname or Ifindex last changed
}

// Attacher runs the counter program on interfaces. Attach is idempotent and
// takes over what an earlier attach to the same name left. Detach is called
// with a name that an earlier Attach succeeded for, to release what it made;
// by then the interface may have gone or carry another name.
type Attacher interface {
	Attach(ifname string) (mode string, err error)
	Detach(ifname string) error
}

const (
	// resyncInterval is how often the links are listed without an update.
	resyncInterval = 30 * time.Second
	// errorLogInterval limits the repeated error logs of one selector or of
	// the subscription.
	errorLogInterval = time.Minute
	// resubscribeDelay is the pause before subscribing again after the
	// subscription ended (socket overrun, for one).
	resubscribeDelay = time.Second
	// maxBatch bounds the updates handled before one reconcile, so that an
	// update storm does not hold the reconcile back.
	maxBatch = 1024
)

// Watcher keeps the program attached to the configured interfaces.
type Watcher struct {
	attacher Attacher
	log      *slog.Logger

	// Seams: netlink, the clock and the intervals (see useNetlink).
	linkList  func() ([]netlink.Link, error)
	subscribe func(ctx context.Context, ch chan<- netlink.LinkUpdate, onErr func(error)) error
	now       func() time.Time
	resync    time.Duration
	retry     time.Duration

	// Owned by the goroutine that runs Run.
	sels     []*tracked
	attached map[string]attachment // by interface name: what Attach succeeded for
	listErr  limiter

	subErr limiter // the subscription's error callback runs on its own goroutine

	mu       sync.Mutex
	snapshot []Status
}

// tracked is one selector and its state.
type tracked struct {
	sel    Selector
	mac    net.HardwareAddr // parsed Selector.MAC
	macErr error
	status Status
	errLog limiter
}

// attachment is an interface the program was attached to.
type attachment struct {
	ifindex int
	mode    string
}

// New returns a Watcher for the selectors, in the current network
// namespace. Status lists the selectors in the order given.
func New(sel []Selector, a Attacher, log *slog.Logger) *Watcher {
	w := &Watcher{
		attacher: a,
		log:      log.With("component", "linkwatch"),
		now:      time.Now,
		resync:   resyncInterval,
		retry:    resubscribeDelay,
		attached: make(map[string]attachment),
	}
	w.useNetlink(nil, nil)
	for _, s := range sel {
		t := &tracked{sel: s, status: Status{Selector: s, State: StateMissing}}
		if s.MAC != "" {
			t.mac, t.macErr = net.ParseMAC(s.MAC)
			if t.macErr != nil {
				t.macErr = fmt.Errorf("selector %s: %w", s, t.macErr)
			}
		}
		w.sels = append(w.sels, t)
	}
	w.publish()
	return w
}

// Status returns the state of every configured interface. It is safe for
// concurrent use.
func (w *Watcher) Status() []Status {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.snapshot)
}

func (w *Watcher) publish() {
	s := make([]Status, len(w.sels))
	for i, t := range w.sels {
		s[i] = t.status
	}
	w.mu.Lock()
	w.snapshot = s
	w.mu.Unlock()
}

// Run follows the link updates and reconciles on each of them and every 30
// seconds until ctx is done. It fails only when it cannot subscribe at the
// start; later the subscription is renewed whenever it ends. Run is called
// once.
func (w *Watcher) Run(ctx context.Context) error {
	sub, err := w.startSubscription(ctx)
	if err != nil {
		return err
	}
	defer func() { sub.stop() }()

	w.resyncNow()
	tick := time.NewTicker(w.resync)
	defer tick.Stop()
	var retry <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			w.resyncNow()
		case <-retry:
			retry = nil
			s, err := w.startSubscription(ctx)
			if err != nil {
				if w.subErr.allow(w.now()) {
					w.log.Warn("link updates: subscribe again", "error", err, "retry_in", w.retry)
				}
				retry = time.After(w.retry)
				continue
			}
			sub = s
			w.log.Info("link updates: subscribed again")
			// The subscription lists the existing links, which brings a
			// reconcile; links that changed meanwhile are found by it.
		case u, ok := <-sub.updates:
			if ended := !ok || w.updates(u, sub.updates); ended {
				sub.stop()
				sub = subscription{}
				w.log.Warn("link updates: subscription ended, subscribing again", "retry_in", w.retry)
				retry = time.After(w.retry)
			}
			w.resyncNow()
		}
	}
}

// subscription is one subscription to link updates.
type subscription struct {
	updates chan netlink.LinkUpdate // nil: none (a receive blocks)
	cancel  context.CancelFunc
}

// stop ends the subscription and waits until its channel is closed, so
// that the goroutine that sends on it ends too.
func (s subscription) stop() {
	if s.updates == nil {
		return
	}
	s.cancel()
	for range s.updates {
	}
}

func (w *Watcher) startSubscription(ctx context.Context) (subscription, error) {
	ctx, cancel := context.WithCancel(ctx)
	ch := make(chan netlink.LinkUpdate, 64)
	onErr := func(err error) {
		if ctx.Err() != nil {
			return // the socket closing at the end
		}
		if errors.Is(err, netlink.ErrDumpInterrupted) {
			// Every update is followed by a full listing anyway.
			w.log.Debug("link updates: initial dump interrupted", "error", err)
			return
		}
		if w.subErr.allow(w.now()) {
			w.log.Warn("link updates", "error", err)
		}
	}
	if err := w.subscribe(ctx, ch, onErr); err != nil {
		cancel()
		return subscription{}, fmt.Errorf("subscribe to link updates: %w", err)
	}
	return subscription{updates: ch, cancel: cancel}, nil
}

// updates handles first and the updates already queued behind it, up to
// maxBatch, so that one reconcile follows a burst. It tells whether the
// subscription ended.
func (w *Watcher) updates(first netlink.LinkUpdate, queue <-chan netlink.LinkUpdate) (ended bool) {
	w.update(first)
	for range maxBatch - 1 {
		select {
		case u, ok := <-queue:
			if !ok {
				return true
			}
			w.update(u)
		default:
			return false
		}
	}
	return false
}

// update handles one link update before the reconcile that follows it. A
// removed link is missing at once, even if the listing then fails.
func (w *Watcher) update(u netlink.LinkUpdate) {
	// The bridge sends RTM_DELLINK of family AF_BRIDGE when a port leaves
	// it: the link itself stays.
	if u.Header.Type != unix.RTM_DELLINK || u.Family != unix.AF_UNSPEC {
		return
	}
	index := int(u.Index)
	if u.Link != nil && u.Attrs().Index != 0 {
		index = u.Attrs().Index
	}
	w.linkDeleted(index)
	w.publish()
}

// resyncNow lists the links and reconciles.
func (w *Watcher) resyncNow() {
	links, err := w.linkList()
	if err != nil {
		if w.listErr.allow(w.now()) {
			w.log.Warn("list links", "error", err)
		}
		return
	}
	w.listErr.reset()
	w.reconcile(links)
}

// limiter lets one event through per errorLogInterval.
type limiter struct {
	mu   sync.Mutex
	last time.Time
}

func (l *limiter) allow(now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.last.IsZero() && now.Sub(l.last) < errorLogInterval {
		return false
	}
	l.last = now
	return true
}

func (l *limiter) reset() {
	l.mu.Lock()
	l.last = time.Time{}
	l.mu.Unlock()
}
