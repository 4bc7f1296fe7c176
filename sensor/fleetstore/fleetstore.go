// Package fleetstore keeps collectord's state in one buntdb file, so that
// a restart or a crash of the collector neither loses a summary nor counts
// one twice.
//
// Every summary and alert the collector accepts is written to a journal
// record (Journal) before the MQTT handler returns, that is before the
// broker or the collector acknowledges it to the publisher. Every few
// seconds and at shutdown, Flush writes what changed in the collector
// (collector.Checkpoint: windows, sensors with their sequence trackers,
// alerts, reject counters) in one transaction that also deletes the
// journal records the checkpoint covers. Open loads the records into the
// collector (collector.Restore) and replays the journal through the
// collector's dedupe (collector.Replay).
//
// docs/collectord.md describes the key schema, the sync policies and their
// loss windows.
package fleetstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tidwall/buntdb"

	"github.com/peerwatch/peerwatch/sensor/collector"
	"github.com/peerwatch/peerwatch/sensor/store"
	"github.com/peerwatch/peerwatch/sensor/summary"
)

// SchemaVersion is the version of the key layout and record format; a file
// of another version is moved aside at Open.
const SchemaVersion = 1

// FileName is the name of the store file in the data directory.
const FileName = "collectord.db"

// Bounds of what Open reads back.
const (
	// MaxRecordBytes bounds one record (a window with its per-sensor
	// country counters is the largest).
	MaxRecordBytes = 64 << 20
	// MaxWindows bounds the window records.
	MaxWindows = 100_000
	// MaxJournal bounds the journal records: messages received between
	// two flushes.
	MaxJournal = 1_000_000
	// MaxJournalBytes bounds one journal record.
	MaxJournalBytes = 2*summary.DefaultMaxDecompressed + 1024
)

// Key prefixes; see docs/collectord.md.
const (
	keySchema     = "meta:schema"
	keyState      = "meta:state"
	prefixWindow  = "window:"
	prefixSensor  = "sensor:"
	prefixAlert   = "alert:"
	prefixJournal = "journal:"
)

type schemaRecord struct {
	Store   int `json:"store"`
	Summary int `json:"summary"`
}

var currentSchema = schemaRecord{Store: SchemaVersion, Summary: summary.SchemaVersion}

// stateRecord is meta:state: the checkpoint without its windows, sensors
// and alerts.
type stateRecord struct {
	Clock      time.Time              `json:"clock"`
	Levels     []collector.LevelState `json:"levels"`
	AlertsNext uint64                 `json:"alerts_next"`
	Rejects    map[string]uint64      `json:"rejects"`
}

// Options of a store.
type Options struct {
	// Sync says when writes reach the disk; the default (zero value) is
	// SyncEverySecond as in store.SyncPolicy, but collectord passes
	// store.SyncAlways unless told otherwise.
	Sync store.SyncPolicy
}

// Stats of a store, for the dashboard and /metrics.
type Stats struct {
	Path     string `json:"path"`
	FileSize int64  `json:"file_size"`
	// JournalDepth is the journal records on disk: messages received since
	// the last flush.
	JournalDepth int    `json:"journal_depth"`
	Journaled    uint64 `json:"journaled"` // journal records written since Open
	// JournalErrors counts the journal writes that failed since Open.
	JournalErrors uint64 `json:"journal_errors"`
	Flushes       uint64 `json:"flushes"`
	FlushErrors   uint64 `json:"flush_errors"`
	// LastFlush is when the last successful flush ended; LastFlushTook
	// and LastFlushBytes are its duration and the bytes of its records.
	LastFlush      time.Time     `json:"last_flush,omitzero"`
	LastFlushTook  time.Duration `json:"last_flush_took"`
	LastFlushBytes int64         `json:"last_flush_bytes"`
	LastError      string        `json:"last_error,omitempty"`
	// Replayed and ReplaySkipped count the journal records that Open
	// applied and that it skipped (already in the checkpoint, or refused).
	Replayed      int `json:"replayed"`
	ReplaySkipped int `json:"replay_skipped"`
	// Aside and Recovered report a damaged file moved aside at Open.
	Aside     string `json:"aside,omitempty"`
	Recovered string `json:"recovered,omitempty"`
}

