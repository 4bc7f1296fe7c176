package datapath

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/cilium/ebpf"

	"github.com/peerwatch/peerwatch/bpf"
	"github.com/peerwatch/peerwatch/sensor/traffic"
	"github.com/peerwatch/peerwatch/sensor/wallclock"
)

// The counters are those of package traffic.
type (
	Counters  = traffic.Counters
	Globals   = traffic.Globals
	Direction = traffic.Direction
	Class     = traffic.Class
)

// Directions and classes, for convenience.
const (
	In         = traffic.In
	Out        = traffic.Out
	TCP        = traffic.TCP
	UDP        = traffic.UDP
	ICMP       = traffic.ICMP
	Tunnel     = traffic.Tunnel
	Other      = traffic.Other
	NumClasses = traffic.NumClasses
)

// RemoteKey is the start of a counting block: the remote address masked to
// its granularity. IPv4 keys are plain IPv4 addresses.
type RemoteKey = netip.Addr

// RemoteCount is one remote key's counters in an interval.
type RemoteCount struct {
	Key RemoteKey
	Counters
}

// Interval is what the program counted between two epoch switches.
type Interval struct {
	// Generation numbers intervals since the maps were created; it survives
	// restarts, so a consumer that stored an interval can recognise it again.
	Generation uint64
	// Instance identifies the maps (random, chosen when they were created):
	// generations count again from 1 when the maps are new, after a reboot.
	Instance   uint64
	Start, End time.Time // Start is zero for a recovered interval
	// Tables the keys were counted under; nil when unknown (an interval
	// recovered after a restart that loaded other tables).
	Tables    *Tables
	Globals   Globals
	Remote    []RemoteCount
	Recovered bool // closed by an earlier process, found again at start
}

// ErrInvariant reports counters that do not add up.
var ErrInvariant = errors.New("counter invariant broken")

// Check verifies that every packet was counted exactly once:
// seen == remote packets + global buckets, and, for every key, the protocol
// classes add up to its packets.
func (iv *Interval) Check() error {
	var remote uint64
	for _, r := range iv.Remote {
		var classes uint64
		for _, n := range r.Class {
			classes += n
		}
		if classes != r.Total() {
			return fmt.Errorf("%w: key %s has %d packets but %d in classes", ErrInvariant, r.Key, r.Total(), classes)
		}
		remote += r.Total()
	}
	if sum := remote + iv.Globals.Buckets(); sum != iv.Globals.Seen {
		return fmt.Errorf("%w: seen %d != remote %d + buckets %d", ErrInvariant, iv.Globals.Seen, remote, iv.Globals.Buckets())
	}
	return nil
}

// Totals are cumulative counters since Open.
type Totals struct {
	Globals
	Remote    Counters
	Intervals uint64
}

// Totals returns the cumulative counters of the intervals drained since Open.
func (d *Datapath) Totals() Totals {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.totals
}

// Drain closes the current interval and returns it. When intervals were
// closed since the last drain by a table swap or found at start, it returns
// those instead and leaves the current one open: their epoch is the one the
// switch would clear, and it must hold them until the caller has stored
// them (a crash in between finds them there again). The next Drain closes
// the current interval.
func (d *Datapath) Drain() ([]*Interval, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := d.pending
	d.pending = nil
	if len(out) == 0 {
		st, err := readState(d.objs.State)
		if err != nil {
			return nil, err
		}
		iv, err := d.switchEpoch(st, d.activeSet(st))
		if err != nil {
			return nil, err
		}
		out = []*Interval{iv}
	}
	for _, iv := range out {
		d.totals.Globals.Add(iv.Globals)
		for _, r := range iv.Remote {
			d.totals.Remote.Add(r.Counters)
		}
		d.totals.Intervals++
	}
	return out, nil
}

func (d *Datapath) activeSet(st bpf.CounterRunState) int {
	if st.Active&uint32(bpf.CounterStateBitsSTATE_TABLE_BIT) != 0 {
		return 1
	}
	return 0
}

func activeEpoch(st bpf.CounterRunState) int {
	return int(st.Active & uint32(bpf.CounterStateBitsSTATE_EPOCH_BIT))
}

