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
	"cmp"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
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
// of another version is moved aside at Open. Version 2 moved the windows'
// per-sensor views out of their JSON window records into binary view
// records, one per shard (docs/collectord.md).
const SchemaVersion = 2

// FileName is the name of the store file in the data directory.
const FileName = "collectord.db"

// ErrTooLarge: the store file is larger than MaxFileBytes.
var ErrTooLarge = errors.New("store file too large")

// Bounds of what Open reads back.
const (
	// MaxFileBytes bounds the file Open loads (buntdb holds it all in
	// memory). The state of a large fleet is a few hundred MB.
	MaxFileBytes = 8 << 30
	// MaxRecordBytes bounds one record (a window's view record, one
	// shard of its per-sensor views, is the largest: about 0.5 MB per
	// shard at 10,000 sensors of 200 countries).
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
	prefixView    = "view:"
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
	Accepted   map[string]uint64      `json:"accepted,omitempty"`
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
	// JournalDepth is the journal records in the file: messages received
	// since the last flush (and, after a flush cut by a crash, records it
	// covers but had not deleted).
	JournalDepth int    `json:"journal_depth"`
	Journaled    uint64 `json:"journaled"` // journal records written since Open
	// JournalBatches counts the transactions that wrote them (one fsync
	// each with SyncAlways).
	JournalBatches uint64 `json:"journal_batches"`
	// JournalErrors counts the journal writes that failed since Open.
	JournalErrors uint64 `json:"journal_errors"`
	Flushes       uint64 `json:"flushes"`
	FlushErrors   uint64 `json:"flush_errors"`
	// Shrinks counts the rewrites of the file that followed flushes.
	Shrinks uint64 `json:"shrinks"`
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

	// mu orders the journal: a message's number is taken under it after
	// the collector handled the message, so a record below a flush's mark
	// is of a message that flush's checkpoint holds (written or not yet).
	// Records wait in pending for the committer, which writes all that
	// wait in one transaction: one fsync for many messages (group commit).
	mu          sync.Mutex
	nextJournal uint64
	closed      bool
	pending     []pendingRecord
	wake        chan struct{} // cap 1: pending is not empty
	committer   chan struct{} // closed when the committer has stopped

	statsMu  sync.Mutex
	stats    Stats
	needFull bool // the last flush failed: write everything next
	// lastState and lastMark are the meta:state record and the journal
	// mark of the last flush (under flushMu): a flush that would change
	// neither, nor write anything else, is skipped.
	lastState string
	lastMark  uint64
	// shrunk is the file size after the last rewrite (under flushMu).
	shrunk  int64
	flushMu sync.Mutex
}

// Bounds of the file rewrites that follow flushes: when the file has grown
// past ShrinkMinBytes and to ShrinkFactor times its size after the last
// rewrite. A rewrite copies the state (the windows, twice: records and
// checkpoint), so at most a third of what was appended since the last one
// is copied again; at 1,000 summaries a second the journal alone appends
// 74 MB a second.
const (
	ShrinkMinBytes = 32 << 20
	ShrinkFactor   = 4
)

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
	// buntdb loads the whole file into memory.
	if fi, err := os.Stat(path); err == nil && fi.Size() > MaxFileBytes {
		return nil, fmt.Errorf("open store %s: %w: the file is %d bytes, more than the %d this build loads; move it away to start afresh",
			path, ErrTooLarge, fi.Size(), int64(MaxFileBytes))
	}
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
	// The journal appends every summary and the next flush deletes it, so
	// the file is mostly garbage between rewrites. buntdb's own rewrite
	// (when the file is some times the live data) ran whenever the file
	// reached its threshold, mostly between flushes, and copied the live
	// journal records, up to the messages of a whole flush interval: an
	// eighth of collectord's CPU at 400 summaries/s. Flush rewrites the
	// file instead, right after it deleted the journal (shrinkLocked).
	cfg.AutoShrinkDisabled = true
	if err := f.DB.SetConfig(cfg); err != nil {
		_ = f.Close()
		return nil, err
	}
	if s.stats.JournalDepth > 0 || s.needFull {
		// Write the replayed state at once, so that the journal does not
		// grow over restarts that come quicker than the flushes.
		if err := s.Flush(); err != nil {
			_ = f.Close()
			return nil, err
		}
	}
	s.wake, s.committer = make(chan struct{}, 1), make(chan struct{})
	go s.commit()
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

