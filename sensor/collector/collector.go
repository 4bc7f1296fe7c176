// Package collector is the core of collectord: it takes the messages that
// sensors publish over MQTT (docs/mqtt.md), checks them, drops duplicate
// summaries, tracks each sensor's health and sequence gaps, and aggregates
// the summaries fleet-wide per time window.
//
// It does no I/O: the caller subscribes to the broker and feeds every
// message to Handle, which only takes a mutex for in-memory updates, so it
// is safe to call from MQTT handler goroutines. Aggregates are kept in
// memory, the last few windows per level. The caller persists them with
// Checkpoint and Restore (persist.go).
package collector

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/peerwatch/peerwatch/internal/quickselect"
	"github.com/peerwatch/peerwatch/sensor/summary"
	"github.com/peerwatch/peerwatch/sensor/traffic"
)

// Sentinels of the rejects that are not the summary package's; every error
// Handle returns wraps one of these or one of summary.ErrVersion,
// ErrTooLarge, ErrMalformed and ErrInconsistent (see Reason).
var (
	// ErrTopic: the topic is not <prefix>/<sensor-id>/summary|alert|status|lost
	// (or resend, which the collector publishes itself and ignores).
	ErrTopic = errors.New("unexpected topic")
	// ErrSensorMismatch: the payload names another sensor than its topic.
	ErrSensorMismatch = errors.New("payload sensor id differs from the topic's")
	// ErrDuplicate: a summary whose (sensor, seq) was already received.
	ErrDuplicate = errors.New("duplicate summary")
	// ErrClock: a summary that ends too far after the collector's now
	// (Options.MaxSkew); its sensor's clock is wrong.
	ErrClock = errors.New("summary ends in the future")
)

// Reasons of rejects, the keys of Rejects.
const (
	ReasonTopic          = "topic"
	ReasonVersion        = "version"
	ReasonTooLarge       = "too_large"
	ReasonMalformed      = "malformed"
	ReasonInconsistent   = "inconsistent"
	ReasonSensorMismatch = "sensor_mismatch"
	ReasonDuplicate      = "duplicate"
	ReasonClock          = "clock"
)

var reasons = []struct {
	err    error
	reason string
}{
	{ErrTopic, ReasonTopic},
	{summary.ErrVersion, ReasonVersion},
	{summary.ErrTooLarge, ReasonTooLarge},
	{summary.ErrMalformed, ReasonMalformed},
	{summary.ErrInconsistent, ReasonInconsistent},
	{ErrSensorMismatch, ReasonSensorMismatch},
	{ErrDuplicate, ReasonDuplicate},
	{ErrClock, ReasonClock},
}

// Reason names the reject reason of an error returned by Handle ("" for
// nil, "malformed" for an error that wraps no known sentinel).
func Reason(err error) string {
	if err == nil {
		return ""
	}
	for _, r := range reasons {
		if errors.Is(err, r.err) {
			return r.reason
		}
	}
	return ReasonMalformed
}

// Defaults of Options, used for fields left at zero.
const (
	DefaultTopicPrefix = "peerwatch"
	DefaultTopN        = 1000
	DefaultMaxSkew     = 5 * time.Minute
	// DefaultMaxAlerts is how many alerts the collector keeps.
	DefaultMaxAlerts = 1000
	// MaxMessageBytes bounds status and alert payloads.
	MaxMessageBytes = 64 << 10
)

// DefaultWindows are the window widths used when Options.Windows is empty.
var DefaultWindows = []time.Duration{time.Minute, time.Hour, 24 * time.Hour}

// Options of a Collector; zero fields take their defaults.
type Options struct {
	// TopicPrefix is the first part of the topics, without a trailing
	// slash; it may itself have several levels.
	TopicPrefix string
	// Limits bound the summaries Decode accepts.
	Limits summary.Limits
	// Windows are the widths of the aggregation levels; each window starts
	// at a multiple of its width in UTC (a day at midnight UTC).
	// Non-positive and repeated widths are ignored.
	Windows []time.Duration
	// Retention is, per entry of Windows, how many windows of that level
	// are kept, the current one included. A missing or non-positive
	// entry keeps 60 windows under an hour wide, 48 under a day, else 30.
	Retention []int
	// ViewRetention is, per entry of Windows, how many windows of that
	// level, the current one included, keep their per-sensor views
	// (WhoSees, per-sensor series): these take memory by sensors ×
	// (countries + ASes) per window, about 100 bytes a counter
	// (docs/collectord.md): a fleet of thousands of sensors keeps them
	// for fewer windows than the totals. A missing or non-positive entry
	// keeps them in every window the level keeps; no level keeps views
	// for more windows than it keeps.
	ViewRetention []int
	// TopN is how many remote prefixes a query returns; each window keeps
	// between TopN and 2×TopN (summary.Rollup) and adds the others to
	// Other, so totals stay exact but a prefix cut early in a window does
	// not come back.
	TopN int
	// MaxSkew is how far after now a summary may end (sensor clocks
	// drift); later ones are refused with ErrClock.
	MaxSkew time.Duration
}

