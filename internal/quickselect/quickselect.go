// Package quickselect finds the k-th smallest of a list of counts without
// sorting it: the collector's cut of a window to its top prefixes, and of
// a summary to its top ASes, runs thousands of times a second.
package quickselect

import (
	"math/bits"
	"slices"
)

// Nth returns the value that would be at index k (0 <= k < len(a)) if a
// were sorted in increasing order, and reorders a. It is quickselect with
// a three-way partition (counts often tie) and median-of-three pivots:
// linear time on average; an input that defeats the pivots falls back to
// sorting what is left, so it never takes more than n log n.
func Nth(a []uint64, k int) uint64 {
	lo, hi := 0, len(a)
	for budget := 2*bits.Len(uint(len(a))) + 4; hi-lo > 16 && budget > 0; budget-- {
		x, y, z := a[lo], a[lo+(hi-lo)/2], a[hi-1]
		pivot := max(min(x, y), min(max(x, y), z)) // the median of the three
		// a[lo:lt] < pivot, a[lt:i] == pivot, a[gt:hi] > pivot.
		lt, i, gt := lo, lo, hi
		for i < gt {
			switch v := a[i]; {
			case v < pivot:
				a[lt], a[i] = v, a[lt]
				lt++
				i++
			case v > pivot:
				gt--
				a[i], a[gt] = a[gt], v
			default:
				i++
			}
		}
		switch {
		case k < lt:
			hi = lt
		case k >= gt:
			lo = gt
		default:
			return pivot
		}
	}
	slices.Sort(a[lo:hi])
	return a[k]
}