// loaded is what load read of the records, by key.
type loaded struct {
	state   *stateRecord
	windows map[string]collector.WindowState
	// views are the per-sensor views of the view records, by key: a
	// record read again (from meta:checkpoint) replaces what was read.
	views   map[string][]*collector.SensorView
	sensors map[string]collector.SensorRecord
	alerts  map[string]collector.AlertRecord
	journal []journalEntry
}

func damaged(key string, format string, args ...any) error {
	return fmt.Errorf("%w: record %s: %s", store.ErrDamaged, truncate(key), fmt.Sprintf(format, args...))
}

// record decodes and checks the record at key into l.
func (l *loaded) record(k, v string) error {
	if len(v) > MaxRecordBytes {
		return damaged(k, "%d bytes, limit %d", len(v), MaxRecordBytes)
	}
	switch {
	case k == keyState:
		var st stateRecord
		if err := decodeStrict(k, v, &st); err != nil {
			return err
		}
		l.state = &st
	case strings.HasPrefix(k, prefixWindow):
		if _, ok := l.windows[k]; !ok && len(l.windows) >= MaxWindows {
			return damaged(k, "more than %d windows", MaxWindows)
		}
		var w collector.WindowState
		if err := decodeStrict(k, v, &w); err != nil {
			return err
		}
		if k != windowKey(w.Level, w.Start) {
			return damaged(k, "holds the window %s", windowKey(w.Level, w.Start))
		}
		l.windows[k] = w
	case strings.HasPrefix(k, prefixView):
		_, shard, ok := parseViewKey(k)
		if !ok {
			return damaged(k, "not a view key: want view:<level>:<start>:<shard 0-%d>", collector.ViewShards-1)
		}
		views, err := collector.DecodeViews([]byte(v), summary.Limits{})
		if err != nil {
			return damaged(k, "%v", err)
		}
		for _, sv := range views {
			if collector.ViewShard(sv.Sensor) != shard {
				return damaged(k, "holds sensor %s of shard %d", sv.Sensor, collector.ViewShard(sv.Sensor))
			}
		}
		l.views[k] = views
	case strings.HasPrefix(k, prefixSensor):
		if _, ok := l.sensors[k]; !ok && len(l.sensors) >= collector.MaxRestoreSensors {
			return damaged(k, "more than %d sensors", collector.MaxRestoreSensors)
		}
		var r collector.SensorRecord
		if err := decodeStrict(k, v, &r); err != nil {
			return err
		}
		if k != prefixSensor+r.ID {
			return damaged(k, "holds sensor %q", truncate(r.ID))
		}
		l.sensors[k] = r
	case strings.HasPrefix(k, prefixAlert):
		// A few more than the ring: those below the floor of the last
		// checkpoint may still be in the file.
		if _, ok := l.alerts[k]; !ok && len(l.alerts) >= 2*collector.DefaultMaxAlerts {
			return damaged(k, "more than %d alerts", 2*collector.DefaultMaxAlerts)
		}
		var a collector.AlertRecord
		if err := decodeStrict(k, v, &a); err != nil {
			return err
		}
		if k != alertKey(a.Index) {
			return damaged(k, "holds alert %d", a.Index)
		}
		l.alerts[k] = a
	case strings.HasPrefix(k, prefixJournal):
		if len(l.journal) >= MaxJournal {
			return damaged(k, "more than %d journal records", MaxJournal)
		}
		e, err := decodeJournal(k, v)
		if err != nil {
			return err
		}
		l.journal = append(l.journal, e)
	default:
		return damaged(k, "unknown key")
	}
	return nil
}