// Store is collectord's store. Its methods are safe for concurrent use.
type Store struct {
	path string
	file *store.File
	col  *collector.Collector
	log  *slog.Logger

	// mu orders the journal: a number is taken and its record written
	// under it, so that every record below nextJournal is on disk.
	mu          sync.Mutex
	nextJournal uint64
	closed      bool

	statsMu  sync.Mutex
	stats    Stats
	needFull bool // the last flush failed: write everything next
	// lastState and lastMark are the meta:state record and the journal
	// mark of the last flush (under flushMu): a flush that would change
	// neither, nor write anything else, is skipped.
	lastState string
	lastMark  uint64
	flushMu   sync.Mutex
}

// Open opens (or creates) the store at path and loads it into col, which
// must not have handled a message yet: the last checkpoint, then the
// journal replayed. A file that cannot be loaded, or whose records are
// invalid or over the bounds, is moved aside to "<path>.damaged-<unix
// time>" and reported (Stats, and an error log line); the collector then
// starts empty.
func Open(path string, col *collector.Collector, opts Options, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "fleetstore")
	s := &Store{path: path, col: col, log: log, stats: Stats{Path: path}}
	f, err := store.OpenFile(path, s.load, log)
	if err != nil {
		return nil, err
	}
	s.file = f
	if rec := f.Recovery; rec.Reason != nil {
		s.stats.Aside, s.stats.Recovered = rec.Aside, rec.Reason.Error()
	}
	cfg := buntdb.Config{}
	if err := f.DB.ReadConfig(&cfg); err != nil {
		_ = f.Close()
		return nil, err
	}
	cfg.SyncPolicy = syncPolicy(opts.Sync)
	if err := f.DB.SetConfig(cfg); err != nil {
		_ = f.Close()
		return nil, err
	}
	if s.stats.JournalDepth > 0 {
		// Write the replayed state at once, so that the journal does not
		// grow over restarts that come quicker than the flushes.
		if err := s.Flush(); err != nil {
			_ = f.Close()
			return nil, err
		}
	}
	return s, nil
}

func syncPolicy(p store.SyncPolicy) buntdb.SyncPolicy {
	switch p {
	case store.SyncAlways:
		return buntdb.Always
	case store.SyncNever:
		return buntdb.Never
	}
	return buntdb.EverySecond
}

type journalEntry struct {
	n        uint64
	received time.Time
	topic    string
	payload  []byte
}