func defaultRetention(width time.Duration) int {
	switch {
	case width < time.Hour:
		return 60
	case width < 24*time.Hour:
		return 48
	}
	return 30
}

// newLevel is a level of windows of width, keep of them, viewKeep of
// them with their per-sensor views (defaults for non-positive counts).
func newLevel(width time.Duration, keep, viewKeep int) *level {
	if keep <= 0 {
		keep = defaultRetention(width)
	}
	if viewKeep <= 0 {
		viewKeep = keep
	}
	return &level{name: LevelName(width), width: width, keep: keep, viewKeep: min(viewKeep, keep), buckets: make(map[time.Time]*bucket)}
}

// LevelName is the name of the level of windows of the given width, as
// Window takes it: "1m", "1h", "1d", "10s", "90m".
func LevelName(width time.Duration) string {
	switch {
	case width%(24*time.Hour) == 0:
		return fmt.Sprintf("%dd", width/(24*time.Hour))
	case width%time.Hour == 0:
		return fmt.Sprintf("%dh", width/time.Hour)
	case width%time.Minute == 0:
		return fmt.Sprintf("%dm", width/time.Minute)
	case width%time.Second == 0:
		return fmt.Sprintf("%ds", width/time.Second)
	}
	return width.String()
}

// SensorState is what the collector knows of one sensor.
type SensorState struct {
	ID       string    `json:"id"`
	Online   bool      `json:"online"`
	Version  string    `json:"version,omitempty"`
	Board    string    `json:"board,omitempty"`
	LastSeen time.Time `json:"last_seen"` // the last message of any kind, rejects included
	// LastSeq is the highest sequence number received.
	LastSeq    uint64 `json:"last_seq"`
	Summaries  uint64 `json:"summaries"` // accepted
	Duplicates uint64 `json:"duplicates"`
	// OutboxDropped is the largest outbox_dropped of its summaries: the
	// summaries its outbox dropped unsent, which are among the gaps.
	OutboxDropped uint64 `json:"outbox_dropped"`
	// Gaps are the sequence numbers below LastSeq not received (yet), at
	// most the last 1000 ranges; those older than the grace are asked for
	// again (gap repair, resend.go).
	Gaps []SeqRange `json:"gaps,omitempty"`
	// Lost are the seqs of gaps that the sensor said it no longer holds:
	// lost for good, not asked for again (at most the last 1000 ranges);
	// LostSeqs counts them.
	Lost     []SeqRange `json:"lost,omitempty"`
	LostSeqs uint64     `json:"lost_seqs"`
	// Repaired counts the summaries that arrived below LastSeq, into a
	// gap: late, or sent again on request.
	Repaired uint64 `json:"repaired"`
	// LastEnd is the latest end of an accepted summary, and Lag how far
	// it is behind the now given to Sensors (0 before any summary).
	LastEnd time.Time     `json:"last_end"`
	Lag     time.Duration `json:"lag"`
	// Rejects counts this sensor's rejected messages by reason.
	Rejects map[string]uint64 `json:"rejects,omitempty"`
	// HasStatus: a status message was received. Without one (a sensor
	// that never published one), Online means nothing.
	HasStatus bool `json:"has_status"`
}

// SensorCount is the traffic of one sensor.
type SensorCount struct {
	Sensor string `json:"sensor"`
	traffic.Counters
}

// Alert is an alert a sensor published.
type Alert struct {
	Sensor   string          `json:"sensor"`
	Event    string          `json:"event"`
	Received time.Time       `json:"received"`
	Alert    json.RawMessage `json:"alert"`
}

