package collector

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/peerwatch/peerwatch/sensor/summary"
)

// Gap repair (docs/collectord.md, "Gap repair"). A gap is asked for once
// it is older than a grace period (a summary may still be on its way): the
// caller publishes ResendRequests retained on <prefix>/<id>/resend, the
// sensor publishes the summaries again from its store (they fill the gap
// like any late summary, once: the dedupe holds) and reports the seqs it
// no longer holds on <prefix>/<id>/lost, which move out of the gaps into
// the sensor's lost ranges and are asked for no more.

// Topic kinds of gap repair, the last level of a topic.
const (
	KindResend = "resend" // collector -> sensor, retained
	KindLost   = "lost"   // sensor -> collector
)

// ResendRequests returns, for every sensor with gaps found at least grace
// before now, the oldest of them within summary.MaxResendRanges and
// MaxResendSeqs (the last range cut short if needed), oldest first. Gaps
// restored from the store count as old.
func (c *Collector) ResendRequests(now time.Time, grace time.Duration) map[string][]summary.SeqRange {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string][]summary.SeqRange)
	for id, s := range c.sensors {
		if rs := s.seqs.resendRanges(now.Add(-grace)); len(rs) > 0 {
			out[id] = rs
		}
	}
	return out
}

// resendRanges returns the oldest gaps found at or before cutoff, within
// the bounds of a ResendRequest.
func (t *seqTracker) resendRanges(cutoff time.Time) []summary.SeqRange {
	t.syncSince()
	var out []summary.SeqRange
	var n uint64
	for i, g := range t.gaps {
		if t.since[i].After(cutoff) {
			continue
		}
		if len(out) == summary.MaxResendRanges || n == summary.MaxResendSeqs {
			break
		}
		if left := summary.MaxResendSeqs - n; g.Len() > left {
			g.Last = g.First + left - 1
		}
		out = append(out, summary.SeqRange(g))
		n += g.Len()
	}
	return out
}

// handleLost takes a sensor's report of the seqs it no longer holds.
func (c *Collector) handleLost(id string, payload []byte, now time.Time) error {
	r, err := summary.DecodeLostReport(payload)
	if err != nil {
		return err
	}
	if r.Sensor != id {
		return fmt.Errorf("%w: payload says %q", ErrSensorMismatch, truncate(r.Sensor))
	}
	c.mu.Lock()
	defer c.unlock()
	c.tick(now)
	s := c.sensorLocked(id)
	s.lastSeen = now
	lost := make([]SeqRange, len(r.Lost))
	for i, l := range r.Lost {
		lost[i] = SeqRange(l)
	}
	if n := s.seqs.markLost(lost); n > 0 {
		c.log.Warn("sensor no longer holds summaries of its gaps: lost for good", "sensor", id, "seqs", n)
	}
	c.accepted[KindLost]++
	return nil
}

// markLost moves the seqs of rs that are in gaps to the lost ranges and
// returns how many it moved. Seqs of rs in no gap (received meanwhile, or
// never asked) are left alone.
func (t *seqTracker) markLost(rs []SeqRange) uint64 {
	t.syncSince()
	var gaps, lost []SeqRange
	var since []time.Time
	var moved uint64
	j := 0
	for i, g := range t.gaps {
		// Cut g by the ranges of rs that overlap it (rs is sorted).
		for j < len(rs) && rs[j].Last < g.First {
			j++
		}
		at := g.First
		for k := j; k < len(rs) && rs[k].First <= g.Last; k++ {
			lo, hi := max(rs[k].First, g.First), min(rs[k].Last, g.Last)
			if lo > at {
				gaps = append(gaps, SeqRange{First: at, Last: lo - 1})
				since = append(since, t.since[i])
			}
			lost = append(lost, SeqRange{First: lo, Last: hi})
			moved += hi - lo + 1
			at = hi + 1
			if hi == g.Last {
				break
			}
		}
		if at <= g.Last && at >= g.First {
			gaps = append(gaps, SeqRange{First: at, Last: g.Last})
			since = append(since, t.since[i])
		}
	}
	if moved == 0 {
		return 0
	}
	t.gaps, t.since = gaps, since
	if n := len(t.gaps) - maxGaps; n > 0 {
		t.gaps, t.since = slices.Delete(t.gaps, 0, n), slices.Delete(t.since, 0, n)
	}
	t.lost = mergeRanges(t.lost, lost)
	if n := len(t.lost) - maxGaps; n > 0 {
		t.lost = slices.Delete(t.lost, 0, n)
	}
	return moved
}

// mergeRanges returns the union of two sorted lists of disjoint ranges,
// sorted, with touching ranges joined.
func mergeRanges(a, b []SeqRange) []SeqRange {
	all := append(slices.Clone(a), b...)
	slices.SortFunc(all, func(x, y SeqRange) int { return cmp.Compare(x.First, y.First) })
	var out []SeqRange
	for _, r := range all {
		if n := len(out); n > 0 && r.First <= out[n-1].Last+1 {
			out[n-1].Last = max(out[n-1].Last, r.Last)
			continue
		}
		out = append(out, r)
	}
	return out
}

// lostSeqs counts the seqs in rs.
func lostSeqs(rs []SeqRange) uint64 {
	var n uint64
	for _, r := range rs {
		n += r.Len()
	}
	return n
}
