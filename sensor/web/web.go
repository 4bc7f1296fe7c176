// Package web serves the sensor's status page, its JSON API under /api/v1/
// and its Prometheus /metrics.
//
// The package reads everything through Source, which sensord implements over
// the store, the datapath and the alerts; it imports none of them. Everything
// the page needs (template, CSS, the chart script) is embedded, so the page
// works on a box without internet access, and no response names another
// origin.
//
// docs/api.md documents the endpoints.
package web

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/peerwatch/peerwatch/sensor/api"
	"github.com/peerwatch/peerwatch/sensor/summary"
	"github.com/peerwatch/peerwatch/sensor/traffic"
)

// Source is what the pages read: sensord implements it over the datapath, the
// store and the alerts. Its methods are called from concurrent requests and
// scrapes. The summaries it returns are read-only to this package.
type Source interface {
	// Health is the sensor's state now.
	Health() Health
	// Latest is the last drained interval. Before the first interval it
	// returns a nil summary (or an error wrapping ErrNoData).
	Latest() (*summary.Summary, error)
	// Window is the traffic of [from, to) merged into one summary: totals,
	// countries, ASes and watch lists are exact, the top prefixes may be
	// approximate (each interval keeps only its own top N). With no data in
	// the window it returns an empty summary, nil, or an error wrapping
	// ErrNoData.
	Window(from, to time.Time) (*summary.Summary, error)
	// Series is the summaries of a rollup level ("interval", "1m", "1h" or
	// "1d") that start in [from, to), oldest first.
	Series(level string, from, to time.Time) ([]*summary.Summary, error)
	// Alerts are the alerts that are active now and the recent ones that
	// have ended, most recent first.
	Alerts() (active, recent []Alert)
	// Lookup is the table prefix that holds addr and its labels; false when
	// no loaded table holds it.
	Lookup(addr netip.Addr) (Labels, bool)
}

// ErrNoData is what a Source may return (wrapped) before it has any interval.
var ErrNoData = errors.New("no data yet")

// Health is the sensor's state.
type Health struct {
	Version string
	Board   string
	Kernel  string
	Sensor  string // the sensor id
	Started time.Time

	Interfaces []Interface

	LastDrain     time.Time     // end of the last drain
	DrainInterval time.Duration // configured interval between drains
	DrainDuration time.Duration // how long the last drain took

	// Invariant is nil when the last interval reconciled (seen == remote +
	// buckets), else the reason it did not.
	Invariant error

	Totals traffic.Globals  // cumulative since start
	Remote traffic.Counters // cumulative since start

	Store  StoreHealth
	Uplink UplinkHealth
}

// Interface is one interface the program is attached to, or meant to be.
type Interface struct {
	Name  string
	Mode  string // "xdp-native", "xdp-generic", "tcx" or "tc-netlink"
	State string // "attached", "down", "missing" or "error"
	Err   string // why, when the state is "error" (or anything else worth saying)
}

// Attached is the state of an interface whose program counts packets.
const Attached = "attached"

// StoreHealth is the embedded store's state.
type StoreHealth struct {
	Path      string
	Size      int64  // bytes on disk
	MaxSize   int64  // bytes; 0 when unbounded
	Evicted   uint64 // summaries removed to stay under MaxSize, since start
	Recovered string // non-empty when a damaged file was moved aside at start: where, and why

	// WriteError is the last failed write (a full or read-only data
	// partition, an I/O error), empty once a write succeeds again; since
	// WriteErrorSince. Unstored intervals are held in memory meanwhile.
	WriteError      string
	WriteErrorSince time.Time
	WriteErrors     uint64 // failed writes of an interval since start
	Unstored        int    // intervals drained but not yet stored, waiting for the store
	UnstoredDropped uint64 // intervals given up because too many waited: counts lost, since start
}

// UplinkHealth is the MQTT uplink's state.
type UplinkHealth struct {
	State  string // "disabled" until the uplink exists, then e.g. "connected", "connecting"
	Outbox int    // summaries waiting for the broker's acknowledgement
	// Gap repair since start: summaries queued again at the collector's
	// request, and requested seqs reported lost.
	Resent, ReportedLost uint64
}

// Alert is a watch-list alert: active while End is zero.
type Alert struct {
	ID      string
	List    string // the watch list
	Reason  string // why it fired, for a human
	Start   time.Time
	End     time.Time // zero while active
	PeakPPS float64
	PeakBPS float64
	Packets uint64 // since Start
	Bytes   uint64
	// Prefixes are the remote prefixes that carried most of the alert's traffic.
	Prefixes []netip.Prefix
}