// switchEpoch makes the other epoch (cleared first) and the given table set
// active in one store, waits until no program runs on the old epoch, and
// reads it.
func (d *Datapath) switchEpoch(st bpf.CounterRunState, set int) (*Interval, error) {
	old := activeEpoch(st)
	next := old ^ 1
	oldSet := d.activeSet(st)
	if st.Drained < st.Generation {
		// The epoch about to become active still holds the interval the
		// caller had last time: it is handed on, so clear it.
		if err := d.clearEpoch(next); err != nil {
			return nil, err
		}
		st.Drained = st.Generation
		if err := writeState(d.objs.State, st); err != nil {
			return nil, err
		}
	}
	st.Active = uint32(set)<<1 | uint32(next)
	st.Generation++
	if err := writeState(d.objs.State, st); err != nil {
		return nil, err
	}
	if err := d.waitForPrograms(); err != nil {
		return nil, err
	}
	now := wallclock.Now()
	iv, err := d.readEpoch(old)
	if err != nil {
		return nil, err
	}
	iv.Generation, iv.Instance = st.Generation, st.Instance
	// The length comes from the monotonic clock, the end from the wall
	// clock: a wall-clock step (NTP after a boot without RTC, an operator's
	// date) during the interval moves the interval, never makes it negative
	// or an hour long.
	iv.Start, iv.End = now.Add(-now.Sub(d.since)), now
	iv.Tables = d.tables[oldSet]
	d.since = now
	return iv, nil
}

// waitForPrograms returns once every program that may have read the old
// state has finished. An update of a map-in-map returns only after an RCU
// grace period (the kernel's maybe_wait_bpf_programs), and every XDP and TC
// program runs inside an RCU read-side section.
func (d *Datapath) waitForPrograms() error {
	if err := d.objs.Counters.Update(uint32(0), d.objs.CountersEven, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("wait for running programs: %w", err)
	}
	return nil
}

func (d *Datapath) epochMap(epoch int) *ebpf.Map {
	if epoch == 0 {
		return d.objs.CountersEven
	}
	return d.objs.CountersOdd
}

// readEpoch reads a quiescent epoch: its global counters and every key.
func (d *Datapath) readEpoch(epoch int) (*Interval, error) {
	iv := &Interval{}
	g := []*uint64{&iv.Globals.Seen, &iv.Globals.NonIP, &iv.Globals.Malformed,
		&iv.Globals.BothLocal, &iv.Globals.NeitherLocal, &iv.Globals.Overflow}
	per := make([]uint64, d.ncpu)
	for i, dst := range g {
		idx := uint32(epoch*int(bpf.CounterGlobalCounterGLOBAL_MAX) + i)
		if err := d.objs.Globals.Lookup(idx, &per); err != nil {
			return nil, fmt.Errorf("read global counter %d: %w", i, err)
		}
		for _, v := range per {
			*dst += v
		}
	}
	cached, err := d.readCache(epoch)
	if err != nil {
		return nil, err
	}
	remote, raw, err := d.readCounters(d.epochMap(epoch), d.lastSize+len(cached))
	if err != nil {
		return nil, err
	}
	for i := range remote {
		if c, ok := cached[remote[i].Key]; ok {
			remote[i].Counters.Add(*c)
			delete(cached, remote[i].Key)
		}
	}
	for k, c := range cached {
		remote = append(remote, RemoteCount{Key: k, Counters: *c})
	}
	iv.Remote = remote
	d.lastKeys[epoch] = raw
	d.lastSize = len(remote)
	return iv, nil
}

func fromKernel(v bpf.CounterRemoteCounters) Counters {
	return Counters{Packets: v.Packets, Bytes: v.Bytes, Class: v.ClassPackets}
}

var cacheSlots = int(bpf.CounterCacheLayoutCACHE_SLOTS)

// readCache reads an epoch's cache slots on every CPU, summed per key.
func (d *Datapath) readCache(epoch int) (map[RemoteKey]*Counters, error) {
	idx := make([]uint32, 2*cacheSlots)
	entries := make([]bpf.CounterCacheEntry, len(idx)*d.ncpu)
	var cursor ebpf.MapBatchCursor
	n, err := d.objs.Cache.BatchLookup(&cursor, idx, entries, nil)
	if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return nil, fmt.Errorf("read counter cache: %w", err)
	}
	out := map[RemoteKey]*Counters{}
	used := []uint32{}
	for i := range n {
		if int(idx[i])/cacheSlots != epoch {
			continue
		}
		slotUsed := false
		for _, e := range entries[i*d.ncpu : (i+1)*d.ncpu] {
			if e.Used == 0 {
				continue
			}
			slotUsed = true
			k := keyAddr(e.Key)
			c := out[k]
			if c == nil {
				c = &Counters{}
				out[k] = c
			}
			c.Add(fromKernel(e.Counters))
		}
		if slotUsed {
			used = append(used, idx[i])
		}
	}
	d.usedSlots[epoch] = used
	return out, nil
}

