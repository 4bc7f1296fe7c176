package datapath

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"

	"github.com/peerwatch/peerwatch/bpf"
)

// SetTables makes t the tables of the hot path while traffic flows: it
// writes them into the inactive table set, then switches table set and epoch
// together, so that no packet is lost or counted twice and each interval is
// counted under one set of tables. The interval closed by the switch is
// returned by the next Drain.
//
// A restarted daemon that sets the tables the pinned maps already hold keeps
// them without a switch.
func (d *Datapath) SetTables(t *Tables) error {
	img, err := buildImage(t, d.cfg.V4KeyLen, d.cfg.V6KeyLen)
	if err != nil {
		return err
	}
	fp := img.fingerprint()

	d.mu.Lock()
	defer d.mu.Unlock()
	st, err := readState(d.objs.State)
	if err != nil {
		return err
	}
	cur := d.activeSet(st)
	if d.tables[cur] == nil && st.Tables[cur] == fp {
		d.tables[cur] = t
		for _, iv := range d.pending {
			if iv.Tables == nil {
				iv.Tables = t
			}
		}
		d.log.Info("pinned tables are current, kept", "set", cur)
		return nil
	}

	next := cur ^ 1
	if err := d.writeSet(next, img); err != nil {
		return fmt.Errorf("write table set %d: %w", next, err)
	}
	st.Tables[next] = fp
	if err := writeState(d.objs.State, st); err != nil {
		return err
	}
	iv, err := d.switchEpoch(st, next)
	if err != nil {
		return err
	}
	d.pending = append(d.pending, iv)
	d.tables[next] = t

	// No program uses the old set any more (switchEpoch waited): free it.
	if err := d.clearSet(cur); err != nil {
		return fmt.Errorf("free table set %d: %w", cur, err)
	}
	if st, err = readState(d.objs.State); err != nil {
		return err
	}
	st.Tables[cur] = 0
	d.tables[cur] = nil
	d.log.Info("tables switched", "set", next, "local", len(t.Local), "prefix_tables", len(t.Prefix),
		"v4_split", len(img.v4Split), "v6_split", len(img.v6Split))
	return writeState(d.objs.State, st)
}

func (d *Datapath) writeSet(set int, img *image) error {
	if err := d.clearSet(set); err != nil {
		return err
	}
	s := uint32(set)

	// Split /24s in address order, each table set in its half of v4_split;
	// each word of the direct stage knows where its first one is.
	room := d.cfg.V4SplitEntries / 2
	nets := sortedKeys(img.v4Split)
	if len(nets) > int(room) {
		return fmt.Errorf("%d split IPv4 /24s, room for %d per table set (V4SplitEntries %d)", len(nets), room, d.cfg.V4SplitEntries)
	}
	splitIdx := make([]uint32, len(nets))
	splits := make([]bpf.CounterSplit24, len(nets))
	next := 0
	for w := range img.v4Blocks {
		img.v4Blocks[w].SplitBase = s*room + uint32(next)
		for next < len(nets) && nets[next]>>6 == uint32(w) {
			next++
		}
	}
	for i, net := range nets {
		splitIdx[i] = s*room + uint32(i)
		splits[i] = *img.v4Split[net]
	}
	if err := batchPut(d.objs.V4Split, splitIdx, splits); err != nil {
		return fmt.Errorf("v4_split: %w", err)
	}

	words := int(bpf.CounterV4LayoutV4BLOCK_WORDS)
	idx := make([]uint32, words)
	for i := range idx {
		idx[i] = s*uint32(words) + uint32(i)
	}
	if _, err := d.objs.V4Blocks.BatchUpdate(idx, img.v4Blocks, nil); err != nil {
		return fmt.Errorf("v4_blocks: %w", err)
	}
	words = int(bpf.CounterV6LayoutV6FILTER_WORDS)
	for i := range words {
		idx[i] = s*uint32(words) + uint32(i)
	}
	if _, err := d.objs.V6Filter.BatchUpdate(idx[:words], img.v6Filter, nil); err != nil {
		return fmt.Errorf("v6_filter: %w", err)
	}

	local32Keys := make([]bpf.CounterV6Net32Key, 0, len(img.v6Local32))
	local32 := make([]uint8, 0, len(img.v6Local32))
	for _, net := range sortedKeys(img.v6Local32) {
		local32Keys = append(local32Keys, bpf.CounterV6Net32Key{Set: s, Net: net})
		local32 = append(local32, img.v6Local32[net])
	}
	if err := batchPut(d.objs.V6Local32, local32Keys, local32); err != nil {
		return fmt.Errorf("v6_local32 (%d entries, room for %d): %w", len(local32), d.cfg.V6Local32Entries, err)
	}

	split48Keys := make([]bpf.CounterSplit48Key, 0, len(img.v6Split))
	depths := make([]uint8, 0, len(img.v6Split))
	for _, net := range sortedKeys(img.v6Split) {
		split48Keys = append(split48Keys, bpf.CounterSplit48Key{Set: s, Net: net})
		depths = append(depths, img.v6Split[net])
	}
	if err := batchPut(d.objs.V6Split, split48Keys, depths); err != nil {
		return fmt.Errorf("v6_split (%d entries, room for %d): %w", len(depths), d.cfg.V6SplitEntries, err)
	}

	for _, p := range img.v6Trie {
		k := bpf.CounterV6LocalKey{Prefixlen: 32 + uint32(p.Bits()), Set: s, Addr: p.Addr().As16()}
		if err := d.objs.V6LocalTrie.Update(k, uint8(1), ebpf.UpdateAny); err != nil {
			return fmt.Errorf("v6_local_trie %s: %w", p, err)
		}
	}
	return nil
}

func batchPut[K, V any](m *ebpf.Map, keys []K, values []V) error {
	for i := 0; i < len(keys); i += drainBatch {
		j := min(i+drainBatch, len(keys))
		if _, err := m.BatchUpdate(keys[i:j], values[i:j], nil); err != nil {
			return err
		}
	}
	return nil
}

// clearSet deletes a table set's entries from the hash maps and the trie.
// The arrays are rewritten by writeSet: a stale v4_split entry past the
// set's last one is never reached.
func (d *Datapath) clearSet(set int) error {
	s := uint32(set)
	return errors.Join(
		deleteWhere(d.objs.V6Local32, func(k *bpf.CounterV6Net32Key, _ *uint8) bool { return k.Set == s }),
		deleteWhere(d.objs.V6Split, func(k *bpf.CounterSplit48Key, _ *uint8) bool { return k.Set == s }),
		deleteWhere(d.objs.V6LocalTrie, func(k *bpf.CounterV6LocalKey, _ *uint8) bool { return k.Set == s }),
	)
}

func deleteWhere[K, V any](m *ebpf.Map, drop func(*K, *V) bool) error {
	var (
		k      K
		v      V
		doomed []K
	)
	it := m.Iterate()
	for it.Next(&k, &v) {
		if drop(&k, &v) {
			doomed = append(doomed, k)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("iterate %s: %w", m, err)
	}
	for _, k := range doomed {
		if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("delete from %s: %w", m, err)
		}
	}
	return nil
}
