package collector

import (
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
)

// TestSeqTrackerMatchesReference feeds the tracker and the flat-bitmap one
// before it (seq_ref_test.go) the same seqs: mostly the next one, with
// gaps, late fills, duplicates and jumps past the window, the window
// wrapping around many times. Both answer every add alike and encode the
// same state; a Checkpoint's copy, which shares the chunks, encodes what it
// held whatever is added after it; a restored tracker encodes the same.
func TestSeqTrackerMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	type held struct {
		cp   seqTracker
		want SeqState
	}
	for round := range 20 {
		var got seqTracker
		var want refSeqTracker
		var cps []held
		// A third of the rounds without gaps: their chunks fill up, and
		// are shared until the window wraps around them.
		gaps := round%3 != 0
		for step := range 40_000 {
			s := got.high + 1
			switch k := rng.IntN(20); {
			case k < 15:
			case k < 17 && gaps:
				s += rng.Uint64N(3000) // a gap
			case k == 17 && rng.IntN(100) == 0:
				s += seqWindow + rng.Uint64N(5000) // past the window
			case k == 18 && got.high > 0:
				s -= 1 + rng.Uint64N(min(got.high, seqWindow+100)) // late or a duplicate, near the window
			default:
				s = 1 + rng.Uint64N(got.high+1) // late, or a duplicate
			}
			if x, y := got.add(s), want.add(s); x != y {
				t.Fatalf("round %d, step %d: add(%d) = %v, the reference %v", round, step, s, x, y)
			}
			if rng.IntN(500) == 0 {
				// A Checkpoint: it shares the chunks and encodes them
				// later, outside the lock.
				cp := seqTracker{high: got.high, chunks: got.chunks, gaps: slices.Clone(got.gaps), lost: slices.Clone(got.lost)}
				got.shared = true
				want.shared = true
				cps = append(cps, held{cp, want.state()})
			}
			if step%2000 == 0 || step == 39_999 {
				st := got.state()
				if w := want.state(); !reflect.DeepEqual(st, w) {
					t.Fatalf("round %d, step %d: state %+v, the reference %+v", round, step, st, w)
				}
				r, err := restoreSeqs(st)
				if err != nil {
					t.Fatalf("round %d, step %d: restore: %v", round, step, err)
				}
				if again := r.state(); !reflect.DeepEqual(again, st) {
					t.Fatalf("round %d, step %d: restored state %+v, want %+v", round, step, again, st)
				}
			}
		}
		for i, h := range cps {
			if st := h.cp.state(); !reflect.DeepEqual(st, h.want) {
				t.Fatalf("round %d: checkpoint %d encodes %+v after the adds that followed it, want %+v", round, i, st, h.want)
			}
		}
	}
}

// TestSeqTrackerCompact: a sensor that sent every summary, through several
// windows, holds shared full chunks and at most two of its own.
func TestSeqTrackerCompact(t *testing.T) {
	var tr seqTracker
	for s := uint64(1); s <= 3*seqWindow+12345; s++ {
		if !tr.add(s) {
			t.Fatalf("add(%d): taken for a duplicate", s)
		}
	}
	own := 0
	for _, c := range tr.chunks {
		if c != fullChunk {
			own++
		}
	}
	if own > 2 {
		t.Errorf("%d chunks of its own, want at most 2 (the rest full and shared)", own)
	}
	st := tr.state()
	if len(st.Received) != 1 || st.Received[0] != (SeqRange{First: tr.high - seqWindow + 1, Last: tr.high}) {
		t.Errorf("state: received %v, want the whole window", st.Received)
	}
}

// TestSeqTrackerInOrderAllocs: a summary that comes in order, the common
// case, allocates nothing once the window has filled (its bit is in a
// full, shared chunk), and after a Checkpoint only the chunks' slice is
// copied.
func TestSeqTrackerInOrderAllocs(t *testing.T) {
	var tr seqTracker
	s := uint64(0)
	for range 3 * seqWindow {
		s++
		tr.add(s)
	}
	if n := testing.AllocsPerRun(1000, func() { s++; tr.add(s) }); n != 0 {
		t.Errorf("%v allocations per summary in order, want 0", n)
	}
	if n := testing.AllocsPerRun(1000, func() { tr.shared = true; s++; tr.add(s) }); n != 1 {
		t.Errorf("%v allocations per summary after a checkpoint, want 1 (the slice)", n)
	}
}