// load checks the file's records, restores the collector and replays the
// journal; it is store.OpenFile's content check, so every error about the
// content wraps store.ErrDamaged or store.ErrSchema.
func (s *Store) load(db *buntdb.DB) error {
	var (
		cp      collector.Checkpoint
		journal []journalEntry
		fresh   bool
		bad     error
	)
	damaged := func(key string, format string, args ...any) error {
		return fmt.Errorf("%w: record %s: %s", store.ErrDamaged, truncate(key), fmt.Sprintf(format, args...))
	}
	err := db.View(func(tx *buntdb.Tx) error {
		n, err := tx.Len()
		if err != nil {
			return err
		}
		v, err := tx.Get(keySchema)
		if errors.Is(err, buntdb.ErrNotFound) {
			if n == 0 {
				fresh = true
				return nil
			}
			return fmt.Errorf("%w: %d records but no %s record: not a collectord store", store.ErrSchema, n, keySchema)
		}
		if err != nil {
			return err
		}
		var sch schemaRecord
		if err := json.Unmarshal([]byte(v), &sch); err != nil {
			return damaged(keySchema, "%v", err)
		}
		if sch != currentSchema {
			return fmt.Errorf("%w: the file has store schema %d (summary schema %d), this build keeps %d (summary schema %d)",
				store.ErrSchema, sch.Store, sch.Summary, currentSchema.Store, currentSchema.Summary)
		}
		var windows int
		err = tx.Ascend("", func(k, v string) bool {
			if len(v) > MaxRecordBytes {
				bad = damaged(k, "%d bytes, limit %d", len(v), MaxRecordBytes)
				return false
			}
			switch {
			case k == keySchema:
			case k == keyState:
				var st stateRecord
				if bad = decodeStrict(k, v, &st); bad == nil {
					cp.Clock, cp.Levels, cp.AlertsNext, cp.Rejects = st.Clock, st.Levels, st.AlertsNext, st.Rejects
				}
			case strings.HasPrefix(k, prefixWindow):
				if windows++; windows > MaxWindows {
					bad = damaged(k, "more than %d windows", MaxWindows)
					break
				}
				var w collector.WindowState
				if bad = decodeStrict(k, v, &w); bad == nil && k != windowKey(w.Level, w.Start) {
					bad = damaged(k, "holds the window %s", windowKey(w.Level, w.Start))
				}
				cp.Windows = append(cp.Windows, w)
			case strings.HasPrefix(k, prefixSensor):
				if len(cp.Sensors) >= collector.MaxRestoreSensors {
					bad = damaged(k, "more than %d sensors", collector.MaxRestoreSensors)
					break
				}
				var r collector.SensorRecord
				if bad = decodeStrict(k, v, &r); bad == nil && k != prefixSensor+r.ID {
					bad = damaged(k, "holds sensor %q", truncate(r.ID))
				}
				cp.Sensors = append(cp.Sensors, r)
			case strings.HasPrefix(k, prefixAlert):
				if len(cp.Alerts) >= collector.DefaultMaxAlerts {
					bad = damaged(k, "more than %d alerts", collector.DefaultMaxAlerts)
					break
				}
				var a collector.AlertRecord
				if bad = decodeStrict(k, v, &a); bad == nil && k != alertKey(a.Index) {
					bad = damaged(k, "holds alert %d", a.Index)
				}
				cp.Alerts = append(cp.Alerts, a)
			case strings.HasPrefix(k, prefixJournal):
				if len(journal) >= MaxJournal {
					bad = damaged(k, "more than %d journal records", MaxJournal)
					break
				}
				var e journalEntry
				if e, bad = decodeJournal(k, v); bad == nil {
					journal = append(journal, e)
				}
			default:
				bad = damaged(k, "unknown key")
			}
			return bad == nil
		})
		if err != nil {
			return err
		}
		return bad
	})
	if err != nil {
		return err
	}
	if fresh {
		b, _ := json.Marshal(currentSchema)
		if err := db.Update(func(tx *buntdb.Tx) error {
			_, _, err := tx.Set(keySchema, string(b), nil)
			return err
		}); err != nil {
			return fmt.Errorf("write schema record: %w", err)
		}
		s.log.Info("new store", "path", s.path)
		return nil
	}
	cp.Full = true
	if err := s.col.Restore(&cp); err != nil {
		if errors.Is(err, collector.ErrRestore) {
			return fmt.Errorf("%w: %w", store.ErrDamaged, err)
		}
		return err
	}
	replayed, skipped := 0, 0
	for _, e := range journal {
		if err := s.col.Replay(e.topic, e.payload, e.received); err != nil {
			skipped++
			s.log.Debug("journal record skipped", "record", e.n, "reason", err)
			continue
		}
		replayed++
	}
	if len(journal) > 0 {
		s.nextJournal = journal[len(journal)-1].n + 1
	}
	s.stats.JournalDepth = len(journal)
	s.stats.Replayed, s.stats.ReplaySkipped = replayed, skipped
	s.log.Info("store loaded", "path", s.path, "windows", len(cp.Windows), "sensors", len(cp.Sensors), "alerts", len(cp.Alerts),
		"journal_replayed", replayed, "journal_skipped", skipped)
	return nil
}

