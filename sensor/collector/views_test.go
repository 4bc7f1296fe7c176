package collector

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/peerwatch/peerwatch/sensor/summary"
	"github.com/peerwatch/peerwatch/sensor/traffic"
)

// TestViewsExactAcrossSeals: each sensor's counters of each country and
// AS, on every level, are the sums of what it sent, through the seals of
// minutes into hours and days, late summaries into sealed minutes, and a
// checkpoint with its restore half-way.
func TestViewsExactAcrossSeals(t *testing.T) {
	const sensors, intervals = 4, 3 * 6 * 60 // three hours of 10 s
	rng := rand.New(rand.NewPCG(11, 12))
	c := New(Options{ViewRetention: []int{60, 48, 30}}, nil)
	type key struct {
		sensor, country string
		asn             uint32
	}
	want := map[key]traffic.Counters{} // asn 0 and country "": the other kind
	add := func(s *summary.Summary) {
		for _, cc := range s.Countries {
			k := key{sensor: s.Sensor, country: cc.Country, asn: ^uint32(0)}
			n := want[k]
			n.Add(cc.Counters)
			want[k] = n
		}
		for _, a := range s.ASes { // fewer than MaxSeenASes: all counted
			k := key{sensor: s.Sensor, asn: a.ASN}
			n := want[k]
			n.Add(a.Counters)
			want[k] = n
		}
	}
	var late []*summary.Summary
	for seq := uint64(1); seq <= intervals; seq++ {
		for i := range sensors {
			s := makeSummary(rng, fmt.Sprintf("s%d", i), seq)
			add(s)
			if rng.IntN(50) == 0 {
				late = append(late, s) // arrives 20 minutes late
				continue
			}
			if err := c.Handle(topic(s.Sensor, "summary"), encode(t, s), s.End); err != nil {
				t.Fatal(err)
			}
		}
		if seq%120 == 0 {
			// Twenty minutes on: the late ones of before, then a
			// restart from a checkpoint.
			now := t0.Add(time.Duration(seq) * interval)
			for _, s := range late {
				if err := c.Handle(topic(s.Sensor, "summary"), encode(t, s), now); err != nil {
					t.Fatal(err)
				}
			}
			late = nil
			r := New(Options{ViewRetention: []int{60, 48, 30}}, nil)
			if err := r.Restore(roundTrip(t, c.Checkpoint(true))); err != nil {
				t.Fatal(err)
			}
			c = r
		}
	}
	now := t0.Add(intervals*interval + 10*time.Minute) // every minute sealed
	if err := c.Handle(topic("s0", "status"), []byte(`{"state":"online"}`), now); err != nil {
		t.Fatal(err)
	}
	for _, level := range []string{"1h", "1d"} {
		for k, n := range want {
			sk := SeriesKey{By: ByAS, ASN: k.asn, Sensor: k.sensor}
			if k.asn == ^uint32(0) {
				sk = SeriesKey{By: ByCountry, Country: k.country, Sensor: k.sensor}
			}
			from := t0.Truncate(c.Width(level))
			pts, ok := c.Series(level, from, now, sk)
			var got traffic.Counters
			for _, p := range pts {
				got.Add(p.Counters)
			}
			if !ok || got != n {
				t.Errorf("%s: %+v: series sums to %+v, want %+v", level, sk, got, n)
			}
			seen, _ := c.WhoSeesAt(level, sk, from, now)
			got = traffic.Counters{}
			for _, s := range seen {
				if s.Sensor == k.sensor {
					got = s.Counters
				}
			}
			if got != n {
				t.Errorf("%s: WhoSeesAt %+v: %+v, want %+v", level, sk, got, n)
			}
		}
	}
}

