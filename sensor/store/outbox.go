package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/tidwall/buntdb"

	"github.com/peerwatch/peerwatch/sensor/wallclock"
)

// The outbox is the queue of encoded messages that the uplink has not yet
// seen acknowledged by the MQTT broker, in the same buntdb file as the
// summaries: one record "ob:<seq, 20 digits>" per sequence number, so key
// order is sequence order. It is the source of truth for delivery: an item
// leaves it only when Ack is called, after the broker's PUBACK. Its records
// have no TTL and the size cap (enforceCap) does not evict them; MaxOutbox
// bounds them instead. docs/uplink.md describes the semantics.

const prefixOutbox = "ob:"

// dropLogEvery rate-limits the warning about dropped outbox items.
const dropLogEvery = time.Minute

func outboxKey(seq uint64) string { return fmt.Sprintf("%s%020d", prefixOutbox, seq) }

// OutboxItem is one message waiting in the outbox.
type OutboxItem struct {
	Seq      uint64    `json:"-"`
	Topic    string    `json:"topic"`
	Payload  []byte    `json:"payload"` // base64 in the record
	Enqueued time.Time `json:"enqueued"`
}

// outboxState is the outbox's bookkeeping in memory; st.mu guards it.
type outboxState struct {
	counted         bool // n is valid (counted lazily, on first use)
	n               int
	dropped         uint64
	total           uint64 // dropped since the store was made (keyOutboxDropped)
	droppedSinceLog uint64
	lastDropLog     time.Time
}

// Enqueue adds a message to the outbox under the sequence number seq (the
// summary's, or one from NextSeq). It is idempotent by seq: when an item
// with that number is in the outbox already, it is left as it is. When the
// outbox holds MaxOutbox items, the oldest is dropped (Stats.OutboxDropped)
// in the same transaction. The item is on the disk before Enqueue returns,
// unless the policy is SyncNever.
func (st *Store) Enqueue(topic string, payload []byte, seq uint64) error {
	if seq == 0 {
		return fmt.Errorf("enqueue: %w: sequence number 0", ErrRefused)
	}
	if topic == "" {
		return fmt.Errorf("enqueue %d: %w: empty topic", seq, ErrRefused)
	}
	b, err := json.Marshal(OutboxItem{Topic: topic, Payload: payload, Enqueued: wallclock.Now().UTC()})
	if err != nil {
		return fmt.Errorf("enqueue %d: %w", seq, err)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closed {
		return ErrClosed
	}
	if err := st.countOutbox(); err != nil {
		return fmt.Errorf("enqueue %d: %w", seq, err)
	}
	key := outboxKey(seq)
	var added bool
	var drop []string
	err = st.syncedUpdate(func(tx *buntdb.Tx) error {
		added, drop = false, nil
		if _, err := tx.Get(key); err == nil {
			return nil
		} else if !errors.Is(err, buntdb.ErrNotFound) {
			return err
		}
		if over := st.ob.n + 1 - st.opts.MaxOutbox; over > 0 {
			if err := tx.AscendKeys(prefixOutbox+"*", func(k, _ string) bool {
				drop = append(drop, k)
				return len(drop) < over
			}); err != nil {
				return err
			}
			for _, k := range drop {
				if _, err := tx.Delete(k); err != nil {
					return err
				}
			}
			if _, _, err := tx.Set(keyOutboxDropped, strconv.FormatUint(st.ob.total+uint64(len(drop)), 10), nil); err != nil {
				return err
			}
		}
		if _, _, err := tx.Set(key, string(b), nil); err != nil {
			return err
		}
		added = true
		return nil
	})
	if err != nil {
		return fmt.Errorf("enqueue %d: %w", seq, closedErr(err))
	}
	if !added {
		return nil
	}
	st.ob.n += 1 - len(drop)
	st.ob.total += uint64(len(drop))
	if len(drop) > 0 {
		st.noteDropped(uint64(len(drop)), "outbox full: dropped the oldest items", "oldest_kept", seq)
	}
	return nil
}

// Outbox returns up to limit items (all of them when limit <= 0), oldest
// (lowest sequence number) first. A record that cannot be read is deleted
// and counted as dropped.
func (st *Store) Outbox(limit int) ([]OutboxItem, error) {
	var items []OutboxItem
	var bad []string
	err := st.view(func(tx *buntdb.Tx) error {
		return tx.AscendKeys(prefixOutbox+"*", func(k, v string) bool {
			var it OutboxItem
			seq, ok := outboxSeq(k)
			if !ok || json.Unmarshal([]byte(v), &it) != nil {
				bad = append(bad, k)
				return true
			}
			it.Seq = seq
			items = append(items, it)
			return limit <= 0 || len(items) < limit
		})
	})
	if err != nil {
		return nil, fmt.Errorf("read outbox: %w", err)
	}
	if len(bad) > 0 {
		st.dropBad(bad)
	}
	return items, nil
}

// Ack removes the item with sequence number seq from the outbox (after the
// broker acknowledged it). Acking an item that is not there is not an
// error. An Ack lost in a crash means the item is published again.
func (st *Store) Ack(seq uint64) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closed {
		return ErrClosed
	}
	var deleted bool
	err := st.db.Update(func(tx *buntdb.Tx) error {
		_, err := tx.Delete(outboxKey(seq))
		if errors.Is(err, buntdb.ErrNotFound) {
			return nil
		}
		deleted = err == nil
		return err
	})
	if err != nil {
		return fmt.Errorf("ack %d: %w", seq, closedErr(err))
	}
	if deleted && st.ob.counted {
		st.ob.n--
	}
	return nil
}

