// Package fleetstore keeps collectord's state in one buntdb file and a
// journal beside it, so that a restart or a crash of the collector neither
// loses a summary nor counts one twice.
//
// Every summary and alert the collector accepts is appended to the journal
// (Journal; journal.go: segment files of checksummed records) before the
// MQTT handler returns, that is before the broker or the collector
// acknowledges it to the publisher. Every few seconds and at shutdown,
// Flush starts a new journal segment, writes what changed in the collector
// (collector.Checkpoint: windows, sensors with their sequence trackers,
// alerts, reject counters) to the buntdb file with the journal mark it
// covers, and then deletes the segments before the new one. Open loads the
// records into the collector (collector.Restore) and replays the journal
// from the mark through the collector's dedupe (collector.Replay).
//
// docs/collectord.md describes the key schema, the sync policies and their
// loss windows.
package fleetstore

import (
	"cmp"
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
	"github.com/peerwatch/peerwatch/sensor/traffic"
)

// SchemaVersion is the version of the key layout and record format; a file
// of another version is moved aside at Open, but for version 1, which
// Open migrates (see migrate). Version 2 moved the journal out of the file
// into segment files beside it (journal.go), and the windows' per-sensor
// views out of their JSON window records into binary view files beside it
// (viewfiles.go; docs/collectord.md).
const SchemaVersion = 2

// schemaV1 is the version whose journal is buntdb records, and whose
// window records hold their per-sensor views as JSON maps.
const schemaV1 = 1

// FileName is the name of the store file in the data directory.
const FileName = "collectord.db"

// ErrTooLarge: the store file is larger than MaxFileBytes.
var ErrTooLarge = errors.New("store file too large")

// Bounds of what Open reads back.
const (
	// MaxFileBytes bounds the file Open loads (buntdb holds it all in
	// memory). The per-sensor views are in view files of their own;
	// the rest of a large fleet's state is some ten MB.
	MaxFileBytes = 8 << 30
	// MaxRecordBytes bounds one record (a window record of 10,000
	// prefixes and its view_files is about 1.5 MB).
	MaxRecordBytes = 64 << 20
	// MaxWindows bounds the window records.
	MaxWindows = 100_000
	// MaxJournal bounds the journal records of a version 1 file: messages
	// received between two flushes.
	MaxJournal = 1_000_000
	// MaxJournalBytes bounds one journal record (the topic and the
	// payload); a longer message is refused.
	MaxJournalBytes = 2*summary.DefaultMaxDecompressed + 1024
)

// Key prefixes; see docs/collectord.md.
const (
	keySchema     = "meta:schema"
	keyState      = "meta:state"
	prefixWindow  = "window:"
	prefixSensor  = "sensor:"
	prefixAlert   = "alert:"
	prefixJournal = "journal:" // version 1 only
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
	// JournalDepth is the records in the journal's segments: messages
	// received since the last flush (and those the last flush covers
	// that had not reached the disk when it took its mark).
	JournalDepth int `json:"journal_depth"`
	// ViewFiles and ViewBytes are the view files and their size
	// (viewfiles.go).
	ViewFiles int   `json:"view_files"`
	ViewBytes int64 `json:"view_bytes"`
	// JournalFiles and JournalBytes are the journal's segment files and
	// their size.
	JournalFiles int   `json:"journal_files"`
	JournalBytes int64 `json:"journal_bytes"`
	// JournalCut is the bytes that Open cut off the ends of segments: the
	// write a crash left unfinished, or damage (the log says which).
	JournalCut int64  `json:"journal_cut,omitempty"`
	Journaled  uint64 `json:"journaled"` // journal records written since Open
	// JournalBatches counts the writes that wrote them (one fsync each
	// with SyncAlways).
	JournalBatches uint64 `json:"journal_batches"`
	// JournalErrors counts the journal writes that failed since Open.
	JournalErrors uint64 `json:"journal_errors"`
	Flushes       uint64 `json:"flushes"`
	FlushErrors   uint64 `json:"flush_errors"`
	// Shrinks counts the rewrites of the file that followed flushes.
	Shrinks uint64 `json:"shrinks"`
	// LastFlush is when the last successful flush ended; LastFlushTook
	// and LastFlushBytes are its duration and the bytes it wrote (its
	// checkpoint record and view files).
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
	sync store.SyncPolicy
	jr   *journal

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
	syncer      chan struct{} // closed when the syncer has stopped
	stopSync    chan struct{} // closed by Close

	statsMu  sync.Mutex
	stats    Stats
	needFull bool // the last flush failed: write everything next
	// lastState and lastMark are the meta:state record and the journal
	// mark of the last flush (under flushMu): a flush that would change
	// neither, nor write anything else, is skipped.
	lastState string
	lastMark  uint64
	// shrunk is the file size after the last rewrite (under flushMu).
	shrunk int64
	// views says which view file holds each shard of each window's
	// per-sensor views, by window key; viewGen is the last generation
	// given to a view file (viewfiles.go). Under flushMu, or load's.
	views   map[string]*viewIndex
	viewGen uint64
	// needViews: the next flush writes every window's views (a version
	// 1 file has none in view files); redo are the windows whose views a
	// failed flush took, which the next one writes whole. Under flushMu.
	needViews bool
	redo      map[string]bool
	flushMu   sync.Mutex
}

