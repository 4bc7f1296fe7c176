package collector

import (
	"slices"
	"time"

	"github.com/peerwatch/peerwatch/sensor/summary"
)

// SeqRange is a run of sequence numbers, First to Last inclusive (as
// summary.SeqRange, the gap-repair messages' type, converts to and from).
type SeqRange struct {
	First uint64 `json:"first"`
	Last  uint64 `json:"last"`
}

// Len is the number of sequence numbers in r (0 for an invalid range).
func (r SeqRange) Len() uint64 { return summary.SeqRange(r).Len() }

// Bounds of the per-sensor sequence tracking.
const (
	// seqWindow is how many sequence numbers below the highest one are
	// remembered exactly, as a bitmap (at most 12.5 KiB per sensor, about
	// 1 KiB for one that sent every summary: see seqChunk).
	seqWindow = 100_000
	// seqChunkBits is how many of the window's bits a seqChunk holds;
	// seqChunks is how many chunks the window takes.
	seqChunkBits = 1024
	seqChunks    = (seqWindow + seqChunkBits - 1) / seqChunkBits
	// seqWords is how many 64-bit words the window takes.
	seqWords = (seqWindow + 63) / 64
	// maxGaps bounds the missing ranges kept per sensor; past it, the
	// oldest are forgotten.
	maxGaps = 1000
)

// seqTracker remembers which sequence numbers of one sensor were received:
// exactly within seqWindow of the highest, and below that only through
// the gaps it recorded. A seq below the window that is in no recorded gap
// is taken as a duplicate.
type seqTracker struct {
	high uint64 // highest seq received; 0 before the first
	// chunks are the bitmap of the window, nil before the first seq: bit
	// i = seq % seqWindow, set when seq, in (high-seqWindow, high], was
	// received, is bit i % seqChunkBits of chunks[i / seqChunkBits]. A nil
	// chunk has no bit set.
	chunks []*seqChunk
	// owned has bit n set when chunks[n] is this tracker's own, to
	// change in place; any other chunk (fullChunk, or one a Checkpoint
	// holds too) is copied first.
	owned [(seqChunks + 63) / 64]uint64
	gaps  []SeqRange
	// since[i] is when gaps[i] was found (zero: before a restart); not
	// persisted. A gap is asked for once it is older than the grace
	// (resend.go).
	since []time.Time
	// lost are the seqs the sensor said it no longer holds (a LostReport):
	// out of gaps, never asked for again, but still taken if they come.
	lost []SeqRange
	// shared: a Checkpoint holds chunks too (the slice and every chunk in
	// it), and encodes them outside the collector's lock; the next change
	// copies the slice and owns no chunk. Copying the bitmaps of 10,000
	// sensors under the lock held it for hundreds of milliseconds.
	shared bool
}

// seqChunk is seqChunkBits bits of a tracker's window.
type seqChunk [seqChunkBits / 64]uint64

// fullChunk is the chunk with every bit set, which trackers share: a
// sensor whose summaries all came holds a pointer for each 1024 seqs of its
// window, not their bits. Never changed.
var fullChunk = func() *seqChunk {
	var c seqChunk
	for i := range c {
		c[i] = ^uint64(0)
	}
	return &c
}()

// add records seq and reports whether it is new (not a duplicate).
func (t *seqTracker) add(seq uint64) bool { return t.addAt(seq, time.Time{}) }

