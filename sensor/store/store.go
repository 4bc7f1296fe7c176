// Package store keeps the sensor's summaries in one buntdb file on the
// board's data partition: the summary of every drained interval (the raw
// level) and rollups of them (1 minute, 1 hour and 1 day by default), each
// level with its own retention, in a file of bounded size.
//
// docs/store.md describes the key schema, the levels and their retention,
// the size cap, the sync policy and its loss window, and what happens to a
// damaged file.
//
// # Placement
//
// An interval belongs to the window in which it ends: the window [t, t+w) of
// a level holds the intervals whose End is in (t, t+w]. When the daemon
// drains on multiples of its interval, that is also the window in which the
// interval starts. An interval recovered after a restart has no Start and is
// placed the same way.
//
// # Writes
//
// Put stores an interval's raw record. A rollup record is written once,
// when its window closes: the Put of the interval that ends at or after
// the window's end builds it from the next finer level's records in the
// window (summary.Merge, then TopN), finest level first; Open closes the
// windows that a stop or a crash left open. Queries compute the windows
// that are still open from the finer levels (see rollup.go).
//
// buntdb writes the records of a transaction in no particular order, so a
// crash in the middle of a write could leave any subset of them. Put
// therefore writes the summary to a journal record first (meta:pending,
// synced to disk), then applies it in one transaction, then drops the
// journal record; Open completes a write that a crash interrupted. Every
// record carries the sequence number of the newest interval merged into it,
// and a closed window is not closed again, so that completing a write twice
// changes nothing.
package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"time"

	"github.com/tidwall/buntdb"

	"github.com/peerwatch/peerwatch/sensor/summary"
	"github.com/peerwatch/peerwatch/sensor/wallclock"
)

// SchemaVersion is the version of the key layout and record format. A file
// written with another version (or with another summary.SchemaVersion) is
// moved aside at Open.
const SchemaVersion = 1

// Defaults of Options.
const (
	DefaultMaxSize = 256 << 20
	DefaultTopN    = 1000
	// DefaultMaxOutbox is one day of 10 s intervals.
	DefaultMaxOutbox = 8640
	// MinMaxSize is the smallest size cap Options accepts.
	MinMaxSize = 16 << 10
)

// Errors reported by the store; they are wrapped with context.
var (
	// ErrDamaged: buntdb could not load the file, or a record is not valid.
	ErrDamaged = errors.New("store file damaged")
	// ErrSchema: the file is not a store of this SchemaVersion.
	ErrSchema = errors.New("store file has another schema")
	// ErrUnfinishedWrite: the file ended in a write cut short by a crash.
	ErrUnfinishedWrite = errors.New("store file ended in an unfinished write")
	ErrClosed          = errors.New("store closed")
	ErrNoData          = errors.New("no data stored for that time")
	ErrUnknownLevel    = errors.New("unknown level")
	// ErrRefused: Put refuses a summary that cannot be stored as it is.
	ErrRefused = errors.New("summary refused")
	// ErrSeqOrder: Put got a sequence number not above the last stored one.
	ErrSeqOrder = errors.New("sequence number not above the last stored one")
	ErrOptions  = errors.New("invalid store options")
)

// SyncPolicy says when writes reach the disk (see docs/store.md for the
// loss window of each).
type SyncPolicy int

const (
	// SyncEverySecond (the default): the file is synced once a second.
	SyncEverySecond SyncPolicy = iota
	// SyncAlways: every write is synced.
	SyncAlways
	// SyncNever: the kernel writes when it likes (tests, tmpfs).
	SyncNever
)

var syncNames = [...]string{"everysecond", "always", "never"}

func (p SyncPolicy) String() string {
	if p < 0 || int(p) >= len(syncNames) {
		return fmt.Sprintf("syncpolicy(%d)", int(p))
	}
	return syncNames[p]
}

// MarshalText writes the policy's name.
func (p SyncPolicy) MarshalText() ([]byte, error) {
	if p < 0 || int(p) >= len(syncNames) {
		return nil, fmt.Errorf("%w: sync policy %d", ErrOptions, int(p))
	}
	return []byte(syncNames[p]), nil
}

