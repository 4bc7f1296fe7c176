package collector

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/peerwatch/peerwatch/internal/testsum"
	"github.com/peerwatch/peerwatch/sensor/summary"
	"github.com/peerwatch/peerwatch/sensor/traffic"
)

var t0 = time.Date(2026, 3, 14, 12, 0, 0, 0, time.UTC)

const interval = 10 * time.Second

// Labels of the test prefixes: prefix i is in country countries[i%4] and
// AS asns[i%3].
var (
	countries = []string{"NZ", "AU", "KP", "US"}
	asns      = []uint32{64500, 64501, 131279}
)

func randCounters(rng *rand.Rand) traffic.Counters {
	in, out := rng.Uint64N(1000), rng.Uint64N(1000)
	return traffic.Counters{
		Packets: [2]uint64{in, out},
		Bytes:   [2]uint64{in * (60 + rng.Uint64N(1400)), out * 100},
		Class:   [traffic.NumClasses]uint64{traffic.TCP: in, traffic.UDP: out},
	}
}

// makeSummary builds a consistent summary of sensor id for interval seq
// (1-based, starting at t0) with random counters.
func makeSummary(rng *rand.Rand, id string, seq uint64) *summary.Summary {
	start := t0.Add(time.Duration(seq-1) * interval)
	s := &summary.Summary{Schema: summary.SchemaVersion, Sensor: id, Seq: seq, Start: start, End: start.Add(interval)}
	byCountry := map[string]traffic.Counters{}
	byAS := map[uint32]traffic.Counters{}
	add := func(country string, asn uint32, c traffic.Counters) {
		s.Remote.Add(c)
		cc := byCountry[country]
		cc.Add(c)
		byCountry[country] = cc
		ac := byAS[asn]
		ac.Add(c)
		byAS[asn] = ac
	}
	for i := range 10 {
		if rng.IntN(3) == 0 {
			continue
		}
		c := randCounters(rng)
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 51, byte(i), 0}), 24)
		s.Prefixes = append(s.Prefixes, summary.PrefixCount{Prefix: p, Country: countries[i%4], ASN: asns[i%3], Counters: c})
		add(countries[i%4], asns[i%3], c)
	}
	s.Other = randCounters(rng)
	add("", 0, s.Other)
	for k, c := range byCountry {
		s.Countries = append(s.Countries, summary.CountryCount{Country: k, Counters: c})
	}
	for k, c := range byAS {
		s.ASes = append(s.ASes, summary.ASCount{ASN: k, Counters: c})
	}
	if rng.IntN(2) == 0 {
		s.Watch = []summary.WatchCount{{List: "kp-ranges", Counters: byCountry["KP"]}}
	}
	s.Globals = traffic.Globals{NonIP: rng.Uint64N(10), BothLocal: rng.Uint64N(100)}
	s.Globals.Seen = s.Remote.Total() + s.Globals.Buckets()
	s.Sort()
	return s
}

