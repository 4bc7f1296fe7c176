// Package datapath loads the peerwatch counter program into the kernel,
// attaches it to interfaces, keeps its tables and drains its counters.
//
// It is the only importer of package bpf. Maps and links are pinned under
// Config.PinDir so that a restarted or upgraded daemon finds the program still
// counting and loses nothing.
//
// # Epochs
//
// The program counts into one of two epochs (counter map and global counters)
// chosen by one byte of the state map. A drain switches the byte, waits for an
// RCU grace period so that no program still runs on the old epoch, and reads
// the old epoch, which is now quiescent: there is no race with the hot path,
// no atomic operation on it, and the invariant seen == sum of all counters
// holds exactly for each interval. The old epoch is cleared at the next drain
// (after the caller had the interval), which frees the room a flood of
// spoofed sources took; a daemon that dies before that finds the interval
// again at start (Interval.Recovered) under the same generation number.
//
// # Table sets
//
// Local and prefix tables exist twice (set 0 and 1). SetTables writes the
// inactive set and switches table set and epoch with the same one-byte store,
// so that every interval is counted under one table set only.
package datapath

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/peerwatch/peerwatch/bpf"
	"github.com/peerwatch/peerwatch/sensor/wallclock"
)

// Config sizes the maps and sets the program's knobs. The zero value of a
// field means its default (see DefaultConfig).
type Config struct {
	// PinDir is a directory on a bpffs where maps and links are pinned.
	// Empty: nothing is pinned and everything goes when the process ends.
	PinDir string
	// CounterEntries is the number of remote keys each epoch holds; what
	// does not fit in an interval is counted as overflow.
	CounterEntries uint32
	// Split entries of both table sets together (a table swap holds both).
	V4SplitEntries uint32
	V6SplitEntries uint32
	// Local IPv6 /32s and local IPv6 prefixes longer than /32, both sets.
	V6Local32Entries   uint32
	V6LocalTrieEntries uint32
	// V4KeyLen and V6KeyLen are the counting granularity outside the /24s
	// and /48s that prefix tables divide: 24 and 48 by default.
	V4KeyLen int
	V6KeyLen int
	// XDPDrop makes the XDP program drop what it counted: only for pure
	// mirror (SPAN/TAP) ports, where nothing else needs the packets.
	XDPDrop bool
}

// DefaultConfig suits a 1 GB board with the real country and AS tables.
func DefaultConfig() Config {
	return Config{
		PinDir:             "/sys/fs/bpf/peerwatch",
		CounterEntries:     65536,
		V4SplitEntries:     2 * 32768,
		V6SplitEntries:     2 * 16384,
		V6Local32Entries:   2 * 4096,
		V6LocalTrieEntries: 2 * 1024,
		V4KeyLen:           24,
		V6KeyLen:           48,
	}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	set := func(v *uint32, def uint32) {
		if *v == 0 {
			*v = def
		}
	}
	set(&c.CounterEntries, d.CounterEntries)
	set(&c.V4SplitEntries, d.V4SplitEntries)
	set(&c.V6SplitEntries, d.V6SplitEntries)
	set(&c.V6Local32Entries, d.V6Local32Entries)
	set(&c.V6LocalTrieEntries, d.V6LocalTrieEntries)
	if c.V4KeyLen == 0 {
		c.V4KeyLen = d.V4KeyLen
	}
	if c.V6KeyLen == 0 {
		c.V6KeyLen = d.V6KeyLen
	}
	return c
}

// Validate names the first field that is out of range.
func (c Config) Validate() error {
	c = c.withDefaults()
	if c.V4KeyLen < 1 || c.V4KeyLen > 32 {
		return fmt.Errorf("V4KeyLen: /%d is not an IPv4 prefix length (1-32)", c.V4KeyLen)
	}
	if c.V6KeyLen < 1 || c.V6KeyLen > 128 {
		return fmt.Errorf("V6KeyLen: /%d is not an IPv6 prefix length (1-128)", c.V6KeyLen)
	}
	return nil
}