// UnmarshalText reads "everysecond", "always" or "never".
func (p *SyncPolicy) UnmarshalText(b []byte) error {
	for i, n := range syncNames {
		if string(b) == n {
			*p = SyncPolicy(i)
			return nil
		}
	}
	return fmt.Errorf("%w: sync policy %q: want everysecond, always or never", ErrOptions, b)
}

func (p SyncPolicy) bunt() buntdb.SyncPolicy {
	switch p {
	case SyncAlways:
		return buntdb.Always
	case SyncNever:
		return buntdb.Never
	}
	return buntdb.EverySecond
}

// Level is a level of records. The first level of Options.Levels is the raw
// level (Width 0): one record per interval, as Put got it. The others are
// rollups: one record per window of Width, aligned to multiples of Width
// since the Unix epoch (UTC midnights for a day).
type Level struct {
	Name  string
	Width time.Duration // 0 for the raw level
	// Retention counts from the end of a record's window (of its interval,
	// for the raw level); buntdb expires the record then.
	Retention time.Duration
}

// DefaultLevels returns the default levels: raw intervals for 6 hours,
// minutes for 7 days, hours for 90 days, days for 2 years.
func DefaultLevels() []Level {
	const day = 24 * time.Hour
	return []Level{
		{Name: "interval", Retention: 6 * time.Hour},
		{Name: "1m", Width: time.Minute, Retention: 7 * day},
		{Name: "1h", Width: time.Hour, Retention: 90 * day},
		{Name: "1d", Width: day, Retention: 730 * day},
	}
}

// Options of a store. The zero value of a field means its default.
type Options struct {
	// MaxSize caps the file, in bytes (default 256 MiB). buntdb keeps every
	// record in memory too, so this also bounds the store's memory.
	MaxSize int64
	Sync    SyncPolicy
	Levels  []Level // default DefaultLevels()
	// TopN is the number of prefixes a rollup record, or the result of
	// Window, keeps (default 1000); the others are summed in Other.
	TopN int
	// MaxOutbox bounds the outbox, in items (default DefaultMaxOutbox):
	// Enqueue drops the oldest item when it is full (see outbox.go).
	MaxOutbox int
}

// DefaultOptions returns the options with every default filled in.
func DefaultOptions() Options {
	return Options{MaxSize: DefaultMaxSize, Sync: SyncEverySecond, Levels: DefaultLevels(), TopN: DefaultTopN}
}

var levelName = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

// Validate names the first field that is wrong and why.
func (o Options) Validate() error {
	if o.MaxSize < 0 || (o.MaxSize > 0 && o.MaxSize < MinMaxSize) {
		return fmt.Errorf("%w: MaxSize %d: want 0 (default) or at least %d bytes", ErrOptions, o.MaxSize, MinMaxSize)
	}
	if o.Sync < 0 || int(o.Sync) >= len(syncNames) {
		return fmt.Errorf("%w: Sync %d: unknown policy", ErrOptions, int(o.Sync))
	}
	if o.TopN < 0 {
		return fmt.Errorf("%w: TopN %d: want 0 (default) or more", ErrOptions, o.TopN)
	}
	if o.MaxOutbox < 0 {
		return fmt.Errorf("%w: MaxOutbox %d: want 0 (default) or more", ErrOptions, o.MaxOutbox)
	}
	if o.Levels == nil {
		return nil
	}
	if len(o.Levels) == 0 {
		return fmt.Errorf("%w: Levels: empty; want at least the raw level", ErrOptions)
	}
	seen := map[string]bool{}
	for i, l := range o.Levels {
		field := fmt.Sprintf("Levels[%d]", i)
		switch {
		case !levelName.MatchString(l.Name):
			return fmt.Errorf("%w: %s.Name %q: want letters, digits, '_', '.' or '-'", ErrOptions, field, l.Name)
		case seen[l.Name]:
			return fmt.Errorf("%w: %s.Name %q: used twice", ErrOptions, field, l.Name)
		case l.Retention <= 0:
			return fmt.Errorf("%w: %s.Retention %v: want more than 0", ErrOptions, field, l.Retention)
		case i == 0 && l.Width != 0:
			return fmt.Errorf("%w: %s.Width %v: the first level is the raw level and has width 0", ErrOptions, field, l.Width)
		case i > 0 && (l.Width <= 0 || l.Width%time.Second != 0):
			return fmt.Errorf("%w: %s.Width %v: want a whole number of seconds", ErrOptions, field, l.Width)
		case i > 1 && l.Width <= o.Levels[i-1].Width:
			return fmt.Errorf("%w: %s.Width %v: want wider than %s (%v)", ErrOptions, field, l.Width, o.Levels[i-1].Name, o.Levels[i-1].Width)
		case i > 1 && l.Width%o.Levels[i-1].Width != 0:
			// A window is built from the finer level's windows in it.
			return fmt.Errorf("%w: %s.Width %v: want a multiple of %s (%v)", ErrOptions, field, l.Width, o.Levels[i-1].Name, o.Levels[i-1].Width)
		}
		seen[l.Name] = true
	}
	return nil
}

