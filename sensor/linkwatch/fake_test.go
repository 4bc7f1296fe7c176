package linkwatch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// fakeNet is a set of synthetic links behind the watcher's netlink seam.
type fakeNet struct {
	mu        sync.Mutex
	links     map[int]*netlink.Device
	nextIndex int
	listErr   error
	subErr    error
	subs      []*fakeSub
	subCount  int
}

type fakeSub struct {
	events chan netlink.LinkUpdate
	end    chan struct{} // closed: the subscription fails
}

func newFakeNet() *fakeNet {
	return &fakeNet{links: make(map[int]*netlink.Device), nextIndex: 2}
}

// install puts the fake network behind w.
func (f *fakeNet) install(w *Watcher) {
	w.linkList = f.list
	w.subscribe = f.subscribe
}

func (f *fakeNet) list() ([]netlink.Link, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.listErr != nil {
		return nil, f.listErr
	}
	var out []netlink.Link
	for _, d := range f.links {
		c := *d // the watcher gets copies, as from the kernel
		out = append(out, &c)
	}
	slices.SortFunc(out, func(a, b netlink.Link) int { return a.Attrs().Index - b.Attrs().Index })
	return out, nil
}

// subscribe mimics netlink.LinkSubscribeWithOptions with ListExisting: the
// existing links, then the updates, until ctx is done or end is closed;
// then ch is closed.
func (f *fakeNet) subscribe(ctx context.Context, ch chan<- netlink.LinkUpdate, onErr func(error)) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.subErr != nil {
		return f.subErr
	}
	f.subCount++
	s := &fakeSub{events: make(chan netlink.LinkUpdate, 1000), end: make(chan struct{})}
	for _, d := range f.links {
		s.events <- update(unix.RTM_NEWLINK, d)
	}
	f.subs = append(f.subs, s)
	go func() {
		defer close(ch)
		for {
			select {
			case <-ctx.Done():
				return
			case <-s.end:
				onErr(errors.New("receive failed: no buffer space available"))
				return
			case u := <-s.events:
				select {
				case ch <- u:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return nil
}

func update(typ uint16, d *netlink.Device) netlink.LinkUpdate {
	c := *d
	u := netlink.LinkUpdate{Link: &c}
	u.Header.Type = typ
	u.Family = unix.AF_UNSPEC
	u.Index = int32(d.Index)
	return u
}

// notify sends an update to every subscription; f.mu is held.
func (f *fakeNet) notify(typ uint16, d *netlink.Device) {
	for _, s := range f.subs {
		s.events <- update(typ, d)
	}
}

// endSubscriptions makes every subscription fail, as a socket overrun does.
func (f *fakeNet) endSubscriptions() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range f.subs {
		close(s.end)
	}
	f.subs = nil
}

func (f *fakeNet) subscriptions() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.subCount
}

// add creates a link, up, and returns its ifindex.
func (f *fakeNet) add(name, mac string, altnames ...string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	hw, err := net.ParseMAC(mac)
	if err != nil {
		panic(err)
	}
	f.nextIndex++
	d := &netlink.Device{LinkAttrs: netlink.LinkAttrs{
		Name: name, Index: f.nextIndex, HardwareAddr: hw, AltNames: altnames,
		Flags: net.FlagUp | net.FlagBroadcast, OperState: netlink.OperUp,
	}}
	f.links[d.Index] = d
	f.notify(unix.RTM_NEWLINK, d)
	return d.Index
}

func (f *fakeNet) byName(name string) *netlink.Device {
	for _, d := range f.links {
		if d.Name == name {
			return d
		}
	}
	panic("no link " + name)
}

func (f *fakeNet) del(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := f.byName(name)
	delete(f.links, d.Index)
	f.notify(unix.RTM_DELLINK, d)
}

// change applies fn to a link and announces it.
func (f *fakeNet) change(name string, fn func(a *netlink.LinkAttrs)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := f.byName(name)
	fn(&d.LinkAttrs)
	f.notify(unix.RTM_NEWLINK, d)
}

func (f *fakeNet) rename(from, to string) {
	f.change(from, func(a *netlink.LinkAttrs) { a.Name = to })
}

func (f *fakeNet) setUp(name string, up bool) {
	f.change(name, func(a *netlink.LinkAttrs) {
		if up {
			a.Flags |= net.FlagUp
			a.OperState = netlink.OperUp
		} else {
			a.Flags &^= net.FlagUp
			a.OperState = netlink.OperDown
		}
	})
}

func (f *fakeNet) setCarrier(name string, on bool) {
	f.change(name, func(a *netlink.LinkAttrs) {
		a.OperState = netlink.OperLowerLayerDown
		if on {
			a.OperState = netlink.OperUp
		}
	})
}

// recorder is an Attacher that records its calls and fails on demand.
type recorder struct {
	mu    sync.Mutex
	calls []string
	fail  map[string]error
}

func newRecorder() *recorder { return &recorder{fail: make(map[string]error)} }

func (r *recorder) Attach(ifname string) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, "attach "+ifname)
	if err := r.fail[ifname]; err != nil {
		return "", fmt.Errorf("attach xdp to %s: %w", ifname, err)
	}
	return "xdp-native", nil
}

func (r *recorder) Detach(ifname string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, "detach "+ifname)
	return nil
}

func (r *recorder) setFail(ifname string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err == nil {
		delete(r.fail, ifname)
	} else {
		r.fail[ifname] = err
	}
}

// take returns the calls recorded since the last take.
func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.calls
	r.calls = nil
	return c
}

// fakeClock is a clock the test moves.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// logBuffer collects log lines for assertions.
type logBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) count(substr string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Count(b.buf.String(), substr)
}

// testLogger logs to the test output and to a buffer.
func testLogger(t *testing.T) (*slog.Logger, *logBuffer) {
	b := &logBuffer{}
	h := slog.NewTextHandler(io.MultiWriter(b, t.Output()), &slog.HandlerOptions{Level: slog.LevelDebug})
	return slog.New(h), b
}
