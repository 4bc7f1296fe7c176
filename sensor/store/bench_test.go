package store

import (
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/peerwatch/peerwatch/internal/testsum"
	"github.com/peerwatch/peerwatch/sensor/summary"
)

// BenchmarkPut stores 10 s intervals of 1000 prefixes each, from the start
// of the last hour on; file-B/op is what each Put appends to the file on average
// (journal, raw record, meta records, and the rollup records of the
// windows it closes: a 1m record every sixth Put, a 1h record every 360th).
// Run it with -benchtime 360x for one hour of Puts.
func BenchmarkPut(b *testing.B) {
	path := filepath.Join(b.TempDir(), "store.db")
	st, err := Open(path, Options{MaxSize: 1 << 40, Sync: SyncNever}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	// The hour before the current one: every record within its retention.
	base := time.Now().UTC().Truncate(time.Hour).Add(-time.Hour)
	ivs := make([]*summary.Summary, 64)
	for i := range ivs {
		ivs[i] = testsum.Big("pw-bench", 0, base, uint64(i), 1000)
	}
	raw, _ := json.Marshal(ivs[0])
	b.Logf("a summary of 1000 prefixes is %d bytes of JSON", len(raw))
	size0 := st.fileSize()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		s := *ivs[i%len(ivs)]
		s.Seq = 0
		s.Start, s.End = base.Add(time.Duration(i)*10*time.Second), base.Add(time.Duration(i+1)*10*time.Second)
		if _, err := st.Put(&s, Origin{Instance: 1, Generation: uint64(i + 1)}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(st.fileSize()-size0)/float64(b.N), "file-B/op")
}