func (o Options) withDefaults() (Options, error) {
	if err := o.Validate(); err != nil {
		return o, err
	}
	if o.MaxSize == 0 {
		o.MaxSize = DefaultMaxSize
	}
	if o.TopN == 0 {
		o.TopN = DefaultTopN
	}
	if o.MaxOutbox == 0 {
		o.MaxOutbox = DefaultMaxOutbox
	}
	if o.Levels == nil {
		o.Levels = DefaultLevels()
	} else {
		o.Levels = append([]Level(nil), o.Levels...)
	}
	return o, nil
}

// Origin identifies a datapath interval: the instance of the counter maps
// and the interval's generation in them (datapath.Interval).
type Origin struct {
	Instance   uint64 `json:"instance"`
	Generation uint64 `json:"generation"`
}

// Stats of the store.
type Stats struct {
	FileSize int64
	// Records per level name: the windows a Series of all time returns,
	// those written and those still open (computed on the fly); expired
	// records are not counted.
	Records map[string]int
	Evicted uint64 // records deleted by the size cap since Open
	// LastOrigin is the origin of the last interval stored.
	LastOrigin Origin
	// Seq is the last sequence number handed out (0: none yet).
	Seq uint64
	// OutboxDropped counts the outbox items dropped since Open because the
	// outbox was full (or an item could not be read).
	OutboxDropped uint64
}

// Store is a sensor's store. Its methods are safe for concurrent use.
type Store struct {
	path string
	opts Options
	log  *slog.Logger
	db   *buntdb.DB
	lock *os.File

	aside  string // set at Open, read-only after
	reason error

	mu              sync.Mutex // serialises writes and guards the fields below
	closed          bool
	next            uint64       // next sequence number to hand out
	origin          originRecord // of the last interval stored
	evicted         uint64
	evictedSinceLog uint64
	lastEvictLog    time.Time
	ob              outboxState
}

// Keys of the meta records; see docs/store.md.
const (
	keySchema = "meta:schema"
	keySeq    = "meta:seq"
	// keyOutboxDropped counts the outbox items ever dropped.
	keyOutboxDropped = "meta:outbox_dropped"
	keyOrigin        = "meta:origin"
	keyPending       = "meta:pending"
)

type schemaRecord struct {
	Store   int `json:"store"`
	Summary int `json:"summary"`
}

var currentSchema = schemaRecord{Store: SchemaVersion, Summary: summary.SchemaVersion}

// originRecord is meta:origin: the last interval stored.
type originRecord struct {
	Origin
	Seq uint64 `json:"seq"`
}

// pendingRecord is meta:pending: the journal of the Put in progress.
type pendingRecord struct {
	Origin  Origin           `json:"origin"`
	Summary *summary.Summary `json:"summary"`
}

// meta is what Open reads of the meta records.
type meta struct {
	fresh   bool // no record at all: a new file
	seq     uint64
	origin  originRecord
	pending *pendingRecord
}

