package fleetstore

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/peerwatch/peerwatch/sensor/collector"
	"github.com/peerwatch/peerwatch/sensor/store"
	"github.com/peerwatch/peerwatch/sensor/summary"
	"github.com/peerwatch/peerwatch/sensor/traffic"
)

// benchSummary is a summary of 1000 remote prefixes over 50 countries and
// 200 ASes; the sensors share half of their prefixes.
func benchSummary(sensor int, seq uint64, end time.Time) *summary.Summary {
	s := &summary.Summary{Schema: summary.SchemaVersion, Sensor: fmt.Sprintf("sensor-%03d", sensor), Seq: seq, Start: end.Add(-10 * time.Second), End: end}
	countries := map[string]traffic.Counters{}
	ases := map[uint32]traffic.Counters{}
	for i := range 1000 {
		n := i
		if i >= 500 {
			n = sensor*1000 + i // this sensor's own
		}
		k := uint64(n%251) + seq%7 + 1
		c := traffic.Counters{Packets: [2]uint64{k * 10, k * 7}, Bytes: [2]uint64{k * 9000, k * 4000}}
		c.Class[traffic.TCP], c.Class[traffic.UDP] = k*12, k*5
		cc := fmt.Sprintf("C%02d", n%50)
		asn := uint32(64512 + n%200)
		s.Prefixes = append(s.Prefixes, summary.PrefixCount{
			Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(1 + n>>16), byte(n >> 8), byte(n), 0}), 24), Country: cc, ASN: asn, Counters: c})
		s.Remote.Add(c)
		x := countries[cc]
		x.Add(c)
		countries[cc] = x
		y := ases[asn]
		y.Add(c)
		ases[asn] = y
	}
	for cc, c := range countries {
		s.Countries = append(s.Countries, summary.CountryCount{Country: cc, Counters: c})
	}
	for asn, c := range ases {
		s.ASes = append(s.ASes, summary.ASCount{ASN: asn, Counters: c})
	}
	s.Globals.Seen = s.Remote.Total()
	s.Sort()
	return s
}

// BenchmarkStore1000 measures what 1000 summaries of 1000 prefixes cost
// the store: 100 sensors, 10 s intervals, so 100 s of a fleet's traffic,
// flushed every 10 s as collectord does. Per op: 1000 summaries handled
// and journaled, 10 flushes, a close. It reports the payload bytes (each
// is journaled once), the time of collector.Handle (decoding and merging,
// not the store's) and of the journal write per summary, the mean flush
// time and checkpoint bytes, and the file size at the end.
// PEERWATCH_BENCH_DIR puts the store on another disk than the temp dir.
func BenchmarkStore1000(b *testing.B) {
	const sensors, perSensor = 100, 10
	end0 := time.Now().UTC().Truncate(time.Minute).Add(-time.Hour)
	payloads := make([][]byte, 0, sensors*perSensor)
	for seq := uint64(1); seq <= perSensor; seq++ {
		for i := range sensors {
			payloads = append(payloads, payload(b, benchSummary(i, seq, end0.Add(time.Duration(seq)*10*time.Second))))
		}
	}
	var payloadBytes int
	for _, p := range payloads {
		payloadBytes += len(p)
	}
	for _, policy := range []store.SyncPolicy{store.SyncAlways, store.SyncNever} {
		b.Run("sync="+policy.String(), func(b *testing.B) {
			var handleTook, journalTook, flushTook time.Duration
			var flushBytes, fileSize int64
			flushes := 0
			for b.Loop() {
				dir := b.TempDir()
				if d := os.Getenv("PEERWATCH_BENCH_DIR"); d != "" {
					var err error
					if dir, err = os.MkdirTemp(d, "bench"); err != nil {
						b.Fatal(err)
					}
					defer os.RemoveAll(dir)
				}
				path := filepath.Join(dir, FileName)
				col := collector.New(collector.Options{}, nil)
				st, err := Open(path, col, Options{Sync: policy}, nil)
				if err != nil {
					b.Fatal(err)
				}
				for i, p := range payloads {
					id := fmt.Sprintf("sensor-%03d", i%sensors)
					tp := "peerwatch/" + id + "/summary"
					now := end0.Add(time.Duration(i/sensors+1) * 10 * time.Second)
					t0 := time.Now()
					if err := col.Handle(tp, p, now); err != nil {
						b.Fatal(err)
					}
					handleTook += time.Since(t0)
					t0 = time.Now()
					if err := st.Journal(tp, p, now); err != nil {
						b.Fatal(err)
					}
					journalTook += time.Since(t0)
					if (i+1)%sensors == 0 { // every 10 s of traffic
						t0 := time.Now()
						if err := st.Flush(); err != nil {
							b.Fatal(err)
						}
						flushTook += time.Since(t0)
						flushBytes += st.Stats().LastFlushBytes
						flushes++
					}
				}
				fileSize = st.Stats().FileSize
				if err := st.Close(); err != nil {
					b.Fatal(err)
				}
			}
			n := float64(b.N)
			b.ReportMetric(float64(payloadBytes)/1000, "payload-B/summary")
			b.ReportMetric(float64(handleTook.Microseconds())/n/1000, "handle-µs/summary")
			b.ReportMetric(float64(journalTook.Microseconds())/n/1000, "journal-µs/summary")
			b.ReportMetric(float64(flushTook.Milliseconds())/float64(flushes), "ms/flush")
			b.ReportMetric(float64(flushBytes)/float64(flushes), "B/flush")
			b.ReportMetric(float64(fileSize), "file-B")
		})
	}
}
