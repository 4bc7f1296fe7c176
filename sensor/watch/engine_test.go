package watch

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/peerwatch/peerwatch/sensor/summary"
	"github.com/peerwatch/peerwatch/sensor/traffic"
)

// t0 is a Monday, 00:00 UTC.
var t0 = time.Date(2024, 5, 6, 0, 0, 0, 0, time.UTC)

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// counters splits packets and bytes over the two directions.
func counters(packets, bytes uint64) traffic.Counters {
	return traffic.Counters{
		Packets: [2]uint64{packets - packets/2, packets / 2},
		Bytes:   [2]uint64{bytes - bytes/2, bytes / 2},
	}
}

// summ is a summary of [start, start+d) in which the list "kp" had
// packets and bytes.
func summ(start time.Time, d time.Duration, packets, bytes uint64, prefixes ...summary.PrefixCount) *summary.Summary {
	return &summary.Summary{
		Start:    start,
		End:      start.Add(d),
		Prefixes: prefixes,
		Watch:    []summary.WatchCount{{List: "kp", Counters: counters(packets, bytes)}},
	}
}

func prefixCount(p, country string, asn uint32, packets uint64) summary.PrefixCount {
	return summary.PrefixCount{Prefix: pfx(p), Country: country, ASN: asn, Counters: counters(packets, 100*packets)}
}

var kp = List{Name: "kp", Countries: []string{"KP"}, ASNs: []uint32{131279}, Prefixes: []netip.Prefix{pfx("198.51.100.0/24"), pfx("2001:db8:4b::/48")}}

// run feeds 10 s intervals with the given packets (100 bytes each) and
// returns the events as "interval:kind", e.g. "1:started".
func run(t *testing.T, e *Engine, packets []uint64) []string {
	t.Helper()
	var got []string
	for i, n := range packets {
		for _, ev := range e.Observe(summ(t0.Add(time.Duration(i)*10*time.Second), 10*time.Second, n, 100*n)) {
			got = append(got, fmt.Sprintf("%d:%s", i, ev.Kind))
		}
	}
	return got
}

func TestRules(t *testing.T) {
	for _, tc := range []struct {
		name    string
		rule    Rule
		packets []uint64
		want    []string
	}{
		{
			name:    "any traffic starts and ends",
			rule:    Rule{List: "kp", Any: true},
			packets: []uint64{0, 5, 3, 0, 0, 1, 0},
			want:    []string{"1:started", "2:updated", "3:ended", "5:started", "6:ended"},
		},
		{
			name:    "any traffic with a longer clear",
			rule:    Rule{List: "kp", Any: true, Clear: 25 * time.Second},
			packets: []uint64{1, 0, 0, 1, 0, 0, 0, 0},
			want:    []string{"0:started", "3:updated", "6:ended"},
		},
		{
			// 100 pps is 1000 packets in 10 s; at the threshold is not over it.
			name:    "pps threshold",
			rule:    Rule{List: "kp", PPS: 100},
			packets: []uint64{1000, 1001, 5000, 999, 2000},
			want:    []string{"1:started", "2:updated", "3:ended", "4:started"},
		},
		{
			name:    "pps threshold held for min duration",
			rule:    Rule{List: "kp", PPS: 100, MinDuration: 30 * time.Second},
			packets: []uint64{2000, 2000, 0, 2000, 2000, 2000, 2000, 0},
			want:    []string{"5:started", "6:updated", "7:ended"},
		},
		{
			// 1000 packets of 100 bytes in 10 s: 80 kbps.
			name:    "bps threshold",
			rule:    Rule{List: "kp", BPS: 80e3},
			packets: []uint64{1000, 1001, 0},
			want:    []string{"1:started", "2:ended"},
		},
		{
			name:    "no traffic no alert",
			rule:    Rule{List: "kp", Any: true, PPS: 1},
			packets: []uint64{0, 0, 0},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := New([]List{kp}, []Rule{tc.rule}, nil)
			if got := run(t, e, tc.packets); !slices.Equal(got, tc.want) {
				t.Errorf("events %v, want %v", got, tc.want)
			}
		})
	}
}

