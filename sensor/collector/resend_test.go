package collector

import (
	"encoding/json"
	"errors"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/peerwatch/peerwatch/sensor/summary"
)

func lostReport(t *testing.T, id string, rs ...summary.SeqRange) []byte {
	t.Helper()
	b, err := summary.EncodeLostReport(&summary.LostReport{Sensor: id, Lost: rs})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestGapRepair: gaps are asked for after the grace, a resent summary
// fills its gap once, a lost report moves seqs out of the gaps for good,
// and a lost seq that comes after all is still taken, once.
func TestGapRepair(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	c := New(Options{}, nil)
	t0 := time.Now().UTC()
	send := func(seq uint64, at time.Time) error {
		return c.Handle(topic("s1", "summary"), encode(t, makeSummary(rng, "s1", seq)), at)
	}
	for _, seq := range []uint64{1, 2, 5, 6} {
		if err := send(seq, t0); err != nil {
			t.Fatal(err)
		}
	}
	if err := send(10, t0.Add(3*time.Second)); err != nil {
		t.Fatal(err)
	}
	// Gap 3-4 found at t0, gap 7-9 at t0+3s.
	if got := c.ResendRequests(t0.Add(time.Second), 2*time.Second); len(got) != 0 {
		t.Fatalf("within the grace: %v, want nothing asked", got)
	}
	want := []summary.SeqRange{{First: 3, Last: 4}}
	if got := c.ResendRequests(t0.Add(4*time.Second), 2*time.Second); !reflect.DeepEqual(got["s1"], want) {
		t.Fatalf("after the grace of the first gap: %v, want %v", got, want)
	}
	want = []summary.SeqRange{{First: 3, Last: 4}, {First: 7, Last: 9}}
	if got := c.ResendRequests(t0.Add(5*time.Second), 2*time.Second); !reflect.DeepEqual(got["s1"], want) {
		t.Fatalf("both gaps: %v, want %v", got, want)
	}
	// The sensor resends 3 and 8 and reports 4 and 7 lost (and 1, which
	// the collector has: ignored).
	if err := send(3, t0.Add(6*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := send(8, t0.Add(6*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := send(8, t0.Add(6*time.Second)); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("second resend of 8: %v, want a duplicate", err)
	}
	if err := c.Handle(topic("s1", KindLost), lostReport(t, "s1", summary.SeqRange{First: 1, Last: 1}, summary.SeqRange{First: 4, Last: 4}, summary.SeqRange{First: 7, Last: 7}), t0.Add(7*time.Second)); err != nil {
		t.Fatal(err)
	}
	st := c.Sensors(t0)[0]
	if !reflect.DeepEqual(st.Gaps, []SeqRange{{9, 9}}) || !reflect.DeepEqual(st.Lost, []SeqRange{{4, 4}, {7, 7}}) || st.LostSeqs != 2 || st.Repaired != 2 || st.Summaries != 7 {
		t.Fatalf("sensor %+v; want gap 9, lost 4 and 7, 2 repaired, 7 summaries", st)
	}
	if got := c.ResendRequests(t0.Add(time.Minute), 2*time.Second); !reflect.DeepEqual(got["s1"], []summary.SeqRange{{First: 9, Last: 9}}) {
		t.Fatalf("after the report: %v, want only 9 asked", got)
	}
	// 7 comes after all (it was in the sensor's outbox): taken once.
	if err := send(7, t0.Add(8*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := send(7, t0.Add(8*time.Second)); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("7 again: %v, want a duplicate", err)
	}
	if err := send(9, t0.Add(8*time.Second)); err != nil {
		t.Fatal(err)
	}
	st = c.Sensors(t0)[0]
	if st.Gaps != nil || !reflect.DeepEqual(st.Lost, []SeqRange{{4, 4}}) || st.LostSeqs != 1 || st.Summaries != 9 {
		t.Fatalf("sensor %+v; want no gap, 4 lost, 9 summaries", st)
	}
	if got := c.ResendRequests(t0.Add(time.Minute), 0); len(got) != 0 {
		t.Fatalf("no gap left: %v, want nothing asked", got)
	}
	// The state survives a checkpoint.
	c2 := New(Options{}, nil)
	if err := c2.Restore(roundTrip(t, c.Checkpoint(true))); err != nil {
		t.Fatal(err)
	}
	if st2 := c2.Sensors(t0)[0]; !reflect.DeepEqual(st2, st) {
		t.Fatalf("restored %+v, want %+v", st2, st)
	}
	// Refused reports.
	if err := c.Handle(topic("s1", KindLost), lostReport(t, "s2", summary.SeqRange{First: 4, Last: 4}), t0); !errors.Is(err, ErrSensorMismatch) {
		t.Errorf("report naming another sensor: %v", err)
	}
	if err := c.Handle(topic("s1", KindLost), []byte(`{"sensor":"s1","lost":[]}`), t0); !errors.Is(err, summary.ErrMalformed) {
		t.Errorf("empty report: %v", err)
	}
	// The collector's own request, back through its subscription: ignored.
	before := c.Rejects()
	if err := c.Handle(topic("s1", KindResend), []byte(`{"sensor":"s1","missing":[{"first":1,"last":1}]}`), t0); err != nil {
		t.Errorf("resend topic: %v", err)
	}
	if after := c.Rejects(); !reflect.DeepEqual(before, after) {
		t.Errorf("rejects changed by the resend topic: %v -> %v", before, after)
	}
}

// TestResendRequestBounds: at most MaxResendRanges ranges and
// MaxResendSeqs seqs, the oldest first, the last range cut short.
func TestResendRequestBounds(t *testing.T) {
	var tr seqTracker
	for seq := uint64(1); seq <= 400; seq += 3 { // gaps of 2: 133 of them
		tr.add(seq)
	}
	rs := tr.resendRanges(time.Now())
	if len(rs) != summary.MaxResendRanges || rs[0] != (summary.SeqRange{First: 2, Last: 3}) {
		t.Fatalf("%d ranges from %v, want %d from 2-3", len(rs), rs[0], summary.MaxResendRanges)
	}
	tr = seqTracker{}
	tr.add(1)
	tr.add(600)
	tr.add(1000)
	tr.add(2000)
	rs = tr.resendRanges(time.Now())
	want := []summary.SeqRange{{First: 2, Last: 599}, {First: 601, Last: 999}, {First: 1001, Last: 1003}}
	if !reflect.DeepEqual(rs, want) {
		t.Fatalf("%v, want %v", rs, want)
	}
	if _, err := summary.EncodeResendRequest(&summary.ResendRequest{Sensor: "s1", Missing: rs}); err != nil {
		t.Fatalf("the request does not encode: %v", err)
	}
}

func TestMarkLost(t *testing.T) {
	var tr seqTracker
	for _, s := range []uint64{1, 10, 20, 30} {
		tr.add(s)
	}
	// gaps 2-9, 11-19, 21-29
	n := tr.markLost([]SeqRange{{1, 3}, {5, 5}, {9, 12}, {25, 40}})
	if n != 2+1+3+5 {
		t.Errorf("moved %d", n)
	}
	wantGaps := []SeqRange{{4, 4}, {6, 8}, {13, 19}, {21, 24}}
	wantLost := []SeqRange{{2, 3}, {5, 5}, {9, 9}, {11, 12}, {25, 29}}
	if !reflect.DeepEqual(tr.gaps, wantGaps) || !reflect.DeepEqual(tr.lost, wantLost) || len(tr.since) != len(tr.gaps) {
		b, _ := json.Marshal(map[string]any{"gaps": tr.gaps, "lost": tr.lost})
		t.Fatalf("%s, want gaps %v lost %v", b, wantGaps, wantLost)
	}
	tr.markLost([]SeqRange{{4, 4}, {6, 8}})
	if want := []SeqRange{{2, 9}, {11, 12}, {25, 29}}; !reflect.DeepEqual(tr.lost, want) {
		t.Fatalf("lost %v, want the touching ranges joined: %v", tr.lost, want)
	}
}

// FuzzSeqTrackerRepair: any mix of received seqs and lost reports keeps
// the tracker consistent: gaps and lost ranges sorted, disjoint, apart
// from each other, below high; a seq is new exactly once.
func FuzzSeqTrackerRepair(f *testing.F) {
	f.Add([]byte{1, 0, 9, 2, 3, 5, 4, 0, 3, 1, 0, 4})
	f.Add([]byte{1, 0, 200, 2, 10, 90, 1, 0, 50, 1, 0, 50})
	f.Fuzz(func(t *testing.T, ops []byte) {
		var tr seqTracker
		seen := map[uint64]bool{}
		for i := 0; i+2 < len(ops) && i < 300; i += 3 {
			a, b := uint64(ops[i+1])+1, uint64(ops[i+2])+1
			if ops[i]%2 == 1 {
				seq := a*256 + b - 256
				// Every seq here is within the tracker's exact window.
				if got, want := tr.add(seq), !seen[seq]; got != want {
					t.Fatalf("add %d: new %v, want %v", seq, got, want)
				}
				seen[seq] = true
			} else {
				lo, hi := min(a, b), max(a, b)
				tr.markLost([]SeqRange{{lo, hi}})
			}
			if len(tr.since) != len(tr.gaps) {
				t.Fatalf("%d since for %d gaps", len(tr.since), len(tr.gaps))
			}
			for _, rs := range [][]SeqRange{tr.gaps, tr.lost} {
				for j, r := range rs {
					if r.First == 0 || r.Last < r.First || r.Last >= tr.high || (j > 0 && r.First <= rs[j-1].Last) {
						t.Fatalf("bad ranges %v (high %d)", rs, tr.high)
					}
					for s := r.First; s <= r.Last; s++ {
						if seen[s] {
							t.Fatalf("seq %d received but in %v", s, rs)
						}
					}
				}
			}
			for _, g := range tr.gaps {
				for s := g.First; s <= g.Last; s++ {
					if inAny(tr.lost, s) {
						t.Fatalf("seq %d both in gaps %v and lost %v", s, tr.gaps, tr.lost)
					}
				}
			}
		}
	})
}

func inAny(rs []SeqRange, seq uint64) bool {
	_, ok := findRange(rs, seq)
	return ok
}
