package datapath

import (
	"math/bits"
	"unsafe"

	"github.com/peerwatch/peerwatch/bpf"
)

// Kernel memory, as the kernel charges it (memlock in fdinfo, the maps'
// mem_usage) on 64-bit architectures.
const (
	htabElem   = 48 // struct htab_elem before the key
	htabBucket = 16 // struct bucket; buckets are a power of two
	pointer    = 8
)

func round8(n uint64) uint64 { return (n + 7) &^ 7 }

func pow2(n uint64) uint64 { return 1 << bits.Len64(n-1) }

// hashMemory is a preallocated hash map's memory: buckets, elements, and
// for per-CPU maps a value per CPU (cpus == 0: not per-CPU).
func hashMemory(entries, key, value, cpus uint64) uint64 {
	m := pow2(entries) * htabBucket
	if cpus == 0 {
		return m + entries*(htabElem+round8(key)+round8(value))
	}
	return m + entries*(htabElem+round8(key)+pointer+round8(value)*cpus)
}

// KernelMemory is the kernel memory of the maps with cfg on a machine with
// cpus possible CPUs. docs/datapath.md shows the formula per map;
// TestProgKernelMemory checks it against the kernel's own accounting.
func KernelMemory(cfg Config, cpus int) uint64 {
	cfg = cfg.withDefaults()
	c := uint64(cpus)
	var (
		counters = uint64(unsafe.Sizeof(bpf.CounterRemoteCounters{}))
		key      = uint64(unsafe.Sizeof(bpf.CounterRemoteKey{}))
		entry    = uint64(unsafe.Sizeof(bpf.CounterCacheEntry{}))
		split24  = uint64(unsafe.Sizeof(bpf.CounterSplit24{}))
		block    = uint64(unsafe.Sizeof(bpf.CounterV4Block{}))
		filter   = uint64(unsafe.Sizeof(bpf.CounterV6FilterWord{}))
		slots    = uint64(bpf.CounterCacheLayoutCACHE_SLOTS)
		words4   = uint64(bpf.CounterV4LayoutV4BLOCK_WORDS)
		words6   = uint64(bpf.CounterV6LayoutV6FILTER_WORDS)
	)
	total := 2 * hashMemory(uint64(cfg.CounterEntries), key, counters, c) // two epochs
	total += 2 * slots * (pointer + round8(entry)*c)                      // cache
	total += 2 * words4 * round8(block)                                   // v4_blocks
	total += uint64(cfg.V4SplitEntries) * round8(split24)                 // v4_split
	total += 2 * words6 * round8(filter)                                  // v6_filter
	total += hashMemory(uint64(cfg.V6SplitEntries), 16, 1, 0)             // v6_split
	total += hashMemory(uint64(cfg.V6Local32Entries), 8, 1, 0)            // v6_local32
	return total
}
