package watch

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"time"
)

// Defaults of the Rule fields whose zero value means "the default".
const (
	// DefaultBaselineWindow is the time constant of the baseline's moving
	// average: one window of data moves a slot ~63% of the way to the new rate.
	DefaultBaselineWindow = time.Hour
	// DefaultBaselineWarmup is how much data a slot needs before the
	// baseline condition is evaluated in it.
	DefaultBaselineWarmup = time.Hour
	// DefaultBaselineMinPPS is the smallest baseline a rate is compared with.
	DefaultBaselineMinPPS = 1.0
)

// List is a watch list: the traffic of the remote prefixes whose country is
// one of Countries, whose origin AS is one of ASNs, or that lie inside one of
// Prefixes. It matches the sensor's aggregate.WatchList, which counts the
// list's traffic into the summaries; the engine needs the definition again
// to tell which of a summary's prefixes belong to the list.
type List struct {
	Name      string
	Countries []string
	ASNs      []uint32
	Prefixes  []netip.Prefix
}

// Rule says when the traffic of one watch list is an alert. The enabled
// conditions are alternatives: any one of them triggers. Rates are over one
// summary's interval, packets and bytes of both directions.
type Rule struct {
	List string
	// Any triggers on any traffic at all.
	Any bool
	// PPS and BPS trigger on a packet or bit rate (bytes × 8) above them;
	// 0 turns the condition off.
	PPS, BPS float64
	// BaselineFactor triggers on a packet rate above this many times the
	// list's learned baseline for the hour of the week (see the package
	// documentation); 0 turns the condition off, otherwise it must be
	// above 1.
	BaselineFactor float64
	// BaselineMinPPS is the smallest baseline the rate is compared with, so
	// that a list that is usually silent does not alert on a handful of
	// packets (0: DefaultBaselineMinPPS).
	BaselineMinPPS float64
	// BaselineWindow is the time constant of the baseline's moving average
	// (0: DefaultBaselineWindow).
	BaselineWindow time.Duration
	// BaselineWarmup is how much data an hour-of-week slot must have seen
	// before the baseline condition is evaluated in it (0:
	// DefaultBaselineWarmup). With the default, the first baseline alerts
	// come after one week of learning.
	BaselineWarmup time.Duration
	// MinDuration is how long the condition must hold, interval after
	// interval, before the alert starts (0: at once). The alert's Start is
	// when the condition began to hold.
	MinDuration time.Duration
	// Clear is how long the condition must have been false for the alert to
	// end (0: one interval).
	Clear time.Duration
}

func (r Rule) withDefaults() Rule {
	if r.BaselineMinPPS == 0 {
		r.BaselineMinPPS = DefaultBaselineMinPPS
	}
	if r.BaselineWindow == 0 {
		r.BaselineWindow = DefaultBaselineWindow
	}
	if r.BaselineWarmup == 0 {
		r.BaselineWarmup = DefaultBaselineWarmup
	}
	return r
}

// Validate checks the watch lists and their rules: lists named once, valid
// prefixes, one rule per list, for a list that exists, with at least one
// condition and sensible numbers. Errors name the rule and field.
func Validate(lists []List, rules []Rule) error {
	var errs []error
	names := map[string]bool{}
	for i, l := range lists {
		if err := l.validate(); err != nil {
			errs = append(errs, fmt.Errorf("list %d (%q): %w", i, l.Name, err))
		}
		if names[l.Name] {
			errs = append(errs, fmt.Errorf("list %d (%q): name: defined twice", i, l.Name))
		}
		names[l.Name] = true
	}
	ruled := map[string]bool{}
	for i, r := range rules {
		if err := r.validate(); err != nil {
			errs = append(errs, fmt.Errorf("rule %d (list %q): %w", i, r.List, err))
		}
		if r.List != "" && !names[r.List] {
			errs = append(errs, fmt.Errorf("rule %d (list %q): list: no such watch list", i, r.List))
		}
		if ruled[r.List] {
			errs = append(errs, fmt.Errorf("rule %d (list %q): list: has another rule", i, r.List))
		}
		ruled[r.List] = true
	}
	return errors.Join(errs...)
}

func (l List) validate() error {
	if l.Name == "" {
		return errors.New("name: empty")
	}
	for _, p := range l.Prefixes {
		if !p.IsValid() {
			return fmt.Errorf("prefixes: invalid prefix %v", p)
		}
	}
	return nil
}

func (r Rule) validate() error {
	if r.List == "" {
		return errors.New("list: empty")
	}
	if !r.Any && r.PPS == 0 && r.BPS == 0 && r.BaselineFactor == 0 {
		return errors.New("no condition: set any, pps, bps or baseline_factor")
	}
	for _, f := range []struct {
		name string
		v    float64
	}{{"pps", r.PPS}, {"bps", r.BPS}, {"baseline_factor", r.BaselineFactor}, {"baseline_min_pps", r.BaselineMinPPS}} {
		if math.IsNaN(f.v) || math.IsInf(f.v, 0) || f.v < 0 {
			return fmt.Errorf("%s: %v is not a finite number >= 0", f.name, f.v)
		}
	}
	if r.BaselineFactor != 0 && r.BaselineFactor <= 1 {
		return fmt.Errorf("baseline_factor: %v must be above 1 (at or below 1 is the usual traffic)", r.BaselineFactor)
	}
	for _, f := range []struct {
		name string
		v    time.Duration
	}{{"baseline_window", r.BaselineWindow}, {"baseline_warmup", r.BaselineWarmup}, {"min_duration", r.MinDuration}, {"clear", r.Clear}} {
		if f.v < 0 {
			return fmt.Errorf("%s: %v is negative", f.name, f.v)
		}
	}
	return nil
}

// matcher tells which of a summary's prefixes belong to a list: the same
// test as the aggregate's, on the prefix's labels, and a list prefix that
// holds the summary prefix. (The datapath's keys never straddle a watched
// prefix, so a summary prefix lies either inside a watched one or outside.)
type matcher struct {
	countries map[string]bool
	asns      map[uint32]bool
	prefixes  map[netip.Prefix]bool
	bits      []int // the lengths of prefixes, ascending
}

func newMatcher(l List) *matcher {
	m := &matcher{countries: map[string]bool{}, asns: map[uint32]bool{}, prefixes: map[netip.Prefix]bool{}}
	for _, c := range l.Countries {
		m.countries[c] = true
	}
	for _, a := range l.ASNs {
		m.asns[a] = true
	}
	lengths := map[int]bool{}
	for _, p := range l.Prefixes {
		if p.IsValid() {
			m.prefixes[p.Masked()] = true
			lengths[p.Bits()] = true
		}
	}
	for b := 0; b <= 128; b++ {
		if lengths[b] {
			m.bits = append(m.bits, b)
		}
	}
	return m
}

func (m *matcher) match(p netip.Prefix, country string, asn uint32) bool {
	if country != "" && m.countries[country] {
		return true
	}
	if asn != 0 && m.asns[asn] {
		return true
	}
	for _, b := range m.bits {
		if b > p.Bits() {
			break
		}
		if q, err := p.Addr().Prefix(b); err == nil && m.prefixes[q] {
			return true
		}
	}
	return false
}
