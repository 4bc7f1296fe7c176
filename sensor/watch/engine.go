package watch

import (
	"cmp"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/peerwatch/peerwatch/sensor/summary"
)

const (
	// MaxRecent bounds the history of ended alerts.
	MaxRecent = 1000
	// TopPrefixes is how many contributing prefixes an alert lists.
	TopPrefixes = 10
	// maxTracked bounds the prefixes an alert counts; past it, the smaller
	// half is dropped. The top prefixes are exact while an alert has fewer
	// distinct prefixes than this.
	maxTracked = 1000
)

// Kind of an Event.
type Kind int

// Kinds of event.
const (
	Started Kind = iota + 1
	Updated
	Ended
)

var kindNames = map[Kind]string{Started: "started", Updated: "updated", Ended: "ended"}

func (k Kind) String() string {
	if s, ok := kindNames[k]; ok {
		return s
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// MarshalText writes the kind's name.
func (k Kind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText reads a kind's name.
func (k *Kind) UnmarshalText(b []byte) error {
	for kind, s := range kindNames {
		if s == string(b) {
			*k = kind
			return nil
		}
	}
	return fmt.Errorf("unknown alert event kind %q", b)
}

// Event is a change of an alert.
type Event struct {
	Kind  Kind  `json:"kind"`
	Alert Alert `json:"alert"`
}

// Alert is a period during which a watch list's rule held.
type Alert struct {
	// ID is the list and the start time ("kp@2024-05-06T00:00:10Z"); it
	// does not change while the alert lasts and survives restarts. Should
	// two alerts of a list start at the same time (a clock stepped back),
	// the second gets "#2" appended.
	ID     string `json:"id"`
	List   string `json:"list"`
	Reason string `json:"reason"` // why, at the alert's highest packet rate
	// Start is the start of the first interval in which the condition held;
	// End is the end of the last one, zero while the alert is active.
	Start time.Time `json:"start"`
	End   time.Time `json:"end,omitzero"`
	// Peaks and totals are over the intervals from Start to End (those in
	// which the condition held and the quiet ones between them).
	PeakPPS float64 `json:"peak_pps"`
	PeakBPS float64 `json:"peak_bps"`
	Packets uint64  `json:"packets"`
	Bytes   uint64  `json:"bytes"`
	// Prefixes are the TopPrefixes remote prefixes of the list with the most
	// packets, most first, as far as the summaries' top prefixes show them.
	Prefixes []PrefixShare `json:"prefixes"`
}

// PrefixShare is a remote prefix's part of an alert.
type PrefixShare struct {
	Prefix  netip.Prefix `json:"prefix"`
	Country string       `json:"country,omitempty"`
	ASN     uint32       `json:"asn,omitempty"`
	Packets uint64       `json:"packets"`
}

// Engine evaluates the watch-list rules over a sequence of summaries. It is
// safe for concurrent use.
type Engine struct {
	log *slog.Logger

	mu      sync.Mutex
	rules   []*ruleState // in configuration order
	byList  map[string]*ruleState
	recent  []Alert // ended alerts, oldest first, at most MaxRecent
	ignored backoff // summaries without a usable interval
}

// ruleState is one rule and what the engine knows of its list.
type ruleState struct {
	rule    Rule
	match   *matcher // nil if the list is not defined
	missing backoff  // summaries without the list's counters
	listState
}

// New returns an engine for the rules over the lists. Invalid rules and
// lists (see Validate, which the configuration calls first) are logged and
// left out; a rule for a list that is not defined still alerts on the list's
// counters, but cannot name the prefixes.
func New(lists []List, rules []Rule, log *slog.Logger) *Engine {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	e := &Engine{log: log.With("component", "watch"), byList: map[string]*ruleState{}}
	defs := map[string]List{}
	for _, l := range lists {
		if err := l.validate(); err != nil {
			e.log.Error("watch list left out", "list", l.Name, "err", err)
			continue
		}
		if _, dup := defs[l.Name]; dup {
			e.log.Error("watch list defined twice; the first definition is used", "list", l.Name)
			continue
		}
		defs[l.Name] = l
	}
	for _, r := range rules {
		if err := r.validate(); err != nil {
			e.log.Error("watch rule left out", "list", r.List, "err", err)
			continue
		}
		if e.byList[r.List] != nil {
			e.log.Error("watch list has two rules; the first is used", "list", r.List)
			continue
		}
		rs := &ruleState{rule: r.withDefaults()}
		if l, ok := defs[r.List]; ok {
			rs.match = newMatcher(l)
		} else {
			e.log.Warn("watch rule for an undefined list: no prefixes will be named", "list", r.List)
		}
		e.rules = append(e.rules, rs)
		e.byList[r.List] = rs
	}
	return e
}

// interval is what one summary says of one list.
type interval struct {
	start, end time.Time
	dur        time.Duration
	packets    uint64
	bytes      uint64
	pps, bps   float64
	shares     func() map[netip.Prefix]share // the list's prefixes, on demand
}

// Observe evaluates the rules over the next interval's summary and returns
// what changed, in the order of the rules. A summary without a usable
// interval (no start, or an end not after the start, as after a clock step
// backwards) is ignored with a warning.
func (e *Engine) Observe(s *summary.Summary) []Event {
	if s == nil {
		return nil
	}
	// Wall-clock readings only: the same whether the summary comes from the
	// datapath or from the store.
	start, end := s.Start.Round(0), s.End.Round(0)
	e.mu.Lock()
	defer e.mu.Unlock()
	if start.IsZero() || !end.After(start) {
		if n, ok := e.ignored.next(); ok {
			e.log.Warn("summary without a usable interval ignored", "seq", s.Seq, "start", start, "end", end, "ignored", n)
		}
		return nil
	}
	dur := end.Sub(start)
	counts := make(map[string]int, len(s.Watch))
	for i, w := range s.Watch {
		counts[w.List] = i
	}
	var events []Event
	for _, r := range e.rules {
		iv := interval{start: start, end: end, dur: dur}
		if i, ok := counts[r.rule.List]; ok {
			c := s.Watch[i].Counters
			iv.packets, iv.bytes = c.Total(), c.TotalBytes()
			iv.pps = float64(iv.packets) / dur.Seconds()
			iv.bps = float64(iv.bytes) * 8 / dur.Seconds()
		} else if n, ok := r.missing.next(); ok {
			e.log.Warn("summary has no counters for the watch list; taken as no traffic", "list", r.rule.List, "seq", s.Seq, "times", n)
		}
		iv.shares = func() map[netip.Prefix]share { return r.shares(s, iv.packets) }
		events = e.observe(r, iv, events)
	}
	return events
}

// shares are the list's prefixes among the summary's.
func (r *ruleState) shares(s *summary.Summary, packets uint64) map[netip.Prefix]share {
	if r.match == nil || packets == 0 {
		return nil
	}
	m := map[netip.Prefix]share{}
	for _, p := range s.Prefixes {
		if n := p.Total(); n > 0 && p.Prefix.IsValid() && r.match.match(p.Prefix, p.Country, p.ASN) {
			sh := m[p.Prefix]
			sh.Country, sh.ASN, sh.Packets = p.Country, p.ASN, sh.Packets+n
			m[p.Prefix] = sh
		}
	}
	return m
}

func (e *Engine) observe(r *ruleState, iv interval, events []Event) []Event {
	reason, hit := r.evaluate(iv)
	active := r.Alert != nil
	switch {
	case active && hit:
		if r.Gap != nil {
			r.Alert.merge(r.Gap)
			r.Gap = nil
		}
		r.Alert.add(iv, reason)
		events = append(events, Event{Kind: Updated, Alert: r.Alert.alert(r.rule.List)})
	case active:
		if r.Gap == nil {
			r.Gap = &tally{Start: iv.start}
		}
		r.Gap.add(iv, "")
		if r.Gap.Observed >= r.rule.Clear {
			a := r.Alert.alert(r.rule.List)
			a.End = r.Alert.End
			r.Alert, r.Gap = nil, nil
			kept := a
			kept.Prefixes = slices.Clone(a.Prefixes)
			e.recent = append(e.recent, kept)
			if len(e.recent) > MaxRecent {
				e.recent = slices.Delete(e.recent, 0, len(e.recent)-MaxRecent)
			}
			events = append(events, Event{Kind: Ended, Alert: a})
		}
	case hit:
		if r.Streak == nil {
			r.Streak = &tally{Start: iv.start}
		}
		r.Streak.add(iv, reason)
		if r.Streak.Observed >= r.rule.MinDuration {
			r.Alert, r.Streak = r.Streak, nil
			r.Alert.ID = e.newID(r.rule.List, r.Alert.Start)
			events = append(events, Event{Kind: Started, Alert: r.Alert.alert(r.rule.List)})
		}
	default:
		r.Streak = nil
	}
	// An interval that triggers the rule, or inside an alert, is not the
	// usual traffic: it does not teach the baseline.
	if !hit && !active {
		r.Baseline = r.Baseline.learn(iv, r.rule.BaselineWindow)
	}
	return events
}

// evaluate tells whether the interval triggers the rule, and why.
func (r *ruleState) evaluate(iv interval) (string, bool) {
	var why []string
	if r.rule.Any && iv.packets > 0 {
		why = append(why, "any traffic")
	}
	if r.rule.PPS > 0 && iv.pps > r.rule.PPS {
		why = append(why, formatRate(iv.pps, "pps")+" > "+formatRate(r.rule.PPS, "pps"))
	}
	if r.rule.BPS > 0 && iv.bps > r.rule.BPS {
		why = append(why, formatRate(iv.bps, "bps")+" > "+formatRate(r.rule.BPS, "bps"))
	}
	if r.rule.BaselineFactor > 0 {
		if base, ok := r.Baseline.at(iv.start, r.rule.BaselineWarmup); ok {
			base = max(base, r.rule.BaselineMinPPS)
			if iv.pps > r.rule.BaselineFactor*base {
				why = append(why, formatFactor(iv.pps/base)+" x baseline "+formatRate(base, "pps"))
			}
		}
	}
	if len(why) == 0 {
		return "", false
	}
	return joinReasons(why), true
}

// newID names an alert by its list and start; in the unlikely case that
// another alert has the same (a clock stepped back), a counter is added.
func (e *Engine) newID(list string, start time.Time) string {
	base := list + "@" + start.UTC().Format(time.RFC3339Nano)
	taken := func(id string) bool {
		for _, r := range e.rules {
			if r.Alert != nil && r.Alert.ID == id {
				return true
			}
		}
		return slices.ContainsFunc(e.recent, func(a Alert) bool { return a.ID == id })
	}
	id := base
	for n := 2; taken(id); n++ {
		id = base + "#" + strconv.Itoa(n)
	}
	return id
}

// Active returns the active alerts, oldest first.
func (e *Engine) Active() []Alert {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []Alert
	for _, r := range e.rules {
		if r.Alert != nil {
			out = append(out, r.Alert.alert(r.rule.List))
		}
	}
	slices.SortFunc(out, func(a, b Alert) int { return cmp.Or(a.Start.Compare(b.Start), cmp.Compare(a.List, b.List)) })
	return out
}

// Recent returns at most n of the ended alerts (all when n <= 0), newest
// first. The history holds the last MaxRecent alerts since the engine
// started; it is not part of the saved state.
func (e *Engine) Recent(n int) []Alert {
	e.mu.Lock()
	defer e.mu.Unlock()
	if n <= 0 || n > len(e.recent) {
		n = len(e.recent)
	}
	out := make([]Alert, 0, n)
	for i := len(e.recent) - 1; i >= len(e.recent)-n; i-- {
		a := e.recent[i]
		a.Prefixes = slices.Clone(a.Prefixes)
		out = append(out, a)
	}
	return out
}

// Baseline returns the learned packet rate of the list at t's hour of the
// week, and whether the slot has seen enough data (the rule's warm-up) to be
// used.
func (e *Engine) Baseline(list string, t time.Time) (pps float64, ok bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	r := e.byList[list]
	if r == nil {
		return 0, false
	}
	return r.Baseline.at(t, r.rule.BaselineWarmup)
}

// backoff rate-limits a repeated warning: it says yes the 1st, 2nd, 4th,
// 8th … time.
type backoff struct{ n uint64 }

func (b *backoff) next() (uint64, bool) {
	b.n++
	return b.n, b.n&(b.n-1) == 0
}
