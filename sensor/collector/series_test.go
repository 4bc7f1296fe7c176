package collector

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/peerwatch/peerwatch/sensor/traffic"
)

// TestSeries delivers 3 sensors' 10 s summaries over 3 minutes and checks
// every point of the minute series of each kind of key against the sums of
// the summaries that end in its minute, and the per-sensor AS counts.
func TestSeries(t *testing.T) {
	const sensors, intervals = 3, 18 // 3 minutes of 10 s
	rng := rand.New(rand.NewPCG(7, 8))
	now := t0.Add(5 * time.Minute)
	c := New(Options{}, nil)

	type sums struct{ total, kp, as, prefix traffic.Counters }
	want := map[time.Time]*sums{}
	wantAS := map[string]traffic.Counters{}
	prefix := netip.MustParsePrefix("198.51.2.0/24") // KP, AS 131279
	for i := range sensors {
		id := fmt.Sprintf("wlg-ix-%02d", i)
		for seq := uint64(1); seq <= intervals; seq++ {
			s := makeSummary(rng, id, seq)
			if err := c.Handle(topic(id, "summary"), encode(t, s), now); err != nil {
				t.Fatal(err)
			}
			m := s.End.Truncate(time.Minute)
			if want[m] == nil {
				want[m] = &sums{}
			}
			want[m].total.Add(s.Remote)
			for _, cc := range s.Countries {
				if cc.Country == "KP" {
					want[m].kp.Add(cc.Counters)
				}
			}
			for _, a := range s.ASes {
				if a.ASN == 131279 {
					want[m].as.Add(a.Counters)
					n := wantAS[id]
					n.Add(a.Counters)
					wantAS[id] = n
				}
			}
			for _, p := range s.Prefixes {
				if p.Prefix == prefix {
					want[m].prefix.Add(p.Counters)
				}
			}
		}
	}
	// The summaries end from 12:00:10 to 12:03:00: minutes 12:00 to 12:03.
	if len(want) != 4 {
		t.Fatalf("%d minutes in the fixture, want 4", len(want))
	}
	for _, tc := range []struct {
		key  SeriesKey
		pick func(*sums) traffic.Counters
	}{
		{SeriesKey{By: ByTotal}, func(s *sums) traffic.Counters { return s.total }},
		{SeriesKey{By: ByCountry, Country: "KP"}, func(s *sums) traffic.Counters { return s.kp }},
		{SeriesKey{By: ByAS, ASN: 131279}, func(s *sums) traffic.Counters { return s.as }},
		{SeriesKey{By: ByPrefix, Prefix: prefix}, func(s *sums) traffic.Counters { return s.prefix }},
	} {
		pts, ok := c.Series("1m", t0, now, tc.key)
		if !ok || len(pts) != 4 {
			t.Fatalf("%+v: %d points (ok %v), want 4", tc.key, len(pts), ok)
		}
		for i, p := range pts {
			if wantStart := t0.Add(time.Duration(i) * time.Minute); !p.Start.Equal(wantStart) {
				t.Errorf("%+v point %d starts %s, want %s", tc.key, i, p.Start, wantStart)
			}
			if w := tc.pick(want[p.Start]); p.Counters != w {
				t.Errorf("%+v at %s: %+v, want %+v", tc.key, p.Start.Format("15:04"), p.Counters, w)
			}
		}
	}
	// A key without traffic: points of zeros; a span without windows: none.
	pts, _ := c.Series("1m", t0, now, SeriesKey{By: ByCountry, Country: "FR"})
	if len(pts) != 4 || pts[0].Total() != 0 {
		t.Errorf("FR: %+v, want 4 points of zeros", pts)
	}
	if pts, ok := c.Series("1m", now, now.Add(time.Hour), SeriesKey{By: ByTotal}); !ok || len(pts) != 0 {
		t.Errorf("after now: %+v", pts)
	}
	if _, ok := c.Series("5m", t0, now, SeriesKey{By: ByTotal}); ok {
		t.Error("an unknown level is ok")
	}
	if w := c.Width("1h"); w != time.Hour {
		t.Errorf("width of 1h: %v", w)
	}
	// The hour level holds the same traffic in one window.
	pts, _ = c.Series("1h", t0, now, SeriesKey{By: ByAS, ASN: 131279})
	var allAS traffic.Counters
	for _, n := range wantAS {
		allAS.Add(n)
	}
	if len(pts) != 1 || pts[0].Counters != allAS {
		t.Errorf("hour of AS131279: %+v, want one point of %+v", pts, allAS)
	}

	// One sensor's series of an AS sums to what WhoSeesAt says of it.
	for id, n := range wantAS {
		pts, ok := c.Series("1m", t0, now, SeriesKey{By: ByAS, ASN: 131279, Sensor: id})
		var sum traffic.Counters
		for _, p := range pts {
			sum.Add(p.Counters)
		}
		if !ok || len(pts) != 4 || sum != n {
			t.Errorf("series of AS131279 at %s: %d points summing to %+v, want 4 and %+v", id, len(pts), sum, n)
		}
	}
	if _, ok := c.Series("1m", t0, now, SeriesKey{By: ByTotal, Sensor: "wlg-ix-00"}); ok {
		t.Error("a sensor's total series is ok; the windows do not keep it")
	}
	who, ok := c.WhoSeesAt("1m", SeriesKey{By: ByAS, ASN: 131279}, t0, now)
	if !ok || len(who) != sensors {
		t.Fatalf("WhoSeesAt AS131279: %+v", who)
	}
	if hour, _ := c.WhoSeesAt("1h", SeriesKey{By: ByAS, ASN: 131279}, t0, now); len(hour) != sensors || hour[0] != who[0] {
		t.Errorf("WhoSeesAt on the hour level: %+v, want %+v", hour, who)
	}
	if _, ok := c.WhoSeesAt("1m", SeriesKey{By: ByPrefix}, t0, now); ok {
		t.Error("WhoSeesAt a prefix is ok")
	}
	for i, sc := range who {
		if sc.Counters != wantAS[sc.Sensor] {
			t.Errorf("WhoSeesAt %s: %+v, want %+v", sc.Sensor, sc.Counters, wantAS[sc.Sensor])
		}
		if i > 0 && sc.Total() > who[i-1].Total() {
			t.Errorf("WhoSeesAt not sorted: %+v", who)
		}
	}

	// Accepted messages by kind; a duplicate and a bad topic are not.
	_ = c.Handle(topic("wlg-ix-00", "status"), []byte(`{"state":"online","version":"1"}`), now)
	_ = c.Handle(topic("wlg-ix-00", "summary"), encode(t, makeSummary(rng, "wlg-ix-00", 1)), now)
	_ = c.Handle("elsewhere/x", nil, now)
	for _, s := range c.Sensors(now) {
		if want := s.ID == "wlg-ix-00"; s.HasStatus != want || s.Online != want {
			t.Errorf("%s: has status %v, online %v; want %v", s.ID, s.HasStatus, s.Online, want)
		}
	}
	got := c.Accepted()
	if got["summary"] != sensors*intervals || got["status"] != 1 || got["alert"] != 0 {
		t.Errorf("Accepted() = %v, want %d summaries, 1 status, 0 alerts", got, sensors*intervals)
	}
}