type sensor struct {
	id               string
	online           bool
	hasStatus        bool
	version, board   string
	lastSeen         time.Time
	lastEnd          time.Time
	summaries, dupes uint64
	outboxDropped    uint64
	repaired         uint64
	seqs             seqTracker
	rejects          map[string]uint64
	dirty            bool // changed since the last Checkpoint
}

// bucket is one window of one level.
type bucket struct {
	sum summary.Rollup
	// seen are the per-sensor views; nil once dropped, for a window past
	// its level's ViewRetention.
	seen *views
	// pending, of a window of the finest level, are its views as sealed,
	// while a seal job merges them into the coarser levels (seal.go):
	// queries of those levels count them meanwhile.
	pending []*SensorView
	started time.Time
	// sealed: a window of the finest level that was added to the coarser
	// levels; later summaries of its window go to every level directly.
	sealed bool
	dirty  bool // changed since the last Checkpoint
}

func newBucket(start time.Time, topN int) *bucket {
	return &bucket{started: start, sum: summary.Rollup{MaxPrefixes: topN}, seen: &views{}}
}

// add adds the summary of sensor id, numbered n; scratch is memory to
// reuse.
func (b *bucket) add(n, shard int, id string, sum *summary.Summary, scratch *viewScratch) {
	b.dirty = true
	b.sum.Add(sum)
	if b.seen != nil {
		b.seen.set(n, shard, summaryView(b.seen.get(n), id, sum, scratch))
	}
}

// MaxSeenASes is how many ASes of each summary, the most packets first,
// are counted per sensor for WhoSees and per-sensor series: counting every
// AS of every sensor in every window cost more than the rest of Handle and
// grew with sensors × ASes. The fleet-wide AS totals count every AS.
const MaxSeenASes = 100

// eachTopAS calls fn for each of the n ASes with the most packets (ties
// to the lower ASN; all of them when there are no more than n), in no
// particular order. ases have distinct ASNs (summary.Decode checks it), so
// which n is exact. It selects rather than sorts: this runs for every
// summary. scratch is memory to reuse.
func eachTopAS(ases []summary.ASCount, n int, scratch *[]uint64, fn func(*summary.ASCount)) {
	if len(ases) <= n {
		for i := range ases {
			fn(&ases[i])
		}
		return
	}
	totals := (*scratch)[:0]
	for i := range ases {
		totals = append(totals, ases[i].Total())
	}
	*scratch = totals
	// The n-th largest total: the ASes above it are in, and of those
	// tied at it, the lowest ASNs fill what is left.
	threshold := quickselect.Nth(totals, len(totals)-n)
	var tied []uint32
	for i := range ases {
		switch t := ases[i].Total(); {
		case t > threshold:
			fn(&ases[i])
			n--
		case t == threshold:
			tied = append(tied, ases[i].ASN)
		}
	}
	slices.Sort(tied)
	tied = tied[:min(n, len(tied))]
	for i := range ases {
		if ases[i].Total() == threshold {
			if _, in := slices.BinarySearch(tied, ases[i].ASN); in {
				fn(&ases[i])
			}
		}
	}
}

type level struct {
	name    string
	width   time.Duration
	keep    int
	buckets map[time.Time]*bucket // by window start, UTC
	pruned  time.Time             // the horizon of the last prune
	// viewKeep is how many windows, the current one included, keep
	// their per-sensor views (at most keep); viewsPruned is the view
	// horizon of the last prune of views.
	viewKeep    int
	viewsPruned time.Time
}

// bucketLocked returns the window of l that holds t, made when missing, or
// nil when it is past l's retention at now.
func (l *level) bucketLocked(t, now time.Time, topN int) *bucket {
	start := t.UTC().Truncate(l.width)
	if start.Before(l.horizon(now)) {
		return nil
	}
	b := l.buckets[start]
	if b == nil {
		// A window past the view retention gets views all the same: of the
		// finest level, the coarser ones need them when it is sealed; the
		// next prune of views drops them (dropViewsLocked).
		b = newBucket(start, topN)
		l.buckets[start] = b
	}
	return b
}

// viewHorizon is the start of the oldest window of the level that keeps
// its per-sensor views at now.
func (l *level) viewHorizon(now time.Time) time.Time {
	return now.UTC().Truncate(l.width).Add(-time.Duration(l.viewKeep-1) * l.width)
}

