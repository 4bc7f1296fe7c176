package collector

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/peerwatch/peerwatch/sensor/summary"
)

// Persistence, without I/O: Checkpoint hands the caller what changed since
// the previous checkpoint (or everything), in types that encoding/json
// writes and reads; Restore loads a full checkpoint into a new collector;
// Replay then takes the messages received after that checkpoint again, from
// the caller's journal, without counting twice what the checkpoint already
// holds. collectord's store (sensor/fleetstore) does the I/O.

// ErrRestore: Restore refused a checkpoint; the error names the record.
var ErrRestore = errors.New("invalid collector checkpoint")

// Bounds of what Restore accepts, beyond summary.Limits.
const (
	// MaxRestoreSensors bounds the sensors of a checkpoint, and of one
	// country of a window.
	MaxRestoreSensors = 100_000
	// maxSeqRuns is how many runs of received sequence numbers a SeqState
	// lists before it carries the bitmap instead.
	maxSeqRuns = 64
)

// Checkpoint is the collector's state, or the part of it that changed since
// the previous Checkpoint.
type Checkpoint struct {
	// Full: everything, not only what changed.
	Full bool `json:"full,omitempty"`
	// Clock is the latest now given to Handle.
	Clock time.Time `json:"clock"`
	// Levels are the configured levels; windows of other levels, and the
	// windows of a level that start before its Horizon, are gone.
	Levels []LevelState `json:"levels"`
	// Windows that changed (all of them when Full).
	Windows []WindowState `json:"windows,omitempty"`
	// Sensors that changed (all of them when Full).
	Sensors []SensorRecord `json:"sensors,omitempty"`
	// Alerts received since the previous Checkpoint (all that are kept
	// when Full), oldest first. Alerts with an index below
	// AlertsNext-DefaultMaxAlerts are gone.
	Alerts     []AlertRecord `json:"alerts,omitempty"`
	AlertsNext uint64        `json:"alerts_next"`
	// Rejects by reason, fleet-wide (always complete).
	Rejects map[string]uint64 `json:"rejects"`
	// Accepted messages by kind: summary, status, alert (always complete).
	Accepted map[string]uint64 `json:"accepted,omitempty"`
}

// LevelState is one aggregation level.
type LevelState struct {
	Name  string        `json:"name"`
	Width time.Duration `json:"width"`
	Keep  int           `json:"keep"`
	// Horizon is the start of the oldest window the level keeps (zero
	// before the first message).
	Horizon time.Time `json:"horizon,omitzero"`
	// ViewKeep and ViewHorizon are the same for the windows that keep
	// their per-sensor views (Options.ViewRetention).
	ViewKeep    int       `json:"view_keep,omitempty"`
	ViewHorizon time.Time `json:"view_horizon,omitzero"`
}

// WindowState is one window of one level.
type WindowState struct {
	Level   string          `json:"level"`
	Start   time.Time       `json:"start"`
	Summary summary.Summary `json:"summary"`
	// Views are the per-sensor views of the window's shards that changed
	// (of every shard when Full, but for ChangedViews), sorted by sensor;
	// the store writes them apart (WriteViews), in files of their own. A
	// Restore takes all of the window's views.
	Views []*SensorView `json:"-"`
	// ViewsGone: the window's per-sensor views were dropped (past its
	// level's ViewRetention); Views is empty.
	ViewsGone bool `json:"views_gone,omitempty"`
	// Sealed: a window of the finest level already added to the coarser
	// levels (adding it again would count it twice).
	Sealed bool `json:"sealed,omitempty"`
}

// SensorRecord is what the collector knows of one sensor.
type SensorRecord struct {
	ID         string    `json:"id"`
	Online     bool      `json:"online,omitempty"`
	HasStatus  bool      `json:"has_status,omitempty"`
	Version    string    `json:"version,omitempty"`
	Board      string    `json:"board,omitempty"`
	LastSeen   time.Time `json:"last_seen"`
	LastEnd    time.Time `json:"last_end,omitzero"`
	Summaries  uint64    `json:"summaries,omitempty"`
	Duplicates uint64    `json:"duplicates,omitempty"`
	// OutboxDropped: SensorState.OutboxDropped.
	OutboxDropped uint64            `json:"outbox_dropped,omitempty"`
	Repaired      uint64            `json:"repaired,omitempty"`
	Rejects       map[string]uint64 `json:"rejects,omitempty"`
	Seqs          SeqState          `json:"seqs"`
}

