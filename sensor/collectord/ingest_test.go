package collectord

import (
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/peerwatch/peerwatch/internal/testsum"
	"github.com/peerwatch/peerwatch/internal/testutil"
	"github.com/peerwatch/peerwatch/sensor/summary"
	"github.com/peerwatch/peerwatch/sensor/uplink"
)

// ingestLoad is b.N summaries of 1000 prefixes from a fleet of sensors,
// encoded beforehand: the payloads, their topics, and the fleet's totals.
type ingestLoad struct {
	topics   []string
	payloads [][]byte
	bytes    int
}

func makeIngestLoad(tb testing.TB, n, sensors int, format summary.Format) *ingestLoad {
	tb.Helper()
	perSensor := (n + sensors - 1) / sensors
	// Every summary ends in the last perSensor intervals, so none is in
	// the future and all are kept by the minute level.
	end := time.Now().UTC().Truncate(testsum.Interval)
	bases := make([]*summary.Summary, sensors)
	for i := range bases {
		bases[i] = testsum.Big(fmt.Sprintf("pw-%04d", i), 0, end, uint64(i), 1000)
	}
	l := &ingestLoad{}
	for i := range n {
		sensor, seq := i%sensors, uint64(i/sensors+1)
		s := *bases[sensor]
		s.Seq = seq
		s.End = end.Add(-time.Duration(uint64(perSensor)-seq) * testsum.Interval)
		s.Start = s.End.Add(-testsum.Interval)
		p, err := summary.Encode(&s, summary.EncodeOptions{Format: format})
		if err != nil {
			tb.Fatal(err)
		}
		l.topics = append(l.topics, uplink.Topic("", s.Sensor, uplink.KindSummary))
		l.payloads = append(l.payloads, p)
		l.bytes += len(p)
	}
	return l
}

// publish sends the load over clients connections to the broker at addr,
// QoS 1, and waits for every PUBACK.
func (l *ingestLoad) publish(tb testing.TB, addr string, clients int) {
	tb.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tcp://" + addr).
				SetClientID(fmt.Sprintf("ingest-%d", c)).SetAutoReconnect(false).SetWriteTimeout(30 * time.Second))
			if tok := cl.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
				errs <- fmt.Errorf("client %d: connect: %v", c, tok.Error())
				return
			}
			defer cl.Disconnect(250)
			var toks []mqtt.Token
			for i := c; i < len(l.payloads); i += clients {
				toks = append(toks, cl.Publish(l.topics[i], 1, false, l.payloads[i]))
			}
			for _, tok := range toks {
				if !tok.WaitTimeout(time.Minute) || tok.Error() != nil {
					errs <- fmt.Errorf("client %d: publish: %v", c, tok.Error())
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		tb.Fatal(err)
	}
}

// BenchmarkIngest measures the summaries per second that one collectord
// takes in from 100 sensors over MQTT, journaled in its store (fsync per
// group commit) before each is acknowledged, with the publishers in the
// same process on the same cores (docs/benchmarks.md):
//
//	go test -run '^$' -bench Ingest -benchtime 3000x ./sensor/collectord/
func BenchmarkIngest(b *testing.B) {
	for _, c := range []struct {
		name      string
		format    summary.Format
		mosquitto bool
	}{
		{"embedded/binary", summary.FormatBinary, false},
		{"embedded/json-gzip", summary.FormatJSON, false},
		{"mosquitto/binary", summary.FormatBinary, true},
	} {
		b.Run(c.name, func(b *testing.B) {
			load := makeIngestLoad(b, b.N, 100, c.format)
			cfg := Config{DataDir: b.TempDir()}
			var addr string
			if c.mosquitto {
				addr = testutil.Mosquitto(b, "max_queued_messages 1000000\nmax_inflight_messages 0\n")
				cfg.Broker, cfg.ClientID = "tcp://"+addr, "collectord-bench"
			} else {
				addr = freeAddr(b)
				cfg.EmbeddedBroker = addr
			}
			d, _, _ := runDaemon(b, cfg)
			var before syscall.Rusage
			_ = syscall.Getrusage(syscall.RUSAGE_SELF, &before)
			b.ResetTimer()
			load.publish(b, addr, 4)
			waitFor(b, "every summary at the collector", 10*time.Minute, func() bool { return accepted(d) == b.N })
			b.StopTimer()
			var after syscall.Rusage
			_ = syscall.Getrusage(syscall.RUSAGE_SELF, &after)
			cpu := time.Duration(after.Utime.Nano() + after.Stime.Nano() - before.Utime.Nano() - before.Stime.Nano())
			st, _ := d.StoreStats()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "summaries/s")
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-us/summary")
			b.ReportMetric(float64(st.Journaled)/float64(max(st.JournalBatches, 1)), "summaries/fsync")
			b.ReportMetric(float64(load.bytes)/float64(b.N), "payload-B")
		})
	}
}

// accepted is the number of summaries the collector took.
func accepted(d *Daemon) int {
	n := 0
	for _, s := range d.Collector().Sensors(time.Now()) {
		n += int(s.Summaries)
	}
	return n
}