// TestViewRetention: past its ViewRetention a window keeps its totals but
// not its per-sensor views, and says so (ViewsFrom, ViewsGone); a restore
// keeps it that way.
func TestViewRetention(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	c := New(Options{ViewRetention: []int{2, 1, 1}}, nil)
	s := makeSummary(rng, "s1", 1)
	if err := c.Handle(topic("s1", "summary"), encode(t, s), s.End); err != nil {
		t.Fatal(err)
	}
	nz := SeriesKey{By: ByCountry, Country: s.Countries[0].Country}
	if seen, _ := c.WhoSeesAt("1m", nz, t0, t0.Add(time.Minute)); len(seen) != 1 {
		t.Fatalf("WhoSeesAt in the window: %+v", seen)
	}
	later := t0.Add(10 * time.Minute)
	if err := c.Handle(topic("s1", "status"), []byte(`{"state":"online"}`), later); err != nil {
		t.Fatal(err)
	}
	if seen, _ := c.WhoSeesAt("1m", nz, t0, t0.Add(time.Minute)); len(seen) != 0 {
		t.Errorf("WhoSeesAt past the view retention: %+v", seen)
	}
	if from := c.ViewsFrom("1m"); !from.Equal(later.Add(-time.Minute)) {
		t.Errorf("ViewsFrom(1m) = %s, want %s", from, later.Add(-time.Minute))
	}
	if w := c.Window("1m", t0, t0.Add(time.Minute)); w.Remote != s.Remote {
		t.Errorf("the window's totals: %+v, want %+v", w.Remote, s.Remote)
	}
	if seen, _ := c.WhoSeesAt("1h", nz, t0, t0.Add(time.Hour)); len(seen) != 1 || seen[0].Counters != s.Countries[0].Counters {
		t.Errorf("WhoSeesAt on the hour: %+v", seen)
	}
	cp := roundTrip(t, c.Checkpoint(true))
	gone := 0
	for _, w := range cp.Windows {
		if w.ViewsGone {
			gone++
		}
	}
	if gone != 1 {
		t.Errorf("%d windows with views gone, want 1", gone)
	}
	r := New(Options{ViewRetention: []int{2, 1, 1}}, nil)
	if err := r.Restore(cp); err != nil {
		t.Fatal(err)
	}
	sameState(t, c, r, later)
}

func viewsOf(rng *rand.Rand, n int) []*SensorView {
	var out []*SensorView
	for i := range n {
		v := &SensorView{Sensor: fmt.Sprintf("s%03d", i)}
		for j, cc := range []string{"", "AU", "NZ", "US"} {
			if rng.IntN(2) == 0 {
				v.Countries = append(v.Countries, Seen[uint16]{Key: uint16(summary.CountryCode(cc)), Counters: randCounters(rng)})
			}
			v.ASes = append(v.ASes, Seen[uint32]{Key: uint32(j*1000 + rng.IntN(1000)), Counters: randCounters(rng)})
		}
		out = append(out, v)
	}
	return out
}

// AppendViews appends what WriteViews writes to b.
func AppendViews(b []byte, views []*SensorView) []byte {
	w := bytes.NewBuffer(b)
	_ = WriteViews(w, views) // a bytes.Buffer does not fail
	return w.Bytes()
}

// chunkWriter counts the writes it takes.
type chunkWriter struct {
	buf    bytes.Buffer
	writes int
}

func (w *chunkWriter) Write(b []byte) (int, error) {
	w.writes++
	return w.buf.Write(b)
}