// SeqState is a sensor's sequence tracker: the highest seq received, the
// seqs received among the 100000 up to it (as runs, or when there are many
// runs as the tracker's bitmap, 12.5 KiB), and the gaps below.
type SeqState struct {
	High     uint64     `json:"high"`
	Received []SeqRange `json:"received,omitempty"`
	Bitmap   []byte     `json:"bitmap,omitempty"`
	Gaps     []SeqRange `json:"gaps,omitempty"`
	// Lost: the seqs the sensor said it no longer holds (gap repair).
	Lost []SeqRange `json:"lost,omitempty"`
}

// AlertRecord is an alert and its index: the alerts ever received before it.
type AlertRecord struct {
	Index uint64 `json:"index"`
	Alert
}

// Checkpoint returns what changed since the previous Checkpoint, or the
// whole state when full, and marks it unchanged. A caller whose write of a
// checkpoint failed asks for a full one next.
func (c *Collector) Checkpoint(full bool) *Checkpoint {
	return c.CheckpointWith(CheckpointOptions{Full: full})
}

// CheckpointOptions say what a Checkpoint holds.
type CheckpointOptions struct {
	// Full: every window, sensor and alert, not only what changed.
	Full bool
	// ChangedViews: the per-sensor views of the shards that changed
	// only, even when Full. For a caller that keeps the others as the
	// Checkpoints before gave them, and has RewriteViews mark those of
	// the windows whose write failed.
	ChangedViews bool
}

// CheckpointWith is Checkpoint with options.
func (c *Collector) CheckpointWith(o CheckpointOptions) *Checkpoint {
	full := o.Full
	type rawSensor struct {
		rec  SensorRecord
		seqs seqTracker
	}
	var raw []rawSensor
	cp := &Checkpoint{Full: full, Rejects: make(map[string]uint64, len(reasons))}
	// The views of each window written, as pointers taken under the
	// lock and filtered outside it (views.go: they do not change).
	type rawViews struct {
		window   int // in cp.Windows
		bySensor []*SensorView
		dirty    [ViewShards]bool
	}
	var views []rawViews

	// A seal job in flight would leave the coarser windows without the
	// views it merges: run them first, and then take mu without letting
	// another seal start (sealMu).
	c.sealMu.Lock()
	defer c.sealMu.Unlock()
	c.runSeals()
	c.mu.Lock()
	for len(c.seals) > 0 {
		c.mu.Unlock()
		c.runSeals()
		c.mu.Lock()
	}
	cp.Clock = c.clock
	maps.Copy(cp.Rejects, c.rejects)
	cp.Accepted = maps.Clone(c.accepted)
	for _, l := range c.levels {
		ls := LevelState{Name: l.name, Width: l.width, Keep: l.keep, ViewKeep: l.viewKeep}
		if !c.clock.IsZero() {
			ls.Horizon, ls.ViewHorizon = l.horizon(c.clock), l.viewHorizon(c.clock)
		}
		cp.Levels = append(cp.Levels, ls)
		for start, b := range l.buckets {
			if !full && !b.dirty {
				continue
			}
			b.dirty = false
			cp.Windows = append(cp.Windows, WindowState{Level: l.name, Start: start, Summary: *b.sum.Summary(0), ViewsGone: b.seen == nil, Sealed: b.sealed})
			if b.seen == nil {
				continue
			}
			rv := rawViews{window: len(cp.Windows) - 1, bySensor: slices.Clone(b.seen.bySensor), dirty: b.seen.dirty}
			if full && !o.ChangedViews {
				rv.dirty = [ViewShards]bool{}
				for i := range rv.dirty {
					rv.dirty[i] = true
				}
			}
			views = append(views, rv)
			b.seen.dirty = [ViewShards]bool{}
		}
	}
	shards := c.shards
	// At its final size: growing it by copies, in fresh memory, held the
	// lock for 100 ms at 10,000 sensors (all of them change between two
	// flushes at that fleet's rate).
	raw = make([]rawSensor, 0, len(c.sensors))
	for _, s := range c.sensors {
		if !full && !s.dirty {
			continue
		}
		s.dirty = false
		raw = append(raw, rawSensor{
			rec: SensorRecord{ID: s.id, Online: s.online, HasStatus: s.hasStatus, Version: s.version, Board: s.board, LastSeen: s.lastSeen, LastEnd: s.lastEnd,
				Summaries: s.summaries, Duplicates: s.dupes, OutboxDropped: s.outboxDropped, Repaired: s.repaired, Rejects: maps.Clone(s.rejects)},
			// chunks are copied on their next change instead (seqTracker.shared).
			seqs: seqTracker{high: s.seqs.high, chunks: s.seqs.chunks, gaps: slices.Clone(s.seqs.gaps), lost: slices.Clone(s.seqs.lost)},
		})
		s.seqs.shared = true
	}
	cp.AlertsNext = c.alertsNext
	first := c.alertsNext - uint64(len(c.alerts)) // the oldest index kept
	from := first
	if !full {
		from = max(from, c.alertsSaved)
	}
	for i := from; i < c.alertsNext; i++ {
		pos := (uint64(c.alertAt) + i - first) % uint64(len(c.alerts))
		cp.Alerts = append(cp.Alerts, AlertRecord{Index: i, Alert: c.alerts[pos]})
	}
	c.alertsSaved = c.alertsNext
	c.mu.Unlock()

	// The views of the shards that changed: outside the lock, which a
	// window of 10,000 sensors would hold for long.
	for _, rv := range views {
		w := &cp.Windows[rv.window]
		for n, v := range rv.bySensor {
			if v != nil && rv.dirty[shards[n]] {
				w.Views = append(w.Views, v)
			}
		}
		slices.SortFunc(w.Views, func(a, b *SensorView) int { return cmp.Compare(a.Sensor, b.Sensor) })
	}
	// Encoding the trackers takes a scan of each bitmap: outside the lock.
	for _, r := range raw {
		r.rec.Seqs = r.seqs.state()
		cp.Sensors = append(cp.Sensors, r.rec)
	}
	slices.SortFunc(cp.Sensors, func(a, b SensorRecord) int { return cmp.Compare(a.ID, b.ID) })
	slices.SortFunc(cp.Windows, func(a, b WindowState) int {
		if a.Level != b.Level {
			return cmp.Compare(a.Level, b.Level)
		}
		return a.Start.Compare(b.Start)
	})
	return cp
}