// addAt is add with the time a new gap is found at.
func (t *seqTracker) addAt(seq uint64, now time.Time) bool {
	switch {
	case t.chunks == nil:
		t.chunks = make([]*seqChunk, seqChunks)
	case t.shared:
		t.chunks, t.owned, t.shared = slices.Clone(t.chunks), [len(t.owned)]uint64{}, false
	}
	switch {
	case seq > t.high:
		if t.high > 0 && seq > t.high+1 {
			t.addGap(SeqRange{First: t.high + 1, Last: seq - 1}, now)
		}
		// Forget the seqs that fall out of the window: their bit positions
		// are those of the new seqs (high, seq]. seq's own is set below:
		// clearing it first would copy a full chunk, for nothing, on
		// every summary that comes in order.
		if seq-t.high >= seqWindow {
			clear(t.chunks)
			t.owned = [len(t.owned)]uint64{}
		} else {
			for s := t.high + 1; s < seq; s++ {
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
		if !t.fill(seq) {
			t.fillLost(seq)
		}
		return true
	default:
		return t.fill(seq) || t.fillLost(seq)
	}
}

func (t *seqTracker) bit(seq uint64) bool {
	i := seq % seqWindow
	return t.word(i/64)&(1<<(i%64)) != 0
}

// word is the 64 bits of window positions [64w, 64w+64).
func (t *seqTracker) word(w uint64) uint64 {
	if c := t.chunks[w/(seqChunkBits/64)]; c != nil {
		return c[w%(seqChunkBits/64)]
	}
	return 0
}

// chunk returns chunk n, to change in place: made when nil, copied first
// when not the tracker's own.
func (t *seqTracker) chunk(n uint64) *seqChunk {
	if t.owned[n/64]&(1<<(n%64)) == 0 {
		c := new(seqChunk)
		if old := t.chunks[n]; old != nil {
			*c = *old
		}
		t.chunks[n] = c
		t.owned[n/64] |= 1 << (n % 64)
	}
	return t.chunks[n]
}

func (t *seqTracker) setBit(seq uint64) {
	i := seq % seqWindow
	n := i / seqChunkBits
	if t.chunks[n] == fullChunk {
		return
	}
	c := t.chunk(n)
	c[i%seqChunkBits/64] |= 1 << (i % 64)
	if *c == *fullChunk {
		t.setFull(n)
	}
}

// setFull makes chunk n the shared fullChunk.
func (t *seqTracker) setFull(n uint64) {
	t.chunks[n] = fullChunk
	t.owned[n/64] &^= 1 << (n % 64)
}

func (t *seqTracker) clearBit(seq uint64) {
	i := seq % seqWindow
	if t.word(i/64)&(1<<(i%64)) != 0 {
		t.chunk(i / seqChunkBits)[i%seqChunkBits/64] &^= 1 << (i % 64)
	}
}

func (t *seqTracker) addGap(r SeqRange, now time.Time) {
	t.syncSince()
	t.gaps = append(t.gaps, r) // r is above every recorded gap
	t.since = append(t.since, now)
	if n := len(t.gaps) - maxGaps; n > 0 {
		t.gaps = slices.Delete(t.gaps, 0, n)
		t.since = slices.Delete(t.since, 0, n)
	}
}

// syncSince gives since the length of gaps (after a restore or a copy
// that left it out: zero times).
func (t *seqTracker) syncSince() {
	if len(t.since) != len(t.gaps) {
		t.since = make([]time.Time, len(t.gaps))
	}
}

// findRange returns the index of the range of rs that holds seq.
func findRange(rs []SeqRange, seq uint64) (int, bool) {
	return slices.BinarySearchFunc(rs, seq, func(r SeqRange, s uint64) int {
		switch {
		case r.Last < s:
			return -1
		case r.First > s:
			return 1
		}
		return 0
	})
}

// fillLost removes seq from the lost ranges and reports whether it was in
// one: a summary the sensor had said it no longer holds came after all.
func (t *seqTracker) fillLost(seq uint64) bool {
	i, found := findRange(t.lost, seq)
	if !found {
		return false
	}
	r := t.lost[i]
	switch {
	case r.First == r.Last:
		t.lost = slices.Delete(t.lost, i, i+1)
	case seq == r.First:
		t.lost[i].First++
	case seq == r.Last:
		t.lost[i].Last--
	default:
		t.lost[i].Last = seq - 1
		t.lost = slices.Insert(t.lost, i+1, SeqRange{First: seq + 1, Last: r.Last})
		if len(t.lost) > maxGaps {
			t.lost = slices.Delete(t.lost, 0, 1)
		}
	}
	return true
}

// fill removes seq from the gaps and reports whether it was in one.
func (t *seqTracker) fill(seq uint64) bool {
	i, found := findRange(t.gaps, seq)
	if !found {
		return false
	}
	t.syncSince()
	r := t.gaps[i]
	switch {
	case r.First == r.Last:
		t.gaps = slices.Delete(t.gaps, i, i+1)
		t.since = slices.Delete(t.since, i, i+1)
	case seq == r.First:
		t.gaps[i].First++
	case seq == r.Last:
		t.gaps[i].Last--
	default:
		t.gaps[i].Last = seq - 1
		t.gaps = slices.Insert(t.gaps, i+1, SeqRange{First: seq + 1, Last: r.Last})
		t.since = slices.Insert(t.since, i+1, t.since[i])
		if len(t.gaps) > maxGaps {
			t.gaps = slices.Delete(t.gaps, 0, 1)
			t.since = slices.Delete(t.since, 0, 1)
		}
	}
	return true
}