// load checks the file's records, restores the collector and replays the
// journal; it is store.OpenFile's content check, so every error about the
// content wraps store.ErrDamaged or store.ErrSchema. It writes nothing but
// the schema record of a new file: the file moved aside when damaged is the
// file as found.
func (s *Store) load(db *buntdb.DB) error {
	l := loaded{windows: map[string]collector.WindowState{}, views: map[string][]*collector.SensorView{}, sensors: map[string]collector.SensorRecord{}, alerts: map[string]collector.AlertRecord{}}
	var (
		ck    *checkpointRecord
		fresh bool
		torn  bool // the last flush's second transaction is not whole
	)
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
		var bad error
		err = tx.Ascend("", func(k, v string) bool {
			switch k {
			case keySchema:
			case keyCheckpoint:
				if len(v) > MaxCheckpointBytes {
					bad = damaged(k, "%d bytes, limit %d", len(v), MaxCheckpointBytes)
					break
				}
				ck = new(checkpointRecord)
				bad = decodeStrict(k, v, ck)
			default:
				bad = l.record(k, v)
			}
			return bad == nil
		})
		if err != nil || bad != nil {
			return cmp.Or(err, bad)
		}
		if ck == nil {
			return nil
		}
		// The last flush's records take precedence over what its second
		// transaction left (all of it, or a part when a crash cut it).
		for _, r := range ck.Records {
			if !validRecordKey(r.Key) {
				return damaged(keyCheckpoint, "record key %q", truncate(r.Key))
			}
			if v, err := tx.Get(r.Key); err != nil || v != r.value() {
				torn = true
			}
			if err := l.record(r.Key, r.value()); err != nil {
				return fmt.Errorf("%s: %w", keyCheckpoint, err)
			}
		}
		return nil
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

	cp := collector.Checkpoint{Full: true}
	if l.state != nil {
		cp.Clock, cp.Levels, cp.AlertsNext, cp.Rejects, cp.Accepted = l.state.Clock, l.state.Levels, l.state.AlertsNext, l.state.Rejects, l.state.Accepted
	}
	byWindow := map[string][]*collector.SensorView{}
	for k, views := range l.views {
		window, _, _ := parseViewKey(k)
		byWindow[window] = append(byWindow[window], views...)
	}
	for k, w := range l.windows {
		// A flush cut short may leave the view records of a window whose
		// views are gone, or that has no record: they are left out, and
		// deleted with their window (applyCheckpoint).
		if !w.ViewsGone {
			w.Views = byWindow[k]
		}
		cp.Windows = append(cp.Windows, w)
	}
	for _, r := range l.sensors {
		cp.Sensors = append(cp.Sensors, r)
	}
	var floor, mark uint64
	if ck != nil {
		floor, mark = ck.AlertsFloor, ck.Mark
	}
	for _, a := range l.alerts {
		if a.Index >= floor {
			cp.Alerts = append(cp.Alerts, a)
		}
	}
	slices.SortFunc(cp.Alerts, func(a, b collector.AlertRecord) int { return cmp.Compare(a.Index, b.Index) })
	if err := s.col.Restore(&cp); err != nil {
		if errors.Is(err, collector.ErrRestore) {
			return fmt.Errorf("%w: %w", store.ErrDamaged, err)
		}
		return err
	}
	replayed, skipped := 0, 0
	for _, e := range l.journal {
		if e.n < mark {
			continue // covered by the checkpoint; a cut flush left it
		}
		if err := s.col.Replay(e.topic, e.payload, e.received); err != nil {
			skipped++
			s.log.Debug("journal record skipped", "record", e.n, "reason", err)
			continue
		}
		replayed++
	}
	// Journal numbers go on from the last flush's mark: a record below it
	// would be taken as covered by that flush.
	s.nextJournal = mark
	if len(l.journal) > 0 {
		s.nextJournal = max(mark, l.journal[len(l.journal)-1].n+1)
	}
	if torn {
		// The file's records are not those of the last flush: write
		// everything at the next one.
		s.needFull = true
		s.log.Warn("the last flush was cut short by a crash; its checkpoint record completes it", "path", s.path)
	}
	s.stats.JournalDepth = len(l.journal) // the next flush deletes them all
	s.stats.Replayed, s.stats.ReplaySkipped = replayed, skipped
	s.log.Info("store loaded", "path", s.path, "windows", len(cp.Windows), "sensors", len(cp.Sensors), "alerts", len(cp.Alerts),
		"journal_replayed", replayed, "journal_skipped", skipped)
	return nil
}