// Restore loads a full checkpoint into a collector that has not handled a
// message yet. Windows of levels that are not configured, and windows
// older than their level keeps, are left out (they are gone from the
// store at the next checkpoint); a window with more than 2×TopN prefixes
// keeps the TopN largest (summary.Rollup). Anything invalid or over a bound refuses the whole
// checkpoint with an error that wraps ErrRestore and names the record.
func (c *Collector) Restore(cp *Checkpoint) error {
	limits := restoreLimits(c.opts.Limits)
	byLevel := map[string]*level{}
	for _, l := range c.levels {
		byLevel[l.name] = l
	}
	type key struct {
		level string
		start time.Time
	}
	buckets := map[key]*bucket{}
	ignored := 0
	// The views are numbered once the checkpoint is known to be valid.
	type restoredViews struct {
		b     *bucket
		views []*SensorView
	}
	var restored []restoredViews
	for _, w := range cp.Windows {
		name := fmt.Sprintf("window %s %s", w.Level, w.Start.UTC().Format(time.RFC3339))
		l := byLevel[w.Level]
		if l == nil {
			ignored++
			continue
		}
		start := w.Start.UTC()
		if !start.Equal(start.Truncate(l.width)) {
			return fmt.Errorf("%w: %s: start not a multiple of %s", ErrRestore, name, l.width)
		}
		if !cp.Clock.IsZero() && start.Before(l.horizon(cp.Clock)) {
			ignored++
			continue
		}
		k := key{w.Level, start}
		if buckets[k] != nil {
			return fmt.Errorf("%w: %s: twice", ErrRestore, name)
		}
		s := w.Summary
		switch {
		case len(s.Prefixes) > limits.MaxPrefixes:
			return fmt.Errorf("%w: %s: %d prefixes, limit %d", ErrRestore, name, len(s.Prefixes), limits.MaxPrefixes)
		case len(s.Countries) > limits.MaxCountries:
			return fmt.Errorf("%w: %s: %d countries, limit %d", ErrRestore, name, len(s.Countries), limits.MaxCountries)
		case len(s.ASes) > limits.MaxASes:
			return fmt.Errorf("%w: %s: %d ASes, limit %d", ErrRestore, name, len(s.ASes), limits.MaxASes)
		case len(w.Views) > MaxRestoreSensors:
			return fmt.Errorf("%w: %s: views of %d sensors, limit %d", ErrRestore, name, len(w.Views), MaxRestoreSensors)
		case w.ViewsGone && len(w.Views) > 0:
			return fmt.Errorf("%w: %s: views of a window whose views are gone", ErrRestore, name)
		case len(s.Watch) > limits.MaxWatch:
			return fmt.Errorf("%w: %s: %d watch lists, limit %d", ErrRestore, name, len(s.Watch), limits.MaxWatch)
		}
		if err := s.Check(); err != nil {
			return fmt.Errorf("%w: %s: %w", ErrRestore, name, err)
		}
		b := newBucket(start, c.opts.TopN)
		b.sum.Add(&s)
		b.sealed = w.Sealed && l == c.levels[0]
		if w.ViewsGone {
			b.seen = nil
		}
		ids := make(map[string]bool, len(w.Views))
		for _, v := range w.Views {
			if err := checkView(v); err != nil {
				return fmt.Errorf("%w: %s: %w", ErrRestore, name, err)
			}
			if ids[v.Sensor] {
				return fmt.Errorf("%w: %s: views of sensor %s twice", ErrRestore, name, v.Sensor)
			}
			ids[v.Sensor] = true
		}
		buckets[k] = b
		if b.seen != nil {
			restored = append(restored, restoredViews{b, w.Views})
		}
	}

	if len(cp.Sensors) > MaxRestoreSensors {
		return fmt.Errorf("%w: %d sensors, limit %d", ErrRestore, len(cp.Sensors), MaxRestoreSensors)
	}
	sensors := make(map[string]*sensor, len(cp.Sensors))
	for _, r := range cp.Sensors {
		if !summary.ValidSensorID(r.ID) {
			return fmt.Errorf("%w: sensor %q: invalid id", ErrRestore, truncate(r.ID))
		}
		if sensors[r.ID] != nil {
			return fmt.Errorf("%w: sensor %s: twice", ErrRestore, r.ID)
		}
		if err := checkRejects(r.Rejects); err != nil {
			return fmt.Errorf("%w: sensor %s: %w", ErrRestore, r.ID, err)
		}
		seqs, err := restoreSeqs(r.Seqs)
		if err != nil {
			return fmt.Errorf("%w: sensor %s: %w", ErrRestore, r.ID, err)
		}
		sensors[r.ID] = &sensor{id: r.ID, online: r.Online, hasStatus: r.HasStatus, version: r.Version, board: r.Board, lastSeen: r.LastSeen, lastEnd: r.LastEnd,
			summaries: r.Summaries, dupes: r.Duplicates, outboxDropped: r.OutboxDropped, repaired: r.Repaired, seqs: seqs, rejects: maps.Clone(r.Rejects)}
	}
	if err := checkRejects(cp.Rejects); err != nil {
		return fmt.Errorf("%w: %w", ErrRestore, err)
	}
	for kind := range cp.Accepted {
		if kind != "summary" && kind != "status" && kind != "alert" && kind != KindLost {
			return fmt.Errorf("%w: accepted: unknown kind %q", ErrRestore, truncate(kind))
		}
	}

	if len(cp.Alerts) > DefaultMaxAlerts {
		return fmt.Errorf("%w: %d alerts, limit %d", ErrRestore, len(cp.Alerts), DefaultMaxAlerts)
	}
	var alerts []Alert
	for i, a := range cp.Alerts {
		switch {
		case a.Index >= cp.AlertsNext:
			return fmt.Errorf("%w: alert %d: index not below alerts_next %d", ErrRestore, a.Index, cp.AlertsNext)
		case i > 0 && a.Index <= cp.Alerts[i-1].Index:
			return fmt.Errorf("%w: alert %d: indexes not increasing", ErrRestore, a.Index)
		case cp.AlertsNext-a.Index > DefaultMaxAlerts:
			continue // older than the ring keeps
		case !summary.ValidSensorID(a.Sensor):
			return fmt.Errorf("%w: alert %d: invalid sensor id %q", ErrRestore, a.Index, truncate(a.Sensor))
		case len(a.Alert.Alert) > MaxMessageBytes:
			return fmt.Errorf("%w: alert %d: %d bytes, limit %d", ErrRestore, a.Index, len(a.Alert.Alert), MaxMessageBytes)
		}
		if len(alerts) > 0 && a.Index != cp.Alerts[i-1].Index+1 {
			return fmt.Errorf("%w: alert %d: alert %d missing", ErrRestore, a.Index, cp.Alerts[i-1].Index+1)
		}
		alerts = append(alerts, a.Alert)
	}
	if len(alerts) > 0 && cp.Alerts[len(cp.Alerts)-1].Index != cp.AlertsNext-1 {
		return fmt.Errorf("%w: alerts end at %d, alerts_next is %d", ErrRestore, cp.Alerts[len(cp.Alerts)-1].Index, cp.AlertsNext)
	}
	if len(alerts) < int(min(cp.AlertsNext, DefaultMaxAlerts)) {
		return fmt.Errorf("%w: %d alerts kept of the last %d", ErrRestore, len(alerts), min(cp.AlertsNext, DefaultMaxAlerts))
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.clock.IsZero() || len(c.sensors) > 0 || c.alertsNext > 0 {
		return fmt.Errorf("%w: the collector already has state", ErrRestore)
	}
	c.clock = cp.Clock
	for _, r := range restored {
		for _, v := range r.views {
			n := c.sensorNumberLocked(v.Sensor)
			r.b.seen.set(n, int(c.shards[n]), v)
		}
		r.b.seen.dirty = [ViewShards]bool{} // as written
	}
	for _, l := range c.levels {
		for k, b := range buckets {
			if k.level == l.name {
				l.buckets[k.start] = b
			}
		}
	}
	c.sensors = sensors
	maps.Copy(c.rejects, cp.Rejects)
	maps.Copy(c.accepted, cp.Accepted)
	c.alerts = alerts
	c.alertAt = 0 // the oldest is first
	c.alertsNext, c.alertsSaved = cp.AlertsNext, cp.AlertsNext
	if ignored > 0 {
		c.log.Info("restore: left out windows of levels not configured or past their retention", "windows", ignored)
	}
	return nil
}

func checkRejects(m map[string]uint64) error {
next:
	for r := range m {
		for _, x := range reasons {
			if x.reason == r {
				continue next
			}
		}
		return fmt.Errorf("unknown reject reason %q", truncate(r))
	}
	return nil
}

// restoreLimits are the limits of summary.Decode, with its defaults for
// the fields left at zero.
func restoreLimits(l summary.Limits) summary.Limits {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&l.MaxPrefixes, summary.DefaultMaxPrefixes)
	def(&l.MaxCountries, summary.DefaultMaxCountries)
	def(&l.MaxASes, summary.DefaultMaxASes)
	def(&l.MaxWatch, summary.DefaultMaxWatch)
	return l
}