// Bounds of the file rewrites that follow flushes: when the file has grown
// past ShrinkMinBytes and to ShrinkFactor times its size after the last
// rewrite. A rewrite copies the state (the windows, twice: records and
// checkpoint), so at most a third of what was appended since the last one
// is copied again.
const (
	ShrinkMinBytes = 32 << 20
	ShrinkFactor   = 4
)

// Open opens (or creates) the store at path and loads it into col, which
// must not have handled a message yet: the last checkpoint, then the
// journal replayed. A file that cannot be loaded, or whose records are
// invalid or over the bounds, is moved aside to "<path>.damaged-<unix
// time>" and reported (Stats, and an error log line); the collector then
// starts empty, and the journal segments, which belong to the file moved
// aside, are moved aside too. A journal segment that ends in a record cut
// short, invalid or out of sequence is cut there (JournalCut, and a log
// line).
func Open(path string, col *collector.Collector, opts Options, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "fleetstore")
	s := &Store{path: path, col: col, log: log, sync: opts.Sync, stats: Stats{Path: path}}
	// buntdb loads the whole file into memory.
	if fi, err := os.Stat(path); err == nil && fi.Size() > MaxFileBytes {
		return nil, fmt.Errorf("open store %s: %w: the file is %d bytes, more than the %d this build loads; move it away to start afresh",
			path, ErrTooLarge, fi.Size(), int64(MaxFileBytes))
	}
	var res loadResult
	f, err := store.OpenFile(path, func(db *buntdb.DB) (err error) {
		res, err = s.load(db)
		return err
	}, log)
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
	// Every flush rewrites the windows and sensors that changed, so the
	// file grows by a checkpoint per flush; Flush rewrites it at its
	// smallest, right after a flush (shrinkLocked), rather than buntdb
	// whenever it reaches its threshold.
	cfg.AutoShrinkDisabled = true
	if err := f.DB.SetConfig(cfg); err != nil {
		_ = f.Close()
		return nil, err
	}
	if err := s.openJournal(res); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	if s.stats.JournalDepth > 0 || s.needFull || res.v1 {
		// Write the replayed state at once, so that the journal does not
		// grow over restarts that come quicker than the flushes.
		if err := s.Flush(); err != nil {
			_ = s.jr.close()
			_ = f.Close()
			return nil, err
		}
	}
	if res.v1 {
		if err := s.migrate(); err != nil {
			_ = s.jr.close()
			_ = f.Close()
			return nil, fmt.Errorf("open store %s: %w", path, err)
		}
	}
	s.wake, s.committer = make(chan struct{}, 1), make(chan struct{})
	go s.commit()
	s.stopSync, s.syncer = make(chan struct{}), make(chan struct{})
	go s.syncEverySecond()
	return s, nil
}