// clearCache empties an epoch's cache slots on every CPU: those that held
// a key when the epoch was read (nothing writes to an epoch between its
// read and its clearing), or all of them when it was not read by this
// process. Writing a slot costs cilium/ebpf a marshalling per CPU; with
// fewer remote keys than slots, most of them are empty.
func (d *Datapath) clearCache(epoch int) error {
	idx := d.usedSlots[epoch]
	if idx == nil {
		idx = make([]uint32, cacheSlots)
		for i := range idx {
			idx[i] = uint32(epoch*cacheSlots + i)
		}
	}
	if len(idx) > 0 {
		zero := make([]bpf.CounterCacheEntry, len(idx)*d.ncpu)
		if _, err := d.objs.Cache.BatchUpdate(idx, zero, nil); err != nil {
			return fmt.Errorf("clear counter cache: %w", err)
		}
	}
	d.usedSlots[epoch] = nil
	return nil
}

const drainBatch = 4096

// readCounters reads every key of a counter map with batch lookups, summing
// each key's per-CPU values as it goes (see BenchmarkDrain for the
// comparison with iteration). It also returns the raw keys, to clear the map.
func (d *Datapath) readCounters(m *ebpf.Map, sizeHint int) ([]RemoteCount, []bpf.CounterRemoteKey, error) {
	var (
		remote = make([]RemoteCount, 0, sizeHint)
		raw    = make([]bpf.CounterRemoteKey, 0, sizeHint)
		cursor ebpf.MapBatchCursor
		kbuf   = make([]bpf.CounterRemoteKey, drainBatch)
		vbuf   = make([]bpf.CounterRemoteCounters, drainBatch*d.ncpu)
	)
	for {
		n, err := m.BatchLookup(&cursor, kbuf, vbuf, nil)
		for i, k := range kbuf[:n] {
			rc := RemoteCount{Key: keyAddr(k)}
			for _, v := range vbuf[i*d.ncpu : (i+1)*d.ncpu] {
				rc.Counters.Add(fromKernel(v))
			}
			remote = append(remote, rc)
		}
		raw = append(raw, kbuf[:n]...)
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return remote, raw, nil
		}
		if err != nil {
			return nil, nil, fmt.Errorf("read counters: %w", err)
		}
	}
}

// readCountersIterate is readCounters with a map iterator, kept for the
// benchmark that justifies batching.
func (d *Datapath) readCountersIterate(m *ebpf.Map) ([]RemoteCount, []bpf.CounterRemoteKey, error) {
	var (
		remote []RemoteCount
		raw    []bpf.CounterRemoteKey
		k      bpf.CounterRemoteKey
		v      []bpf.CounterRemoteCounters
	)
	it := m.Iterate()
	for it.Next(&k, &v) {
		rc := RemoteCount{Key: keyAddr(k)}
		for _, pv := range v {
			rc.Counters.Add(fromKernel(pv))
		}
		remote = append(remote, rc)
		raw = append(raw, k)
	}
	if err := it.Err(); err != nil {
		return nil, nil, fmt.Errorf("iterate counters: %w", err)
	}
	return remote, raw, nil
}

// clearEpoch deletes every key of an epoch and zeroes its global counters.
func (d *Datapath) clearEpoch(epoch int) error {
	m := d.epochMap(epoch)
	keys := d.lastKeys[epoch]
	if keys == nil {
		// Not read by this process (recovered or fresh): read the keys now.
		var err error
		if _, keys, err = d.readCounters(m, 0); err != nil {
			return err
		}
	}
	for i := 0; i < len(keys); i += drainBatch {
		if _, err := m.BatchDelete(keys[i:min(i+drainBatch, len(keys))], nil); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("clear epoch %d: %w", epoch, err)
		}
	}
	d.lastKeys[epoch] = nil
	if err := d.clearCache(epoch); err != nil {
		return err
	}
	zero := make([]uint64, d.ncpu)
	for i := range int(bpf.CounterGlobalCounterGLOBAL_MAX) {
		idx := uint32(epoch*int(bpf.CounterGlobalCounterGLOBAL_MAX) + i)
		if err := d.objs.Globals.Update(idx, zero, ebpf.UpdateExist); err != nil {
			return fmt.Errorf("clear global counter %d: %w", i, err)
		}
	}
	return nil
}

// keyAddr converts a kernel key (network byte order, IPv4-mapped) to an address.
func keyAddr(k bpf.CounterRemoteKey) netip.Addr {
	var b [16]byte
	for i, w := range k.Addr {
		binary.LittleEndian.PutUint32(b[4*i:], w) // the words hold bytes in memory order
	}
	return netip.AddrFrom16(b).Unmap()
}

func rawKey(a netip.Addr) bpf.CounterRemoteKey {
	b := a.As16() // IPv4 becomes IPv4-mapped
	var k bpf.CounterRemoteKey
	for i := range k.Addr {
		k.Addr[i] = binary.LittleEndian.Uint32(b[4*i:])
	}
	return k
}
