package datapath

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"math/bits"
	"net/netip"
	"slices"

	"github.com/peerwatch/peerwatch/bpf"
	"github.com/peerwatch/peerwatch/sensor/prefixes"
)

// Tables is what the hot path needs to know of the operator's address space:
// which prefixes are local (the other address of a packet is the remote one),
// and which prefix tables the counting keys must respect.
//
// With no prefix tables, remote addresses are counted in fixed-length blocks
// (Config.V4KeyLen, Config.V6KeyLen). With prefix tables, a key never straddles
// a boundary of any table: outside the /24s and /48s that the tables divide,
// keys are the fixed-length blocks; inside them, the cells between the
// tables' boundaries. Every key therefore lies inside exactly one prefix of
// each table, and resolving keys to prefixes at drain time is exact.
type Tables struct {
	Local  []netip.Prefix
	Prefix []*prefixes.Table
}

// Limits of what the table image may hold.
const (
	// Local IPv6 prefixes are expanded into /32s; shorter than /16 would be
	// more than 65,536 of them.
	minLocalV6Bits = 16
)

var errTableMode = errors.New("key length too short for prefix tables")

// image is the content of one table set, ready to be written to the maps.
type image struct {
	v4Blocks  []bpf.CounterV4Block // V4_BLOCK_WORDS words
	v4Split   map[uint32]*bpf.CounterSplit24
	v6Filter  []bpf.CounterV6FilterWord // V6_FILTER_WORDS words
	v6Local32 map[uint32]uint8
	v6Trie    []netip.Prefix   // local IPv6 prefixes longer than /32
	v6Split   map[uint64]uint8 // /48 (first 64 bits, host order) -> depth
}

// fingerprint identifies a table set's content, so that a restarted daemon
// can tell whether the pinned set is the one it is about to load.
func (img *image) fingerprint() uint64 {
	h := fnv.New64a()
	var b [8]byte
	put := func(v uint64) {
		binary.LittleEndian.PutUint64(b[:], v)
		h.Write(b[:])
	}
	for i, w := range img.v4Blocks {
		if w.Local|w.Split != 0 {
			put(uint64(i))
			put(w.Local)
			put(w.Split)
		}
	}
	for _, net := range sortedKeys(img.v4Split) {
		s := img.v4Split[net]
		put(uint64(net))
		h.Write(s.Cell[:])
		for _, l := range s.Local {
			put(l)
		}
	}
	for _, net := range sortedKeys(img.v6Local32) {
		put(uint64(net)<<8 | uint64(img.v6Local32[net]))
	}
	for _, p := range img.v6Trie {
		b, _ := p.MarshalBinary()
		h.Write(b)
	}
	for _, net := range sortedKeys(img.v6Split) {
		put(net)
		put(uint64(img.v6Split[net]))
	}
	if sum := h.Sum64(); sum != 0 {
		return sum
	}
	return 1 // 0 means "empty set"
}

func sortedKeys[K uint32 | uint64, V any](m map[K]V) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// buildImage computes the content of a table set.
func buildImage(t *Tables, v4KeyLen, v6KeyLen int) (*image, error) {
	if len(t.Prefix) > 0 {
		if v4KeyLen < 24 {
			return nil, fmt.Errorf("ipv4 key length /%d: %w (need /24 or longer)", v4KeyLen, errTableMode)
		}
		if v6KeyLen < 48 {
			return nil, fmt.Errorf("ipv6 key length /%d: %w (need /48 or longer)", v6KeyLen, errTableMode)
		}
	}
	img := &image{
		v4Blocks:  make([]bpf.CounterV4Block, bpf.CounterV4LayoutV4BLOCK_WORDS),
		v4Split:   map[uint32]*bpf.CounterSplit24{},
		v6Filter:  make([]bpf.CounterV6FilterWord, bpf.CounterV6LayoutV6FILTER_WORDS),
		v6Local32: map[uint32]uint8{},
		v6Split:   map[uint64]uint8{},
	}
	var local4, local6 []netip.Prefix
	for _, p := range t.Local {
		p = p.Masked()
		if p.Addr().Is4() {
			local4 = append(local4, p)
		} else {
			local6 = append(local6, p)
		}
	}
	img.buildV4(prefixes.MergeBoundaries(4, t.Prefix...), local4, v4KeyLen)
	if err := img.buildV6(prefixes.MergeBoundaries(6, t.Prefix...), local6, v6KeyLen); err != nil {
		return nil, err
	}
	return img, nil
}

func addr4(a netip.Addr) uint32 {
	b := a.As4()
	return binary.BigEndian.Uint32(b[:])
}