// openJournal replays the journal segments from the checkpoint's mark on
// (after the journal of a version 1 file), cuts a segment's unsound end
// off, and opens the journal for writing.
func (s *Store) openJournal(res loadResult) error {
	segs, err := listSegments(s.path)
	if err != nil {
		return fmt.Errorf("list journal segments: %w", err)
	}
	mark := res.mark
	replay := func(e journalEntry) error {
		s.stats.JournalDepth++
		if e.n < mark {
			return nil // covered by the checkpoint; a crash came before the flush deleted it
		}
		if err := s.col.Replay(e.topic, e.payload, e.received); err != nil {
			s.stats.ReplaySkipped++
			s.log.Debug("journal record skipped", "record", e.n, "reason", err)
			return nil
		}
		s.stats.Replayed++
		return nil
	}
	var next uint64 // the number the next record must have; 0: any
	for _, e := range res.v1Journal {
		_ = replay(e)
		next = e.n + 1
	}
	for i := range segs {
		before := s.stats.JournalDepth
		n, end, err := readSegment(segs[i].path, next, replay)
		if err != nil {
			return fmt.Errorf("read journal segment %s: %w", segs[i].path, err)
		}
		segs[i].records = s.stats.JournalDepth - before
		next = n
		if end.good == end.size {
			continue
		}
		// next stays past the sound records: the numbers of the records
		// cut off are skipped, and none is given twice (a segment that a
		// failed prune left behind is read again at the next start).
		if err := os.Truncate(segs[i].path, end.good); err != nil {
			return fmt.Errorf("cut journal segment %s: %w", segs[i].path, err)
		}
		s.stats.JournalCut += end.size - end.good
		if i == len(segs)-1 {
			// The batch being written when the collector stopped (cut
			// short, or zeros or old bytes where its data did not reach
			// the disk): not acknowledged yet with SyncAlways.
			s.log.Warn("journal segment ended in a write cut short: cut it off",
				"segment", segs[i].path, "offset", end.good, "bytes", end.size-end.good, "reason", end.why)
		} else {
			s.log.Error("journal segment damaged: cut it at the first bad record; the records after it are lost",
				"segment", segs[i].path, "offset", end.good, "bytes", end.size-end.good, "reason", end.why)
		}
	}
	// Journal numbers go on from the last flush's mark: a record below it
	// would be taken as covered by that flush.
	s.nextJournal = max(mark, next)
	s.jr, err = openJournal(s.path, segs, s.nextJournal, s.sync)
	if err != nil {
		return err
	}
	if !res.fresh {
		// One line per start; tests and operators read its counts.
		s.log.Info("store loaded", append([]any{"path", s.path}, append(res.restored, "journal_replayed", s.stats.Replayed,
			"journal_skipped", s.stats.ReplaySkipped, "journal_segments", len(segs), "journal_cut_bytes", s.stats.JournalCut)...)...)
	}
	return nil
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
	v1      bool // journal records are allowed: a version 1 file
	state   *stateRecord
	windows map[string]collector.WindowState
	// views says where the views of each window are (its record's
	// view_files), by window key; a record read again (from
	// meta:checkpoint) replaces what was read.
	views   map[string]*viewIndex
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
		var r windowRecord
		if l.v1 {
			var err error
			if r, err = decodeWindowV1(k, v); err != nil {
				return err
			}
		} else if err := decodeStrict(k, v, &r); err != nil {
			return err
		}
		w := r.WindowState
		x, err := indexOf(r.ViewFiles)
		switch {
		case err != nil:
			return damaged(k, "%v", err)
		case len(r.ViewFiles) > 0 && (w.ViewsGone || len(w.Views) > 0):
			return damaged(k, "view_files of a window whose views are gone, or in the record")
		}
		delete(l.views, k)
		if len(r.ViewFiles) > 0 {
			l.views[k] = x
		}
		if k != windowKey(w.Level, w.Start) {
			return damaged(k, "holds the window %s", windowKey(w.Level, w.Start))
		}
		l.windows[k] = w
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
	case l.v1 && strings.HasPrefix(k, prefixJournal):
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

// loadResult is what load found, for Open.
type loadResult struct {
	mark      uint64         // the checkpoint's journal mark
	fresh     bool           // a new file
	v1        bool           // a version 1 file, to migrate
	v1Journal []journalEntry // its journal, to replay
	restored  []any          // what it restored, as log attributes
}

// load checks the file's records and restores the collector (Open then
// replays the journal); it is store.OpenFile's content check, so every
// error about the content wraps store.ErrDamaged or store.ErrSchema. It
// writes nothing but the schema record of a new file: the file moved aside
// when damaged is the file as found.
func (s *Store) load(db *buntdb.DB) (loadResult, error) {
	// OpenFile runs it again on a new file when it moved one aside.
	var res loadResult
	s.needFull = false
	s.views, s.viewGen, s.needViews, s.redo = map[string]*viewIndex{}, 0, false, map[string]bool{}
	l := loaded{windows: map[string]collector.WindowState{}, views: map[string]*viewIndex{}, sensors: map[string]collector.SensorRecord{}, alerts: map[string]collector.AlertRecord{}}
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
		l.v1 = sch == schemaRecord{Store: schemaV1, Summary: currentSchema.Summary}
		if sch != currentSchema && !l.v1 {
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
			if v, err := tx.Get(r.Key); err != nil || v != string(r.Value) {
				torn = true
			}
			if err := l.record(r.Key, string(r.Value)); err != nil {
				return fmt.Errorf("%s: %w", keyCheckpoint, err)
			}
		}
		return nil
	})
	if err != nil {
		return res, err
	}
	if fresh {
		// Before the schema record: once it is written, the next start
		// takes the file for one that has these files.
		if err := s.moveAside(); err != nil {
			return res, err
		}
		b, _ := json.Marshal(currentSchema)
		if err := db.Update(func(tx *buntdb.Tx) error {
			_, _, err := tx.Set(keySchema, string(b), nil)
			return err
		}); err != nil {
			return res, fmt.Errorf("write schema record: %w", err)
		}
		// On the disk before the first acknowledged message: without it,
		// a power loss could leave no store file, and the next start
		// would move the journal that holds that message aside.
		if err := errors.Join(syncPath(s.path), syncPath(filepath.Dir(s.path))); err != nil {
			return res, fmt.Errorf("sync the new store file: %w", err)
		}
		s.log.Info("new store", "path", s.path)
		res.fresh = true
		return res, nil
	}

	cp := collector.Checkpoint{Full: true}
	if l.state != nil {
		cp.Clock, cp.Levels, cp.AlertsNext, cp.Rejects, cp.Accepted = l.state.Clock, l.state.Levels, l.state.AlertsNext, l.state.Rejects, l.state.Accepted
	}
	_, high, err := viewFileGens(viewDir(s.path))
	if err != nil {
		return res, fmt.Errorf("list view files: %w", err)
	}
	s.viewGen = high // the files of the windows' records are among them
	for k, w := range l.windows {
		if x := l.views[k]; x != nil { // a version 1 window has its views in it
			if w.Views, err = loadViews(viewDir(s.path), k, x); errors.Is(err, errViewDamaged) {
				return res, damaged(k, "%v", err)
			} else if err != nil {
				return res, fmt.Errorf("window %s: %w", k, err)
			}
			s.views[k] = x
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
			return res, fmt.Errorf("%w: %w", store.ErrDamaged, err)
		}
		return res, err
	}
	res.mark, res.v1, res.v1Journal = mark, l.v1, l.journal
	if l.v1 {
		// Every window is written again, in records of this version.
		s.needFull, s.needViews = true, true
	}
	if torn {
		// The file's records are not those of the last flush: write
		// everything at the next one.
		s.needFull = true
		s.log.Warn("the last flush was cut short by a crash; its checkpoint record completes it", "path", s.path)
	}
	res.restored = []any{"windows", len(cp.Windows), "sensors", len(cp.Sensors), "alerts", len(cp.Alerts)}
	return res, nil
}

