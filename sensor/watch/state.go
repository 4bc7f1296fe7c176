package watch

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
)

// StateVersion is the version of the state format MarshalState writes.
const StateVersion = 1

// state is what MarshalState saves: per list, the baseline and the active
// or pending alert.
type state struct {
	Version int                   `json:"version"`
	Lists   map[string]*listState `json:"lists"`
}

// MarshalState returns the engine's state (the baselines, the active alerts
// and the conditions that have started to hold) as JSON, for sensord to
// keep in its store across restarts. The history of ended alerts is not
// part of it.
func (e *Engine) MarshalState() ([]byte, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := state{Version: StateVersion, Lists: make(map[string]*listState, len(e.rules))}
	for _, r := range e.rules {
		st.Lists[r.rule.List] = &r.listState
	}
	b, err := json.Marshal(st)
	if err != nil {
		return nil, fmt.Errorf("encode watch state: %w", err)
	}
	return b, nil
}

// RestoreState replaces the engine's state with one that MarshalState
// wrote. The state of lists that no longer have a rule is dropped; lists
// without saved state start afresh. If data cannot be decoded or is not
// consistent, RestoreState returns an error and leaves the engine empty: no
// baselines, no active alerts.
func (e *Engine) RestoreState(data []byte) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, r := range e.rules {
		r.listState = listState{}
	}
	var st state
	if err := json.Unmarshal(data, &st); err != nil {
		return fmt.Errorf("decode watch state: %w", err)
	}
	if st.Version != StateVersion {
		return fmt.Errorf("watch state version %d: this sensor reads version %d", st.Version, StateVersion)
	}
	for name, ls := range st.Lists {
		if ls == nil {
			continue
		}
		if err := ls.validate(); err != nil {
			return fmt.Errorf("watch state of list %q: %w", name, err)
		}
	}
	for name, ls := range st.Lists {
		r := e.byList[name]
		if r == nil {
			e.log.Info("saved state of a watch list without a rule dropped", "list", name)
			continue
		}
		if ls != nil {
			r.listState = *ls
		}
	}
	return nil
}

func (ls *listState) validate() error {
	if len(ls.Baseline) != 0 && len(ls.Baseline) != SlotsPerWeek {
		return fmt.Errorf("baseline has %d slots, not %d", len(ls.Baseline), SlotsPerWeek)
	}
	for i, s := range ls.Baseline {
		if !(s.PPS >= 0) || math.IsInf(s.PPS, 0) || s.Seen < 0 {
			return fmt.Errorf("baseline slot %d: rate %v, seen %v", i, s.PPS, s.Seen)
		}
	}
	if ls.Streak != nil && ls.Alert != nil {
		return errors.New("both a pending and an active alert")
	}
	if ls.Gap != nil && ls.Alert == nil {
		return errors.New("a gap without an active alert")
	}
	for _, t := range []struct {
		name string
		t    *tally
	}{{"streak", ls.Streak}, {"alert", ls.Alert}, {"gap", ls.Gap}} {
		if t.t == nil {
			continue
		}
		if err := t.t.validate(); err != nil {
			return fmt.Errorf("%s: %w", t.name, err)
		}
	}
	if ls.Alert != nil && ls.Alert.ID == "" {
		return errors.New("alert: no id")
	}
	return nil
}

func (t *tally) validate() error {
	if t.Start.IsZero() || t.End.Before(t.Start) {
		return fmt.Errorf("interval %v to %v", t.Start, t.End)
	}
	if t.Observed < 0 {
		return fmt.Errorf("observed %v", t.Observed)
	}
	for _, f := range []float64{t.ReasonPPS, t.PeakPPS, t.PeakBPS} {
		if !(f >= 0) || math.IsInf(f, 0) {
			return fmt.Errorf("rate %v", f)
		}
	}
	if len(t.Shares) > maxTracked {
		return fmt.Errorf("%d prefixes, more than %d", len(t.Shares), maxTracked)
	}
	for p := range t.Shares {
		if !p.IsValid() || p != p.Masked() {
			return fmt.Errorf("prefix %q", p)
		}
	}
	return nil
}