func (img *image) buildV4(bounds []netip.Addr, local []netip.Prefix, keyLen int) {
	// Cell starts inside each split /24, as a 256-bit set.
	starts := map[uint32]*[4]uint64{}
	mark := func(net uint32, host uint32) {
		s := starts[net]
		if s == nil {
			s = &[4]uint64{1} // host 0 always starts a cell
			starts[net] = s
		}
		s[host>>6] |= 1 << (host & 63)
	}
	// A boundary aligned to the key length divides no key.
	unaligned := ^mask32(max(keyLen, 24))
	for _, b := range bounds {
		if v := addr4(b); v&unaligned != 0 {
			mark(v>>8, v&0xFF)
		}
	}
	// Local prefixes: whole /24s in the direct stage, longer ones in their /24's split entry.
	localHosts := map[uint32]*[4]uint64{}
	for _, p := range local {
		v := addr4(p.Addr())
		if p.Bits() <= 24 {
			for net := v >> 8; net <= (v|^mask32(p.Bits()))>>8; net++ {
				img.v4Blocks[net>>6].Local |= 1 << (net & 63)
				if net == 0xFFFFFF {
					break
				}
			}
			continue
		}
		net := v >> 8
		mark(net, 0)
		hosts := localHosts[net]
		if hosts == nil {
			hosts = &[4]uint64{}
			localHosts[net] = hosts
		}
		first := v & 0xFF
		for h := first; h <= first|(^mask32(p.Bits())&0xFF); h++ {
			hosts[h>>6] |= 1 << (h & 63)
		}
	}
	// Keys longer than /24 divide split /24s too.
	step := uint32(256)
	if keyLen > 24 {
		step = 1 << (32 - keyLen)
	}
	for net, s := range starts {
		for h := uint32(0); h < 256; h += step {
			s[h>>6] |= 1 << (h & 63)
		}
		split := &bpf.CounterSplit24{}
		cell := uint8(0)
		for h := 0; h < 256; h++ {
			if s[h>>6]&(1<<(h&63)) != 0 {
				cell = uint8(h)
			}
			split.Cell[h] = cell
		}
		word, bit := net>>6, uint64(1)<<(net&63)
		if img.v4Blocks[word].Local&bit != 0 {
			split.Local = [4]uint64{^uint64(0), ^uint64(0), ^uint64(0), ^uint64(0)}
		} else if hosts := localHosts[net]; hosts != nil {
			split.Local = *hosts
		}
		img.v4Blocks[word].Split |= bit
		img.v4Split[net] = split
	}
}

func mask32(bits int) uint32 {
	if bits <= 0 {
		return 0
	}
	return ^uint32(0) << (32 - bits)
}

func mask64(bits int) uint64 {
	if bits <= 0 {
		return 0
	}
	if bits >= 64 {
		return ^uint64(0)
	}
	return ^uint64(0) << (64 - bits)
}

func addr6(a netip.Addr) (hi, lo uint64) {
	b := a.As16()
	return binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
}

// v6Bucket is the filter bucket of an IPv6 /32, as the hot path computes it.
func v6Bucket(net32 uint32) (word uint32, bit uint64) {
	h := (net32 * uint32(bpf.CounterV6LayoutV6FILTER_MULT)) >> (32 - uint32(bpf.CounterV6LayoutV6FILTER_BITS))
	return h >> 6, 1 << (h & 63)
}

func (img *image) buildV6(bounds []netip.Addr, local []netip.Prefix, keyLen int) error {
	for _, b := range bounds {
		hi, lo := addr6(b)
		depth := 128 - bits.TrailingZeros64(lo)
		if lo == 0 {
			depth = 64 - bits.TrailingZeros64(hi)
		}
		if hi == 0 && lo == 0 || depth <= keyLen {
			continue
		}
		net := hi & mask64(48)
		if uint8(depth) > img.v6Split[net] {
			img.v6Split[net] = max(uint8(depth), uint8(keyLen))
		}
		w, bit := v6Bucket(uint32(net >> 32))
		img.v6Filter[w].Split |= bit
	}
	for _, p := range local {
		hi, _ := addr6(p.Addr())
		first := uint32(hi >> 32)
		if p.Bits() <= 32 {
			if p.Bits() < minLocalV6Bits {
				return fmt.Errorf("local prefix %s: shorter than /%d is not supported", p, minLocalV6Bits)
			}
			last := first | ^mask32(p.Bits())
			for net := first; ; net++ {
				img.v6Local32[net] = uint8(bpf.CounterLocal32StateLOCAL32ALL)
				w, bit := v6Bucket(net)
				img.v6Filter[w].Local |= bit
				if net == last {
					break
				}
			}
			continue
		}
		if img.v6Local32[first] != uint8(bpf.CounterLocal32StateLOCAL32ALL) {
			img.v6Local32[first] = uint8(bpf.CounterLocal32StateLOCAL32PARTIAL)
		}
		w, bit := v6Bucket(first)
		img.v6Filter[w].Local |= bit
		img.v6Trie = append(img.v6Trie, p)
	}
	// Words with exactly one local /32 carry it, so that the hot path skips
	// the hash lookup for it.
	perWord := map[uint32]int{}
	for net := range img.v6Local32 {
		w, _ := v6Bucket(net)
		perWord[w]++
	}
	for net, state := range img.v6Local32 {
		if w, _ := v6Bucket(net); perWord[w] == 1 {
			img.v6Filter[w].LocalNet = net
			img.v6Filter[w].LocalState = uint32(state)
		}
	}
	return nil
}
