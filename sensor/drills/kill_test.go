package drills_test

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestNetnsDrillKill9 kills sensord with SIGKILL at random points of its
// drain/store cycle, under traffic, DRILL_KILLS times (10 in CI, 100 for the
// record): every start must open the store without moving it aside, the
// stored total must never go down, and at the end the store must hold
// exactly the packets sent: none lost, none counted twice. One start in
// five is killed before it is up (during the store's recovery, the
// datapath's load or the first drain) rather than after.
func TestNetnsDrillKill9(t *testing.T) {
	l := newLab(t)
	kills := envInt(t, "DRILL_KILLS", 10)
	rate := envInt(t, "DRILL_RATE", 2000)
	r := newReport(t, "kill9")
	r.set("kills", 0)
	data := filepath.Join(l.dir, "data")
	cfg := l.config(data, "")
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 9))

	p := l.start(cfg)
	l.waitAttached(p, 60*time.Second)
	tr := l.traffic(rate)
	var last uint64 // the stored total last read
	var early, cut int
	var phases [10]int // kills by tenth of the drain interval since the last drain
	for i := range kills {
		if i%5 == 4 {
			// Killed during its start: somewhere in the first 600 ms.
			time.Sleep(time.Duration(rng.IntN(600)) * time.Millisecond)
			early++
		} else {
			st := l.waitAttached(p, 60*time.Second)
			if st.Store.Recovered != "" {
				if !strings.Contains(st.Store.Recovered, "unfinished write") {
					t.Fatalf("start %d: the store was moved aside: %s", i, st.Store.Recovered)
				}
				cut++
			}
			got, err := l.stored()
			if err != nil {
				t.Fatal(err)
			}
			if got < last {
				t.Fatalf("start %d: the store holds %d remote packets, %d before the kill", i, got, last)
			}
			last = got
			// A random point of the 1 s drain cycle (and of the store's
			// sync, the uplink-less enqueue, the HTTP answers…).
			time.Sleep(time.Duration(rng.IntN(2000)) * time.Millisecond)
			if st, err := l.status(); err == nil && st.LastDrain != nil {
				phases[max(0, time.Since(*st.LastDrain).Milliseconds())/100%10]++
			}
		}
		p.kill9(t)
		r.set("kills", i+1)
		p = l.start(cfg)
	}
	st := l.waitAttached(p, 60*time.Second)
	tr.end()
	if tr.err != nil {
		t.Fatalf("traffic: %v", tr.err)
	}
	sent := tr.sent.Load()
	got := l.settle(sent, 30*time.Second)
	r.set("early", early)
	r.set("cut_tails", cut)
	r.set("sent", sent)
	r.set("stored", got)
	if !st.Invariant.OK {
		t.Errorf("invariant: %s", st.Invariant.Error)
	}
	asides, _ := filepath.Glob(filepath.Join(data, "*.damaged-*"))
	r.set("aside_files", len(asides))
	covered := 0
	for _, n := range phases {
		if n > 0 {
			covered++
		}
	}
	r.set("phases_hit", fmt.Sprintf("%d/10", covered))
	p.stop(t)
}