// OutboxLen returns the number of items in the outbox (0 when the store is
// closed or cannot be read).
func (st *Store) OutboxLen() int {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closed || st.countOutbox() != nil {
		return 0
	}
	return st.ob.n
}

// countOutbox counts the outbox records once; st.mu is held.
func (st *Store) countOutbox() error {
	if st.ob.counted {
		return nil
	}
	n := 0
	if err := st.view(func(tx *buntdb.Tx) error {
		return tx.AscendKeys(prefixOutbox+"*", func(string, string) bool { n++; return true })
	}); err != nil {
		return err
	}
	var total uint64
	if err := st.view(func(tx *buntdb.Tx) error {
		v, err := tx.Get(keyOutboxDropped)
		switch {
		case errors.Is(err, buntdb.ErrNotFound):
			return nil
		case err != nil:
			return err
		}
		if total, err = strconv.ParseUint(v, 10, 64); err != nil {
			st.log.Error("unreadable count of dropped outbox items; counting from 0", "key", keyOutboxDropped, "value", v)
		}
		return nil
	}); err != nil {
		return err
	}
	st.ob.n, st.ob.total, st.ob.counted = n, total, true
	return nil
}

// dropBad deletes outbox records that cannot be decoded.
func (st *Store) dropBad(keys []string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closed {
		return
	}
	var n int
	err := st.db.Update(func(tx *buntdb.Tx) error {
		for _, k := range keys {
			if _, err := tx.Delete(k); err == nil {
				n++
			} else if !errors.Is(err, buntdb.ErrNotFound) {
				return err
			}
		}
		return nil
	})
	if err != nil {
		st.log.Error("delete unreadable outbox records", "err", err)
		return
	}
	if st.ob.counted {
		st.ob.n -= n
	}
	st.ob.dropped += uint64(n)
	st.log.Error("dropped unreadable outbox records", "records", n, "first", keys[0])
}

// noteDropped counts dropped items and logs them, at most once a
// dropLogEvery; st.mu is held.
func (st *Store) noteDropped(n uint64, msg string, args ...any) {
	st.ob.dropped += n
	st.ob.droppedSinceLog += n
	if now := time.Now(); now.Sub(st.ob.lastDropLog) >= dropLogEvery {
		args = append(args, "dropped", st.ob.droppedSinceLog, "dropped_total", st.ob.dropped, "max_outbox", st.opts.MaxOutbox)
		st.log.Warn(msg, args...)
		st.ob.lastDropLog, st.ob.droppedSinceLog = now, 0
	}
}

func outboxSeq(key string) (uint64, bool) {
	s, ok := strings.CutPrefix(key, prefixOutbox)
	if !ok || len(s) != 20 {
		return 0, false
	}
	seq, err := strconv.ParseUint(s, 10, 64)
	return seq, err == nil
}