// Replay takes again a message that was received at received, before the
// restart, after Restore: as Handle, except that a summary whose (sensor,
// seq) is already known, or an alert equal to one kept (same sensor, event,
// time received and body), is skipped, and that nothing refused is counted
// (it was counted when first received). It returns nil when the message
// changed the state, else an error that says why not.
func (c *Collector) Replay(topic string, payload []byte, received time.Time) error {
	return c.handle(topic, payload, received, true)
}

// ErrReplayed: Replay skipped an alert that the collector already keeps.
var ErrReplayed = errors.New("already restored")

func (c *Collector) hasAlertLocked(a Alert) bool {
	for _, x := range c.alerts {
		if x.Sensor == a.Sensor && x.Event == a.Event && x.Received.Equal(a.Received) && bytes.Equal(x.Alert, a.Alert) {
			return true
		}
	}
	return false
}

// window is the range of seqs the bitmap covers: [lo, t.high].
func (t *seqTracker) window() (lo uint64) {
	if t.high >= seqWindow {
		return t.high - seqWindow + 1
	}
	return 1
}

// state encodes the tracker: the seqs received in the window as runs, or
// as its bitmap when they make more than maxSeqRuns runs.
func (t *seqTracker) state() SeqState {
	st := SeqState{High: t.high, Gaps: slices.Clone(t.gaps), Lost: slices.Clone(t.lost)}
	if t.chunks == nil || t.high == 0 {
		return st
	}
	var runs []SeqRange
	for s := t.window(); s <= t.high; {
		// 64 seqs at a time where their word is all set or none: a
		// window is 100,000 seqs, and a checkpoint encodes every
		// sensor's that changed.
		i, n := s%seqWindow, uint64(1)
		if i%64 == 0 && t.high-s >= 63 && i+64 <= seqWindow {
			switch t.word(i / 64) {
			case 0:
				s += 64
				continue
			case ^uint64(0):
				n = 64
			}
		}
		if !t.bit(s) {
			s++
			continue
		}
		switch k := len(runs); {
		case k > 0 && runs[k-1].Last == s-1:
			runs[k-1].Last = s + n - 1
		case k == maxSeqRuns:
			st.Bitmap = t.bitmap()
			return st
		default:
			runs = append(runs, SeqRange{First: s, Last: s + n - 1})
		}
		s += n
	}
	st.Received = runs
	return st
}