// Datapath is the loaded program with its maps and attachments.
type Datapath struct {
	cfg  Config
	log  *slog.Logger
	objs bpf.CounterObjects
	ncpu int

	mu       sync.Mutex
	tables   [2]*Tables                // what each table set was built from; nil: unknown
	pending  []*Interval               // intervals closed outside Drain (table swaps, recovery)
	lastKeys [2][]bpf.CounterRemoteKey // keys read from each epoch, to clear it
	// usedSlots are the counter cache slots that held a key on some CPU
	// when each epoch was read, to clear only those; nil: unknown, clear
	// every slot.
	usedSlots [2][]uint32
	lastSize  int       // keys in the last interval: the next one's likely size
	since     time.Time // when the active epoch started
	attached  map[string]*attachment
	totals    Totals
}

var errIncompatible = errors.New("pinned maps are incompatible with this version")

// Open loads the program, reusing the maps pinned under cfg.PinDir when they
// are compatible. Pinned maps of another layout are moved aside with a
// logged explanation, and counting starts from zero.
func Open(cfg Config, log *slog.Logger) (*Datapath, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "datapath")
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("remove memlock limit: %w", err)
	}
	d := &Datapath{cfg: cfg, log: log, attached: map[string]*attachment{}, since: wallclock.Now()}
	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		return nil, fmt.Errorf("possible cpus: %w", err)
	}
	d.ncpu = ncpu

	err = d.load()
	if errors.Is(err, errIncompatible) || errors.Is(err, ebpf.ErrMapIncompatible) {
		aside := fmt.Sprintf("%s-incompatible-%d", d.mapsDir(), time.Now().Unix()) // bpffs names have no dots
		log.Error("pinned maps have another layout: moving them aside, counting restarts from zero",
			"pinned", d.mapsDir(), "moved_to", aside, "reason", err)
		if rerr := os.Rename(d.mapsDir(), aside); rerr != nil {
			return nil, fmt.Errorf("move aside incompatible maps %s: %w", d.mapsDir(), rerr)
		}
		err = d.load()
	}
	if err != nil {
		return nil, err
	}
	if err := d.recover(); err != nil {
		d.objs.Close()
		return nil, err
	}
	return d, nil
}

func (d *Datapath) mapsDir() string  { return filepath.Join(d.cfg.PinDir, "maps") }
func (d *Datapath) linksDir() string { return filepath.Join(d.cfg.PinDir, "links") }

func (d *Datapath) load() error {
	spec, err := bpf.LoadCounter()
	if err != nil {
		return fmt.Errorf("load counter spec: %w", err)
	}
	verdict := uint32(2) // XDP_PASS
	if d.cfg.XDPDrop {
		verdict = 1 // XDP_DROP
	}
	if err := spec.Variables["peerwatch_config"].Set(bpf.CounterConfig{
		XdpVerdict: verdict,
		V4KeyLen:   uint8(d.cfg.V4KeyLen),
		V6KeyLen:   uint8(d.cfg.V6KeyLen),
	}); err != nil {
		return fmt.Errorf("set program config: %w", err)
	}
	sizes := map[string]uint32{
		"counters_even": d.cfg.CounterEntries,
		"counters_odd":  d.cfg.CounterEntries,
		"v4_split":      d.cfg.V4SplitEntries,
		"v6_split":      d.cfg.V6SplitEntries,
		"v6_local32":    d.cfg.V6Local32Entries,
		"v6_local_trie": d.cfg.V6LocalTrieEntries,
	}
	for name, n := range sizes {
		spec.Maps[name].MaxEntries = n
	}
	spec.Maps["counters"].InnerMap.MaxEntries = d.cfg.CounterEntries

	opts := &ebpf.CollectionOptions{}
	if d.cfg.PinDir != "" {
		if err := checkBPFFS(d.cfg.PinDir); err != nil {
			return err
		}
		if err := os.MkdirAll(d.mapsDir(), 0o700); err != nil {
			return fmt.Errorf("create pin directory: %w", err)
		}
		for name, m := range spec.Maps {
			if !strings.HasPrefix(name, ".") { // .rodata is rebuilt with each load
				m.Pinning = ebpf.PinByName
			}
		}
		opts.Maps.PinPath = d.mapsDir()
	}
	var objs bpf.CounterObjects
	if err := spec.LoadAndAssign(&objs, opts); err != nil {
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			return fmt.Errorf("load counter program: %+v", verr)
		}
		return fmt.Errorf("load counter program: %w", err)
	}
	st, err := readState(objs.State)
	if err != nil {
		objs.Close()
		return err
	}
	switch st.Abi {
	case 0: // fresh maps
		st.Abi = uint32(bpf.CounterStateBitsSTATE_ABI)
		st.Instance = rand.Uint64() | 1
		if err := writeState(objs.State, st); err != nil {
			objs.Close()
			return err
		}
	case uint32(bpf.CounterStateBitsSTATE_ABI):
	default:
		objs.Close()
		return fmt.Errorf("%w: state abi %d, this version uses %d", errIncompatible, st.Abi, bpf.CounterStateBitsSTATE_ABI)
	}
	d.objs = objs
	return nil
}

