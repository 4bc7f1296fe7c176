package summary

import (
	"math/rand/v2"
	"net/netip"
)

// keySet is a set of uint64 keys for validate's duplicate checks, made to
// be reused: emptying it is O(1) (a new generation), and a lookup is one
// multiply and, mostly, one probe, where a map costs a hash of the whole
// key and its growth. Keys are mixed with a random seed before they pick
// a slot, so that a crafted summary cannot make its keys collide.
type keySet struct {
	slots []keySlot // a power of two, at least twice the keys
	gen   uint32
	seed  uint64
}

type keySlot struct {
	key uint64
	gen uint32 // the generation that put key there; any other: empty
}

// reset empties the set, sized for n keys.
func (s *keySet) reset(n int) {
	size := 16
	for size < 2*n {
		size <<= 1
	}
	if len(s.slots) < size || len(s.slots) > max(4*size, maxKeptEntries) {
		s.slots, s.gen = make([]keySlot, size), 0
		s.seed = rand.Uint64()
	}
	s.gen++
	if s.gen == 0 { // wrapped: every slot could look full
		clear(s.slots)
		s.gen = 1
	}
}

// add adds k and reports whether it was not in the set yet.
func (s *keySet) add(k uint64) bool {
	// splitmix64's finalizer, over the seeded key.
	h := k ^ s.seed
	h = (h ^ h>>30) * 0xbf58476d1ce4e5b9
	h = (h ^ h>>27) * 0x94d049bb133111eb
	h ^= h >> 31
	mask := uint64(len(s.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		sl := &s.slots[i]
		if sl.gen != s.gen {
			sl.key, sl.gen = k, s.gen
			return true
		}
		if sl.key == k {
			return false
		}
	}
}

// prefixKey is an IPv4 prefix as a key: the address and the length; ok is
// false for IPv6 prefixes, which do not fit.
func prefixKey(p netip.Prefix) (k uint64, ok bool) {
	a := p.Addr()
	if !a.Is4() {
		return 0, false
	}
	b := a.As4()
	return uint64(b[0])<<40 | uint64(b[1])<<32 | uint64(b[2])<<24 | uint64(b[3])<<16 | uint64(p.Bits()), true
}