func TestAlertTotals(t *testing.T) {
	e := New([]List{kp}, []Rule{{List: "kp", PPS: 100, MinDuration: 20 * time.Second, Clear: 20 * time.Second}}, nil)
	type step struct {
		packets, bytes uint64
		prefixes       []summary.PrefixCount
		want           string // event kind, "" for none
	}
	steps := []step{
		{packets: 500, bytes: 1e5, want: ""},
		{packets: 1500, bytes: 3e5, want: ""},             // holds 10 s
		{packets: 2400 * 10, bytes: 2e6, want: "started"}, // holds 20 s: starts at interval 1
		{packets: 300, bytes: 4e4, want: ""},              // quiet 10 s
		{packets: 4000, bytes: 9e6, want: "updated"},      // holds again: the gap joins
		{packets: 10, bytes: 1e3, want: ""},               // quiet 10 s
		{packets: 20, bytes: 2e3, want: "ended"},          // quiet 20 s: ends at interval 4's end
		{packets: 5000, bytes: 5e5, want: ""},             // a new streak
		{packets: 0, bytes: 0, want: ""},                  // broken before min duration
		{packets: 5000, bytes: 5e5, want: ""},             // so it starts again from 10 s
	}
	// Prefixes: two of the list's in each interval, and one that is not.
	for i := range steps {
		steps[i].prefixes = []summary.PrefixCount{
			prefixCount("175.45.176.0/22", "KP", 131279, uint64(i)+1),
			prefixCount("198.51.100.0/25", "", 0, 2),        // inside a listed prefix
			prefixCount("203.0.113.0/24", "NZ", 9503, 1000), // not the list's
		}
	}
	var last Event
	for i, st := range steps {
		evs := e.Observe(summ(t0.Add(time.Duration(i)*10*time.Second), 10*time.Second, st.packets, st.bytes, st.prefixes...))
		var kinds []string
		for _, ev := range evs {
			kinds = append(kinds, ev.Kind.String())
			last = ev
		}
		if got := strings.Join(kinds, ","); got != st.want {
			t.Fatalf("interval %d: events %q, want %q", i, got, st.want)
		}
	}
	a := last.Alert
	want := Alert{
		ID:      "kp@" + t0.Add(10*time.Second).Format(time.RFC3339Nano),
		List:    "kp",
		Reason:  "2.4 kpps > 100 pps",
		Start:   t0.Add(10 * time.Second),
		End:     t0.Add(50 * time.Second),
		PeakPPS: 2400,
		PeakBPS: 9e6 * 8 / 10,
		Packets: 1500 + 24000 + 300 + 4000,
		Bytes:   3e5 + 2e6 + 4e4 + 9e6,
		Prefixes: []PrefixShare{
			{Prefix: pfx("175.45.176.0/22"), Country: "KP", ASN: 131279, Packets: 2 + 3 + 4 + 5},
			{Prefix: pfx("198.51.100.0/25"), Packets: 4 * 2},
		},
	}
	if fmt.Sprint(a) != fmt.Sprint(want) {
		t.Errorf("ended alert\n got %+v\nwant %+v", a, want)
	}
	if got := e.Recent(5); len(got) != 1 || fmt.Sprint(got[0]) != fmt.Sprint(want) {
		t.Errorf("recent %+v", got)
	}
	if got := e.Active(); len(got) != 0 {
		t.Errorf("active %+v", got)
	}
}

func TestTopPrefixes(t *testing.T) {
	l := List{Name: "kp", Prefixes: []netip.Prefix{pfx("10.0.0.0/8"), pfx("2001:db8::/32")}}
	e := New([]List{l}, []Rule{{List: "kp", Any: true}}, nil)
	// 12 of the list's prefixes with 1..12 packets; two of them tie with 5.
	var ps []summary.PrefixCount
	var total uint64
	for i := 1; i <= 12; i++ {
		n := uint64(i)
		if i == 6 {
			n = 5
		}
		total += n
		ps = append(ps, prefixCount(fmt.Sprintf("10.%d.0.0/16", i), "", 0, n))
	}
	ps = append(ps, prefixCount("2001:db8:1::/48", "", 0, 7), prefixCount("2001:db9::/32", "", 0, 99), prefixCount("10.0.0.0/7", "", 0, 99))
	e.Observe(summ(t0, time.Minute, total+7, 100, ps...))
	evs := e.Observe(summ(t0.Add(time.Minute), time.Minute, 1, 100, prefixCount("10.1.0.0/16", "", 0, 1)))
	if len(evs) != 1 || evs[0].Kind != Updated {
		t.Fatalf("events %+v", evs)
	}
	var got []string
	for _, p := range evs[0].Alert.Prefixes {
		got = append(got, fmt.Sprintf("%s=%d", p.Prefix, p.Packets))
	}
	want := []string{"10.12.0.0/16=12", "10.11.0.0/16=11", "10.10.0.0/16=10", "10.9.0.0/16=9", "10.8.0.0/16=8",
		"10.7.0.0/16=7", "2001:db8:1::/48=7", "10.5.0.0/16=5", "10.6.0.0/16=5", "10.4.0.0/16=4"}
	if !slices.Equal(got, want) {
		t.Errorf("prefixes\n got %v\nwant %v", got, want)
	}
}

