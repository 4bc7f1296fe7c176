package quickselect

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestNth compares the selection with sorting, on inputs with
// many ties, sorted, reversed and random.
func TestNth(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{1, 2, 3, 16, 17, 100, 1000, 5000} {
		for _, kind := range []string{"random", "ties", "sorted", "reversed", "equal"} {
			a := make([]uint64, n)
			for i := range a {
				switch kind {
				case "random":
					a[i] = rng.Uint64()
				case "ties":
					a[i] = rng.Uint64N(4)
				case "sorted":
					a[i] = uint64(i)
				case "reversed":
					a[i] = uint64(n - i)
				case "equal":
					a[i] = 7
				}
			}
			sorted := slices.Sorted(slices.Values(a))
			for _, k := range []int{0, n / 3, n / 2, n - 1} {
				if got := Nth(slices.Clone(a), k); got != sorted[k] {
					t.Fatalf("%s, n %d, k %d: %d, want %d", kind, n, k, got, sorted[k])
				}
			}
		}
	}
}
