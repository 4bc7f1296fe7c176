package watch

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/peerwatch/peerwatch/sensor/summary"
)

var (
	stateLists = []List{kp, {Name: "as", ASNs: []uint32{64500}}}
	stateRules = []Rule{
		{List: "kp", Any: true, BaselineFactor: 4, BaselineWarmup: 5 * time.Minute, Clear: 30 * time.Second},
		{List: "as", PPS: 10, MinDuration: time.Minute},
	}
)

// stateSumm is a 10 s summary of both lists.
func stateSumm(i int, kpPackets, asPackets uint64) *summary.Summary {
	start := t0.Add(time.Duration(i) * 10 * time.Second)
	return &summary.Summary{
		Start: start,
		End:   start.Add(10 * time.Second),
		Prefixes: []summary.PrefixCount{
			prefixCount("175.45.176.0/22", "KP", 131279, kpPackets),
			prefixCount("192.0.2.0/24", "", 64500, asPackets),
		},
		Watch: []summary.WatchCount{{List: "as", Counters: counters(asPackets, 64*asPackets)}, {List: "kp", Counters: counters(kpPackets, 1500*kpPackets)}},
	}
}

// busyEngine has learned a baseline, has an active alert in its clear
// time and a pending one.
func busyEngine(t testing.TB) (*Engine, int) {
	t.Helper()
	e := New(stateLists, stateRules, nil)
	i := 0
	for ; i < 40; i++ {
		e.Observe(stateSumm(i, 0, 5))
	}
	e.Observe(stateSumm(i, 7, 200))
	e.Observe(stateSumm(i+1, 9, 200))
	e.Observe(stateSumm(i+2, 0, 200))
	if a := e.Active(); len(a) != 1 || a[0].List != "kp" {
		t.Fatalf("active %+v", a)
	}
	return e, i + 3
}

func TestStateRoundTrip(t *testing.T) {
	e, i := busyEngine(t)
	saved, err := e.MarshalState()
	if err != nil {
		t.Fatal(err)
	}
	r := New(stateLists, stateRules, nil)
	if err := r.RestoreState(saved); err != nil {
		t.Fatal(err)
	}
	again, err := r.MarshalState()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(saved, again) {
		t.Errorf("state changed in a round trip:\n%s\n%s", saved, again)
	}
	if got, want := fmt.Sprint(r.Active()), fmt.Sprint(e.Active()); got != want {
		t.Errorf("active after restore\n got %s\nwant %s", got, want)
	}
	// Both go on alike: the kp alert resumes (its gap joins), the as alert
	// starts after its minute, then both end.
	var events []string
	for j, n := range []struct{ kp, as uint64 }{{3, 200}, {0, 200}, {0, 200}, {0, 200}, {0, 0}, {0, 0}, {0, 0}} {
		s := stateSumm(i+j, n.kp, n.as)
		want, got := e.Observe(s), r.Observe(s)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("interval %d after restore\n got %+v\nwant %+v", j, got, want)
		}
		for _, ev := range got {
			events = append(events, fmt.Sprintf("%d:%s %s", j, ev.Kind, ev.Alert.List))
		}
	}
	if got, want := strings.Join(events, ","), "0:updated kp,2:started as,3:ended kp,3:updated as,4:ended as"; got != want {
		t.Errorf("events %s, want %s", got, want)
	}
	ended := r.Recent(0)
	if len(ended) != 2 || ended[1].List != "kp" || ended[1].Packets != 7+9+3 || ended[1].Start != t0.Add(400*time.Second) {
		t.Errorf("ended %+v", ended)
	}

	// State of a list without a rule is dropped; a rule without state
	// starts afresh.
	other := New(stateLists, []Rule{{List: "as", PPS: 10, MinDuration: time.Minute}}, nil)
	if err := other.RestoreState(saved); err != nil {
		t.Fatal(err)
	}
	if a := other.Active(); len(a) != 0 {
		t.Errorf("active %+v", a)
	}
}