// horizon is the start of the oldest window the level keeps at now.
func (l *level) horizon(now time.Time) time.Time {
	return now.UTC().Truncate(l.width).Add(-time.Duration(l.keep-1) * l.width)
}

// Collector aggregates what the fleet's sensors publish.
type Collector struct {
	opts Options
	log  *slog.Logger

	mu      sync.Mutex
	clock   time.Time // the latest now given to Handle
	sensors map[string]*sensor
	levels  []*level // finest first
	rejects map[string]uint64
	alerts  []Alert // ring of DefaultMaxAlerts
	alertAt int     // next slot once the ring is full
	// alertsNext is the index of the next alert: the alerts ever received
	// (restored by Restore); the ring holds the last len(alerts) of them.
	alertsNext uint64
	// alertsSaved is the alertsNext of the last Checkpoint.
	alertsSaved uint64
	// accepted counts the messages accepted, by kind (summary, status, alert).
	accepted map[string]uint64
	// decoders are summary.Decoders for the handlers, which decode
	// concurrently outside the lock; each reuses the memory of the
	// summary it decoded before.
	decoders sync.Pool
	// scratch is bucket.add's (under mu).
	scratch viewScratch

	// The sensors of the per-sensor views, numbered in order of arrival
	// (views.go): ids and shards by number, numbers by id. ids and
	// shards only grow, so a copy of their slice headers taken under mu
	// may be read outside it.
	ids     []string
	shards  []uint8
	numbers map[string]int

	// seals are the seal jobs that tick queued, for the next unlock to
	// run outside mu (seal.go); sealMu orders their runs and Checkpoint.
	seals  []*sealJob
	sealMu sync.Mutex
}

// New returns a collector. log may be nil.
func New(opts Options, log *slog.Logger) *Collector {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.TopicPrefix == "" {
		opts.TopicPrefix = DefaultTopicPrefix
	}
	opts.TopicPrefix = strings.TrimSuffix(opts.TopicPrefix, "/")
	if opts.TopN <= 0 {
		opts.TopN = DefaultTopN
	}
	if opts.MaxSkew <= 0 {
		opts.MaxSkew = DefaultMaxSkew
	}
	windows := opts.Windows
	if len(windows) == 0 {
		windows = DefaultWindows
	}
	c := &Collector{
		opts:    opts,
		log:     log.With("component", "collector"),
		sensors: make(map[string]*sensor),
		rejects: make(map[string]uint64),
		// accepted: by kind
		accepted: make(map[string]uint64),
		numbers:  make(map[string]int),
	}
	for i, w := range windows {
		if w <= 0 || slices.ContainsFunc(c.levels, func(l *level) bool { return l.width == w }) {
			c.log.Warn("ignoring window width", "width", w)
			continue
		}
		keep, viewKeep := 0, 0
		if i < len(opts.Retention) {
			keep = opts.Retention[i]
		}
		if i < len(opts.ViewRetention) {
			viewKeep = opts.ViewRetention[i]
		}
		c.levels = append(c.levels, newLevel(w, keep, viewKeep))
	}
	if len(c.levels) == 0 {
		c.log.Warn("no valid window width; using the defaults", "defaults", DefaultWindows)
		for _, w := range DefaultWindows {
			c.levels = append(c.levels, newLevel(w, 0, 0))
		}
	}
	slices.SortFunc(c.levels, func(a, b *level) int { return cmp.Compare(a.width, b.width) })
	return c
}

// Levels names the aggregation levels, finest first.
func (c *Collector) Levels() []string {
	names := make([]string, len(c.levels))
	for i, l := range c.levels {
		names[i] = l.name
	}
	return names
}

// Handle takes one message as received on topic at now. A refused message
// is counted by reason (Rejects) and returned as an error that wraps the
// reason's sentinel; the caller should log these rate-limited.
func (c *Collector) Handle(topic string, payload []byte, now time.Time) error {
	return c.handle(topic, payload, now, false)
}

