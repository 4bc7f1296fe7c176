// Package summary is what a sensor says of an interval of traffic: totals
// and the invariant counters, the top remote prefixes with their labels, and
// exact per-country, per-AS and per-watch-list aggregates.
//
// The sensor's store keeps summaries (and rolls them up with Merge), and the
// uplink sends them to the collector, which decodes them with the same code.
// Totals always reconcile: the prefixes that do not make the top N are kept
// in Other, and every remote packet is in exactly one country and one AS
// (the empty country and AS 0 when no table knows it).
package summary

import (
	"cmp"
	"errors"
	"fmt"
	"math/bits"
	"net/netip"
	"slices"
	"time"

	"github.com/peerwatch/peerwatch/sensor/traffic"
)

// SchemaVersion is the version of the summary format this code writes.
const SchemaVersion = 1

// Summary of one interval, or of a rollup of intervals.
type Summary struct {
	Schema    int              `json:"schema"`
	Sensor    string           `json:"sensor"`
	Seq       uint64           `json:"seq"` // the sensor's sequence number; survives reboots
	Start     time.Time        `json:"start"`
	End       time.Time        `json:"end"`
	Globals   traffic.Globals  `json:"globals"`
	Remote    traffic.Counters `json:"remote"` // all traffic with a remote key
	Prefixes  []PrefixCount    `json:"prefixes"`
	Other     traffic.Counters `json:"other"` // remote traffic of the prefixes not listed
	Countries []CountryCount   `json:"countries"`
	ASes      []ASCount        `json:"ases"`
	Watch     []WatchCount     `json:"watch,omitempty"`
	// Truncated is the number of prefix entries that Encode moved from
	// Prefixes into Other to keep the message under its size cap (summed by
	// Merge, so a rollup counts entries, not distinct prefixes).
	Truncated int `json:"truncated,omitempty"`
	// OutboxDropped is the number of summaries the sensor's outbox has
	// dropped, never sent, because it was full, since its store was made:
	// a count that only grows, so that the report survives the loss of the
	// summaries that carried it first; the dropped sequence numbers are
	// gaps at the collector. A rollup keeps the largest.
	OutboxDropped uint64 `json:"outbox_dropped,omitempty"`
}

// PrefixCount is the traffic of one remote prefix: the longest prefix of the
// loaded tables that holds it, or a fixed-length block when none does.
type PrefixCount struct {
	Prefix  netip.Prefix `json:"prefix"`
	Country string       `json:"country,omitempty"`
	ASN     uint32       `json:"asn,omitempty"`
	ASName  string       `json:"as_name,omitempty"`
	traffic.Counters
}

// CountryCount is the traffic of one country; "" is traffic no table places.
type CountryCount struct {
	Country string `json:"country"`
	traffic.Counters
}

// ASCount is the traffic of one origin AS; 0 is traffic no table places.
type ASCount struct {
	ASN    uint32 `json:"asn"`
	ASName string `json:"as_name,omitempty"`
	traffic.Counters
}

// WatchCount is the traffic that matched one watch list.
type WatchCount struct {
	List string `json:"list"`
	traffic.Counters
}

// ErrInconsistent reports a summary whose totals do not reconcile.
var ErrInconsistent = errors.New("summary totals do not reconcile")

// Check verifies the summary's invariants: every packet seen is in Remote or
// a global bucket; Remote is the sum of Prefixes and Other, and also of
// Countries, and of ASes.
func (s *Summary) Check() error {
	buckets, ok := sumChecked(s.Globals.NonIP, s.Globals.Malformed, s.Globals.BothLocal, s.Globals.NeitherLocal, s.Globals.Overflow)
	remote, ok2 := sumChecked(s.Remote.Packets[traffic.In], s.Remote.Packets[traffic.Out])
	if !ok || !ok2 {
		return fmt.Errorf("%w: global or remote counters overflow 64 bits", ErrInconsistent)
	}
	if got, ok := sumChecked(remote, buckets); !ok || got != s.Globals.Seen {
		return fmt.Errorf("%w: seen %d != remote %d + buckets %d", ErrInconsistent, s.Globals.Seen, remote, buckets)
	}
	var prefixes, countries, ases checkedSum
	prefixes.add(s.Other)
	for _, p := range s.Prefixes {
		prefixes.add(p.Counters)
	}
	for _, c := range s.Countries {
		countries.add(c.Counters)
	}
	for _, a := range s.ASes {
		ases.add(a.Counters)
	}
	for _, c := range []struct {
		name string
		sum  checkedSum
	}{{"prefixes + other", prefixes}, {"countries", countries}, {"ases", ases}} {
		if c.sum.overflow {
			return fmt.Errorf("%w: the sum of %s overflows 64 bits", ErrInconsistent, c.name)
		}
		if c.sum.Counters != s.Remote {
			return fmt.Errorf("%w: %s %+v != remote %+v", ErrInconsistent, c.name, c.sum.Counters, s.Remote)
		}
	}
	return nil
}