// decodeStrict decodes one JSON record, refusing unknown fields.
func decodeStrict(key, v string, out any) error {
	dec := json.NewDecoder(strings.NewReader(v))
	dec.DisallowUnknownFields()
	if err := dec.Decode(out); err != nil {
		return fmt.Errorf("%w: record %s: %v", store.ErrDamaged, truncate(key), err)
	}
	if dec.More() {
		return fmt.Errorf("%w: record %s: data after the JSON value", store.ErrDamaged, truncate(key))
	}
	return nil
}

func windowKey(level string, start time.Time) string {
	return prefixWindow + level + ":" + strconv.FormatInt(start.Unix(), 10)
}

func alertKey(index uint64) string { return fmt.Sprintf("%s%020d", prefixAlert, index) }

func journalKey(n uint64) string { return fmt.Sprintf("%s%020d", prefixJournal, n) }

// A journal record's value is "<received, Unix ns>\x00<topic>\x00<payload>";
// MQTT topics hold no NUL.
func encodeJournal(topic string, payload []byte, received time.Time) string {
	var b strings.Builder
	b.Grow(24 + len(topic) + len(payload))
	b.WriteString(strconv.FormatInt(received.UnixNano(), 10))
	b.WriteByte(0)
	b.WriteString(topic)
	b.WriteByte(0)
	b.Write(payload)
	return b.String()
}

func decodeJournal(key, v string) (journalEntry, error) {
	bad := func(why string) (journalEntry, error) {
		return journalEntry{}, fmt.Errorf("%w: record %s: %s", store.ErrDamaged, truncate(key), why)
	}
	n, err := strconv.ParseUint(strings.TrimPrefix(key, prefixJournal), 10, 64)
	if err != nil || key != journalKey(n) {
		return bad("not a journal number")
	}
	if len(v) > MaxJournalBytes {
		return bad(fmt.Sprintf("%d bytes, limit %d", len(v), MaxJournalBytes))
	}
	ts, rest, ok := strings.Cut(v, "\x00")
	if !ok {
		return bad("no receive time")
	}
	ns, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return bad(fmt.Sprintf("receive time %q", truncate(ts)))
	}
	topic, payload, ok := strings.Cut(rest, "\x00")
	if !ok || topic == "" {
		return bad("no topic")
	}
	return journalEntry{n: n, received: time.Unix(0, ns).UTC(), topic: topic, payload: []byte(payload)}, nil
}

// Journal writes a message that the collector accepted, before its MQTT
// handler returns. It reaches the disk before Journal returns with
// store.SyncAlways, within a second with SyncEverySecond.
func (s *Store) Journal(topic string, payload []byte, received time.Time) error {
	v := encodeJournal(topic, payload, received)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return store.ErrClosed
	}
	n := s.nextJournal
	err := s.file.DB.Update(func(tx *buntdb.Tx) error {
		_, _, err := tx.Set(journalKey(n), v, nil)
		return err
	})
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	if err != nil {
		s.stats.JournalErrors++
		s.stats.LastError = err.Error()
		return fmt.Errorf("journal %s: %w", topic, err)
	}
	s.nextJournal++
	s.stats.JournalDepth++
	s.stats.Journaled++
	return nil
}