func (c *Collector) handle(topic string, payload []byte, now time.Time, replay bool) error {
	id, kind, ok := c.parseTopic(topic)
	if !ok {
		err := fmt.Errorf("%w: %q", ErrTopic, truncate(topic))
		if replay {
			return err
		}
		return c.reject(nil, now, err)
	}
	var err error
	switch kind {
	case "summary":
		err = c.handleSummary(id, payload, now)
	case "status":
		err = c.handleStatus(id, payload, now)
	case "alert":
		err = c.handleAlert(id, payload, now, replay)
	case KindLost:
		err = c.handleLost(id, payload, now)
	case KindResend:
		return nil // the collector's own request (resend.go), back through its subscription
	}
	if err != nil && replay {
		// Replay (persist.go) counts nothing it refuses: the message was
		// counted when it was first received.
		return fmt.Errorf("%s from sensor %s: %w", kind, id, err)
	}
	if err != nil {
		return c.reject(&id, now, fmt.Errorf("%s from sensor %s: %w", kind, id, err))
	}
	return nil
}

func (c *Collector) parseTopic(topic string) (id, kind string, ok bool) {
	rest, ok := strings.CutPrefix(topic, c.opts.TopicPrefix+"/")
	if !ok {
		return "", "", false
	}
	id, kind, ok = strings.Cut(rest, "/")
	if !ok || !summary.ValidSensorID(id) {
		return "", "", false
	}
	switch kind {
	case "summary", "status", "alert", KindLost, KindResend:
		return id, kind, true
	}
	return "", "", false
}

// reject counts err under its reason, fleet-wide and for the sensor id
// when the topic named one, and returns it.
func (c *Collector) reject(id *string, now time.Time, err error) error {
	r := Reason(err)
	c.mu.Lock()
	defer c.unlock()
	c.tick(now)
	c.rejects[r]++
	if id != nil {
		s := c.sensorLocked(*id)
		s.lastSeen = now
		if r == ReasonDuplicate {
			s.dupes++
		}
		if s.rejects == nil {
			s.rejects = make(map[string]uint64)
		}
		s.rejects[r]++
	}
	return err
}

// tick advances the collector's clock, seals the finest windows that no
// summary can reach any more except late (MaxSkew after their end), and
// drops the windows past every level's retention.
func (c *Collector) tick(now time.Time) {
	if !now.After(c.clock) {
		return
	}
	c.clock = now
	if len(c.levels) > 1 {
		finest := c.levels[0]
		h := finest.horizon(now)
		for start, b := range finest.buckets {
			// A window about to be pruned is sealed first, whatever its
			// age, or the coarser levels would never get it (when the
			// finest level keeps less than its width plus MaxSkew).
			if b.sealed || (start.Add(finest.width+c.opts.MaxSkew).After(now) && !start.Before(h)) {
				continue
			}
			c.sealLocked(b, now)
		}
	}
	for _, l := range c.levels {
		h := l.horizon(now)
		if !h.After(l.pruned) {
			continue
		}
		l.pruned = h
		for start := range l.buckets {
			if start.Before(h) {
				delete(l.buckets, start)
			}
		}
	}
	c.dropViewsLocked(now)
}

func (c *Collector) sensorLocked(id string) *sensor {
	s, ok := c.sensors[id]
	if !ok {
		s = &sensor{id: id}
		c.sensors[id] = s
		c.log.Info("new sensor", "sensor", id)
	}
	s.dirty = true // every caller changes it
	return s
}

