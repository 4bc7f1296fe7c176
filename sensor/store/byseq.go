package store

import (
	"fmt"

	"github.com/tidwall/buntdb"

	"github.com/peerwatch/peerwatch/sensor/summary"
	"github.com/peerwatch/peerwatch/sensor/wallclock"
)

// indexSeq is an in-memory buntdb index of the raw records by their
// summary's sequence number ("seq", the third field of the record's JSON,
// so reading it takes no parse of the rest). It is built at Open and kept
// by buntdb on every write; it is not in the file. Interval uses it to
// answer the collector's resend requests (docs/uplink.md, "Gap repair").
const indexSeq = "raw-by-seq"

func (st *Store) createSeqIndex() error {
	if err := st.db.CreateIndex(indexSeq, prefixRaw+"*", buntdb.IndexJSON("seq")); err != nil {
		return fmt.Errorf("index raw records by seq: %w", err)
	}
	return nil
}

// Interval returns the raw record of the interval with sequence number
// seq, as Put stored it (and as the uplink first sent it: re-encoding it
// with the same options gives the same payload), or ErrNoData when the
// store does not hold it: expired or evicted, never stored, or merged into
// the record of another interval that ended at the same instant.
func (st *Store) Interval(seq uint64) (*summary.Summary, error) {
	var s *summary.Summary
	now := wallclock.Now()
	err := st.view(func(tx *buntdb.Tx) error {
		var key, val string
		if err := tx.AscendGreaterOrEqual(indexSeq, fmt.Sprintf(`{"seq":%d}`, seq), func(k, v string) bool {
			key, val = k, v
			return false
		}); err != nil {
			return err
		}
		if key == "" {
			return ErrNoData
		}
		if t, ok := keyTime(key); !ok || !st.live(0, t, now) {
			return ErrNoData
		}
		rec, err := decode(key, val)
		if err != nil {
			return err
		}
		if rec.Seq != seq {
			return ErrNoData
		}
		s = rec
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("interval %d: %w", seq, err)
	}
	return s, nil
}