func encode(t testing.TB, s *summary.Summary) []byte {
	t.Helper()
	b, err := summary.Encode(s, summary.EncodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func topic(id, kind string) string { return "peerwatch/" + id + "/" + kind }

type message struct {
	topic   string
	payload []byte
}

// TestFleetTotals delivers the summaries of 5 sensors over 20 intervals in
// random order, some twice, and checks that every level's totals are the
// exact sum of the sensors'.
func TestFleetTotals(t *testing.T) {
	const sensors, intervals, dupes = 5, 20, 17
	rng := rand.New(rand.NewPCG(1, 2))
	now := t0.Add(10 * time.Minute)

	var msgs []message
	want := &summary.Summary{}
	firstMinute := &summary.Summary{}
	wantNZ := map[string]traffic.Counters{}
	for i := range sensors {
		id := fmt.Sprintf("akl-ix-%02d", i)
		for seq := uint64(1); seq <= intervals; seq++ {
			s := makeSummary(rng, id, seq)
			msgs = append(msgs, message{topic(id, "summary"), encode(t, s)})
			want.Merge(s)
			if s.End.Before(t0.Add(time.Minute)) {
				firstMinute.Merge(s)
			}
			for _, c := range s.Countries {
				if c.Country == "NZ" {
					n := wantNZ[id]
					n.Add(c.Counters)
					wantNZ[id] = n
				}
			}
		}
	}
	for range dupes {
		msgs = append(msgs, msgs[rng.IntN(len(msgs))])
	}
	rng.Shuffle(len(msgs), func(i, j int) { msgs[i], msgs[j] = msgs[j], msgs[i] })

	c := New(Options{}, nil)
	var gotDupes int
	for _, m := range msgs {
		if err := c.Handle(m.topic, m.payload, now); err != nil {
			if !errors.Is(err, ErrDuplicate) {
				t.Fatalf("handle: %v", err)
			}
			gotDupes++
		}
	}
	if gotDupes != dupes {
		t.Errorf("%d duplicates refused, want %d", gotDupes, dupes)
	}
	if got := c.Rejects()[ReasonDuplicate]; got != dupes {
		t.Errorf("rejects[duplicate] = %d, want %d", got, dupes)
	}

	checkSame := func(t *testing.T, got, want *summary.Summary) {
		t.Helper()
		if got == nil {
			t.Fatal("no window")
		}
		if err := got.Check(); err != nil {
			t.Error(err)
		}
		for name, pair := range map[string][2]any{
			"globals":   {got.Globals, want.Globals},
			"remote":    {got.Remote, want.Remote},
			"other":     {got.Other, want.Other},
			"prefixes":  {got.Prefixes, want.Prefixes},
			"countries": {got.Countries, want.Countries},
			"ases":      {got.ASes, want.ASes},
			"watch":     {got.Watch, want.Watch},
			"start":     {got.Start, want.Start},
			"end":       {got.End, want.End},
		} {
			if !reflect.DeepEqual(pair[0], pair[1]) {
				t.Errorf("%s:\n got %+v\nwant %+v", name, pair[0], pair[1])
			}
		}
	}
	for _, level := range c.Levels() {
		t.Run(level, func(t *testing.T) {
			checkSame(t, c.Window(level, t0.Add(-48*time.Hour), now), want)
		})
	}
	t.Run("first minute", func(t *testing.T) {
		checkSame(t, c.Window("1m", t0, t0.Add(time.Minute)), firstMinute)
	})
	if c.Window("5m", t0, now) != nil {
		t.Error("unknown level gave a window")
	}

	var total uint64
	for _, s := range c.Sensors(now) {
		total += s.Duplicates
		if s.Summaries != intervals || s.LastSeq != intervals || len(s.Gaps) != 0 {
			t.Errorf("sensor %s: %d summaries, last seq %d, gaps %v", s.ID, s.Summaries, s.LastSeq, s.Gaps)
		}
		if wantEnd := t0.Add(intervals * interval); !s.LastEnd.Equal(wantEnd) || s.Lag != now.Sub(wantEnd) {
			t.Errorf("sensor %s: last end %s, lag %s", s.ID, s.LastEnd, s.Lag)
		}
	}
	if total != dupes {
		t.Errorf("per-sensor duplicates sum to %d, want %d", total, dupes)
	}

	// Which sensors see NZ: exactly each sensor's NZ counters.
	who := c.WhoSees("NZ", t0, now)
	if len(who) != len(wantNZ) {
		t.Fatalf("WhoSees(NZ) = %+v, want %d sensors", who, len(wantNZ))
	}
	for i, sc := range who {
		if sc.Counters != wantNZ[sc.Sensor] {
			t.Errorf("WhoSees(NZ) %s = %+v, want %+v", sc.Sensor, sc.Counters, wantNZ[sc.Sensor])
		}
		if i > 0 && who[i-1].Total() < sc.Total() {
			t.Errorf("WhoSees not sorted by packets: %+v", who)
		}
	}
	if got := c.WhoSees("ZZ", t0, now); len(got) != 0 {
		t.Errorf("WhoSees(ZZ) = %+v", got)
	}
}

// TestWhoSeesLevels checks that WhoSees falls back to a coarser level when
// the finer one no longer keeps the window asked for.
func TestWhoSeesLevels(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	c := New(Options{}, nil)
	s := makeSummary(rng, "s1", 1)
	if err := c.Handle(topic("s1", "summary"), encode(t, s), t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	var nz traffic.Counters
	for _, cc := range s.Countries {
		if cc.Country == "NZ" {
			nz = cc.Counters
		}
	}
	later := t0.Add(3 * time.Hour) // the 1m level has dropped t0's window
	if err := c.Handle(topic("s1", "status"), []byte(`{"state":"online"}`), later); err != nil {
		t.Fatal(err)
	}
	if w := c.Window("1m", t0, later); w.Remote.Total() != 0 {
		t.Errorf("1m level still holds %d packets after its retention", w.Remote.Total())
	}
	who := c.WhoSees("NZ", t0, later)
	if nz.Total() == 0 {
		if len(who) != 0 {
			t.Errorf("WhoSees(NZ) = %+v", who)
		}
		return
	}
	if len(who) != 1 || who[0].Sensor != "s1" || who[0].Counters != nz {
		t.Errorf("WhoSees(NZ) = %+v, want s1 %+v", who, nz)
	}
}

func TestGaps(t *testing.T) {
	for _, tc := range []struct {
		name  string
		seqs  []uint64
		gaps  []SeqRange
		dupes uint64
	}{
		{"in order", []uint64{1, 2, 3, 4}, nil, 0},
		{"missing", []uint64{1, 2, 4, 5}, []SeqRange{{3, 3}}, 0},
		{"late arrival fills", []uint64{1, 2, 4, 5, 3}, nil, 0},
		{"jump", []uint64{1, 10}, []SeqRange{{2, 9}}, 0},
		{"split", []uint64{1, 10, 5}, []SeqRange{{2, 4}, {6, 9}}, 0},
		{"fill ends", []uint64{1, 5, 2, 4}, []SeqRange{{3, 3}}, 0},
		{"duplicate of a filled gap", []uint64{1, 3, 2, 2}, nil, 1},
		{"duplicates", []uint64{1, 1, 2, 1, 2}, nil, 3},
		{"first seen is not 1", []uint64{5, 6}, nil, 0},
		{"below the first seen", []uint64{5, 3, 3}, nil, 1},
		{"gap far below the window", []uint64{1, 200_001, 2}, []SeqRange{{3, 200_000}}, 0},
		{"duplicate far below the window", []uint64{1, 200_001, 1}, []SeqRange{{2, 200_000}}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(5, 6))
			c := New(Options{}, nil)
			for _, seq := range tc.seqs {
				s := makeSummary(rng, "s1", 1)
				s.Seq = seq
				err := c.Handle(topic("s1", "summary"), encode(t, s), t0.Add(time.Hour))
				if err != nil && !errors.Is(err, ErrDuplicate) {
					t.Fatal(err)
				}
			}
			st := c.Sensors(t0)
			if len(st) != 1 {
				t.Fatalf("sensors %+v", st)
			}
			if !reflect.DeepEqual(st[0].Gaps, tc.gaps) || st[0].Duplicates != tc.dupes {
				t.Errorf("gaps %v, duplicates %d; want %v, %d", st[0].Gaps, st[0].Duplicates, tc.gaps, tc.dupes)
			}
			if got := c.Rejects()[ReasonDuplicate]; got != tc.dupes {
				t.Errorf("rejects[duplicate] = %d, want %d", got, tc.dupes)
			}
		})
	}
}

func TestSeqTrackerGapBound(t *testing.T) {
	var tr seqTracker
	for seq := uint64(1); seq <= 2*maxGaps+10; seq += 2 {
		tr.add(seq)
	}
	if len(tr.gaps) != maxGaps || tr.gaps[len(tr.gaps)-1].Last != tr.high-1 {
		t.Errorf("%d gaps, last %v, high %d", len(tr.gaps), tr.gaps[len(tr.gaps)-1], tr.high)
	}
}

func TestRejects(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	valid := makeSummary(rng, "s1", 1)
	now := t0.Add(time.Hour)

	inconsistent, err := json.Marshal(func() summary.Summary {
		s := *valid
		s.Globals.Seen++
		return s
	}())
	if err != nil {
		t.Fatal(err)
	}
	future := makeSummary(rng, "s1", 2)
	future.Start, future.End = now.Add(time.Hour), now.Add(time.Hour+interval)
	many := makeSummary(rng, "s1", 3)
	for i := range 1001 {
		many.Countries = append(many.Countries, summary.CountryCount{Country: fmt.Sprintf("X%d", i)})
	}

	for _, tc := range []struct {
		name, topic string
		payload     []byte
		reason      string
	}{
		{"other prefix", "other/s1/summary", encode(t, valid), ReasonTopic},
		{"no kind", "peerwatch/s1", encode(t, valid), ReasonTopic},
		{"unknown kind", "peerwatch/s1/metrics", encode(t, valid), ReasonTopic},
		{"extra level", "peerwatch/s1/x/summary", encode(t, valid), ReasonTopic},
		{"bad sensor id", "peerwatch/s 1/summary", encode(t, valid), ReasonTopic},
		{"wildcard sensor id", "peerwatch/+/summary", encode(t, valid), ReasonTopic},
		{"schema 2", topic("s1", "summary"), []byte(`{"schema":2}`), ReasonVersion},
		{"no schema", topic("s1", "summary"), []byte(`{"sensor":"s1"}`), ReasonVersion},
		{"too many countries", topic("s1", "summary"), mustMarshal(t, many), ReasonTooLarge},
		{"huge status", topic("s1", "status"), []byte(`{"state":"online","board":"` + strings.Repeat("x", MaxMessageBytes) + `"}`), ReasonTooLarge},
		{"not json", topic("s1", "summary"), []byte("hello"), ReasonMalformed},
		{"empty", topic("s1", "summary"), nil, ReasonMalformed},
		{"bad status", topic("s1", "status"), []byte(`{"state":"maybe"}`), ReasonMalformed},
		{"status not json", topic("s1", "status"), []byte(`online`), ReasonMalformed},
		{"alert without event", topic("s1", "alert"), []byte(`{"sensor":"s1","alert":{}}`), ReasonMalformed},
		{"alert not an object", topic("s1", "alert"), []byte(`{"sensor":"s1","event":"started","alert":[1]}`), ReasonMalformed},
		{"inconsistent", topic("s1", "summary"), inconsistent, ReasonInconsistent},
		{"summary of another sensor", topic("s2", "summary"), encode(t, valid), ReasonSensorMismatch},
		{"alert of another sensor", topic("s2", "alert"), []byte(`{"sensor":"s1","event":"started","alert":{}}`), ReasonSensorMismatch},
		{"future", topic("s1", "summary"), encode(t, future), ReasonClock},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := New(Options{}, nil)
			err := c.Handle(tc.topic, tc.payload, now)
			if got := Reason(err); got != tc.reason {
				t.Fatalf("reason %q (%v), want %q", got, err, tc.reason)
			}
			rejects := c.Rejects()
			for r, n := range rejects {
				if want := map[bool]uint64{true: 1}[r == tc.reason]; n != want {
					t.Errorf("rejects[%s] = %d, want %d", r, n, want)
				}
			}
			if w := c.Window("1h", t0, now.Add(time.Hour)); w.Globals.Seen != 0 {
				t.Errorf("rejected summary counted: %+v", w.Globals)
			}
			for _, s := range c.Sensors(now) {
				if s.Summaries != 0 || s.LastSeq != 0 {
					t.Errorf("sensor %s: %d summaries, last seq %d", s.ID, s.Summaries, s.LastSeq)
				}
			}
			if len(c.Alerts(10)) != 0 {
				t.Error("rejected alert kept")
			}
		})
	}

	t.Run("duplicate", func(t *testing.T) {
		c := New(Options{}, nil)
		p := encode(t, valid)
		if err := c.Handle(topic("s1", "summary"), p, now); err != nil {
			t.Fatal(err)
		}
		if err := c.Handle(topic("s1", "summary"), p, now); !errors.Is(err, ErrDuplicate) {
			t.Fatalf("second delivery: %v", err)
		}
		if got := c.Rejects()[ReasonDuplicate]; got != 1 {
			t.Errorf("rejects[duplicate] = %d", got)
		}
		if w := c.Window("1h", t0, now); w.Globals != valid.Globals {
			t.Errorf("globals %+v, want %+v", w.Globals, valid.Globals)
		}
	})

	t.Run("mismatch then real", func(t *testing.T) {
		// A sensor cannot use up another's seq: the real one still counts.
		c := New(Options{}, nil)
		p := encode(t, valid)
		if err := c.Handle(topic("evil", "summary"), p, now); !errors.Is(err, ErrSensorMismatch) {
			t.Fatalf("injected: %v", err)
		}
		if err := c.Handle(topic("s1", "summary"), p, now); err != nil {
			t.Fatalf("real: %v", err)
		}
		st := c.Sensors(now)
		if len(st) != 2 || st[0].ID != "evil" || st[0].Summaries != 0 || st[0].Rejects[ReasonSensorMismatch] != 1 || st[1].Summaries != 1 {
			t.Errorf("sensors %+v", st)
		}
	})
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestStatus(t *testing.T) {
	c := New(Options{TopicPrefix: "isp/pw"}, nil)
	for i, step := range []struct {
		payload string
		online  bool
		version string
	}{
		{`{"state":"online","version":"1.2.0","board":"rpi5"}`, true, "1.2.0"},
		{`{"state":"offline"}`, false, "1.2.0"},
		{`{"state":"online","version":"1.3.0","board":"rpi5","extra":1}`, true, "1.3.0"},
	} {
		now := t0.Add(time.Duration(i) * time.Minute)
		if err := c.Handle("isp/pw/s1/status", []byte(step.payload), now); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		st := c.Sensors(now)
		if len(st) != 1 || st[0].Online != step.online || st[0].Version != step.version || st[0].Board != "rpi5" || !st[0].LastSeen.Equal(now) {
			t.Errorf("step %d: %+v", i, st)
		}
		if st[0].Lag != 0 {
			t.Errorf("step %d: lag %s without a summary", i, st[0].Lag)
		}
	}
}