func (c *Collector) handleSummary(id string, payload []byte, now time.Time) error {
	// Decoding is the costly part, and needs no lock. The decoder's
	// summary is valid until it decodes again: until this returns.
	dec, _ := c.decoders.Get().(*summary.Decoder)
	if dec == nil {
		dec = summary.NewDecoder(c.opts.Limits)
	}
	defer c.decoders.Put(dec)
	sum, err := dec.Decode(payload)
	if err != nil {
		return err
	}
	if sum.Sensor != id {
		return fmt.Errorf("%w: payload says %q", ErrSensorMismatch, sum.Sensor)
	}
	if sum.End.After(now.Add(c.opts.MaxSkew)) {
		return fmt.Errorf("%w: seq %d ends at %s, now is %s", ErrClock, sum.Seq, sum.End.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}

	c.mu.Lock()
	defer c.unlock()
	c.tick(now)
	s := c.sensorLocked(id)
	late := sum.Seq <= s.seqs.high
	if !s.seqs.addAt(sum.Seq, now) {
		// Counted by reject, which takes the lock again.
		return fmt.Errorf("%w: seq %d", ErrDuplicate, sum.Seq)
	}
	s.lastSeen = now
	s.summaries++
	if late {
		s.repaired++
	}
	s.outboxDropped = max(s.outboxDropped, sum.OutboxDropped)
	if sum.End.After(s.lastEnd) {
		s.lastEnd = sum.End
	}
	// A summary goes to its window of the finest level, which tick adds
	// to the coarser levels once sealed; that costs one merge per summary
	// instead of one per level. A summary too late for that goes to every
	// level itself.
	n := c.sensorNumberLocked(id)
	shard := int(c.shards[n])
	b := c.levels[0].bucketLocked(sum.End, c.clock, c.opts.TopN)
	if b != nil {
		b.add(n, shard, id, sum, &c.scratch)
	}
	if b == nil || b.sealed {
		for _, l := range c.levels[1:] {
			if b := l.bucketLocked(sum.End, c.clock, c.opts.TopN); b != nil {
				b.add(n, shard, id, sum, &c.scratch)
			}
		}
	}
	// Counted under the same lock as the summary's counters: a
	// Checkpoint between the two would hold the summary without its
	// count, and the replay skips the summary as known.
	c.accepted["summary"]++
	return nil
}

type statusMessage struct {
	State   string `json:"state"`
	Version string `json:"version"`
	Board   string `json:"board"`
}

func (c *Collector) handleStatus(id string, payload []byte, now time.Time) error {
	var st statusMessage
	if err := decodeMessage(payload, &st); err != nil {
		return err
	}
	if st.State != "online" && st.State != "offline" {
		return fmt.Errorf("%w: state %q is neither online nor offline", summary.ErrMalformed, truncate(st.State))
	}
	c.mu.Lock()
	defer c.unlock()
	c.tick(now)
	s := c.sensorLocked(id)
	s.lastSeen = now
	s.online = st.State == "online"
	s.hasStatus = true
	if s.online {
		s.version, s.board = st.Version, st.Board
	}
	c.accepted["status"]++
	return nil
}

type alertMessage struct {
	Sensor string          `json:"sensor"`
	Event  string          `json:"event"`
	Alert  json.RawMessage `json:"alert"`
}

func (c *Collector) handleAlert(id string, payload []byte, now time.Time, replay bool) error {
	var m alertMessage
	if err := decodeMessage(payload, &m); err != nil {
		return err
	}
	if m.Sensor != id {
		return fmt.Errorf("%w: payload says %q", ErrSensorMismatch, truncate(m.Sensor))
	}
	if m.Event == "" {
		return fmt.Errorf("%w: alert without an event", summary.ErrMalformed)
	}
	if len(m.Alert) == 0 || m.Alert[0] != '{' {
		return fmt.Errorf("%w: alert is not a JSON object", summary.ErrMalformed)
	}
	// The alert's id (watch.Alert.ID) names it across resends: the
	// sensor's outbox sends again what had no PUBACK.
	aid := alertID(m.Alert)
	a := Alert{Sensor: id, Event: m.Event, Received: now, Alert: m.Alert}
	c.mu.Lock()
	defer c.unlock()
	c.tick(now)
	if replay && c.hasAlertLocked(a) {
		return ErrReplayed
	}
	if aid != "" && slices.ContainsFunc(c.alerts, func(x Alert) bool {
		return x.Sensor == id && x.Event == m.Event && alertID(x.Alert) == aid
	}) {
		return fmt.Errorf("%w: alert %s %q", ErrDuplicate, m.Event, truncate(aid))
	}
	c.sensorLocked(id).lastSeen = now
	c.alertsNext++
	if len(c.alerts) < DefaultMaxAlerts {
		c.alerts = append(c.alerts, a)
	} else {
		c.alerts[c.alertAt] = a
		c.alertAt = (c.alertAt + 1) % DefaultMaxAlerts
	}
	c.accepted["alert"]++
	return nil
}

// alertID is the id field of an alert's JSON, "" when it has none.
func alertID(raw json.RawMessage) string {
	var head struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(raw, &head)
	return head.ID
}

// decodeMessage decodes a status or alert payload: one JSON object, at most
// MaxMessageBytes; unknown fields are allowed (these messages carry no
// schema version).
func decodeMessage(payload []byte, v any) error {
	if len(payload) > MaxMessageBytes {
		return fmt.Errorf("%w: %d bytes, limit %d", summary.ErrTooLarge, len(payload), MaxMessageBytes)
	}
	if len(payload) == 0 || payload[0] != '{' {
		return fmt.Errorf("%w: not a JSON object", summary.ErrMalformed)
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %v", summary.ErrMalformed, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: data after the JSON object", summary.ErrMalformed)
	}
	return nil
}

