package store

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/peerwatch/peerwatch/sensor/summary"
)

func enqueue(tb testing.TB, st *Store, seq uint64) {
	tb.Helper()
	if err := st.Enqueue("peerwatch/pw-test/summary", fmt.Appendf(nil, "payload %d\x00\xff", seq), seq); err != nil {
		tb.Fatal(err)
	}
}

func outboxSeqs(tb testing.TB, st *Store, limit int) []uint64 {
	tb.Helper()
	items, err := st.Outbox(limit)
	if err != nil {
		tb.Fatal(err)
	}
	var seqs []uint64
	for _, it := range items {
		if want := fmt.Sprintf("payload %d\x00\xff", it.Seq); string(it.Payload) != want {
			tb.Errorf("item %d: payload %q, want %q", it.Seq, it.Payload, want)
		}
		if it.Topic != "peerwatch/pw-test/summary" || it.Enqueued.IsZero() {
			tb.Errorf("item %d: topic %q, enqueued %v", it.Seq, it.Topic, it.Enqueued)
		}
		seqs = append(seqs, it.Seq)
	}
	return seqs
}

func sameSeqs(tb testing.TB, what string, got []uint64, want ...uint64) {
	tb.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		tb.Errorf("%s: %v, want %v", what, got, want)
	}
}

func TestOutboxOrderAndAck(t *testing.T) {
	st, _ := openTest(t, Options{})
	// Out of order, and across a power of ten (key order is number order).
	for _, seq := range []uint64{9, 10, 3, 100, 11} {
		enqueue(t, st, seq)
	}
	enqueue(t, st, 10) // idempotent
	if n := st.OutboxLen(); n != 5 {
		t.Fatalf("OutboxLen %d, want 5", n)
	}
	sameSeqs(t, "all", outboxSeqs(t, st, 0), 3, 9, 10, 11, 100)
	sameSeqs(t, "limit 2", outboxSeqs(t, st, 2), 3, 9)
	for _, seq := range []uint64{3, 9, 42} {
		if err := st.Ack(seq); err != nil {
			t.Fatal(err)
		}
	}
	sameSeqs(t, "after ack", outboxSeqs(t, st, 0), 10, 11, 100)
	if n := st.OutboxLen(); n != 3 {
		t.Errorf("OutboxLen %d, want 3", n)
	}
	if err := st.Enqueue("t", nil, 0); !errors.Is(err, ErrRefused) {
		t.Errorf("Enqueue seq 0: %v, want ErrRefused", err)
	}
	if err := st.Enqueue("", nil, 5); !errors.Is(err, ErrRefused) {
		t.Errorf("Enqueue empty topic: %v, want ErrRefused", err)
	}
}

func TestOutboxBound(t *testing.T) {
	st, _ := openTest(t, Options{MaxOutbox: 3})
	for seq := uint64(1); seq <= 5; seq++ {
		enqueue(t, st, seq)
	}
	sameSeqs(t, "bounded", outboxSeqs(t, st, 0), 3, 4, 5)
	if got := st.Stats().OutboxDropped; got != 2 {
		t.Errorf("OutboxDropped %d, want 2", got)
	}
	enqueue(t, st, 5) // already there: nothing dropped
	if got := st.Stats().OutboxDropped; got != 2 {
		t.Errorf("OutboxDropped after a repeated Enqueue %d, want 2", got)
	}
	if err := st.Ack(3); err != nil {
		t.Fatal(err)
	}
	enqueue(t, st, 6)
	sameSeqs(t, "after ack", outboxSeqs(t, st, 0), 4, 5, 6)
	if got, n := st.Stats().OutboxDropped, st.OutboxLen(); got != 2 || n != 3 {
		t.Errorf("OutboxDropped %d, OutboxLen %d, want 2 and 3", got, n)
	}
	if err := (Options{MaxOutbox: -1}).Validate(); !errors.Is(err, ErrOptions) {
		t.Errorf("MaxOutbox -1: %v, want ErrOptions", err)
	}
}