func TestViewsCodec(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 16))
	views := viewsOf(rng, 20)
	b := AppendViews(nil, views)
	got, err := DecodeViews(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, views) {
		t.Errorf("decoded views differ:\n%+v\n%+v", got, views)
	}
	// Many writes of WriteViews: the same bytes.
	many := viewsOf(rng, 6000)
	slices.SortFunc(many, func(a, b *SensorView) int { return cmp.Compare(a.Sensor, b.Sensor) })
	var chunks chunkWriter
	if err := WriteViews(&chunks, many); err != nil {
		t.Fatal(err)
	}
	if got, err := DecodeViews(chunks.buf.Bytes()); err != nil || !reflect.DeepEqual(got, many) || chunks.writes < 2 {
		t.Errorf("WriteViews in %d writes of %d bytes: %v, or the views differ", chunks.writes, chunks.buf.Len(), err)
	}
	for _, tc := range []struct {
		name string
		b    []byte
		want string
	}{
		{"empty", nil, "no PWV1 header"},
		{"truncated", b[:len(b)-1], "sensor 20 of 20"},
		{"trailing", append(bytes.Clone(b), 0), "1 bytes after the last sensor"},
		{"too many sensors", append([]byte(viewMagic), 0xff, 0xff, 0xff, 0x7f), "sensors, limit"},
		{"unsorted", AppendViews(nil, []*SensorView{views[1], views[0]}), `sensor "s000" after "s001"`},
		{"bad id", AppendViews(nil, []*SensorView{{Sensor: "a/b"}}), "invalid sensor id"},
		{"repeated AS", AppendViews(nil, []*SensorView{{Sensor: "s", ASes: []Seen[uint32]{{Key: 7}, {Key: 7}}}}), "AS 7 after 7"},
		{"repeated country", AppendViews(nil, []*SensorView{{Sensor: "s", Countries: []Seen[uint16]{{Key: 5}, {Key: 5}}}}), `country "AE" after "AE"`},
		{"not a country", bytes.Replace(AppendViews(nil, []*SensorView{{Sensor: "s", Countries: []Seen[uint16]{{Key: 1}}}}), []byte("AA"), []byte("a1"), 1), `country "a1" is not two capital letters`},
	} {
		if _, err := DecodeViews(tc.b); !errors.Is(err, ErrViews) || !bytes.Contains([]byte(err.Error()), []byte(tc.want)) {
			t.Errorf("%s: %v, want ErrViews saying %q", tc.name, err, tc.want)
		}
	}
}

// FuzzDecodeViews: DecodeViews refuses or accepts without panicking, and
// what it accepts encodes back to views it decodes alike.
//
//	go test -run '^$' -fuzz FuzzDecodeViews ./sensor/collector/
func FuzzDecodeViews(f *testing.F) {
	rng := rand.New(rand.NewPCG(17, 18))
	f.Add(AppendViews(nil, viewsOf(rng, 3)))
	f.Add(AppendViews(nil, nil))
	f.Add([]byte(viewMagic + "\x01\x01s\x01\x02NZ\x01\x02\x03\x04\x05\x06\x07\x08\x09\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		views, err := DecodeViews(b)
		if err != nil {
			if !errors.Is(err, ErrViews) {
				t.Fatalf("error not ErrViews: %v", err)
			}
			return
		}
		again, err := DecodeViews(AppendViews(nil, views))
		if err != nil || !reflect.DeepEqual(again, views) {
			t.Fatalf("re-encoded: %v, %+v, want %+v", err, again, views)
		}
	})
}

// TestCheckpointChangedShards: an incremental checkpoint holds the views
// of the shards that changed, whole, and no other.
func TestCheckpointChangedShards(t *testing.T) {
	rng := rand.New(rand.NewPCG(19, 20))
	c := New(Options{}, nil)
	ids := []string{"a1", "b2", "c3", "d4", "e5", "f6"}
	for _, id := range ids {
		s := makeSummary(rng, id, 1)
		if err := c.Handle(topic(id, "summary"), encode(t, s), s.End); err != nil {
			t.Fatal(err)
		}
	}
	c.Checkpoint(true)
	s := makeSummary(rng, "c3", 2)
	if err := c.Handle(topic("c3", "summary"), encode(t, s), s.End); err != nil {
		t.Fatal(err)
	}
	cp := c.Checkpoint(false)
	if len(cp.Windows) != 1 {
		t.Fatalf("%d windows changed, want 1", len(cp.Windows))
	}
	var want []string
	for _, id := range ids {
		if ViewShard(id) == ViewShard("c3") {
			want = append(want, id)
		}
	}
	var got []string
	for _, v := range cp.Windows[0].Views {
		got = append(got, v.Sensor)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("views of %v, want those of c3's shard: %v", got, want)
	}
}

