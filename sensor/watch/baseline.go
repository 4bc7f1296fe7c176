package watch

import (
	"math"
	"time"
)

// SlotsPerWeek is the number of baseline slots: one per hour of the week.
const SlotsPerWeek = 7 * 24

// baseline is a list's usual packet rate per hour of the week (see the
// package documentation); nil until the first interval is learned.
type baseline []slot

type slot struct {
	PPS  float64       `json:"pps"`
	Seen time.Duration `json:"seen"` // the data the slot has learned from
}

func slotOf(t time.Time) int {
	t = t.UTC()
	return int(t.Weekday())*24 + t.Hour()
}

// learn adds an interval's rate to the slot of its start.
func (b baseline) learn(iv interval, window time.Duration) baseline {
	if b == nil {
		b = make(baseline, SlotsPerWeek)
	}
	s := &b[slotOf(iv.start)]
	seen := addDuration(s.Seen, iv.dur)
	alpha := -math.Expm1(-iv.dur.Seconds() / window.Seconds())
	if mean := iv.dur.Seconds() / seen.Seconds(); mean > alpha {
		alpha = mean // still warming up: the plain mean
	}
	s.PPS += alpha * (iv.pps - s.PPS)
	s.Seen = seen
	return b
}

// at returns the slot's rate at t and whether it has seen warmup of data.
func (b baseline) at(t time.Time, warmup time.Duration) (float64, bool) {
	if b == nil {
		return 0, false
	}
	s := b[slotOf(t)]
	return s.PPS, s.Seen >= warmup
}
