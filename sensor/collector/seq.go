package collector

import "slices"

// SeqRange is a run of sequence numbers, First to Last inclusive.
type SeqRange struct {
	First uint64 `json:"first"`
	Last  uint64 `json:"last"`
}

// Bounds of the per-sensor sequence tracking.
const (
	// seqWindow is how many sequence numbers below the highest one are
	// remembered exactly, as a bitmap (12.5 KiB per sensor).
	seqWindow = 100_000
	// maxGaps bounds the missing ranges kept per sensor; past it, the
	// oldest are forgotten.
	maxGaps = 1000
)

// seqTracker remembers which sequence numbers of one sensor were received:
// exactly within seqWindow of the highest, and below that only through
// the gaps it recorded. A seq below the window that is in no recorded gap
// is taken as a duplicate.
type seqTracker struct {
	high uint64   // highest seq received; 0 before the first
	bits []uint64 // bit (seq % seqWindow) is set when seq, in (high-seqWindow, high], was received
	gaps []SeqRange
}

// add records seq and reports whether it is new (not a duplicate).
func (t *seqTracker) add(seq uint64) bool {
	if t.bits == nil {
		t.bits = make([]uint64, (seqWindow+63)/64)
	}
	switch {
	case seq > t.high:
		if t.high > 0 && seq > t.high+1 {
			t.addGap(SeqRange{t.high + 1, seq - 1})
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
		t.fill(seq)
		return true
	default:
		return t.fill(seq)
	}
}

func (t *seqTracker) bit(seq uint64) bool {
	i := seq % seqWindow
	return t.bits[i/64]&(1<<(i%64)) != 0
}

func (t *seqTracker) setBit(seq uint64) {
	i := seq % seqWindow
	t.bits[i/64] |= 1 << (i % 64)
}

func (t *seqTracker) clearBit(seq uint64) {
	i := seq % seqWindow
	t.bits[i/64] &^= 1 << (i % 64)
}

func (t *seqTracker) addGap(r SeqRange) {
	t.gaps = append(t.gaps, r) // r is above every recorded gap
	if len(t.gaps) > maxGaps {
		t.gaps = slices.Delete(t.gaps, 0, len(t.gaps)-maxGaps)
	}
}

// fill removes seq from the gaps and reports whether it was in one.
func (t *seqTracker) fill(seq uint64) bool {
	i, found := slices.BinarySearchFunc(t.gaps, seq, func(r SeqRange, s uint64) int {
		switch {
		case r.Last < s:
			return -1
		case r.First > s:
			return 1
		}
		return 0
	})
	if !found {
		return false
	}
	r := t.gaps[i]
	switch {
	case r.First == r.Last:
		t.gaps = slices.Delete(t.gaps, i, i+1)
	case seq == r.First:
		t.gaps[i].First++
	case seq == r.Last:
		t.gaps[i].Last--
	default:
		t.gaps[i].Last = seq - 1
		t.gaps = slices.Insert(t.gaps, i+1, SeqRange{seq + 1, r.Last})
		if len(t.gaps) > maxGaps {
			t.gaps = slices.Delete(t.gaps, 0, 1)
		}
	}
	return true
}