func TestReasons(t *testing.T) {
	e := New([]List{kp}, []Rule{{List: "kp", Any: true, PPS: 1000, BPS: 5e6}}, nil)
	evs := e.Observe(summ(t0, 10*time.Second, 24000, 10*1024*1024))
	if len(evs) != 1 {
		t.Fatalf("events %+v", evs)
	}
	if got, want := evs[0].Alert.Reason, "any traffic; 2.4 kpps > 1 kpps; 8.39 Mbps > 5 Mbps"; got != want {
		t.Errorf("reason %q, want %q", got, want)
	}
	// The reason follows the highest packet rate.
	evs = e.Observe(summ(t0.Add(10*time.Second), 10*time.Second, 3, 300))
	if got := evs[0].Alert.Reason; got != "any traffic; 2.4 kpps > 1 kpps; 8.39 Mbps > 5 Mbps" {
		t.Errorf("reason after a smaller interval %q", got)
	}
	evs = e.Observe(summ(t0.Add(20*time.Second), 10*time.Second, 50000, 300))
	if got := evs[0].Alert.Reason; got != "any traffic; 5 kpps > 1 kpps" {
		t.Errorf("reason after a larger interval %q", got)
	}
}

func TestFormatRate(t *testing.T) {
	for v, want := range map[float64]string{
		0: "0 pps", 0.5: "0.5 pps", 1: "1 pps", 12.34: "12.3 pps", 120: "120 pps", 999: "999 pps",
		1000: "1 kpps", 2400: "2.4 kpps", 12345: "12.3 kpps", 8.1e6: "8.1 Mpps", 3e9: "3 Gpps", 4e13: "40 Tpps",
	} {
		if got := formatRate(v, "pps"); got != want {
			t.Errorf("formatRate(%v) = %q, want %q", v, got, want)
		}
	}
}

func TestClockJump(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	e := New([]List{kp}, []Rule{{List: "kp", Any: true, Clear: 20 * time.Second}}, log)
	tm := t0
	next := func(d time.Duration, packets uint64) []Event {
		s := summ(tm, d, packets, 100*packets)
		tm = s.End
		return e.Observe(s)
	}
	if evs := next(10*time.Second, 5); len(evs) != 1 || evs[0].Kind != Started {
		t.Fatalf("events %+v", evs)
	}
	// The clock steps back an hour within an interval: its end is before its
	// start. It is ignored (it would have been quiet), and so is a
	// summary with no start (an interval recovered after a restart).
	if evs := next(-time.Hour, 0); len(evs) != 0 {
		t.Fatalf("events from a backwards interval %+v", evs)
	}
	if evs := e.Observe(&summary.Summary{End: tm, Watch: []summary.WatchCount{{List: "kp"}}}); len(evs) != 0 {
		t.Fatalf("events from an interval without a start %+v", evs)
	}
	if evs := next(0, 0); len(evs) != 0 {
		t.Fatalf("events from an empty interval %+v", evs)
	}
	// Intervals continue from the new, earlier, clock.
	if evs := next(10*time.Second, 7); len(evs) != 1 || evs[0].Kind != Updated {
		t.Fatalf("events %+v", evs)
	}
	next(10*time.Second, 0)
	evs := next(10*time.Second, 0)
	if len(evs) != 1 || evs[0].Kind != Ended {
		t.Fatalf("events %+v", evs)
	}
	a := evs[0].Alert
	if a.Start != t0 || a.End.Before(a.Start) || a.End != t0.Add(10*time.Second) || a.Packets != 12 {
		t.Errorf("alert across a clock step: %+v", a)
	}
	if _, ok := e.Baseline("kp", t0); ok {
		t.Error("baseline warm")
	}
	// Repeated warnings are rate-limited: the 1st, 2nd, 4th, 8th … time.
	for range 100 {
		next(-time.Second, 0)
	}
	if got := strings.Count(logs.String(), "summary without a usable interval"); got != 7 {
		t.Errorf("%d warnings for 103 ignored summaries, want 7 (1, 2, 4, …, 64)\n%s", got, logs.String())
	}
}