// validRecordKey reports whether a checkpoint may write key.
func validRecordKey(k string) bool {
	return k == keyState || strings.HasPrefix(k, prefixWindow) || strings.HasPrefix(k, prefixView) || strings.HasPrefix(k, prefixSensor) || strings.HasPrefix(k, prefixAlert)
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

// viewKey is the key of the views of one shard of a window:
// "view:<level>:<start, Unix s>:<shard, 3 digits>".
func viewKey(window string, shard int) string {
	return fmt.Sprintf("%s%s:%03d", prefixView, strings.TrimPrefix(window, prefixWindow), shard)
}

// parseViewKey returns the key of the window of a view record and its
// shard.
func parseViewKey(k string) (window string, shard int, ok bool) {
	rest, ok := strings.CutPrefix(k, prefixView)
	i := strings.LastIndexByte(rest, ':')
	if !ok || i < 0 {
		return "", 0, false
	}
	shard, err := strconv.Atoi(rest[i+1:])
	if err != nil || shard < 0 || shard >= collector.ViewShards {
		return "", 0, false
	}
	window = prefixWindow + rest[:i]
	return window, shard, viewKey(window, shard) == k
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

type pendingRecord struct {
	n     uint64
	topic string
	value string
	done  func(error)
}

// Journal writes a message that the collector accepted, before its MQTT
// handler acknowledges it. It reaches the disk before Journal returns with
// store.SyncAlways, within a second with SyncEverySecond.
func (s *Store) Journal(topic string, payload []byte, received time.Time) error {
	errc := make(chan error, 1)
	s.JournalAsync(topic, payload, received, func(err error) { errc <- err })
	return <-errc
}

// JournalAsync is Journal without the wait: done is called, from another
// goroutine, once the record is written (nil) or could not be (the
// error). Messages journaled together share one transaction and one
// fsync, so a caller that acknowledges in done, rather than waiting,
// lets the journal keep up with many messages per fsync.
func (s *Store) JournalAsync(topic string, payload []byte, received time.Time, done func(error)) {
	v := encodeJournal(topic, payload, received)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		done(store.ErrClosed)
		return
	}
	s.pending = append(s.pending, pendingRecord{n: s.nextJournal, topic: topic, value: v, done: done})
	s.nextJournal++
	select {
	case s.wake <- struct{}{}:
	default: // the committer is already woken
	}
	s.mu.Unlock()
}

// commit writes the pending records, in batches, until Close.
func (s *Store) commit() {
	defer close(s.committer)
	for range s.wake {
		s.mu.Lock()
		batch := s.pending
		s.pending = nil
		s.mu.Unlock()
		if len(batch) == 0 {
			continue
		}
		err := s.file.DB.Update(func(tx *buntdb.Tx) error {
			for _, r := range batch {
				if _, _, err := tx.Set(journalKey(r.n), r.value, nil); err != nil {
					return err
				}
			}
			return nil
		})
		s.statsMu.Lock()
		if err != nil {
			s.stats.JournalErrors += uint64(len(batch))
			s.stats.LastError = err.Error()
		} else {
			s.stats.JournalDepth += len(batch)
			s.stats.Journaled += uint64(len(batch))
			s.stats.JournalBatches++
		}
		s.statsMu.Unlock()
		for _, r := range batch {
			if err != nil {
				r.done(fmt.Errorf("journal %s: %w", r.topic, err))
			} else {
				r.done(nil)
			}
		}
	}
}

// checkpointRecord is meta:checkpoint: the records of the last flush and
// what it deleted, written as one record before they are applied (see
// Flush).
type checkpointRecord struct {
	// Mark: the journal records below it are covered.
	Mark uint64 `json:"mark"`
	// AlertsFloor: the alerts below this index are gone.
	AlertsFloor uint64         `json:"alerts_floor"`
	Records     []recordUpdate `json:"records"`
	// ViewsGone are the keys of the windows whose per-sensor views were
	// dropped: their view records are deleted.
	ViewsGone []string `json:"views_gone,omitempty"`
}

// recordUpdate is one record of a checkpoint: a JSON value, or a binary
// one (view records), base64 in the checkpoint record.
type recordUpdate struct {
	Key   string          `json:"k"`
	Value json.RawMessage `json:"v,omitempty"`
	Bin   []byte          `json:"b,omitempty"`
}

// value is the record's value as stored.
func (r *recordUpdate) value() string {
	if r.Bin != nil {
		return string(r.Bin)
	}
	return string(r.Value)
}

// appendCheckpoint appends the JSON of ck, as json.Marshal writes it, but
// without json.Marshal's scan of every record's value again (RawMessage is
// validated and compacted): the values are json.Marshal's own output, and
// the checkpoint holds each window and sensor of the flush, megabytes.
func appendCheckpoint(b []byte, ck *checkpointRecord) []byte {
	b = append(b, `{"mark":`...)
	b = strconv.AppendUint(b, ck.Mark, 10)
	b = append(b, `,"alerts_floor":`...)
	b = strconv.AppendUint(b, ck.AlertsFloor, 10)
	b = append(b, `,"records":`...)
	if ck.Records == nil {
		return append(b, "null}"...)
	}
	b = append(b, '[')
	for i, r := range ck.Records {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"k":`...)
		key, _ := json.Marshal(r.Key) // a string always encodes
		b = append(b, key...)
		if r.Bin != nil {
			b = append(b, `,"b":"`...)
			b = base64.StdEncoding.AppendEncode(b, r.Bin)
			b = append(b, '"')
		} else {
			b = append(b, `,"v":`...)
			b = append(b, r.Value...)
		}
		b = append(b, '}')
	}
	b = append(b, ']')
	if ck.ViewsGone != nil {
		gone, _ := json.Marshal(ck.ViewsGone) // strings always encode
		b = append(b, `,"views_gone":`...)
		b = append(b, gone...)
	}
	return append(b, '}')
}