func TestRestoreBad(t *testing.T) {
	e, _ := busyEngine(t)
	good, err := e.MarshalState()
	if err != nil {
		t.Fatal(err)
	}
	// edit decodes the good state, changes it and encodes it again.
	edit := func(f func(st map[string]any)) string {
		var st map[string]any
		if err := json.Unmarshal(good, &st); err != nil {
			t.Fatal(err)
		}
		f(st)
		b, err := json.Marshal(st)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	list := func(st map[string]any) map[string]any { return st["lists"].(map[string]any)["kp"].(map[string]any) }
	for name, data := range map[string]string{
		"empty":          "",
		"garbage":        "\x00\xffpeerwatch",
		"null":           "null",
		"no version":     `{"lists":{}}`,
		"future version": edit(func(st map[string]any) { st["version"] = 2 }),
		"truncated":      string(good[:len(good)/2]),
		"trailing":       string(good) + "{}",
		"short baseline": edit(func(st map[string]any) { l := list(st); l["baseline"] = l["baseline"].([]any)[:100] }),
		"negative rate":  edit(func(st map[string]any) { list(st)["baseline"].([]any)[3].(map[string]any)["pps"] = -1 }),
		"negative seen":  edit(func(st map[string]any) { list(st)["baseline"].([]any)[3].(map[string]any)["seen"] = -1 }),
		"rate as string": edit(func(st map[string]any) { list(st)["baseline"].([]any)[3].(map[string]any)["pps"] = "1" }),
		"alert no id":    edit(func(st map[string]any) { delete(list(st)["alert"].(map[string]any), "id") }),
		"alert no start": edit(func(st map[string]any) { delete(list(st)["alert"].(map[string]any), "start") }),
		"end before":     edit(func(st map[string]any) { list(st)["alert"].(map[string]any)["end"] = "2000-01-01T00:00:00Z" }),
		"gap, no alert":  edit(func(st map[string]any) { delete(list(st), "alert") }),
		"streak and alert": edit(func(st map[string]any) {
			list(st)["streak"] = list(st)["alert"]
		}),
		"bad prefix": edit(func(st map[string]any) {
			list(st)["alert"].(map[string]any)["shares"] = map[string]any{"10.0.0.0/33": map[string]any{}}
		}),
		"empty prefix": edit(func(st map[string]any) {
			list(st)["alert"].(map[string]any)["shares"] = map[string]any{"": map[string]any{}}
		}),
		"unmasked prefix": edit(func(st map[string]any) {
			list(st)["alert"].(map[string]any)["shares"] = map[string]any{"10.0.0.1/8": map[string]any{}}
		}),
		"negative peak": edit(func(st map[string]any) { list(st)["alert"].(map[string]any)["peak_pps"] = -5 }),
		"huge packets":  edit(func(st map[string]any) { list(st)["alert"].(map[string]any)["packets"] = 1e30 }),
	} {
		t.Run(name, func(t *testing.T) {
			e, _ := busyEngine(t)
			if err := e.RestoreState([]byte(data)); err == nil {
				t.Fatalf("no error restoring %.200s", data)
			} else {
				t.Log(err)
			}
			if a := e.Active(); len(a) != 0 {
				t.Errorf("active after a failed restore: %+v", a)
			}
			for h := range SlotsPerWeek {
				if _, ok := e.Baseline("kp", t0.Add(time.Duration(h)*time.Hour)); ok {
					t.Fatal("baseline after a failed restore")
				}
			}
			if b, err := e.MarshalState(); err != nil || string(b) != `{"version":1,"lists":{"as":{},"kp":{}}}` {
				t.Errorf("state after a failed restore: %s, %v", b, err)
			}
		})
	}
}

func FuzzRestoreState(f *testing.F) {
	e, _ := busyEngine(f)
	good, err := e.MarshalState()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte(`{"version":1,"lists":{"kp":{"alert":{"id":"x","start":"2024-01-01T00:00:00Z","end":"2024-01-01T00:00:10Z","observed":9223372036854775807,"shares":{"10.0.0.0/8":{"packets":18446744073709551615}}},"gap":{"start":"2024-01-01T00:00:00Z","end":"2024-01-01T00:00:00Z","observed":9223372036854775807}}}}`))
	f.Add([]byte(`{"version":1,"lists":{"as":{"streak":{"start":"0001-01-01T00:00:01Z","end":"9999-12-31T23:59:59Z"}},"zz":null}}`))
	f.Add([]byte(`{"version":1}`))
	f.Add([]byte("null"))
	f.Fuzz(func(t *testing.T, data []byte) {
		e := New(stateLists, stateRules, nil)
		if err := e.RestoreState(data); err != nil {
			if a := e.Active(); len(a) != 0 {
				t.Fatalf("active after a failed restore: %+v", a)
			}
			return
		}
		saved, err := e.MarshalState()
		if err != nil {
			t.Fatalf("restored state does not encode: %v", err)
		}
		if err := New(stateLists, stateRules, nil).RestoreState(saved); err != nil {
			t.Fatalf("encoded state does not restore: %v\n%s", err, saved)
		}
		// The engine goes on without panicking or going back in time.
		for i := range 8 {
			for _, ev := range e.Observe(stateSumm(i, uint64(i%3)*50, uint64(i%2)*500)) {
				if !ev.Alert.End.IsZero() && ev.Alert.End.Before(ev.Alert.Start) {
					t.Fatalf("alert ends before it starts: %+v", ev.Alert)
				}
			}
		}
		if _, err := e.MarshalState(); err != nil {
			t.Fatal(err)
		}
	})
}
