package summary_test

import (
	"bytes"
	"encoding/gob"
	"fmt"
	"testing"
	"time"

	"github.com/peerwatch/peerwatch/internal/testsum"
	"github.com/peerwatch/peerwatch/sensor/summary"
)

// The wire formats compared on a summary of 1000 prefixes
// (docs/benchmarks.md): JSON, gzip-compressed JSON, our binary encoding, and
// the standard library's gob as a reference. payload-B is the size of one
// message.
//
//	go test -run '^$' -bench 'Encode|Decode' -benchmem ./sensor/summary/

func bigSummary() *summary.Summary {
	return testsum.Big("pw-bench", 1, time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC), 1, 1000)
}

func BenchmarkEncode(b *testing.B) {
	s := bigSummary()
	b.Run("json-gzip", func(b *testing.B) {
		var n int
		for b.Loop() {
			p, err := summary.Encode(s, summary.EncodeOptions{})
			if err != nil {
				b.Fatal(err)
			}
			n = len(p)
		}
		b.ReportMetric(float64(n), "payload-B")
	})
	b.Run("json", func(b *testing.B) {
		var n int
		for b.Loop() {
			p, err := summary.Encode(s, summary.EncodeOptions{CompressAbove: 1 << 30, MaxBytes: 1 << 30})
			if err != nil {
				b.Fatal(err)
			}
			n = len(p)
		}
		b.ReportMetric(float64(n), "payload-B")
	})
	b.Run("binary", func(b *testing.B) {
		var n int
		for b.Loop() {
			p, err := summary.Encode(s, summary.EncodeOptions{Format: summary.FormatBinary})
			if err != nil {
				b.Fatal(err)
			}
			n = len(p)
		}
		b.ReportMetric(float64(n), "payload-B")
	})
	b.Run("gob", func(b *testing.B) {
		var n int
		for b.Loop() {
			var buf bytes.Buffer
			if err := gob.NewEncoder(&buf).Encode(s); err != nil {
				b.Fatal(err)
			}
			n = buf.Len()
		}
		b.ReportMetric(float64(n), "payload-B")
	})
}

func BenchmarkDecode(b *testing.B) {
	s := bigSummary()
	for _, c := range []struct {
		name     string
		compress int
		format   summary.Format
	}{{"json-gzip", 0, summary.FormatJSON}, {"json", 1 << 30, summary.FormatJSON}, {"binary", 0, summary.FormatBinary}} {
		p, err := summary.Encode(s, summary.EncodeOptions{CompressAbove: c.compress, MaxBytes: 1 << 30, Format: c.format})
		if err != nil {
			b.Fatal(err)
		}
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := summary.Decode(p, summary.Limits{}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(p)), "payload-B")
		})
	}
	// gob without the checks Decode makes: a lower bound for a binary
	// encoding.
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(s); err != nil {
		b.Fatal(err)
	}
	p := buf.Bytes()
	b.Run("gob", func(b *testing.B) {
		for b.Loop() {
			var out summary.Summary
			if err := gob.NewDecoder(bytes.NewReader(p)).Decode(&out); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(len(p)), "payload-B")
	})
}

// BenchmarkRollupAdd adds summaries of 1000 prefixes (out of 4000, 200
// countries and up to 2000 ASes each) to one window's Rollup, as the
// collector does with every summary; it keeps 1000 prefixes, so that about
// every other summary prunes it.
//
//	go test -run '^$' -bench RollupAdd ./sensor/summary/
func BenchmarkRollupAdd(b *testing.B) {
	end := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	var sums []*summary.Summary
	for i := range 64 {
		sums = append(sums, testsum.Big(fmt.Sprintf("pw-%03d", i), 1, end, uint64(i), 1000))
	}
	r := summary.Rollup{MaxPrefixes: 1000}
	for i := 0; b.Loop(); i++ {
		r.Add(sums[i%len(sums)])
	}
}