// MaxCheckpointBytes bounds the meta:checkpoint record: a full flush.
const MaxCheckpointBytes = 512 << 20

const keyCheckpoint = "meta:checkpoint"

// Flush writes what changed in the collector since the last flush (all of
// it after a failed flush) and deletes the journal records it covers.
//
// buntdb writes the records of a transaction in no particular order, in
// one write(2); a crash in the middle of that write (a SIGKILL during a
// large write, a power loss) would leave a part of them, and a partial
// checkpoint could count a journaled summary twice or lose one. So the
// flush writes the checkpoint first as one record (meta:checkpoint), which
// a crash leaves whole or cuts off entirely (the load cuts an unfinished
// write off), and then applies it in a second transaction; Open applies
// it again, which changes nothing when the second transaction was whole.
// Once that is written, a third replaces the checkpoint record by its mark
// and alerts floor alone (what Open needs of it): otherwise the file, its
// rewrites and buntdb's memory would hold the state twice. A crash that
// cuts that write leaves the whole checkpoint, applied again at Open.
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

	ck := checkpointRecord{Mark: mark}
	if cp.AlertsNext > collector.DefaultMaxAlerts {
		ck.AlertsFloor = cp.AlertsNext - collector.DefaultMaxAlerts
	}
	add := func(key string, v any) error {
		b, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("encode %s: %w", key, err)
		}
		ck.Records = append(ck.Records, recordUpdate{Key: key, Value: b})
		return nil
	}
	err := add(keyState, stateRecord{Clock: cp.Clock, Levels: cp.Levels, AlertsNext: cp.AlertsNext, Rejects: cp.Rejects, Accepted: cp.Accepted})
	for _, w := range cp.Windows {
		key := windowKey(w.Level, w.Start)
		err = errors.Join(err, add(key, w), addViews(&ck, key, w.Views))
		if w.ViewsGone {
			ck.ViewsGone = append(ck.ViewsGone, key)
		}
	}
	for _, r := range cp.Sensors {
		err = errors.Join(err, add(prefixSensor+r.ID, r))
	}
	for _, a := range cp.Alerts {
		err = errors.Join(err, add(alertKey(a.Index), a))
	}
	state := string(ck.Records[0].Value)
	if err == nil && len(ck.Records) == 1 && state == s.lastState && mark == s.lastMark {
		return nil // nothing changed
	}
	var size int64
	if err == nil {
		n := 64
		for _, r := range ck.Records {
			// A view record's base64 counted too: a buffer grown by
			// copies took 4 s of a 10,000-sensor flush.
			n += len(r.Key) + len(r.Value) + base64.StdEncoding.EncodedLen(len(r.Bin)) + 16
		}
		b := appendCheckpoint(make([]byte, 0, n), &ck)
		size = int64(len(b))
		if err == nil && size > MaxCheckpointBytes {
			err = fmt.Errorf("checkpoint of %d bytes, limit %d", size, MaxCheckpointBytes)
		}
		if err == nil {
			err = s.file.DB.Update(func(tx *buntdb.Tx) error {
				_, _, err := tx.Set(keyCheckpoint, string(b), nil)
				return err
			})
		}
	}
	journaled := 0
	if err == nil {
		err = s.file.DB.Update(func(tx *buntdb.Tx) error {
			var err error
			journaled, err = applyCheckpoint(tx, &ck)
			return err
		})
	}
	if err == nil {
		mark := appendCheckpoint(nil, &checkpointRecord{Mark: ck.Mark, AlertsFloor: ck.AlertsFloor})
		if err := s.file.DB.Update(func(tx *buntdb.Tx) error {
			_, _, err := tx.Set(keyCheckpoint, string(mark), nil)
			return err
		}); err != nil {
			// The whole checkpoint stays, and is right: only bigger.
			s.log.Warn("replacing the applied checkpoint record by its mark failed", "path", s.path, "err", err)
		}
	}
	took := time.Since(start)
	s.statsMu.Lock()
	if err != nil {
		s.needFull = true
		s.stats.FlushErrors++
		s.stats.LastError = err.Error()
		s.statsMu.Unlock()
		return fmt.Errorf("flush collector state to %s: %w", s.path, err)
	}
	s.needFull = false
	s.lastState, s.lastMark = state, mark
	s.stats.Flushes++
	s.stats.LastFlush, s.stats.LastFlushTook, s.stats.LastFlushBytes = time.Now(), took, size
	s.stats.JournalDepth -= journaled
	s.statsMu.Unlock()
	s.shrinkLocked()
	return nil
}