// bitmap is the window's bits, a little-endian word (64 window positions)
// after another.
func (t *seqTracker) bitmap() []byte {
	b := make([]byte, 8*seqWords)
	for w := range uint64(seqWords) {
		binary.LittleEndian.PutUint64(b[8*w:], t.word(w))
	}
	return b
}

// setRange records the seqs first to last, all in the window, in a
// tracker no Checkpoint holds: whole chunks at a time where it can (a
// restore sets up to seqWindow per sensor).
func (t *seqTracker) setRange(first, last uint64) {
	for s := first; s <= last; {
		if i := s % seqWindow; i%seqChunkBits == 0 && last-s >= seqChunkBits-1 && i+seqChunkBits <= seqWindow {
			t.setFull(i / seqChunkBits)
			s += seqChunkBits
			continue
		}
		t.setBit(s)
		s++
	}
}

// restoreSeqs decodes and checks a SeqState.
func restoreSeqs(st SeqState) (seqTracker, error) {
	t := seqTracker{high: st.High}
	if st.High > summary.MaxSeq {
		return t, fmt.Errorf("high %d above 2^63-1", st.High)
	}
	if len(st.Gaps) > maxGaps {
		return t, fmt.Errorf("%d gaps, limit %d", len(st.Gaps), maxGaps)
	}
	for i, g := range st.Gaps {
		if g.First == 0 || g.First > g.Last || g.Last >= st.High || (i > 0 && g.First <= st.Gaps[i-1].Last) {
			return t, fmt.Errorf("gap %d-%d: not inside [1, %d) and above the previous gap", g.First, g.Last, st.High)
		}
	}
	t.gaps = slices.Clone(st.Gaps)
	if len(st.Lost) > maxGaps {
		return t, fmt.Errorf("%d lost ranges, limit %d", len(st.Lost), maxGaps)
	}
	for i, g := range st.Lost {
		if g.First == 0 || g.First > g.Last || g.Last >= st.High || (i > 0 && g.First <= st.Lost[i-1].Last) {
			return t, fmt.Errorf("lost range %d-%d: not inside [1, %d) and above the previous one", g.First, g.Last, st.High)
		}
		if _, in := findRange(st.Gaps, g.First); in {
			return t, fmt.Errorf("lost range %d-%d: in a gap too", g.First, g.Last)
		}
	}
	t.lost = slices.Clone(st.Lost)
	if st.High == 0 {
		if len(st.Received) > 0 || len(st.Bitmap) > 0 || len(st.Gaps) > 0 || len(st.Lost) > 0 {
			return t, errors.New("seqs received but high is 0")
		}
		return t, nil
	}
	t.chunks = make([]*seqChunk, seqChunks)
	lo := t.window()
	switch {
	case len(st.Bitmap) > 0 && len(st.Received) > 0:
		return t, errors.New("both received runs and bitmap")
	case len(st.Bitmap) > 0:
		if len(st.Bitmap) != 8*seqWords {
			return t, fmt.Errorf("bitmap of %d bytes, want %d", len(st.Bitmap), 8*seqWords)
		}
		// Only the bits of seqs in the window: anything else in the
		// bitmap would be taken for a seq received.
		for s := lo; s <= t.high; s++ {
			i := s % seqWindow
			if binary.LittleEndian.Uint64(st.Bitmap[8*(i/64):])&(1<<(i%64)) != 0 {
				t.setBit(s)
			}
		}
	default:
		if len(st.Received) > maxSeqRuns {
			return t, fmt.Errorf("%d received runs, limit %d", len(st.Received), maxSeqRuns)
		}
		for i, r := range st.Received {
			if r.First < lo || r.First > r.Last || r.Last > t.high || (i > 0 && r.First <= st.Received[i-1].Last) {
				return t, fmt.Errorf("received run %d-%d: not inside [%d, %d] and above the previous run", r.First, r.Last, lo, t.high)
			}
			t.setRange(r.First, r.Last)
		}
	}
	if !t.bit(t.high) {
		return t, fmt.Errorf("high %d not among the seqs received", t.high)
	}
	return t, nil
}