// Flush writes what changed in the collector since the last flush (all of
// it after a failed flush) and deletes the journal records it covers, in
// one transaction.
func (s *Store) Flush() error {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	start := time.Now()
	// The journal mark first, then the checkpoint: a record below the mark
	// was written after its message was handled, so the checkpoint holds
	// that message. Records from the mark on are replayed at Open, where
	// the collector skips what the checkpoint already holds.
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return store.ErrClosed
	}
	mark := s.nextJournal
	s.mu.Unlock()
	s.statsMu.Lock()
	full := s.needFull
	s.statsMu.Unlock()
	cp := s.col.Checkpoint(full)

	type record struct{ key, value string }
	var records []record
	var size int64
	add := func(key string, v any) error {
		b, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("encode %s: %w", key, err)
		}
		records = append(records, record{key, string(b)})
		size += int64(len(key) + len(b))
		return nil
	}
	err := add(keyState, stateRecord{Clock: cp.Clock, Levels: cp.Levels, AlertsNext: cp.AlertsNext, Rejects: cp.Rejects})
	for _, w := range cp.Windows {
		err = errors.Join(err, add(windowKey(w.Level, w.Start), w))
	}
	for _, r := range cp.Sensors {
		err = errors.Join(err, add(prefixSensor+r.ID, r))
	}
	for _, a := range cp.Alerts {
		err = errors.Join(err, add(alertKey(a.Index), a))
	}
	journaled := 0
	if err == nil && len(records) == 1 && records[0].value == s.lastState && mark == s.lastMark {
		return nil // nothing changed
	}
	if err == nil {
		err = s.file.DB.Update(func(tx *buntdb.Tx) error {
			for _, r := range records {
				if _, _, err := tx.Set(r.key, r.value, nil); err != nil {
					return err
				}
			}
			var del []string
			// Journal records below the mark.
			if err := tx.AscendRange("", prefixJournal, journalKey(mark), func(k, _ string) bool {
				del = append(del, k)
				return true
			}); err != nil {
				return err
			}
			journaled = len(del)
			// Alerts the ring no longer keeps.
			if cp.AlertsNext > collector.DefaultMaxAlerts {
				if err := tx.AscendRange("", prefixAlert, alertKey(cp.AlertsNext-collector.DefaultMaxAlerts), func(k, _ string) bool {
					del = append(del, k)
					return true
				}); err != nil {
					return err
				}
			}
			// Windows of levels not configured or past their retention.
			if err := tx.AscendGreaterOrEqual("", prefixWindow, func(k, _ string) bool {
				if !strings.HasPrefix(k, prefixWindow) {
					return false
				}
				if expired(k, cp.Levels) {
					del = append(del, k)
				}
				return true
			}); err != nil {
				return err
			}
			for _, k := range del {
				if _, err := tx.Delete(k); err != nil && !errors.Is(err, buntdb.ErrNotFound) {
					return err
				}
			}
			return nil
		})
	}
	took := time.Since(start)
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	if err != nil {
		s.needFull = true
		s.stats.FlushErrors++
		s.stats.LastError = err.Error()
		return fmt.Errorf("flush collector state to %s: %w", s.path, err)
	}
	s.needFull = false
	s.lastState, s.lastMark = records[0].value, mark
	s.stats.Flushes++
	s.stats.LastFlush, s.stats.LastFlushTook, s.stats.LastFlushBytes = time.Now(), took, size
	s.stats.JournalDepth -= journaled
	return nil
}

// expired reports whether the window record at key belongs to no level or
// starts before its level's horizon.
func expired(key string, levels []collector.LevelState) bool {
	rest := strings.TrimPrefix(key, prefixWindow)
	i := strings.LastIndexByte(rest, ':')
	if i < 0 {
		return true
	}
	start, err := strconv.ParseInt(rest[i+1:], 10, 64)
	if err != nil {
		return true
	}
	for _, l := range levels {
		if l.Name == rest[:i] {
			return !l.Horizon.IsZero() && time.Unix(start, 0).Before(l.Horizon)
		}
	}
	return true
}

// Stats returns the store's statistics.
func (s *Store) Stats() Stats {
	s.statsMu.Lock()
	st := s.stats
	s.statsMu.Unlock()
	if fi, err := os.Stat(s.path); err == nil {
		st.FileSize = fi.Size()
	}
	return st
}

// Close closes the store; the caller flushes first.
func (s *Store) Close() error {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return store.ErrClosed
	}
	s.closed = true
	if err := s.file.Close(); err != nil {
		return fmt.Errorf("close %s: %w", s.path, err)
	}
	return nil
}

// Path returns the store file's path in the data directory dir.
func Path(dir string) string { return filepath.Join(dir, FileName) }

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