// shrinkLocked rewrites the file without its garbage when it has grown
// enough since the last rewrite (ShrinkMinBytes, ShrinkFactor). Flush calls
// it right after deleting the journal, when the live data is smallest:
// the checkpoint's records and the journal records since its mark. A
// failed rewrite leaves the file as it was; it is logged, and tried again
// after the next flush.
func (s *Store) shrinkLocked() {
	fi, err := os.Stat(s.path)
	if err != nil || fi.Size() < ShrinkMinBytes || fi.Size() < ShrinkFactor*s.shrunk {
		return
	}
	start := time.Now()
	if err := s.file.DB.Shrink(); err != nil {
		s.log.Warn("rewriting the store file failed; trying again after the next flush", "path", s.path, "err", err)
		return
	}
	if fi2, err := os.Stat(s.path); err == nil {
		s.shrunk = fi2.Size()
		s.log.Debug("store file rewritten", "path", s.path, "from", fi.Size(), "to", fi2.Size(), "took", time.Since(start))
	}
	s.statsMu.Lock()
	s.stats.Shrinks++
	s.statsMu.Unlock()
}

// addViews adds to ck the view records of the window at key: one per
// shard of the views (collector.Checkpoint gives only the shards that
// changed, and every view of each). A record over MaxRecordBytes is an
// error naming it: the file could not be loaded back.
func addViews(ck *checkpointRecord, key string, views []*collector.SensorView) error {
	byShard := map[int][]*collector.SensorView{}
	for _, v := range views {
		s := collector.ViewShard(v.Sensor)
		byShard[s] = append(byShard[s], v) // sorted by sensor, as given
	}
	var err error
	for _, shard := range slices.Sorted(maps.Keys(byShard)) {
		k := viewKey(key, shard)
		b := collector.AppendViews(nil, byShard[shard])
		if len(b) > MaxRecordBytes {
			err = errors.Join(err, fmt.Errorf("encode %s: %d bytes, limit %d", k, len(b), MaxRecordBytes))
			continue
		}
		ck.Records = append(ck.Records, recordUpdate{Key: k, Bin: b})
	}
	return err
}