// TestSealInFlight: while a seal job is queued (its merge not run yet),
// queries of the coarser levels count its views once; a late summary
// that reaches the hour directly meanwhile is merged again when the job
// swaps its views in, and nothing is counted twice.
func TestSealInFlight(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	c := New(Options{}, nil)
	want := map[string]traffic.Counters{} // per sensor, country of key
	s1 := makeSummary(rng, "s1", 1)
	key := SeriesKey{By: ByCountry, Country: s1.Countries[0].Country}
	handle := func(s *summary.Summary, now time.Time) {
		t.Helper()
		if err := c.Handle(topic(s.Sensor, "summary"), encode(t, s), now); err != nil {
			t.Fatal(err)
		}
		if n, ok := find(viewOf(s).Countries, uint16(summary.CountryCode(key.Country))); ok {
			w := want[s.Sensor]
			w.Add(n)
			want[s.Sensor] = w
		}
	}
	handle(s1, s1.End)
	handle(makeSummary(rng, "s2", 1), s1.End)

	// Queue the seal of the first minute without running it.
	later := t0.Add(10 * time.Minute)
	c.mu.Lock()
	c.tick(later)
	if len(c.seals) != 1 {
		t.Fatalf("%d seal jobs queued, want 1", len(c.seals))
	}
	hour := c.levelLocked("1h")
	check := func(when string) {
		t.Helper()
		got := map[string]traffic.Counters{}
		for _, sc := range c.seenLocked(hour, t0, later, key) {
			got[sc.Sensor] = sc.Counters
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: the hour says %+v, want %+v", when, got, want)
		}
	}
	check("job queued")
	c.mu.Unlock()

	// A late summary of the sealed minute goes to the hour directly (its
	// Handle would run the job: the job is taken off the queue first).
	jobs := c.takeSeals()
	late := makeSummary(rng, "s1", 2)
	handle(late, later)
	c.mu.Lock()
	check("late summary, job in flight")
	c.mu.Unlock()
	for _, j := range jobs {
		c.seal(j)
	}
	c.mu.Lock()
	check("job done")
	c.mu.Unlock()
}

// viewOf is the view that one summary makes.
func viewOf(s *summary.Summary) *SensorView {
	return summaryView(nil, s.Sensor, s, &viewScratch{})
}

// TestViewASCap: a sensor that sends ever new ASes fills its view up to
// MaxViewASes and no further, counting on for the ASes the view holds; a
// seal's merge keeps the bound, and the store reads the full view back.
func TestViewASCap(t *testing.T) {
	var scratch viewScratch
	var v *SensorView
	one := traffic.Counters{Packets: traffic.ByDirection{1, 0}}
	// Each summary: AS 1 again, and 99 ASes never seen before (2 to 100,
	// then 101 to 199, ...), sorted above all before.
	const summaries = MaxViewASes/(MaxSeenASes-1) + 50
	for n := range summaries {
		sum := &summary.Summary{Sensor: "s1", ASes: []summary.ASCount{{ASN: 1, Counters: one}}}
		for i := range MaxSeenASes - 1 {
			sum.ASes = append(sum.ASes, summary.ASCount{ASN: uint32(2 + n*(MaxSeenASes-1) + i), Counters: one})
		}
		v = summaryView(v, "s1", sum, &scratch)
	}
	if len(v.ASes) != MaxViewASes {
		t.Fatalf("%d ASes in the view, want %d", len(v.ASes), MaxViewASes)
	}
	if c, ok := find(v.ASes, 1); !ok || c.Packets[0] != summaries {
		t.Errorf("AS 1: %v (in the view: %v), want a packet from each summary", c, ok)
	}
	if last := v.ASes[len(v.ASes)-1].Key; last != MaxViewASes {
		t.Errorf("the view's last AS is %d, want %d (the first ones kept)", last, MaxViewASes)
	}
	other := &SensorView{Sensor: "s1", ASes: []Seen[uint32]{{Key: 1, Counters: one}, {Key: math.MaxUint32, Counters: one}}}
	merged := mergeViews(v, other)
	if len(merged.ASes) != MaxViewASes {
		t.Errorf("merged: %d ASes, want %d", len(merged.ASes), MaxViewASes)
	}
	got, err := DecodeViews(AppendViews(nil, []*SensorView{merged}))
	if err != nil || len(got) != 1 || len(got[0].ASes) != MaxViewASes {
		t.Fatalf("round trip of a full view: %v", err)
	}
}
