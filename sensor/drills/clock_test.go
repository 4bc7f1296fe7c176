package drills_test

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/peerwatch/peerwatch/sensor/summary"
	"github.com/peerwatch/peerwatch/sensor/wallclock"
)

var drillClockBin struct {
	once sync.Once
	path string
	err  error
}

// drillClockSensord builds sensord with the drillclock tag (the wall-clock
// seam of sensor/wallclock) next to the release build, and checks that its
// build settings say so.
func drillClockSensord(t *testing.T) string {
	t.Helper()
	sensordBinary(t) // makes bin.dir
	drillClockBin.once.Do(func() {
		drillClockBin.path = filepath.Join(bin.dir, "sensord-drillclock")
		cmd := exec.Command("go", "build", "-tags", "drillclock", "-o", drillClockBin.path, "github.com/peerwatch/peerwatch/sensor/cmd/sensord")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			drillClockBin.err = fmt.Errorf("build sensord -tags drillclock: %v\n%s", err, b)
			return
		}
		info, err := exec.Command("go", "version", "-m", drillClockBin.path).CombinedOutput()
		if err != nil || !strings.Contains(string(info), "-tags=drillclock") {
			drillClockBin.err = fmt.Errorf("go version -m %s: no -tags=drillclock (%v):\n%s", drillClockBin.path, err, info)
		}
	})
	if drillClockBin.err != nil {
		t.Fatal(drillClockBin.err)
	}
	return drillClockBin.path
}

// uplinkLab is a broker namespace joined to the sensor's by a veth link
// (10.99.0.0/30) with a real mosquitto (no persistence) and collectord in
// it, as in the blackhole drill.
// heardSummary is a summary as the broker delivered it to the drill's own
// subscriber, with the real time it arrived.
type heardSummary struct {
	s  *summary.Summary
	at time.Time
}

// summaryTap subscribes to the sensor's summaries on the broker (QoS 1,
// clean session) and keeps the first copy of each sequence number.
type summaryTap struct {
	mu    sync.Mutex
	bySeq map[uint64]heardSummary
	dupes int
	bad   []string
}

func tapSummaries(t *testing.T, up *uplinkLab) *summaryTap {
	t.Helper()
	tap := &summaryTap{bySeq: map[uint64]heardSummary{}}
	o := mqtt.NewClientOptions().AddBroker(up.broker).SetClientID("drill-tap").SetCleanSession(true).
		SetAutoReconnect(false).SetOrderMatters(false).
		SetCustomOpenConnectionFn(func(u *url.URL, _ mqtt.ClientOptions) (net.Conn, error) {
			return dialIn(up.ns, u.Host)
		})
	c := mqtt.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("the drill's subscriber: connect: %v", tok.Error())
	}
	tok := c.Subscribe("peerwatch/drill/summary", 1, func(_ mqtt.Client, m mqtt.Message) {
		at := time.Now()
		s, err := summary.Decode(m.Payload(), summary.Limits{})
		tap.mu.Lock()
		defer tap.mu.Unlock()
		switch {
		case err != nil:
			tap.bad = append(tap.bad, err.Error())
		case tap.bySeq[s.Seq].s != nil:
			tap.dupes++
		default:
			tap.bySeq[s.Seq] = heardSummary{s, at}
		}
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("the drill's subscriber: subscribe: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return tap
}

func (tap *summaryTap) sorted() []heardSummary {
	tap.mu.Lock()
	defer tap.mu.Unlock()
	out := make([]heardSummary, 0, len(tap.bySeq))
	for _, h := range tap.bySeq {
		out = append(out, h)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].s.Seq < out[j].s.Seq })
	return out
}

// collectorSensor is collectord's view of the drill's sensor, with the
// sensor's rejects by reason.
type collectorSensor struct {
	collectorView
	Rejects map[string]uint64
}

func readCollectorSensor(up *uplinkLab) (collectorSensor, error) {
	var cs collectorSensor
	var err error
	v, err := readCollector(up.collector, up.collectURL)
	if err != nil {
		return cs, err
	}
	cs.collectorView = v
	var sensors struct {
		Sensors []struct {
			ID      string            `json:"id"`
			Rejects map[string]uint64 `json:"rejects"`
		} `json:"sensors"`
	}
	if err := getJSONWith(up.collector, up.collectURL+"/api/v1/sensors", &sensors); err != nil {
		return cs, err
	}
	for _, s := range sensors.Sensors {
		if s.ID == "drill" {
			cs.Rejects = s.Rejects
		}
	}
	return cs, nil
}