// Open opens the store at path, creating it (and its directory) if needed.
// A file that cannot be loaded, or that has another schema, is moved aside
// to "<path>.damaged-<unix time>" and a new store is started; a write that a
// crash cut short at the end of the file is cut off and kept in such a file
// too. Recovered reports either. Another Store holding the same path
// (ErrLocked), an I/O error or invalid options fail Open.
func Open(path string, opts Options, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	lock, err := lockFile(path + ".lock")
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	st := &Store{path: path, opts: opts, log: log.With("component", "store"), lock: lock}
	if err := st.open(); err != nil {
		if st.db != nil {
			_ = st.db.Close()
		}
		_ = lock.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	return st, nil
}

func (st *Store) open() error {
	db, m, err := st.load()
	if err != nil {
		return err
	}
	st.db = db
	if err := db.SetConfig(buntdb.Config{
		SyncPolicy: st.opts.Sync.bunt(),
		// buntdb rewrites the file in the background when it has doubled
		// since the last rewrite and is over a quarter of the cap; Put
		// rewrites it at once when it is over the cap.
		AutoShrinkPercentage: 100,
		AutoShrinkMinSize:    int(st.opts.MaxSize / 4),
	}); err != nil {
		return err
	}
	if err := st.createSeqIndex(); err != nil {
		return err
	}
	if m.fresh {
		b, _ := json.Marshal(currentSchema)
		if err := st.syncedUpdate(func(tx *buntdb.Tx) error {
			_, _, err := tx.Set(keySchema, string(b), nil)
			return err
		}); err != nil {
			return fmt.Errorf("write schema record: %w", err)
		}
	}
	st.origin = m.origin
	st.next = max(m.seq, m.origin.Seq+1, 1)
	if p := m.pending; p != nil {
		// A crash interrupted this Put after its journal record was on
		// disk: complete it (records that already hold it are skipped).
		if err := db.Update(func(tx *buntdb.Tx) error { return st.apply(tx, p, wallclock.Now()) }); err != nil {
			return fmt.Errorf("complete the interrupted write of interval %d: %w", p.Summary.Seq, err)
		}
		if err := st.dropPending(); err != nil {
			return err
		}
		st.origin = originRecord{p.Origin, p.Summary.Seq}
		st.next = max(st.next, p.Summary.Seq+1)
		st.log.Info("completed the write of an interval that a crash interrupted", "seq", p.Summary.Seq,
			"instance", p.Origin.Instance, "generation", p.Origin.Generation)
	}
	if err := st.closeAtOpen(); err != nil {
		return err
	}
	newest, err := st.newestSeq()
	if err != nil {
		return err
	}
	st.next = max(st.next, newest+1)
	st.mu.Lock()
	st.enforceCap()
	st.mu.Unlock()
	return nil
}

// load opens the file with buntdb after checking it; a damaged file is
// moved aside and a new one started.
func (st *Store) load() (*buntdb.DB, meta, error) {
	var m meta
	db, rec, err := loadFile(st.path, st.log, func(db *buntdb.DB) error {
		var err error
		m, err = st.readMeta(db)
		return err
	})
	st.aside, st.reason = rec.Aside, rec.Reason
	return db, m, err
}

// Recovery is what opening a buntdb file found wrong with it.
type Recovery struct {
	// Aside is the file the damaged file, or the unfinished write at its
	// end, was moved to ("" when the file was sound).
	Aside  string
	Reason error // wraps ErrDamaged, ErrSchema or ErrUnfinishedWrite
}

// loadFile opens the buntdb file at path after checking its log: a write
// that a crash cut short at the end is cut off and kept in a damaged-file;
// a file that buntdb would refuse or mis-load, or whose content check
// refuses (with an error wrapping ErrDamaged or ErrSchema), is moved aside
// and a new, empty file started, on which check runs again.
func loadFile(path string, log *slog.Logger, check func(*buntdb.DB) error) (*buntdb.DB, Recovery, error) {
	var rec Recovery
	replace := func(reason error) (*buntdb.DB, Recovery, error) {
		aside, err := moveAside(path)
		if err != nil {
			return nil, rec, fmt.Errorf("move the damaged file aside (%v): %w", reason, err)
		}
		log.Error("store file damaged: moved it aside and started a new store", "path", path, "aside", aside, "reason", reason)
		rec = Recovery{aside, reason}
		db, err := openBunt(path)
		if err != nil {
			return nil, rec, err
		}
		if err := check(db); err != nil {
			_ = db.Close()
			return nil, rec, err
		}
		return db, rec, nil
	}
	sc, err := scanLog(path)
	if errors.Is(err, errLogInvalid) {
		return replace(fmt.Errorf("%w: %w", ErrDamaged, err))
	}
	if err != nil {
		return nil, rec, err
	}
	if sc.exists && sc.size == 0 {
		// The store writes its schema as soon as it creates the file: an
		// empty file lost what it held (a rewrite not flushed before a
		// power loss, a tool that truncated it), or, rarely, a crash came
		// between the two. Either way it is reported, not passed over.
		return replace(fmt.Errorf("%w: the file is empty (zero bytes)", ErrDamaged))
	}
	if sc.good == 0 && sc.size > 0 && !sc.tail {
		// All NUL: whatever was written never reached the disk.
		return replace(fmt.Errorf("%w: the file is %d NUL bytes", ErrDamaged, sc.size))
	}
	if sc.good < sc.size {
		if sc.tail {
			aside, err := cutTail(path, sc.good)
			if err != nil {
				return nil, rec, err
			}
			reason := fmt.Errorf("%w: %d bytes from offset %d", ErrUnfinishedWrite, sc.size-sc.good, sc.good)
			log.Warn("store file ended in a write that a crash cut short: moved those bytes aside and cut them off",
				"path", path, "aside", aside, "reason", reason)
			rec = Recovery{aside, reason}
		} else {
			if err := os.Truncate(path, sc.good); err != nil {
				return nil, rec, err
			}
			log.Warn("removed the NUL bytes a crash left at the end of the store file", "path", path, "bytes", sc.size-sc.good)
		}
	}
	db, err := openBunt(path)
	if err != nil {
		if !isLoadDamage(err) {
			return nil, rec, err
		}
		return replace(fmt.Errorf("%w: %w", ErrDamaged, err))
	}
	if err := check(db); err != nil {
		_ = db.Close()
		if !errors.Is(err, ErrDamaged) && !errors.Is(err, ErrSchema) {
			return nil, rec, err
		}
		return replace(err)
	}
	return db, rec, nil
}

// File is a buntdb file of another kind of store (collectord's), opened
// with the same checks and recovery as Open and locked against a second
// opener.
type File struct {
	DB *buntdb.DB
	// Recovery is what opening found wrong with the file.
	Recovery Recovery
	lock     *os.File
}

// OpenFile opens (creating it and its directory if needed) and locks the
// buntdb file at path. It cuts off a write that a crash left unfinished at
// the end of the file and moves a file that buntdb cannot load exactly
// aside, as Open does, keeping the bytes in "<path>.damaged-<unix time>".
// check then reads the loaded database; when it returns an error that wraps
// ErrDamaged or ErrSchema, the file is moved aside as well and a new one
// started (check runs on it too). Any other error fails OpenFile.
func OpenFile(path string, check func(*buntdb.DB) error, log *slog.Logger) (*File, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	lock, err := lockFile(path + ".lock")
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	db, rec, err := loadFile(path, log, check)
	if err != nil {
		_ = lock.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	return &File{DB: db, Recovery: rec, lock: lock}, nil
}

// Close closes the database and releases the lock.
func (f *File) Close() error {
	err := f.DB.Close()
	if lerr := f.lock.Close(); err == nil {
		err = lerr
	}
	return err
}

var errBuntPanic = errors.New("buntdb panicked")

// openBunt opens the file with buntdb; scanLog has already refused what
// makes buntdb panic, the recover is a second line.
func openBunt(path string) (db *buntdb.DB, err error) {
	defer func() {
		if r := recover(); r != nil {
			db, err = nil, fmt.Errorf("%w loading the file: %v", errBuntPanic, r)
		}
	}()
	return buntdb.Open(path)
}

func isLoadDamage(err error) bool {
	var num *strconv.NumError
	return errors.Is(err, buntdb.ErrInvalid) || errors.As(err, &num) || errors.Is(err, errBuntPanic)
}

// readMeta checks that the loaded file is a store of this schema whose
// records are all valid, and reads the meta records.
func (st *Store) readMeta(db *buntdb.DB) (meta, error) {
	var m meta
	err := db.View(func(tx *buntdb.Tx) error {
		n, err := tx.Len()
		if err != nil {
			return err
		}
		v, err := tx.Get(keySchema)
		if errors.Is(err, buntdb.ErrNotFound) {
			if n == 0 {
				m.fresh = true
				return nil
			}
			return fmt.Errorf("%w: %d records but no %s record: not a peerwatch store", ErrSchema, n, keySchema)
		}
		if err != nil {
			return err
		}
		var got schemaRecord
		if err := json.Unmarshal([]byte(v), &got); err != nil {
			return fmt.Errorf("%w: %s: %w", ErrDamaged, keySchema, err)
		}
		if got != currentSchema {
			return fmt.Errorf("%w: the file has store schema %d (summary schema %d), this build keeps %d (summary schema %d)",
				ErrSchema, got.Store, got.Summary, currentSchema.Store, currentSchema.Summary)
		}
		var bad error
		if err := tx.Ascend("", func(k, v string) bool {
			if ownKey(k) && !json.Valid([]byte(v)) {
				bad = fmt.Errorf("%w: record %s is not valid JSON", ErrDamaged, k)
				return false
			}
			return true
		}); err != nil {
			return err
		}
		if bad != nil {
			return bad
		}
		if err := getJSON(tx, keySeq, &m.seq); err != nil {
			return err
		}
		if err := getJSON(tx, keyOrigin, &m.origin); err != nil {
			return err
		}
		var p pendingRecord
		if err := getJSON(tx, keyPending, &p); err != nil {
			return err
		}
		if p.Summary != nil {
			m.pending = &p
		}
		return nil
	})
	return m, err
}

// getJSON decodes the record at key into v; a missing record leaves v.
func getJSON(tx *buntdb.Tx, key string, v any) error {
	s, err := tx.Get(key)
	if errors.Is(err, buntdb.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := json.Unmarshal([]byte(s), v); err != nil {
		return fmt.Errorf("%w: record %s: %w", ErrDamaged, key, err)
	}
	return nil
}

// Recovered reports what Open found wrong with the file: the path it moved
// the file (or the unfinished write at its end) to, and why. It returns
// "", nil when the file was sound.
func (st *Store) Recovered() (aside string, reason error) {
	return st.aside, st.reason
}

// Close writes everything to the disk (whatever the sync policy) and closes
// the store.
func (st *Store) Close() error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closed {
		return ErrClosed
	}
	st.closed = true
	err := st.db.Close()
	if lerr := st.lock.Close(); err == nil {
		err = lerr
	}
	if err != nil {
		return fmt.Errorf("close store %s: %w", st.path, err)
	}
	return nil
}

// Stats returns the store's statistics.
func (st *Store) Stats() Stats {
	st.mu.Lock()
	s := Stats{Evicted: st.evicted, LastOrigin: st.origin.Origin, Seq: st.next - 1, Records: map[string]int{},
		OutboxDropped: st.ob.dropped}
	st.mu.Unlock()
	s.FileSize = st.fileSize()
	now := wallclock.Now()
	_ = st.view(func(tx *buntdb.Tx) error {
		for i, l := range st.opts.Levels {
			n := 0
			err := st.scanLevel(tx, i, 0, maxNanos, now, func(string, string) error { n++; return nil })
			if err != nil {
				return err
			}
			open, err := st.openWindows(tx, i, now)
			if err != nil {
				return err
			}
			s.Records[l.Name] = n + len(open)
		}
		return nil
	})
	return s
}

// view runs fn in a read transaction.
func (st *Store) view(fn func(tx *buntdb.Tx) error) error {
	err := st.db.View(fn)
	if errors.Is(err, buntdb.ErrDatabaseClosed) {
		return ErrClosed
	}
	return err
}

// syncedUpdate runs fn in a write transaction that reaches the disk before
// it returns, unless the policy is SyncNever.
func (st *Store) syncedUpdate(fn func(tx *buntdb.Tx) error) error {
	if st.opts.Sync != SyncEverySecond {
		return st.db.Update(fn)
	}
	var cfg buntdb.Config
	if err := st.db.ReadConfig(&cfg); err != nil {
		return err
	}
	always := cfg
	always.SyncPolicy = buntdb.Always
	if err := st.db.SetConfig(always); err != nil {
		return err
	}
	err := st.db.Update(fn)
	if serr := st.db.SetConfig(cfg); err == nil {
		err = serr
	}
	return err
}

func (st *Store) fileSize() int64 {
	fi, err := os.Stat(st.path)
	if err != nil {
		return 0
	}
	return fi.Size()
}