func TestAlerts(t *testing.T) {
	c := New(Options{}, nil)
	const n = DefaultMaxAlerts + 5
	for i := range n {
		p := fmt.Sprintf(`{"sensor":"s%d","event":"started","alert":{"id":"a%d"}}`, i%3, i)
		if err := c.Handle(topic(fmt.Sprintf("s%d", i%3), "alert"), []byte(p), t0.Add(time.Duration(i)*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	all := c.Alerts(2 * n)
	if len(all) != DefaultMaxAlerts {
		t.Fatalf("%d alerts kept", len(all))
	}
	for i, a := range all {
		j := n - 1 - i
		if a.Sensor != fmt.Sprintf("s%d", j%3) || string(a.Alert) != fmt.Sprintf(`{"id":"a%d"}`, j) || a.Event != "started" {
			t.Fatalf("alert %d: %+v, want a%d", i, a, j)
		}
	}
	if got := c.Alerts(1); len(got) != 1 || string(got[0].Alert) != fmt.Sprintf(`{"id":"a%d"}`, n-1) {
		t.Errorf("Alerts(1) = %+v", got)
	}
	if got := c.Alerts(-1); len(got) != 0 {
		t.Errorf("Alerts(-1) = %+v", got)
	}

	// A resend (the sensor's outbox had no PUBACK) is a duplicate; the
	// same alert's end is not.
	last := fmt.Sprintf(`{"sensor":"s%d","event":"started","alert":{"id":"a%d"}}`, (n-1)%3, n-1)
	if err := c.Handle(topic(fmt.Sprintf("s%d", (n-1)%3), "alert"), []byte(last), t0.Add(time.Hour)); !errors.Is(err, ErrDuplicate) {
		t.Errorf("resent alert: %v, want ErrDuplicate", err)
	}
	ended := strings.Replace(last, "started", "ended", 1)
	if err := c.Handle(topic(fmt.Sprintf("s%d", (n-1)%3), "alert"), []byte(ended), t0.Add(time.Hour)); err != nil {
		t.Errorf("the alert's end: %v", err)
	}
	if got := c.Alerts(1); len(got) != 1 || got[0].Event != "ended" {
		t.Errorf("after the end: %+v", got)
	}
}

func TestLevelName(t *testing.T) {
	for d, want := range map[time.Duration]string{
		time.Minute: "1m", time.Hour: "1h", 24 * time.Hour: "1d", 10 * time.Second: "10s", 90 * time.Minute: "90m", 1500 * time.Millisecond: "1.5s",
	} {
		if got := LevelName(d); got != want {
			t.Errorf("LevelName(%s) = %q, want %q", d, got, want)
		}
	}
	c := New(Options{Windows: []time.Duration{time.Hour, -1, time.Minute, time.Hour}}, nil)
	if got := c.Levels(); !reflect.DeepEqual(got, []string{"1m", "1h"}) {
		t.Errorf("levels %v", got)
	}
}

func FuzzHandle(f *testing.F) {
	rng := rand.New(rand.NewPCG(9, 10))
	f.Add("peerwatch/s1/summary", encode(f, makeSummary(rng, "s1", 1)))
	f.Add("peerwatch/s1/summary", []byte{0x1f, 0x8b, 0, 0})
	f.Add("peerwatch/s1/status", []byte(`{"state":"online","version":"1"}`))
	f.Add("peerwatch/s1/alert", []byte(`{"sensor":"s1","event":"started","alert":{}}`))
	f.Add("peerwatch/+/summary", []byte(`{}`))
	f.Add("", []byte(nil))
	f.Fuzz(func(t *testing.T, topic string, payload []byte) {
		c := New(Options{}, nil)
		now := t0.Add(time.Hour)
		var refused uint64
		for range 2 {
			err := c.Handle(topic, payload, now)
			if err != nil {
				refused++
				if Reason(err) == "" {
					t.Fatalf("error without a reason: %v", err)
				}
			}
		}
		var counted uint64
		for _, n := range c.Rejects() {
			counted += n
		}
		if counted != refused {
			t.Fatalf("%d refused, %d counted", refused, counted)
		}
		if w := c.Window("1m", time.Time{}, now.Add(time.Hour)); w.Check() != nil {
			t.Fatalf("window does not reconcile: %v", w.Check())
		}
		c.Sensors(now)
		c.Alerts(5)
		c.WhoSees("", time.Time{}, now)
	})
}

// TestConcurrentHandle feeds the collector from several goroutines, as MQTT
// handlers do (run with -race).
func TestConcurrentHandle(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	var payloads [4][][]byte
	want := &summary.Summary{}
	for g := range payloads {
		id := fmt.Sprintf("s%d", g)
		for seq := uint64(1); seq <= 30; seq++ {
			s := makeSummary(rng, id, seq)
			want.Merge(s)
			payloads[g] = append(payloads[g], encode(t, s))
		}
	}
	c := New(Options{}, nil)
	now := t0.Add(10 * time.Minute)
	var wg sync.WaitGroup
	for g := range payloads {
		wg.Go(func() {
			for _, p := range payloads[g] {
				if err := c.Handle(topic(fmt.Sprintf("s%d", g), "summary"), p, now); err != nil {
					t.Error(err)
				}
				c.Sensors(now)
				c.Window("1m", t0, now)
			}
		})
	}
	wg.Wait()
	if got := c.Window("1h", t0, now); got.Globals != want.Globals || got.Remote != want.Remote {
		t.Errorf("globals %+v remote %+v, want %+v %+v", got.Globals, got.Remote, want.Globals, want.Remote)
	}
}

// TestSealing: summaries go to the finest level and reach the coarser ones
// when their minute is sealed; late summaries of sealed minutes go to every
// level. Each level holds the exact totals at any time, with nothing
// counted twice.
func TestSealing(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	c := New(Options{}, nil)
	want := &summary.Summary{}
	check := func(when string, now time.Time) {
		t.Helper()
		for _, level := range c.Levels() {
			if level == "1m" && now.Sub(t0) > 59*time.Minute {
				continue // past the minutes' retention
			}
			got := c.Window(level, t0.Add(-24*time.Hour), now.Add(time.Hour))
			if got.Remote != want.Remote || got.Globals != want.Globals {
				t.Fatalf("%s, level %s: remote %+v globals %+v, want %+v %+v", when, level, got.Remote, got.Globals, want.Remote, want.Globals)
			}
			var nz uint64
			for _, sc := range c.WhoSees("NZ", t0, now.Add(time.Hour)) {
				nz += sc.Total()
			}
			var wantNZ uint64
			for _, cc := range want.Countries {
				if cc.Country == "NZ" {
					wantNZ = cc.Total()
				}
			}
			if nz != wantNZ {
				t.Fatalf("%s: WhoSees(NZ) sums to %d packets, want %d", when, nz, wantNZ)
			}
		}
	}
	var late []*summary.Summary
	var now time.Time
	for seq := uint64(1); seq <= 60; seq++ {
		for _, id := range []string{"a", "b", "c"} {
			s := makeSummary(rng, id, seq)
			if rng.IntN(10) == 0 {
				late = append(late, s) // held back: its minute seals first
				continue
			}
			now = s.End.Add(30 * time.Second)
			if err := c.Handle(topic(id, "summary"), encode(t, s), now); err != nil {
				t.Fatal(err)
			}
			want.Merge(s)
		}
		check(fmt.Sprintf("after seq %d", seq), now)
	}
	if len(late) == 0 {
		t.Fatal("no late summaries")
	}
	now = now.Add(20 * time.Minute)
	for _, s := range late {
		if err := c.Handle(topic(s.Sensor, "summary"), encode(t, s), now); err != nil {
			t.Fatal(err)
		}
		want.Merge(s)
		check("after a late summary", now)
	}
	// A status message moves the clock on and seals everything.
	now = now.Add(time.Hour)
	if err := c.Handle(topic("a", "status"), []byte(`{"state":"online"}`), now); err != nil {
		t.Fatal(err)
	}
	check("when all is sealed", now)
}

// TestWhoSeesASBound: per sensor, the AS view counts each summary's
// MaxSeenASes largest ASes exactly and nothing of the others, while the
// fleet's AS totals count every AS.
func TestWhoSeesASBound(t *testing.T) {
	c := New(Options{}, nil)
	s := testsum.Big("s1", 1, t0.Add(time.Minute), 9, 400)
	if len(s.ASes) <= MaxSeenASes {
		t.Fatalf("only %d ASes", len(s.ASes))
	}
	if err := c.Handle(topic("s1", "summary"), encode(t, s), t0.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	top := topASes(s.ASes, MaxSeenASes)
	small := s.ASes[len(s.ASes)-1] // sorted, most packets first: the smallest
	fleet := c.Window("1m", t0, t0.Add(time.Hour))
	for _, a := range []struct {
		as     summary.ASCount
		inView bool
	}{{top[0], true}, {top[MaxSeenASes-1], true}, {small, false}} {
		seen, ok := c.WhoSeesAt("1m", SeriesKey{By: ByAS, ASN: a.as.ASN}, t0, t0.Add(time.Hour))
		switch {
		case !ok:
			t.Fatal("no 1m level")
		case a.inView && (len(seen) != 1 || seen[0].Counters != a.as.Counters):
			t.Errorf("AS %d, in the top %d: %+v, want %+v", a.as.ASN, MaxSeenASes, seen, a.as.Counters)
		case !a.inView && len(seen) != 0:
			t.Errorf("AS %d, not in the top: %+v", a.as.ASN, seen)
		}
		if i := slices.IndexFunc(fleet.ASes, func(f summary.ASCount) bool { return f.ASN == a.as.ASN }); i < 0 || fleet.ASes[i].Counters != a.as.Counters {
			t.Errorf("fleet AS %d not exact", a.as.ASN)
		}
	}
}

// topASes is the sort that eachTopAS replaced: the n ASes with the most
// packets, most first, ties to the lower ASN.
func topASes(ases []summary.ASCount, n int) []summary.ASCount {
	top := slices.Clone(ases)
	slices.SortFunc(top, func(a, b summary.ASCount) int {
		return cmp.Or(cmp.Compare(b.Total(), a.Total()), cmp.Compare(a.ASN, b.ASN))
	})
	return top[:min(n, len(top))]
}

// TestEachTopAS: the selection picks the same ASes as sorting, with
// distinct totals and with many ties at the cut.
func TestEachTopAS(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	var scratch []uint64
	for _, tc := range []struct{ ases, n, spread int }{{50, 100, 1000}, {100, 100, 3}, {1000, 100, 1 << 30}, {1000, 100, 3}, {1000, 100, 1}, {3000, 100, 50}} {
		ases := make([]summary.ASCount, tc.ases)
		for i, k := range rng.Perm(10 * tc.ases)[:tc.ases] {
			ases[i].ASN = uint32(k)
			ases[i].Packets[0] = rng.Uint64N(uint64(tc.spread))
		}
		var got []uint32
		eachTopAS(ases, tc.n, &scratch, func(a *summary.ASCount) { got = append(got, a.ASN) })
		var want []uint32
		for _, a := range topASes(ases, tc.n) {
			want = append(want, a.ASN)
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%d ASes, top %d, totals below %d: got %v, want %v", tc.ases, tc.n, tc.spread, got, want)
		}
	}
}
