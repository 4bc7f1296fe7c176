package collector_test

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/peerwatch/peerwatch/internal/testsum"
	"github.com/peerwatch/peerwatch/sensor/collector"
	"github.com/peerwatch/peerwatch/sensor/summary"
)

// BenchmarkHandle feeds one collector the summaries of 100 sensors, 1000
// prefixes each, as they arrive: every sensor's next interval in turn. The
// payloads are encoded beforehand, so this is the collector's share of the
// ingest: decoding, checks, dedupe and the merge into each level.
//
// cpu-us/summary is the process's CPU time (user and system, the garbage
// collector's included) per summary.
//
//	go test -run '^$' -bench Handle ./sensor/collector/
func BenchmarkHandle(b *testing.B) {
	b.Run("binary", func(b *testing.B) { benchmarkHandle(b, summary.FormatBinary) })
	b.Run("json-gzip", func(b *testing.B) { benchmarkHandle(b, summary.FormatJSON) })
}

func benchmarkHandle(b *testing.B, format summary.Format) {
	const sensors, distinct = 100, 8
	end := time.Now().UTC().Truncate(time.Hour)
	// distinct payloads per sensor, re-stamped with a new seq as the
	// benchmark goes; re-encoding is outside the timed loop.
	payloads := make([][]byte, 0, sensors*distinct)
	var bytes int
	for i := range sensors * distinct {
		s := testsum.Big(fmt.Sprintf("pw-%03d", i%sensors), uint64(i/sensors+1), end, uint64(i), 1000)
		p, err := summary.Encode(s, summary.EncodeOptions{Format: format})
		if err != nil {
			b.Fatal(err)
		}
		payloads = append(payloads, p)
		bytes += len(p)
	}
	b.ReportMetric(float64(bytes)/float64(len(payloads)), "payload-B")
	var c *collector.Collector
	// CPU time as well as wall time: on a shared machine the wall time
	// of a run counts the other processes' turns too.
	var before syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	for i := 0; b.Loop(); i++ {
		if i%len(payloads) == 0 {
			// A fresh collector when the payloads run out, so that each
			// one is new to it (not a duplicate).
			b.StopTimer()
			c = collector.New(collector.Options{}, nil)
			b.StartTimer()
		}
		p := payloads[i%len(payloads)]
		if err := c.Handle(fmt.Sprintf("peerwatch/pw-%03d/summary", i%sensors), p, end); err != nil {
			b.Fatal(err)
		}
	}
	var after syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &after)
	cpu := after.Utime.Nano() + after.Stime.Nano() - before.Utime.Nano() - before.Stime.Nano()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "summaries/s")
	b.ReportMetric(float64(cpu)/1e3/float64(b.N), "cpu-us/summary")
}