func TestMissingList(t *testing.T) {
	var logs bytes.Buffer
	e := New([]List{kp}, []Rule{{List: "kp", Any: true}, {List: "other", Any: true}}, slog.New(slog.NewTextHandler(&logs, nil)))
	for i := range 3 {
		evs := e.Observe(summ(t0.Add(time.Duration(i)*10*time.Second), 10*time.Second, 1, 1))
		if i == 0 && (len(evs) != 1 || evs[0].Alert.List != "kp") {
			t.Fatalf("events %+v", evs)
		}
	}
	if got := strings.Count(logs.String(), "no counters for the watch list"); got != 2 {
		t.Errorf("%d warnings, want 2\n%s", got, logs.String())
	}
	if !strings.Contains(logs.String(), "undefined list") {
		t.Errorf("no warning of the undefined list\n%s", logs.String())
	}
}

func TestRecentBounded(t *testing.T) {
	e := New([]List{kp}, []Rule{{List: "kp", Any: true}}, nil)
	packets := make([]uint64, 2*(MaxRecent+5))
	for i := range packets {
		packets[i] = uint64(1 - i%2)
	}
	if got := run(t, e, packets); len(got) != len(packets) {
		t.Fatalf("%d events", len(got))
	}
	all := e.Recent(0)
	if len(all) != MaxRecent {
		t.Fatalf("%d recent alerts", len(all))
	}
	last := t0.Add(time.Duration(len(packets)-2) * 10 * time.Second)
	if all[0].Start != last || all[1].Start != last.Add(-20*time.Second) {
		t.Errorf("recent not newest first: %v, %v", all[0].Start, all[1].Start)
	}
	if got := e.Recent(3); len(got) != 3 || got[2].ID != all[2].ID {
		t.Errorf("recent(3) %+v", got)
	}
}

func TestUniqueID(t *testing.T) {
	e := New([]List{kp}, []Rule{{List: "kp", Any: true}}, nil)
	var ids []string
	for range 3 { // the same interval again, as after a clock step back
		for _, ev := range e.Observe(summ(t0, 10*time.Second, 1, 1)) {
			ids = append(ids, ev.Alert.ID)
		}
		e.Observe(summ(t0.Add(10*time.Second), 10*time.Second, 0, 0))
	}
	want := []string{"kp@2024-05-06T00:00:00Z", "kp@2024-05-06T00:00:00Z#2", "kp@2024-05-06T00:00:00Z#3"}
	if !slices.Equal(ids, want) {
		t.Errorf("ids %v, want %v", ids, want)
	}
}

func TestValidate(t *testing.T) {
	lists := []List{kp, {Name: "as", ASNs: []uint32{1}}}
	if err := Validate(lists, []Rule{{List: "kp", Any: true}, {List: "as", BaselineFactor: 5, MinDuration: time.Minute}}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		lists []List
		rules []Rule
		want  string
	}{
		{lists, []Rule{{List: "kp"}}, "no condition"},
		{lists, []Rule{{List: "nope", Any: true}}, `rule 0 (list "nope"): list: no such watch list`},
		{lists, []Rule{{List: "kp", Any: true}, {List: "kp", PPS: 1}}, `rule 1 (list "kp"): list: has another rule`},
		{lists, []Rule{{List: "kp", PPS: -1}}, "pps: -1 is not a finite number >= 0"},
		{lists, []Rule{{List: "kp", BaselineFactor: 0.5}}, "baseline_factor: 0.5 must be above 1"},
		{lists, []Rule{{List: "kp", Any: true, Clear: -time.Second}}, "clear: -1s is negative"},
		{append(lists, List{Name: "kp"}), nil, `list 2 ("kp"): name: defined twice`},
		{[]List{{Name: "x", Prefixes: []netip.Prefix{{}}}}, nil, "prefixes: invalid prefix"},
	} {
		err := Validate(tc.lists, tc.rules)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%+v) = %v, want %q", tc.rules, err, tc.want)
		}
	}
	// New leaves invalid rules out.
	e := New(lists, []Rule{{List: "kp"}, {List: "as", Any: true}}, nil)
	if len(e.rules) != 1 || e.rules[0].rule.List != "as" {
		t.Errorf("rules %+v", e.rules)
	}
}
