package collector_test

import (
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/peerwatch/peerwatch/internal/testsum"
	"github.com/peerwatch/peerwatch/sensor/collector"
	"github.com/peerwatch/peerwatch/sensor/summary"
)

// BenchmarkFleet measures, at 10,000 sensors of testsum.Big (200 countries
// and 1000 ASes each, the top 100 of them in the per-sensor views), one
// summary per sensor in one minute:
//
//   - window-MB: the heap that minute window takes (the fleet-wide rollup
//     and the per-sensor views), after a garbage collection;
//   - seal-ms: sealing the second minute into the hour and the day, which
//     hold the first (Handle of a message 8 minutes later, which runs the
//     seal job), and checkpoint-ms: a full Checkpoint;
//   - max-lock-wait-ms: the longest any other caller waited for the
//     collector's lock during either, as a prober goroutine calling
//     ViewsFrom every millisecond sees it. It is a metric, not a test: on
//     a shared machine a probe may also wait for a CPU.
//
// Each iteration builds a new fleet; -benchtime 1x is enough.
//
//	go test -run '^$' -bench Fleet -benchtime 1x ./sensor/collector/
func BenchmarkFleet(b *testing.B) {
	const sensors = 10_000
	end := time.Now().UTC().Truncate(time.Hour).Add(30 * time.Second)
	var bases []*summary.Summary
	for i := range 100 {
		bases = append(bases, testsum.Big("base", 1, end, uint64(i), 1000))
	}
	var windowMB, sealMS, checkpointMS, lockMS float64
	for b.Loop() {
		b.StopTimer()
		c := collector.New(collector.Options{}, nil)
		before := heapBytes()
		// Two minutes: sealing the first into an empty hour shares its
		// views; the second is merged.
		for m := range 2 {
			at := end.Add(time.Duration(m) * time.Minute)
			for i := range sensors {
				// 100 distinct summaries, each sent by 100 sensors:
				// testsum.Big of each of 10,000 sensors took minutes.
				id := fmt.Sprintf("pw-%05d", i)
				s := *bases[i%len(bases)]
				s.Sensor, s.Seq, s.Start, s.End = id, uint64(m+1), at.Add(-testsum.Interval), at
				p, err := summary.Encode(&s, summary.EncodeOptions{Format: summary.FormatBinary})
				if err != nil {
					b.Fatal(err)
				}
				if err := c.Handle("peerwatch/"+id+"/summary", p, at); err != nil {
					b.Fatal(err)
				}
			}
			if m == 0 {
				windowMB = float64(heapBytes()-before) / 1e6
				// Seal the first minute.
				if err := c.Handle("peerwatch/pw-00000/status", []byte(`{"state":"online"}`), at.Add(6*time.Minute)); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.StartTimer()

		probe := startLockProbe(c)
		start := time.Now()
		if err := c.Handle("peerwatch/pw-00000/status", []byte(`{"state":"online"}`), end.Add(8*time.Minute)); err != nil {
			b.Fatal(err)
		}
		sealMS = float64(time.Since(start).Microseconds()) / 1e3
		start = time.Now()
		cp := c.Checkpoint(true)
		checkpointMS = float64(time.Since(start).Microseconds()) / 1e3
		lockMS = float64(probe.stop().Microseconds()) / 1e3

		// Exact: each sensor's counters of its countries, in the hour,
		// are what it sent (the same twice).
		b.StopTimer()
		sum := *bases[42]
		sum.Merge(bases[42])
		for _, cc := range sum.Countries[:3] {
			seen, _ := c.WhoSeesAt("1h", collector.SeriesKey{By: collector.ByCountry, Country: cc.Country}, end.Truncate(time.Hour), end.Add(time.Hour))
			found := false
			for _, s := range seen {
				if s.Sensor == "pw-00042" {
					found = s.Counters == cc.Counters
				}
			}
			if !found {
				b.Fatalf("the hour's view of pw-00042 in %q is not what it sent", cc.Country)
			}
		}
		if len(cp.Windows) != 4 {
			b.Fatalf("checkpoint of %d windows, want 4", len(cp.Windows))
		}
		b.StartTimer()
	}
	b.ReportMetric(windowMB, "window-MB")
	b.ReportMetric(sealMS, "seal-ms")
	b.ReportMetric(checkpointMS, "checkpoint-ms")
	b.ReportMetric(lockMS, "max-lock-wait-ms")
}

func heapBytes() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// lockProbe takes the collector's lock (through ViewsFrom, which does not
// allocate: an allocation during a garbage collection may be made to help
// it, and that is not the lock's wait) every millisecond and keeps the
// longest wait.
type lockProbe struct {
	done    chan struct{}
	wg      sync.WaitGroup
	longest time.Duration
}

func startLockProbe(c *collector.Collector) *lockProbe {
	p := &lockProbe{done: make(chan struct{})}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			select {
			case <-p.done:
				return
			case <-time.After(time.Millisecond):
			}
			start := time.Now()
			c.ViewsFrom("1m")
			p.longest = max(p.longest, time.Since(start))
		}
	}()
	return p
}

func (p *lockProbe) stop() time.Duration {
	close(p.done)
	p.wg.Wait()
	return p.longest
}
