package watch

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/peerwatch/peerwatch/sensor/summary"
)

// usual is the list's usual packet rate: it follows the hour of the day,
// 100 to 330 pps.
func usual(t time.Time) float64 { return 100 + 10*float64(t.UTC().Hour()) }

// feeder generates summaries of one list cheaply: one summary, rewritten.
type feeder struct {
	e    *Engine
	step time.Duration
	now  time.Time
	n    int
	s    summary.Summary
}

func newFeeder(e *Engine, step time.Duration) *feeder {
	return &feeder{e: e, step: step, now: t0, s: summary.Summary{Watch: []summary.WatchCount{{List: "kp"}}}}
}

// feed observes intervals until the clock reaches until, at rate(start)
// times factor, with a few percent of deterministic noise, and returns the
// events.
func (f *feeder) feed(until time.Time, factor float64) []Event {
	var events []Event
	for f.now.Before(until) {
		pps := usual(f.now) * factor * (1 + 0.03*math.Sin(float64(f.n)))
		packets := uint64(math.Round(pps * f.step.Seconds()))
		f.s.Start, f.s.End = f.now, f.now.Add(f.step)
		f.s.Watch[0].Counters = counters(packets, 200*packets)
		events = append(events, f.e.Observe(&f.s)...)
		f.now = f.s.End
		f.n++
	}
	return events
}

func TestBaseline(t *testing.T) {
	for _, step := range []time.Duration{time.Minute, 10 * time.Second} {
		t.Run(step.String(), func(t *testing.T) {
			e := New([]List{kp}, []Rule{{List: "kp", BaselineFactor: 3}}, nil)
			f := newFeeder(e, step)
			day := 24 * time.Hour

			// A burst in the first week finds the slot still warming up.
			f.feed(t0.Add(3*day+10*time.Hour), 1)
			if evs := f.feed(t0.Add(3*day+10*time.Hour+10*time.Minute), 10); len(evs) != 0 {
				t.Fatalf("alert before warm-up: %+v", evs[0])
			}
			if _, ok := e.Baseline("kp", f.now); ok {
				t.Fatal("slot warm after 10 minutes")
			}

			// Eight more days of usual traffic: every slot has seen an hour.
			// (Thursday 10:00 learned the burst while warming up, and is
			// still forgetting it.)
			f.feed(t0.Add(11*day+14*time.Hour), 1)
			for h := range SlotsPerWeek {
				at := t0.Add(time.Duration(h) * time.Hour)
				if at.Weekday() == time.Thursday && at.Hour() == 10 {
					continue
				}
				b, ok := e.Baseline("kp", at)
				if want := usual(at); !ok || math.Abs(b-want) > 0.03*want {
					t.Fatalf("baseline at %v: %.1f pps (warm %v), want %.0f", at, b, ok, want)
				}
			}

			// A 1.5x bump is not an alert, and is learned.
			before, _ := e.Baseline("kp", f.now)
			if evs := f.feed(t0.Add(11*day+14*time.Hour+30*time.Minute), 1.5); len(evs) != 0 {
				t.Fatalf("alert on a 1.5x bump: %+v", evs[0])
			}
			if after, _ := e.Baseline("kp", f.now); !(after > before*1.05) {
				t.Errorf("a 1.5x bump did not move the baseline: %.1f -> %.1f pps", before, after)
			}

			// A 10x burst starts an alert at once, and ends one interval
			// after; its intervals do not move the baseline.
			f.feed(t0.Add(11*day+15*time.Hour), 1)
			burst := f.now
			before, _ = e.Baseline("kp", burst)
			evs := f.feed(burst.Add(20*time.Minute), 10)
			if len(evs) != int(20*time.Minute/step) || evs[0].Kind != Started || evs[1].Kind != Updated {
				t.Fatalf("%d events on a 10x burst, first %+v", len(evs), evs[0])
			}
			a := evs[0].Alert
			if a.Start != burst || !strings.HasSuffix(a.Reason, " x baseline "+formatRate(before, "pps")) || a.PeakPPS < 9*before {
				t.Errorf("alert %+v", a)
			}
			evs = f.feed(burst.Add(20*time.Minute+step), 1)
			if len(evs) != 1 || evs[0].Kind != Ended || evs[0].Alert.End != burst.Add(20*time.Minute) {
				t.Fatalf("events after the burst %+v", evs)
			}
			if after, _ := e.Baseline("kp", burst); after != before {
				t.Errorf("the burst moved the baseline: %v -> %v pps", before, after)
			}
			f.feed(burst.Add(30*time.Minute), 1)
			if after, _ := e.Baseline("kp", burst); after == before {
				t.Error("learning did not resume after the alert")
			}
		})
	}
}

func TestBaselineFloor(t *testing.T) {
	// A list that is usually silent: its baseline is 0 pps, taken as 1 pps.
	e := New([]List{kp}, []Rule{{List: "kp", BaselineFactor: 5, BaselineWarmup: 10 * time.Minute}}, nil)
	var got []string
	for i, packets := range []uint64{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 30, 300, 600, 0} {
		for _, ev := range e.Observe(summ(t0.Add(time.Duration(i)*time.Minute), time.Minute, packets, packets)) {
			got = append(got, ev.Kind.String()+" "+ev.Alert.Reason)
		}
	}
	want := "started 10 x baseline 1 pps"
	if len(got) != 2 || got[0] != want || got[1] != "ended 10 x baseline 1 pps" {
		t.Errorf("events %q, want %q then ended", got, want)
	}
	if b, ok := e.Baseline("kp", t0); !ok || b <= 0 || b >= 1 {
		t.Errorf("baseline %v, %v", b, ok)
	}
}

func TestBaselineLearn(t *testing.T) {
	// Warming up, a slot is the time-weighted mean; then one window of data
	// moves it 1-1/e of the way.
	var b baseline
	at := func(start time.Time, d time.Duration, pps float64) {
		b = b.learn(interval{start: start, end: start.Add(d), dur: d, pps: pps}, time.Hour)
	}
	at(t0, 10*time.Minute, 100)
	at(t0.Add(10*time.Minute), 30*time.Minute, 200)
	if got, ok := b.at(t0, time.Hour); got != 175 || ok {
		t.Errorf("warming up: %v pps, warm %v; want 175 pps, cold", got, ok)
	}
	at(t0.Add(40*time.Minute), 20*time.Minute, 175)
	at(t0.Add(7*24*time.Hour), time.Hour, 175+100)
	if got, ok := b.at(t0, time.Hour); math.Abs(got-(175+100*(1-1/math.E))) > 1e-9 || !ok {
		t.Errorf("after a window: %v pps, warm %v", got, ok)
	}
	if got, _ := b.at(t0.Add(time.Hour), 0); got != 0 {
		t.Errorf("next slot %v", got)
	}
}