// applyCheckpoint writes the checkpoint's records and deletes what it
// covers: the journal below its mark, the alerts below its floor, the
// windows of levels not configured or past their retention (by the
// meta:state record it holds) with their view records, and the view
// records of the windows whose views are gone. It returns the journal
// records deleted.
func applyCheckpoint(tx *buntdb.Tx, ck *checkpointRecord) (int, error) {
	var st stateRecord
	for _, r := range ck.Records {
		if r.Key == keyState {
			if err := json.Unmarshal(r.Value, &st); err != nil {
				return 0, fmt.Errorf("%w: record %s: %s: %v", store.ErrDamaged, keyCheckpoint, keyState, err)
			}
		}
		if _, _, err := tx.Set(r.Key, r.value(), nil); err != nil {
			return 0, err
		}
	}

	var del []string
	collect := func(k, _ string) bool {
		del = append(del, k)
		return true
	}
	if err := tx.AscendRange("", prefixJournal, journalKey(ck.Mark), collect); err != nil {
		return 0, err
	}
	journaled := len(del)
	for _, w := range ck.ViewsGone {
		prefix := strings.TrimSuffix(viewKey(w, 0), "000")
		if err := tx.AscendRange("", prefix, prefix+"999", collect); err != nil {
			return 0, err
		}
	}
	if ck.AlertsFloor > 0 {
		if err := tx.AscendRange("", prefixAlert, alertKey(ck.AlertsFloor), collect); err != nil {
			return 0, err
		}
	}
	if err := tx.AscendGreaterOrEqual("", prefixWindow, func(k, _ string) bool {
		if !strings.HasPrefix(k, prefixWindow) {
			return false
		}
		if expired(k, st.Levels) {
			del = append(del, k)
		}
		return true
	}); err != nil {
		return 0, err
	}
	if err := tx.AscendGreaterOrEqual("", prefixView, func(k, _ string) bool {
		if !strings.HasPrefix(k, prefixView) {
			return false
		}
		if window, _, ok := parseViewKey(k); !ok || expired(window, st.Levels) {
			del = append(del, k)
		}
		return true
	}); err != nil {
		return 0, err
	}
	for _, k := range del {
		if _, err := tx.Delete(k); err != nil && !errors.Is(err, buntdb.ErrNotFound) {
			return 0, err
		}
	}
	return journaled, nil
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
	// The committer writes what is pending, then stops; nothing is added
	// to pending once closed is set.
	close(s.wake)
	s.mu.Unlock()
	<-s.committer
	s.mu.Lock()
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