// TestNetnsDrillClock steps sensord's wall clock under traffic, with its
// store and an uplink to collectord over a real mosquitto: +1 h, back
// (−1 h), −1 h more, first while it runs, then across restarts (stopped,
// stepped, started). The step is an offset read from a file by a sensord
// built with -tags drillclock (sensor/wallclock): the host's clock is not
// touched, and only sensord's wall clock jumps, not its monotonic clock,
// as in a real step. Each phase lasts DRILL_CLOCK_DRAINS drains (5; 30 for
// the record).
//
// Checked: every summary has End ≥ Start and a length near the drain
// interval, and its End is the real time plus the offset of its phase;
// sequence numbers 1…N, once each; stored == sent, at the raw level and
// in the 1-minute and 1-hour rollups (which hold no window beyond what the
// steps explain); collectord refuses (reason clock) exactly the summaries
// of the phases when the sensor was an hour ahead (more than its 5-minute
// skew limit), which then are gaps in its sequence numbers, and its total
// is exactly the packets of the others.
func TestNetnsDrillClock(t *testing.T) {
	l := newLab(t)
	r := newReport(t, "clock")
	hold := envInt(t, "DRILL_CLOCK_DRAINS", 5)
	l.sensord = drillClockSensord(t)
	offsetFile := filepath.Join(l.dir, "wallclock-offset")
	t.Setenv(wallclock.OffsetFileEnv, offsetFile) // sensord inherits it
	offset := time.Duration(0)
	setOffset := func(d time.Duration) {
		t.Helper()
		must(t, os.WriteFile(offsetFile+".tmp", []byte(d.String()+"\n"), 0o644))
		must(t, os.Rename(offsetFile+".tmp", offsetFile))
		offset = d
	}
	setOffset(0)

	up := newUplinkLab(t, l)
	tap := tapSummaries(t, up)
	cfg := l.config(filepath.Join(l.dir, "data"), "uplink:\n  broker: "+up.broker+"\n")
	began := time.Now()

	// clockAt checks that sensord's API tells the time with the offset.
	clockAt := func() {
		t.Helper()
		poll(t, 10*time.Second, fmt.Sprintf("sensord's clock at %s", offset), func() (bool, error) {
			st, err := l.status()
			if err != nil {
				return false, err
			}
			d := st.Now.Sub(time.Now().Add(offset))
			return d > -5*time.Second && d < 5*time.Second, fmt.Errorf("its now is %s, want %s", st.Now, time.Now().Add(offset))
		})
	}
	connected := func() {
		t.Helper()
		poll(t, 60*time.Second, "uplink connected", func() (bool, error) {
			st, err := l.status()
			return err == nil && st.Uplink.State == "connected", err
		})
	}
	p := l.start(cfg)
	l.waitAttached(p, 60*time.Second)
	logHas(t, p.log, "drillclock build")
	tr := l.traffic(envInt(t, "DRILL_RATE", 2000))
	connected()

	var steps []string
	// While it runs: 0, +1 h, back to 0, −1 h.
	for _, off := range []time.Duration{0, time.Hour, 0, -time.Hour} {
		setOffset(off)
		clockAt()
		l.waitDrains(hold, 60*time.Second)
		steps = append(steps, "run:"+off.String())
	}
	// Across restarts: stopped at −1 h, started at +1 h; killed (-9),
	// back to 0; stopped, −1 h.
	for i, off := range []time.Duration{time.Hour, 0, -time.Hour} {
		if i == 1 {
			p.kill9(t) // the interval it was counting is recovered at the start
		} else {
			p.stop(t)
		}
		setOffset(off)
		p = l.start(cfg)
		l.waitAttached(p, 60*time.Second)
		clockAt()
		connected()
		l.waitDrains(hold, 60*time.Second)
		steps = append(steps, map[bool]string{true: "kill9:", false: "restart:"}[i == 1]+off.String())
	}
	r.set("steps", strings.Join(steps, ","))

	tr.end()
	sent := tr.sent.Load()
	stored := l.settle(sent, 30*time.Second)
	r.set("sent", sent)
	r.set("stored", stored)
	poll(t, 60*time.Second, "outbox empty", func() (bool, error) {
		st, err := l.status()
		return err == nil && st.Uplink.Outbox == 0, err
	})
	// The store's rollups: exact, and no window beyond the steps.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	now := time.Now()
	from, to := began.Add(-2*time.Hour).Truncate(time.Hour), now.Add(2*time.Hour)
	for _, level := range []string{"interval", "1m", "1h"} {
		step := map[string]time.Duration{"interval": time.Second, "1m": time.Minute, "1h": time.Hour}[level]
		var sum uint64
		var records int
		// at most 10,000 points a request
		for f := from; f.Before(to); f = f.Add(9000 * step) {
			tt := f.Add(9000 * step)
			if tt.After(to) {
				tt = to
			}
			s, err := l.client.Series(ctx, "", level, f, tt)
			if err != nil {
				t.Fatalf("series %s from %s: %v", level, f, err)
			}
			for _, pt := range s.Points {
				sum += pt.PacketsIn + pt.PacketsOut
				records++
				end := pt.T.Add(time.Duration(pt.Seconds * float64(time.Second)))
				slack := time.Hour + max(step, time.Minute)
				if pt.T.Before(began.Add(-slack)) || end.After(now.Add(slack)) {
					t.Errorf("%s record %s to %s: outside the run (%s to %s) and its steps (±1h)", level, pt.T, end, began, now)
				}
				if pt.Seconds < 0 {
					t.Errorf("%s record at %s has a negative length %.3fs", level, pt.T, pt.Seconds)
				}
			}
		}
		r.set("store_"+level, fmt.Sprintf("%d/%d", sum, records))
		if sum != sent {
			t.Errorf("the store's %s level holds %d remote packets in %d records, %d were sent", level, sum, records, sent)
		}
	}

	// sensord stops here, so that the summaries are final: it publishes one
	// every drain, and gap repair publishes again what the collector asks
	// for.
	p.stop(t)
	var cs collectorSensor
	poll(t, 30*time.Second, "the collector and the drill's subscriber at the last summary", func() (bool, error) {
		var err error
		if cs, err = readCollectorSensor(up); err != nil {
			return false, err
		}
		heard := tap.sorted()
		var last uint64
		if len(heard) > 0 {
			last = heard[len(heard)-1].s.Seq
		}
		return last == cs.LastSeq && uint64(len(heard)) == last && cs.Summaries+cs.Missing == cs.LastSeq,
			fmt.Errorf("subscriber: %d summaries, last %d; collector: %+v", len(heard), last, cs)
	})

	poll(t, 30*time.Second, "every packet sent in the summaries at the drill's subscriber", func() (bool, error) {
		var n uint64
		for _, h := range tap.sorted() {
			n += h.s.Remote.Packets[0] + h.s.Remote.Packets[1]
		}
		return n >= sent, fmt.Errorf("%d of %d", n, sent)
	})

	// The summaries: contiguous sequence numbers, sane intervals, each End
	// at one of the phases' offsets from the real time it arrived.
	heard := tap.sorted()
	var total, ahead, aheadPackets, acceptedPackets uint64
	var minLen, maxLen time.Duration = time.Hour, 0
	phases := map[string]int{}
	for i, h := range heard {
		s := h.s
		if s.Seq != uint64(i+1) {
			t.Errorf("summary %d has seq %d: sequence numbers are not 1…%d", i+1, s.Seq, len(heard))
			break
		}
		n := s.Remote.Packets[0] + s.Remote.Packets[1]
		total += n
		length := s.End.Sub(s.Start)
		minLen, maxLen = min(minLen, length), max(maxLen, length)
		if length < 0 || length > 10*time.Second {
			t.Errorf("seq %d: interval %s to %s is %s long (drain 1 s)", s.Seq, s.Start.Format(time.RFC3339Nano), s.End.Format(time.RFC3339Nano), length)
		}
		skew := s.End.Sub(h.at)
		switch {
		case skew > time.Hour-time.Minute && skew < time.Hour+time.Minute:
			phases["+1h"]++
			ahead++
			aheadPackets += n
		case skew > -time.Minute && skew < time.Minute:
			phases["0"]++
			acceptedPackets += n
		case skew > -time.Hour-time.Minute && skew < -time.Hour+time.Minute:
			phases["-1h"]++
			acceptedPackets += n
		default:
			t.Errorf("seq %d ends %s after it arrived: not one of the steps", s.Seq, skew)
		}
	}
	tap.mu.Lock()
	dupes := tap.dupes
	r.set("summaries", len(heard))
	r.set("dupes_heard", dupes)
	if len(tap.bad) > 0 {
		t.Errorf("the drill's subscriber could not decode %d summaries: %s", len(tap.bad), tap.bad[0])
	}
	tap.mu.Unlock()
	r.set("by_offset", fmt.Sprintf("+1h:%d/0:%d/-1h:%d", phases["+1h"], phases["0"], phases["-1h"]))
	r.set("interval_len", fmt.Sprintf("%.2f-%.2fs", minLen.Seconds(), maxLen.Seconds()))
	r.set("published_packets", total)
	if total != sent {
		t.Errorf("the summaries published hold %d remote packets, %d were sent", total, sent)
	}
	if phases["+1h"] == 0 || phases["0"] == 0 || phases["-1h"] == 0 {
		t.Errorf("summaries by offset %v: want some at each", phases)
	}

	// The collector: it refuses what ends more than its skew limit after
	// its clock (the phases at +1 h), and holds exactly the rest. A
	// summary published again (gap repair, or QoS 1 after a restart) is
	// refused again while it is ahead.
	r.set("collector_packets", cs.Packets)
	r.set("collector_summaries", cs.Summaries)
	r.set("collector_refused_clock", cs.Rejects["clock"])
	r.set("collector_missing", cs.Missing)
	r.set("refused_packets", aheadPackets)
	if cs.Packets != acceptedPackets || cs.Summaries != uint64(len(heard))-ahead || cs.Missing != ahead ||
		cs.Rejects["clock"] < ahead || cs.Rejects["clock"] > ahead+uint64(dupes) {
		t.Errorf("collector: %+v; want %d packets in %d summaries, %d missing, %d to %d refused (clock); sent %d, %d of them in the summaries at +1h",
			cs, acceptedPackets, uint64(len(heard))-ahead, ahead, ahead, ahead+uint64(dupes), sent, aheadPackets)
	}
}

// logHas fails unless the log file holds s.
func logHas(t *testing.T, path, s string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), s) {
		t.Fatalf("%s does not say %q", path, s)
	}
}
