package collector

// The per-sensor sequence tracker as it was before its bitmap went into
// shared chunks: one flat bitmap of seqWindow bits, copied whole on the
// first change after a Checkpoint. TestSeqTrackerMatchesReference compares
// the two.

import (
	"encoding/binary"
	"slices"
	"time"
)

type refSeqTracker struct {
	high uint64   // highest seq received; 0 before the first
	bits []uint64 // bit (seq % seqWindow) is set when seq, in (high-seqWindow, high], was received
	// g holds the gaps and lost ranges, whose code is seqTracker's.
	g seqTracker
	// shared: a Checkpoint holds bits too; the next change copies it.
	shared bool
}

// add records seq and reports whether it is new (not a duplicate).
func (t *refSeqTracker) add(seq uint64) bool { return t.addAt(seq, time.Time{}) }

// addAt is add with the time a new gap is found at.
func (t *refSeqTracker) addAt(seq uint64, now time.Time) bool {
	switch {
	case t.bits == nil:
		t.bits = make([]uint64, (seqWindow+63)/64)
	case t.shared:
		t.bits, t.shared = slices.Clone(t.bits), false
	}
	switch {
	case seq > t.high:
		if t.high > 0 && seq > t.high+1 {
			t.g.addGap(SeqRange{First: t.high + 1, Last: seq - 1}, now)
		}
		// Forget the seqs that fall out of the window: their bit positions
		// are those of the new seqs (high, seq].
		if seq-t.high >= seqWindow {
			clear(t.bits)
		} else {
			for s := t.high + 1; s <= seq; s++ {
				t.clearBit(s)
			}
		}
		t.high = seq
		t.setBit(seq)
		return true
	case t.high-seq < seqWindow:
		if t.bit(seq) {
			return false
		}
		t.setBit(seq)
		if !t.g.fill(seq) {
			t.g.fillLost(seq)
		}
		return true
	default:
		return t.g.fill(seq) || t.g.fillLost(seq)
	}
}

func (t *refSeqTracker) bit(seq uint64) bool {
	i := seq % seqWindow
	return t.bits[i/64]&(1<<(i%64)) != 0
}

func (t *refSeqTracker) setBit(seq uint64) {
	i := seq % seqWindow
	t.bits[i/64] |= 1 << (i % 64)
}

func (t *refSeqTracker) clearBit(seq uint64) {
	i := seq % seqWindow
	t.bits[i/64] &^= 1 << (i % 64)
}

// window is the range of seqs the bitmap covers: [lo, t.high].
func (t *refSeqTracker) window() (lo uint64) {
	if t.high >= seqWindow {
		return t.high - seqWindow + 1
	}
	return 1
}

// state encodes the tracker.
func (t *refSeqTracker) state() SeqState {
	st := SeqState{High: t.high, Gaps: slices.Clone(t.g.gaps), Lost: slices.Clone(t.g.lost)}
	if t.bits == nil || t.high == 0 {
		return st
	}
	var runs []SeqRange
	for s := t.window(); s <= t.high; s++ {
		if !t.bit(s) {
			continue
		}
		if n := len(runs); n > 0 && runs[n-1].Last == s-1 {
			runs[n-1].Last = s
			continue
		}
		if len(runs) == maxSeqRuns {
			st.Bitmap = make([]byte, 8*len(t.bits))
			for i, w := range t.bits {
				binary.LittleEndian.PutUint64(st.Bitmap[8*i:], w)
			}
			return st
		}
		runs = append(runs, SeqRange{First: s, Last: s})
	}
	st.Received = runs
	return st
}