// sumChecked adds vs, and reports false when the sum does not fit in 64
// bits: a crafted summary must not reconcile through wraparound.
func sumChecked(vs ...uint64) (uint64, bool) {
	var sum, carry uint64
	for _, v := range vs {
		var c uint64
		sum, c = bits.Add64(sum, v, 0)
		carry |= c
	}
	return sum, carry == 0
}

// checkedSum adds Counters and remembers whether any field overflowed.
type checkedSum struct {
	traffic.Counters
	overflow bool
}

func (s *checkedSum) add(o traffic.Counters) {
	var c uint64
	for i := range s.Packets {
		var c1, c2 uint64
		s.Packets[i], c1 = bits.Add64(s.Packets[i], o.Packets[i], 0)
		s.Bytes[i], c2 = bits.Add64(s.Bytes[i], o.Bytes[i], 0)
		c |= c1 | c2
	}
	for i := range s.Class {
		var c1 uint64
		s.Class[i], c1 = bits.Add64(s.Class[i], o.Class[i], 0)
		c |= c1
	}
	s.overflow = s.overflow || c != 0
}

// Merge adds o into s: the rollup of two intervals. Prefixes, countries, ASes
// and watch lists are summed by key; the result's prefixes are sorted but
// not cut (call TopN).
func (s *Summary) Merge(o *Summary) {
	s.mergeHead(o)
	s.Prefixes = mergeBy(s.Prefixes, o.Prefixes, func(p PrefixCount) netip.Prefix { return p.Prefix },
		func(a *PrefixCount, b PrefixCount) { a.Counters.Add(b.Counters) })
	s.Countries = mergeBy(s.Countries, o.Countries, func(c CountryCount) string { return c.Country },
		func(a *CountryCount, b CountryCount) { a.Counters.Add(b.Counters) })
	s.ASes = mergeBy(s.ASes, o.ASes, func(a ASCount) uint32 { return a.ASN },
		func(a *ASCount, b ASCount) { a.Counters.Add(b.Counters) })
	s.Watch = mergeBy(s.Watch, o.Watch, func(w WatchCount) string { return w.List },
		func(a *WatchCount, b WatchCount) { a.Counters.Add(b.Counters) })
	s.Sort()
}

// mergeHead merges everything of o but its lists into s.
func (s *Summary) mergeHead(o *Summary) {
	if s.Start.IsZero() || (!o.Start.IsZero() && o.Start.Before(s.Start)) {
		s.Start = o.Start
	}
	if o.End.After(s.End) {
		s.End = o.End
	}
	s.Seq = max(s.Seq, o.Seq)
	s.Globals.Add(o.Globals)
	s.Remote.Add(o.Remote)
	s.Other.Add(o.Other)
	s.Truncated += o.Truncated
	s.OutboxDropped = max(s.OutboxDropped, o.OutboxDropped)
}

func mergeBy[T any, K comparable](a, b []T, key func(T) K, add func(*T, T)) []T {
	idx := make(map[K]int, len(a))
	for i, x := range a {
		idx[key(x)] = i
	}
	for _, y := range b {
		if i, ok := idx[key(y)]; ok {
			add(&a[i], y)
			continue
		}
		idx[key(y)] = len(a)
		a = append(a, y)
	}
	return a
}

// Sort orders prefixes, countries and ASes by packets, most first (ties by
// key, so the order is stable), and watch lists by name.
func (s *Summary) Sort() {
	slices.SortFunc(s.Prefixes, prefixOrder)
	slices.SortFunc(s.Countries, func(a, b CountryCount) int {
		return cmp.Or(cmp.Compare(b.Total(), a.Total()), cmp.Compare(a.Country, b.Country))
	})
	slices.SortFunc(s.ASes, func(a, b ASCount) int {
		return cmp.Or(cmp.Compare(b.Total(), a.Total()), cmp.Compare(a.ASN, b.ASN))
	})
	slices.SortFunc(s.Watch, func(a, b WatchCount) int { return cmp.Compare(a.List, b.List) })
}

// prefixOrder is the order of Summary.Prefixes: most packets first, then
// by address and length.
func prefixOrder(a, b PrefixCount) int {
	return cmp.Or(cmp.Compare(b.Total(), a.Total()), a.Prefix.Addr().Compare(b.Prefix.Addr()), cmp.Compare(a.Prefix.Bits(), b.Prefix.Bits()))
}

// TopN keeps the n prefixes with the most packets (the summary must be
// sorted) and adds the rest to Other.
func (s *Summary) TopN(n int) {
	if len(s.Prefixes) <= n {
		return
	}
	for _, p := range s.Prefixes[n:] {
		s.Other.Add(p.Counters)
	}
	s.Prefixes = slices.Clip(s.Prefixes[:n])
}