func TestOutboxSurvivesReopen(t *testing.T) {
	for _, sync := range []SyncPolicy{SyncNever, SyncAlways} {
		t.Run(sync.String(), func(t *testing.T) {
			st, path := openTest(t, Options{Sync: sync})
			before := time.Now().Add(-time.Second)
			for seq := uint64(1); seq <= 4; seq++ {
				enqueue(t, st, seq)
			}
			if err := st.Ack(1); err != nil {
				t.Fatal(err)
			}
			if err := st.Close(); err != nil {
				t.Fatal(err)
			}
			st = reopen(t, path, Options{Sync: sync, MaxOutbox: 3})
			if n := st.OutboxLen(); n != 3 {
				t.Errorf("OutboxLen after reopen %d, want 3", n)
			}
			items, err := st.Outbox(1)
			if err != nil || len(items) != 1 || items[0].Enqueued.Before(before) {
				t.Fatalf("Outbox after reopen: %+v, %v", items, err)
			}
			sameSeqs(t, "after reopen", outboxSeqs(t, st, 0), 2, 3, 4)
			enqueue(t, st, 5) // full: drops 2
			sameSeqs(t, "bounded after reopen", outboxSeqs(t, st, 0), 3, 4, 5)
			// The outbox does not disturb the summaries' sequence numbers.
			if seq, err := st.NextSeq(); err != nil || seq != 1 {
				t.Errorf("NextSeq %d, %v; want 1", seq, err)
			}
		})
	}
}

func TestOutboxClosed(t *testing.T) {
	st, _ := openTest(t, Options{})
	enqueue(t, st, 1)
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if err := st.Enqueue("t", nil, 2); !errors.Is(err, ErrClosed) {
		t.Errorf("Enqueue: %v, want ErrClosed", err)
	}
	if err := st.Ack(1); !errors.Is(err, ErrClosed) {
		t.Errorf("Ack: %v, want ErrClosed", err)
	}
	if _, err := st.Outbox(0); !errors.Is(err, ErrClosed) {
		t.Errorf("Outbox: %v, want ErrClosed", err)
	}
	if n := st.OutboxLen(); n != 0 {
		t.Errorf("OutboxLen %d, want 0", n)
	}
}

// TestOutboxDroppedInSummaries: every summary stored carries the outbox
// items dropped so far, a count that survives a reopen, so that the report
// reaches the collector even when the summaries that first carried it
// were dropped themselves.
func TestOutboxDroppedInSummaries(t *testing.T) {
	st, path := openTest(t, Options{MaxOutbox: 3})
	base := recent(20)
	put := func(st *Store, i int) *summary.Summary {
		t.Helper()
		s := makeSummary(t, base.Add(time.Duration(i)*10*time.Second), 10*time.Second, uint64(i), 5, 5)
		if _, err := st.Put(s, Origin{Instance: 7, Generation: uint64(i)}); err != nil {
			t.Fatal(err)
		}
		enqueue(t, st, s.Seq)
		return s
	}
	for i := 1; i <= 5; i++ { // the 4th and 5th drop the 1st and 2nd
		if s := put(st, i); s.OutboxDropped != uint64(max(0, i-4)) {
			t.Fatalf("summary %d: outbox_dropped %d, want %d", i, s.OutboxDropped, max(0, i-4))
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st = reopen(t, path, Options{MaxOutbox: 3})
	if s := put(st, 6); s.OutboxDropped != 2 {
		t.Fatalf("after reopening: outbox_dropped %d, want 2", s.OutboxDropped)
	}
	if s := put(st, 7); s.OutboxDropped != 3 {
		t.Fatalf("summary 7: outbox_dropped %d, want 3", s.OutboxDropped)
	}
	w, err := st.Window(base, base.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if w.OutboxDropped != 3 {
		t.Errorf("rollup: outbox_dropped %d, want 3 (the largest)", w.OutboxDropped)
	}
}
