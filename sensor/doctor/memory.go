package doctor

import (
	"fmt"

	"github.com/peerwatch/peerwatch/sensor/config"
	"github.com/peerwatch/peerwatch/sensor/datapath"
)

// ProcessMemory is what sensord's process takes besides its store: the
// peak resident memory while it loads the real country and AS tables
// under its 200 MB soft limit (223 MB measured, docs/benchmarks.md),
// rounded up.
const ProcessMemory = 240 << 20

// Need is the memory a configuration needs on a machine.
type Need struct {
	Kernel  uint64 // the counter program's maps (datapath.KernelMemory)
	Store   uint64 // store.max_size: buntdb holds the store in memory too
	Process uint64 // ProcessMemory
	CPUs    int    // possible CPUs, which the per-CPU maps are sized by
}

// Total is the sum.
func (n Need) Total() uint64 { return n.Kernel + n.Store + n.Process }

func (n Need) String() string {
	return fmt.Sprintf("%s (kernel maps %s for %d CPUs, store %s, process %s)",
		mib(n.Total()), mib(n.Kernel), n.CPUs, mib(n.Store), mib(n.Process))
}

// DatapathConfig is the datapath's configuration as sensord derives it
// from its own.
func DatapathConfig(cfg *config.Config) datapath.Config {
	return datapath.Config{
		PinDir:         cfg.BPFFSDir,
		CounterEntries: cfg.Datapath.CounterEntries,
		V4SplitEntries: cfg.Datapath.V4SplitEntries,
		V6SplitEntries: cfg.Datapath.V6SplitEntries,
		V4KeyLen:       cfg.Datapath.V4KeyLen,
		V6KeyLen:       cfg.Datapath.V6KeyLen,
		XDPDrop:        cfg.Datapath.XDPDrop,
	}
}

// MemoryNeed is what cfg needs on a machine with cpus possible CPUs.
func MemoryNeed(cfg *config.Config, cpus int) Need {
	return Need{
		Kernel:  datapath.KernelMemory(DatapathConfig(cfg), cpus),
		Store:   uint64(cfg.Store.MaxSize),
		Process: ProcessMemory,
		CPUs:    cpus,
	}
}

// Memory thresholds, as shares of the machine's memory: the rest is the
// system's (page cache, other services, the flash's write buffers).
const (
	memoryWarnShare = 0.5
	memoryFailShare = 0.8
)

// checkMemory compares cfg's need with the machine's memory.
func checkMemory(need Need, memTotal uint64) Check {
	const name = "memory"
	share := float64(need.Total()) / float64(memTotal)
	line := fmt.Sprintf("the configuration needs %s of %s (%.0f%%)", need, mib(memTotal), 100*share)
	switch {
	case share > memoryFailShare:
		return fail(name, "%s: over %.0f%%; lower datapath.counter_entries or store.max_size", line, 100*memoryFailShare)
	case share > memoryWarnShare:
		return warn(name, "%s: over %.0f%%, little left for the system", line, 100*memoryWarnShare)
	}
	return pass(name, "%s", line)
}

func mib(b uint64) string {
	if b >= 10<<30 {
		return fmt.Sprintf("%.1f GiB", float64(b)/(1<<30))
	}
	return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20))
}
