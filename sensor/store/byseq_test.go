package store

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/peerwatch/peerwatch/sensor/summary"
)

// TestIntervalBySeq: the raw record found by seq re-encodes to exactly the
// payload the uplink was first given (outbox_dropped included, and the
// truncation of a size cap), before and after a reopen (the index is
// rebuilt); seqs not held are ErrNoData.
func TestIntervalBySeq(t *testing.T) {
	st, path := openTest(t, Options{MaxOutbox: 3})
	end := time.Now().Add(-time.Hour).Truncate(10 * time.Second)
	type sent struct{ json, binary, capped []byte }
	first := map[uint64]sent{}
	encode := func(s *summary.Summary, o summary.EncodeOptions) []byte {
		b, err := summary.Encode(s, o)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	const n = 40
	for i := range uint64(n) {
		s := makeSummary(t, end.Add(time.Duration(i)*10*time.Second), 10*time.Second, i, 30, 30)
		put(t, st, s, Origin{Instance: 1, Generation: i + 1})
		// The outbox overflows (MaxOutbox 3): later summaries carry
		// outbox_dropped.
		if err := st.Enqueue("peerwatch/pw-test/summary", encode(s, summary.EncodeOptions{Format: summary.FormatBinary}), s.Seq); err != nil {
			t.Fatal(err)
		}
		first[s.Seq] = sent{encode(s, summary.EncodeOptions{Format: summary.FormatJSON}), encode(s, summary.EncodeOptions{Format: summary.FormatBinary}),
			encode(s, summary.EncodeOptions{Format: summary.FormatJSON, MaxBytes: 2000})}
	}
	check := func(st *Store) {
		t.Helper()
		dropped := 0
		for seq, want := range first {
			s, err := st.Interval(seq)
			if err != nil {
				t.Fatalf("seq %d: %v", seq, err)
			}
			if s.OutboxDropped > 0 {
				dropped++
			}
			for _, c := range []struct {
				name string
				got  []byte
				want []byte
			}{
				{"json", encode(s, summary.EncodeOptions{Format: summary.FormatJSON}), want.json},
				{"binary", encode(s, summary.EncodeOptions{Format: summary.FormatBinary}), want.binary},
				{"capped", encode(s, summary.EncodeOptions{Format: summary.FormatJSON, MaxBytes: 2000}), want.capped},
			} {
				if !bytes.Equal(c.got, c.want) {
					t.Fatalf("seq %d %s: the stored record encodes to other bytes than those first sent", seq, c.name)
				}
			}
		}
		if dropped < n-5 {
			t.Errorf("%d records with outbox_dropped, want the test to cover it", dropped)
		}
		for _, seq := range []uint64{0, n + 1, 1 << 40} {
			if _, err := st.Interval(seq); !errors.Is(err, ErrNoData) {
				t.Errorf("seq %d: %v, want ErrNoData", seq, err)
			}
		}
	}
	check(st)
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	check(reopen(t, path, Options{MaxOutbox: 3}))
}
