package watch

import (
	"cmp"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// listState is what the engine learns and tracks for one list; it is saved
// as JSON (see MarshalState).
type listState struct {
	Baseline baseline `json:"baseline,omitempty"`
	// Streak is the run of intervals in which the condition held, while it
	// is shorter than the rule's MinDuration.
	Streak *tally `json:"streak,omitempty"`
	// Alert is the active alert.
	Alert *tally `json:"alert,omitempty"`
	// Gap is the traffic since the active alert's condition last held; it
	// joins the alert if the condition holds again before Clear.
	Gap *tally `json:"gap,omitempty"`
}

// tally sums a run of intervals.
type tally struct {
	ID        string                 `json:"id,omitempty"`
	Reason    string                 `json:"reason,omitempty"`
	ReasonPPS float64                `json:"reason_pps,omitempty"` // the rate at which Reason was given
	Start     time.Time              `json:"start"`
	End       time.Time              `json:"end"`
	Observed  time.Duration          `json:"observed"` // the intervals' durations, summed
	PeakPPS   float64                `json:"peak_pps"`
	PeakBPS   float64                `json:"peak_bps"`
	Packets   uint64                 `json:"packets"`
	Bytes     uint64                 `json:"bytes"`
	Shares    map[netip.Prefix]share `json:"shares,omitempty"`
}

// share is a prefix's packets in a tally, with its latest labels.
type share struct {
	Country string `json:"country,omitempty"`
	ASN     uint32 `json:"asn,omitempty"`
	Packets uint64 `json:"packets"`
}

func (t *tally) add(iv interval, reason string) {
	t.End = later(t.End, iv.end)
	t.Observed = addDuration(t.Observed, iv.dur)
	t.Packets += iv.packets
	t.Bytes += iv.bytes
	t.PeakPPS = max(t.PeakPPS, iv.pps)
	t.PeakBPS = max(t.PeakBPS, iv.bps)
	if reason != "" && (t.Reason == "" || iv.pps > t.ReasonPPS) {
		t.Reason, t.ReasonPPS = reason, iv.pps
	}
	if iv.packets > 0 && iv.shares != nil {
		t.addShares(iv.shares())
	}
}

func (t *tally) merge(o *tally) {
	t.End = later(t.End, o.End)
	t.Observed = addDuration(t.Observed, o.Observed)
	t.Packets += o.Packets
	t.Bytes += o.Bytes
	t.PeakPPS = max(t.PeakPPS, o.PeakPPS)
	t.PeakBPS = max(t.PeakBPS, o.PeakBPS)
	if o.Reason != "" && (t.Reason == "" || o.ReasonPPS > t.ReasonPPS) {
		t.Reason, t.ReasonPPS = o.Reason, o.ReasonPPS
	}
	t.addShares(o.Shares)
}

func (t *tally) addShares(m map[netip.Prefix]share) {
	if len(m) == 0 {
		return
	}
	if t.Shares == nil {
		t.Shares = make(map[netip.Prefix]share, len(m))
	}
	for p, s := range m {
		cur := t.Shares[p]
		cur.Country, cur.ASN, cur.Packets = s.Country, s.ASN, cur.Packets+s.Packets
		t.Shares[p] = cur
	}
	if len(t.Shares) > maxTracked {
		for _, ps := range topShares(t.Shares, len(t.Shares))[maxTracked/2:] {
			delete(t.Shares, ps.Prefix)
		}
	}
}

// alert is the tally as an active alert of the list.
func (t *tally) alert(list string) Alert {
	return Alert{
		ID:       t.ID,
		List:     list,
		Reason:   t.Reason,
		Start:    t.Start,
		PeakPPS:  t.PeakPPS,
		PeakBPS:  t.PeakBPS,
		Packets:  t.Packets,
		Bytes:    t.Bytes,
		Prefixes: topShares(t.Shares, TopPrefixes),
	}
}

// topShares returns the n prefixes with the most packets, most first, ties
// in address order.
func topShares(m map[netip.Prefix]share, n int) []PrefixShare {
	out := make([]PrefixShare, 0, len(m))
	for p, s := range m {
		out = append(out, PrefixShare{Prefix: p, Country: s.Country, ASN: s.ASN, Packets: s.Packets})
	}
	slices.SortFunc(out, func(a, b PrefixShare) int {
		return cmp.Or(cmp.Compare(b.Packets, a.Packets), a.Prefix.Addr().Compare(b.Prefix.Addr()), cmp.Compare(a.Prefix.Bits(), b.Prefix.Bits()))
	})
	if len(out) > n {
		out = slices.Clip(out[:n])
	}
	return out
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// addDuration adds without overflowing (a restored state may hold anything).
func addDuration(a, b time.Duration) time.Duration {
	if b > 0 && a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// formatRate writes a rate with an SI prefix: "120 pps", "2.4 kpps",
// "8.1 Mbps".
func formatRate(v float64, unit string) string {
	for _, p := range []struct {
		f float64
		s string
	}{{1e12, "T"}, {1e9, "G"}, {1e6, "M"}, {1e3, "k"}} {
		if v >= p.f {
			return formatNumber(v/p.f) + " " + p.s + unit
		}
	}
	return formatNumber(v) + " " + unit
}

// formatNumber writes about three significant digits, without trailing
// zeros.
func formatNumber(v float64) string {
	digits := 2
	switch {
	case v >= 100:
		digits = 0
	case v >= 10:
		digits = 1
	}
	return trimZeros(strconv.FormatFloat(v, 'f', digits, 64))
}

func formatFactor(v float64) string { return trimZeros(strconv.FormatFloat(v, 'f', 1, 64)) }

func trimZeros(s string) string {
	if strings.Contains(s, ".") {
		s = strings.TrimSuffix(strings.TrimRight(s, "0"), ".")
	}
	return s
}

func joinReasons(why []string) string { return strings.Join(why, "; ") }