func checkBPFFS(dir string) error {
	probe := dir
	for {
		if _, err := os.Stat(probe); err == nil {
			break
		}
		parent := filepath.Dir(probe)
		if parent == probe {
			break
		}
		probe = parent
	}
	var fs unix.Statfs_t
	if err := unix.Statfs(probe, &fs); err != nil {
		return fmt.Errorf("pin directory %s: %w", dir, err)
	}
	if fs.Type != unix.BPF_FS_MAGIC {
		return fmt.Errorf("pin directory %s is not on a bpffs (mount -t bpf bpf /sys/fs/bpf)", dir)
	}
	return nil
}

func readState(m *ebpf.Map) (bpf.CounterRunState, error) {
	var st bpf.CounterRunState
	if err := m.Lookup(uint32(0), &st); err != nil {
		return st, fmt.Errorf("read state: %w", err)
	}
	return st, nil
}

func writeState(m *ebpf.Map, st bpf.CounterRunState) error {
	if err := m.Update(uint32(0), st, ebpf.UpdateExist); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	return nil
}

// recover finds an interval that a previous process closed but did not see
// through: its epoch was switched off but not cleared.
func (d *Datapath) recover() error {
	st, err := readState(d.objs.State)
	if err != nil {
		return err
	}
	if st.Drained >= st.Generation {
		return nil
	}
	old := int(st.Active&uint32(bpf.CounterStateBitsSTATE_EPOCH_BIT)) ^ 1
	iv, err := d.readEpoch(old)
	if err != nil {
		return fmt.Errorf("recover interval %d: %w", st.Generation, err)
	}
	iv.Generation, iv.Instance = st.Generation, st.Instance
	iv.Recovered = true
	d.pending = append(d.pending, iv)
	d.log.Info("recovered an interval that the previous run had not handed on",
		"generation", iv.Generation, "seen", iv.Globals.Seen)
	return nil
}

// Close releases the program and maps. Pinned maps and links stay: the
// program keeps counting until the next Open.
func (d *Datapath) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	var errs []error
	for _, a := range d.attached {
		errs = append(errs, a.close())
	}
	d.attached = map[string]*attachment{}
	errs = append(errs, d.objs.Close())
	return errors.Join(errs...)
}

// Remove detaches from every interface this process attached and deletes
// all pins: the program stops counting.
func (d *Datapath) Remove() error {
	d.mu.Lock()
	var errs []error
	for name, a := range d.attached {
		errs = append(errs, a.detach())
		delete(d.attached, name)
	}
	d.mu.Unlock()
	errs = append(errs, d.Close())
	if d.cfg.PinDir != "" {
		errs = append(errs, os.RemoveAll(d.cfg.PinDir))
	}
	return errors.Join(errs...)
}

// Program returns the XDP program, for tests and benchmarks.
func (d *Datapath) Program() *ebpf.Program { return d.objs.PeerwatchXdp }

// TCProgram returns the TC program, for tests and benchmarks.
func (d *Datapath) TCProgram() *ebpf.Program { return d.objs.PeerwatchTc }