// validRecordKey reports whether a checkpoint may write key.
func validRecordKey(k string) bool {
	return k == keyState || strings.HasPrefix(k, prefixWindow) || strings.HasPrefix(k, prefixSensor) || strings.HasPrefix(k, prefixAlert)
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

// windowV1 is a window record of a version 1 file: its per-sensor views
// are JSON maps in it, key -> sensor -> counters.
type windowV1 struct {
	windowRecord
	BySeen map[string]map[string]traffic.Counters `json:"by_seen,omitempty"`
	ByAS   map[uint32]map[string]traffic.Counters `json:"by_as,omitempty"`
}

// decodeWindowV1 decodes the window record at key of a version 1 file (or
// of version 2, which a migration cut short may have written), its views
// turned into SensorViews.
func decodeWindowV1(key, v string) (windowRecord, error) {
	var w windowV1
	if err := decodeStrict(key, v, &w); err != nil {
		return windowRecord{}, err
	}
	if w.BySeen == nil && w.ByAS == nil {
		return w.windowRecord, nil
	}
	bySensor := map[string]*collector.SensorView{}
	view := func(id string) *collector.SensorView {
		sv := bySensor[id]
		if sv == nil {
			sv = &collector.SensorView{Sensor: id}
			bySensor[id] = sv
		}
		return sv
	}
	for country, m := range w.BySeen {
		code := summary.CountryCode(country)
		if code < 0 {
			return windowRecord{}, damaged(key, "country %q is not two capital letters", country)
		}
		for id, c := range m {
			sv := view(id)
			sv.Countries = append(sv.Countries, collector.Seen[uint16]{Key: uint16(code), Counters: c})
		}
	}
	for asn, m := range w.ByAS {
		for id, c := range m {
			sv := view(id)
			sv.ASes = append(sv.ASes, collector.Seen[uint32]{Key: asn, Counters: c})
		}
	}
	ws := w.windowRecord
	for _, id := range slices.Sorted(maps.Keys(bySensor)) {
		sv := bySensor[id]
		slices.SortFunc(sv.Countries, func(a, b collector.Seen[uint16]) int { return cmp.Compare(a.Key, b.Key) })
		slices.SortFunc(sv.ASes, func(a, b collector.Seen[uint32]) int { return cmp.Compare(a.Key, b.Key) })
		ws.Views = append(ws.Views, sv)
	}
	return ws, nil
}

func windowKey(level string, start time.Time) string {
	return prefixWindow + level + ":" + strconv.FormatInt(start.Unix(), 10)
}

func alertKey(index uint64) string { return fmt.Sprintf("%s%020d", prefixAlert, index) }

func journalKey(n uint64) string { return fmt.Sprintf("%s%020d", prefixJournal, n) }

// decodeJournal decodes a journal record of a version 1 file, whose value
// is "<received, Unix ns>\x00<topic>\x00<payload>" (MQTT topics hold no
// NUL).
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

// pendingRecord is a journal record waiting for the committer: its head
// (recordHead) and the payload as the handler received it, not copied.
type pendingRecord struct {
	topic   string
	head    []byte
	payload []byte
	done    func(error)
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
// error). Messages journaled together share one write and one fsync, so a
// caller that acknowledges in done, rather than waiting, lets the journal
// keep up with many messages per fsync. The journal writes payload itself,
// not a copy: the caller must not change it before done is called.
func (s *Store) JournalAsync(topic string, payload []byte, received time.Time, done func(error)) {
	if len(topic) == 0 || len(topic) > maxTopicBytes || bodyFixedSize+len(topic)+len(payload) > maxBodyBytes {
		done(fmt.Errorf("journal %s: topic of %d bytes and payload of %d, limit %d in all",
			truncate(topic), len(topic), len(payload), maxBodyBytes-bodyFixedSize))
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		done(store.ErrClosed)
		return
	}
	// The number is taken under mu, after the collector handled the
	// message (see mu), and the records wait in its order. The checksum
	// (CRC32C, some GB/s) holds mu for microseconds.
	head := recordHead(s.nextJournal, received, topic, payload)
	s.nextJournal++
	s.pending = append(s.pending, pendingRecord{topic: topic, head: head, payload: payload, done: done})
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
		err := s.jr.write(batch)
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
}

// recordUpdate is one record of a checkpoint: its key and JSON value.
type recordUpdate struct {
	Key   string          `json:"k"`
	Value json.RawMessage `json:"v"`
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
		b = append(b, `,"v":`...)
		b = append(b, r.Value...)
		b = append(b, '}')
	}
	return append(b, "]}"...)
}

// MaxCheckpointBytes bounds the meta:checkpoint record: a full flush.
const MaxCheckpointBytes = 512 << 20

const keyCheckpoint = "meta:checkpoint"

// Flush writes what changed in the collector since the last flush (all of
// it after a failed flush) and deletes the journal segments it covers: it
// starts a new segment when it takes its mark, and deletes the segments
// before it once the checkpoint is on the disk (synced, unless
// SyncNever). A crash before that replays them from the last durable
// mark; after, there is nothing below the new mark to replay.
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
	var mark uint64
	closed := false
	keepFrom, err := s.jr.rotate(func() uint64 {
		s.mu.Lock()
		defer s.mu.Unlock()
		closed, mark = s.closed, s.nextJournal
		return mark
	})
	if closed {
		return store.ErrClosed
	}
	if err != nil {
		s.statsMu.Lock()
		s.needFull = true
		s.stats.FlushErrors++
		s.stats.LastError = err.Error()
		s.statsMu.Unlock()
		return fmt.Errorf("flush collector state to %s: %w", s.path, err)
	}
	s.statsMu.Lock()
	full := s.needFull
	s.statsMu.Unlock()
	// The windows whose views a failed flush took, and those read from
	// too many view files, are written whole. The other view files stay
	// sound, also when the records are written in full.
	whole := map[string]bool{}
	for key := range s.redo {
		whole[key] = true
	}
	for key, x := range s.views {
		if len(x.files()) >= maxViewFiles {
			whole[key] = true
		}
	}
	for key := range whole {
		level, start, _ := parseWindowKey(key)
		s.col.RewriteViews(level, start)
	}
	cp := s.col.CheckpointWith(collector.CheckpointOptions{Full: full, ChangedViews: !s.needViews})

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
	indexes, viewBytes, err := s.writeViewFiles(cp, whole)
	err = errors.Join(err, add(keyState, stateRecord{Clock: cp.Clock, Levels: cp.Levels, AlertsNext: cp.AlertsNext, Rejects: cp.Rejects, Accepted: cp.Accepted}))
	for _, w := range cp.Windows {
		key := windowKey(w.Level, w.Start)
		err = errors.Join(err, add(key, windowRecord{WindowState: w, ViewFiles: indexes[key].files()}))
	}
	for _, r := range cp.Sensors {
		err = errors.Join(err, add(prefixSensor+r.ID, r))
	}
	for _, a := range cp.Alerts {
		err = errors.Join(err, add(alertKey(a.Index), a))
	}
	state := string(ck.Records[0].Value)
	if err == nil && len(ck.Records) == 1 && state == s.lastState && mark == s.lastMark {
		// Nothing changed: a flush that had nothing to write (the last
		// flush's time says the store is current, for an alert on it).
		s.statsMu.Lock()
		s.stats.Flushes++
		s.stats.LastFlush, s.stats.LastFlushTook, s.stats.LastFlushBytes = time.Now(), time.Since(start), 0
		s.statsMu.Unlock()
		return nil
	}
	var size int64
	if err == nil {
		n := 64
		for _, r := range ck.Records {
			n += len(r.Key) + len(r.Value) + 16
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
	if err == nil {
		err = s.file.DB.Update(func(tx *buntdb.Tx) error {
			return applyCheckpoint(tx, &ck)
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
	if err == nil && s.sync == store.SyncEverySecond {
		// buntdb syncs within a second: the segments go once the
		// checkpoint that covers them is on the disk.
		if serr := syncPath(s.path); serr != nil {
			err = fmt.Errorf("sync %s: %w", s.path, serr)
		}
	}
	journaled := 0
	if err == nil {
		var perr error
		if journaled, perr = s.jr.prune(keepFrom); perr != nil {
			// The next flush deletes them; replay skips their records.
			s.log.Warn("deleting the journal segments the flush covers failed", "path", s.path, "err", perr)
		}
		for key := range s.views {
			if _, ok := indexes[key]; full && !ok {
				delete(s.views, key) // a full checkpoint has every window
			}
		}
		for key, x := range indexes {
			s.views[key] = x
		}
		for key := range s.views {
			if expired(key, cp.Levels) {
				delete(s.views, key)
			}
		}
		// The checkpoint that no longer names the files it replaced is on
		// the disk before they go (synced above but with SyncNever): else
		// a crash of the machine could leave records naming deleted files.
		perr = nil
		if s.sync == store.SyncNever {
			perr = syncPath(s.path)
		}
		if perr == nil {
			perr = s.pruneViewFiles()
		}
		if perr != nil {
			// The next flush tries again.
			s.log.Warn("deleting the view files the flush replaced failed", "path", s.path, "err", perr)
		}
	}
	took := time.Since(start)
	if err != nil {
		for _, w := range cp.Windows {
			if len(w.Views) > 0 {
				s.redo[windowKey(w.Level, w.Start)] = true
			}
		}
	} else {
		s.needViews, s.redo = false, map[string]bool{}
	}
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
	s.stats.LastFlush, s.stats.LastFlushTook, s.stats.LastFlushBytes = time.Now(), took, size+viewBytes
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
	// buntdb renames the rewritten file over the old one and syncs
	// neither: the next flush deletes journal segments that only the
	// rewritten file's checkpoint covers, so its data and its name must
	// be on the disk first.
	if err := errors.Join(syncPath(s.path), syncPath(filepath.Dir(s.path))); err != nil {
		s.log.Error("syncing the rewritten store file failed", "path", s.path, "err", err)
	}
	if fi2, err := os.Stat(s.path); err == nil {
		s.shrunk = fi2.Size()
		s.log.Debug("store file rewritten", "path", s.path, "from", fi.Size(), "to", fi2.Size(), "took", time.Since(start))
	}
	s.statsMu.Lock()
	s.stats.Shrinks++
	s.statsMu.Unlock()
}

// applyCheckpoint writes the checkpoint's records and deletes what it
// covers: the alerts below its floor, and the windows of levels not
// configured or past their retention (by the meta:state record it holds).
// The journal segments and view files it covers are deleted by Flush.
func applyCheckpoint(tx *buntdb.Tx, ck *checkpointRecord) error {
	var st stateRecord
	for _, r := range ck.Records {
		if r.Key == keyState {
			if err := json.Unmarshal(r.Value, &st); err != nil {
				return fmt.Errorf("%w: record %s: %s: %v", store.ErrDamaged, keyCheckpoint, keyState, err)
			}
		}
		if _, _, err := tx.Set(r.Key, string(r.Value), nil); err != nil {
			return err
		}
	}

	var del []string
	collect := func(k, _ string) bool {
		del = append(del, k)
		return true
	}
	if ck.AlertsFloor > 0 {
		if err := tx.AscendRange("", prefixAlert, alertKey(ck.AlertsFloor), collect); err != nil {
			return err
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
		return err
	}
	for _, k := range del {
		if _, err := tx.Delete(k); err != nil && !errors.Is(err, buntdb.ErrNotFound) {
			return err
		}
	}
	return nil
}

// expired reports whether the window record at key belongs to no level or
// starts before its level's horizon.
func expired(key string, levels []collector.LevelState) bool {
	level, start, ok := parseWindowKey(key)
	if !ok {
		return true
	}
	for _, l := range levels {
		if l.Name == level {
			return !l.Horizon.IsZero() && start.Before(l.Horizon)
		}
	}
	return true
}

// parseWindowKey is windowKey's inverse.
func parseWindowKey(key string) (level string, start time.Time, ok bool) {
	rest, ok := strings.CutPrefix(key, prefixWindow)
	i := strings.LastIndexByte(rest, ':')
	if !ok || i < 0 {
		return "", time.Time{}, false
	}
	sec, err := strconv.ParseInt(rest[i+1:], 10, 64)
	if err != nil {
		return "", time.Time{}, false
	}
	return rest[:i], time.Unix(sec, 0).UTC(), true
}

// Stats returns the store's statistics.
func (s *Store) Stats() Stats {
	s.statsMu.Lock()
	st := s.stats
	s.statsMu.Unlock()
	if fi, err := os.Stat(s.path); err == nil {
		st.FileSize = fi.Size()
	}
	// A flush can delete a batch's segment before the committer counts
	// the batch in: for a moment the depth is below what it is.
	st.JournalDepth = max(st.JournalDepth, 0)
	st.JournalFiles, st.JournalBytes = s.jr.files()
	st.ViewFiles, st.ViewBytes = viewFilesSize(viewDir(s.path))
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
	close(s.stopSync)
	s.mu.Unlock()
	<-s.committer
	<-s.syncer
	s.mu.Lock()
	err := s.jr.close()
	if ferr := s.file.Close(); ferr != nil {
		err = errors.Join(err, fmt.Errorf("close %s: %w", s.path, ferr))
	}
	return err
}

// syncEverySecond syncs the journal once a second when it was written
// since (SyncEverySecond), until Close.
func (s *Store) syncEverySecond() {
	defer close(s.syncer)
	if s.sync != store.SyncEverySecond {
		return
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-s.stopSync:
			return
		case <-t.C:
			if err := s.jr.syncDirty(); err != nil {
				s.statsMu.Lock()
				s.stats.LastError = err.Error()
				s.statsMu.Unlock()
				s.log.Warn("journal sync failed", "err", err)
			}
		}
	}
}

// migrate ends the migration of a version 1 file, once Open's flush wrote
// a checkpoint whose mark covers its journal records: it deletes them and
// writes the current schema record, in one transaction. A crash before
// leaves a version 1 file whose journal the mark covers: migrated again.
func (s *Store) migrate() error {
	b, _ := json.Marshal(currentSchema)
	err := s.file.DB.Update(func(tx *buntdb.Tx) error {
		var del []string
		if err := tx.AscendGreaterOrEqual("", prefixJournal, func(k, _ string) bool {
			if !strings.HasPrefix(k, prefixJournal) {
				return false
			}
			del = append(del, k)
			return true
		}); err != nil {
			return err
		}
		for _, k := range del {
			if _, err := tx.Delete(k); err != nil {
				return err
			}
		}
		_, _, err := tx.Set(keySchema, string(b), nil)
		return err
	})
	if err != nil {
		return fmt.Errorf("migrate the store from schema %d to %d: %w", schemaV1, SchemaVersion, err)
	}
	s.log.Info("store migrated: the journal is now in segment files beside it", "path", s.path, "schema", SchemaVersion)
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
