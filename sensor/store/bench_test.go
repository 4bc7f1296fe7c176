package store

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/peerwatch/peerwatch/sensor/summary"
	"github.com/peerwatch/peerwatch/sensor/traffic"
)

// bigSummary is an interval of a busy link: n remote prefixes out of a
// larger population, 200 countries, 2000 ASes.
func bigSummary(end time.Time, seed uint64, n int) *summary.Summary {
	rng := rand.New(rand.NewPCG(seed, 3))
	s := &summary.Summary{Schema: summary.SchemaVersion, Sensor: "pw-bench", Start: end.Add(-10 * time.Second).UTC(), End: end.UTC()}
	countries := map[string]*summary.CountryCount{}
	ases := map[uint32]*summary.ASCount{}
	for _, k := range rng.Perm(4 * n)[:n] {
		var c traffic.Counters
		c.Packets = [2]uint64{rng.Uint64N(1e6) + 1, rng.Uint64N(1e6)}
		c.Bytes = [2]uint64{c.Packets[0] * 700, c.Packets[1] * 300}
		c.Class[traffic.TCP] = c.Total()
		country := fmt.Sprintf("%c%c", 'A'+k%20, 'A'+k/20%10)
		asn := uint32(64512 + k%2000)
		s.Prefixes = append(s.Prefixes, summary.PrefixCount{
			Prefix:  netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(k >> 16), byte(k >> 8), byte(k), 0}), 24),
			Country: country, ASN: asn, ASName: fmt.Sprintf("AS-NAME-%d", asn), Counters: c,
		})
		s.Remote.Add(c)
		if countries[country] == nil {
			countries[country] = &summary.CountryCount{Country: country}
		}
		countries[country].Add(c)
		if ases[asn] == nil {
			ases[asn] = &summary.ASCount{ASN: asn, ASName: fmt.Sprintf("AS-NAME-%d", asn)}
		}
		ases[asn].Add(c)
	}
	for _, c := range countries {
		s.Countries = append(s.Countries, *c)
	}
	for _, a := range ases {
		s.ASes = append(s.ASes, *a)
	}
	s.Globals.Seen = s.Remote.Total()
	s.Sort()
	return s
}

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
		ivs[i] = bigSummary(base, uint64(i), 1000)
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