// Labels are what the tables say of an address.
type Labels struct {
	Prefix  netip.Prefix // the longest table prefix holding the address
	Country string       // ISO 3166 code; "" when no table knows it
	ASN     uint32       // origin AS; 0 when no table knows it
	ASName  string
	Table   string // the table the prefix comes from
}

// Options configure the handler.
type Options struct {
	// BasicAuth protects every path (page, API, metrics, assets) when User
	// or Password is set.
	BasicAuth BasicAuth
	// Registry is where the sensor's collector is registered, and what
	// /metrics serves; nil: a new registry.
	Registry *prometheus.Registry
	// Now is the clock; nil: time.Now. Tests set it.
	Now func() time.Time
}

// BasicAuth is an HTTP basic authentication account.
type BasicAuth struct {
	User     string
	Password string
}

func (a BasicAuth) enabled() bool { return a.User != "" || a.Password != "" }

// New returns the handler of the status page (/), the JSON API (/api/v1/),
// the metrics (/metrics) and the page's assets (/static/).
func New(src Source, opts Options, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "web")
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	reg := opts.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	if err := reg.Register(newCollector(src, now, log)); err != nil {
		log.Error("register the metrics collector", "err", err)
	}
	s := &server{src: src, log: log, now: now, errLog: &limiter{every: time.Minute}}

	endpoints := http.NewServeMux()
	endpoints.HandleFunc("/api/v1/status", s.api(s.status))
	endpoints.HandleFunc("/api/v1/top", s.api(s.top))
	endpoints.HandleFunc("/api/v1/lookup", s.api(s.lookup))
	endpoints.HandleFunc("/api/v1/series", s.api(s.series))
	endpoints.HandleFunc("/api/v1/alerts", s.api(s.alerts))
	endpoints.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, api.Error{Error: "no such endpoint: " + r.URL.Path})
	})

	mux := http.NewServeMux()
	mux.Handle("/api/", endpoints)
	mux.Handle("/metrics", metricsHandler(reg, log))
	mux.Handle("/static/", StaticHandler(staticFS))
	mux.HandleFunc("/{$}", s.page)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "404 page not found", http.StatusNotFound)
	})

	var h http.Handler = mux
	h = onlyGet(h)
	if opts.BasicAuth.enabled() {
		h = basicAuth(opts.BasicAuth, h)
	}
	return securityHeaders(h)
}

type server struct {
	src    Source
	log    *slog.Logger
	now    func() time.Time
	errLog *limiter // of the source's errors, which repeat with every refresh of a page
}

// limiter lets one event through per period and counts the others.
type limiter struct {
	every      time.Duration
	mu         sync.Mutex
	last       time.Time
	suppressed int
}

// allow reports whether an event at now may be logged, and how many were
// suppressed since the last one that was.
func (l *limiter) allow(now time.Time) (ok bool, suppressed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.last.IsZero() && now.Sub(l.last) < l.every {
		l.suppressed++
		return false, 0
	}
	l.last, suppressed, l.suppressed = now, l.suppressed, 0
	return true, suppressed
}

// ListenAndServe serves h on addr, over TLS when tlsCert and tlsKey name a
// certificate and its key, until ctx ends; then it shuts the server down,
// letting requests in flight finish for a few seconds.
func ListenAndServe(ctx context.Context, addr, tlsCert, tlsKey string, h http.Handler) error {
	if (tlsCert == "") != (tlsKey == "") {
		return fmt.Errorf("serve http on %s: tls needs both a certificate and a key", addr)
	}
	srv := &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		// Requests keep ctx's values, not its end: Shutdown lets them finish.
		BaseContext: func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
		TLSConfig:   &tls.Config{MinVersion: tls.VersionTLS12},
	}
	var cert tls.Certificate
	if tlsCert != "" {
		var err error
		if cert, err = tls.LoadX509KeyPair(tlsCert, tlsKey); err != nil {
			return fmt.Errorf("serve https on %s: %w", addr, err)
		}
		srv.TLSConfig.Certificates = []tls.Certificate{cert}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("serve http: %w", err)
	}
	errc := make(chan error, 1)
	go func() {
		if tlsCert != "" {
			errc <- srv.ServeTLS(ln, "", "")
			return
		}
		errc <- srv.Serve(ln)
	}()
	select {
	case err := <-errc:
		return fmt.Errorf("serve http on %s: %w", addr, err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = srv.Shutdown(sctx)
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("shut down http on %s: %w", addr, err)
	}
	return nil
}