// Rejects counts the refused messages by reason; every reason is present.
func (c *Collector) Rejects() map[string]uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]uint64, len(reasons))
	for _, r := range reasons {
		out[r.reason] = c.rejects[r.reason]
	}
	return out
}

// Sensors lists every sensor heard from, by id, with its lag at now.
func (c *Collector) Sensors(now time.Time) []SensorState {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]SensorState, 0, len(c.sensors))
	for _, s := range c.sensors {
		st := SensorState{
			ID: s.id, Online: s.online, HasStatus: s.hasStatus, Version: s.version, Board: s.board,
			LastSeen: s.lastSeen, LastSeq: s.seqs.high, Summaries: s.summaries, Duplicates: s.dupes, OutboxDropped: s.outboxDropped,
			LastEnd: s.lastEnd,
		}
		if len(s.seqs.gaps) > 0 {
			st.Gaps = slices.Clone(s.seqs.gaps)
		}
		if len(s.seqs.lost) > 0 {
			st.Lost, st.LostSeqs = slices.Clone(s.seqs.lost), lostSeqs(s.seqs.lost)
		}
		st.Repaired = s.repaired
		if !s.lastEnd.IsZero() {
			st.Lag = now.Sub(s.lastEnd)
		}
		if len(s.rejects) > 0 {
			st.Rejects = make(map[string]uint64, len(s.rejects))
			for k, v := range s.rejects {
				st.Rejects[k] = v
			}
		}
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b SensorState) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

func (c *Collector) levelLocked(name string) *level {
	for _, l := range c.levels {
		if l.name == name {
			return l
		}
	}
	return nil
}

// windowsLocked returns what l holds of the windows that start in
// [from, to), oldest first: l's buckets and, for a coarser level, the
// finest buckets not yet sealed into it (these start inside l's windows,
// so several may share one).
func (c *Collector) windowsLocked(l *level, from, to time.Time) []*bucket {
	var out []*bucket
	in := func(start time.Time) bool { return !start.Before(from) && start.Before(to) }
	for start, b := range l.buckets {
		if in(start) {
			out = append(out, b)
		}
	}
	if l != c.levels[0] {
		for start, b := range c.levels[0].buckets {
			if !b.sealed && in(start.Truncate(l.width)) {
				out = append(out, b)
			}
		}
	}
	slices.SortFunc(out, func(a, b *bucket) int { return a.started.Compare(b.started) })
	return out
}

// Window returns the fleet's traffic in the windows of the level (as
// named by LevelName) that start in [from, to): a merge of every sensor's
// summaries, with at most TopN prefixes. It is nil when the level is
// unknown, and an empty summary when no window holds data.
func (c *Collector) Window(levelName string, from, to time.Time) *summary.Summary {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.levelLocked(levelName)
	if l == nil {
		return nil
	}
	all := summary.Rollup{MaxPrefixes: c.opts.TopN}
	for _, b := range c.windowsLocked(l, from, to) {
		all.Add(b.sum.Summary(0))
	}
	out := all.Summary(c.opts.TopN)
	out.Seq = 0
	return out
}

// WhoSees returns how much traffic of a country ("" for traffic no table
// places) each sensor saw in the windows that start in [from, to), most
// packets first. It reads the finest level that still keeps the window
// of from, or the coarsest level.
func (c *Collector) WhoSees(country string, from, to time.Time) []SensorCount {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.whoSeesLocked(from, to, SeriesKey{By: ByCountry, Country: country})
}

// Alerts returns up to n of the latest alerts, newest first.
func (c *Collector) Alerts(n int) []Alert {
	c.mu.Lock()
	defer c.mu.Unlock()
	n = min(n, len(c.alerts))
	out := make([]Alert, 0, max(n, 0))
	for i := range n {
		// The newest is just before alertAt (or last, while not full).
		j := (c.alertAt - 1 - i + 2*len(c.alerts)) % len(c.alerts)
		out = append(out, c.alerts[j])
	}
	return out
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
