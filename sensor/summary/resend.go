package summary

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// Gap repair (docs/mqtt.md, "Gap repair"): the collector asks a sensor for
// the summaries missing in its sequence numbers with a ResendRequest,
// retained on <prefix>/<sensor-id>/resend, and the sensor answers by
// publishing those summaries again from its store, and a LostReport on
// <prefix>/<sensor-id>/lost for the ones it no longer holds. Both sides
// decode with the functions here; both payloads are untrusted and bounded.

// SeqRange is a run of sequence numbers, First to Last inclusive.
type SeqRange struct {
	First uint64 `json:"first"`
	Last  uint64 `json:"last"`
}

// Len is the number of sequence numbers in r (0 for an invalid range).
func (r SeqRange) Len() uint64 {
	if r.Last < r.First {
		return 0
	}
	return r.Last - r.First + 1
}

// Bounds of the gap-repair messages.
const (
	// MaxResendRanges and MaxResendSeqs bound one ResendRequest: the
	// collector asks for the oldest missing ranges up to both limits.
	MaxResendRanges = 100
	MaxResendSeqs   = 1000
	// MaxLostRanges bounds one LostReport (a request of MaxResendSeqs
	// seqs leaves at most that many ranges).
	MaxLostRanges = MaxResendSeqs
	// MaxRepairBytes bounds the payload of either message.
	MaxRepairBytes = 64 << 10
)

// ResendRequest is the collector's list of the sequence numbers it misses
// from one sensor, oldest first. The retained message is the current
// state: an empty payload (no request) clears it once the gaps are closed.
type ResendRequest struct {
	Sensor  string     `json:"sensor"`
	Missing []SeqRange `json:"missing"`
}

// LostReport is a sensor's answer for the requested sequence numbers it
// does not hold (expired or evicted from its store, or never stored): the
// collector counts them as lost for good and asks for them no more.
type LostReport struct {
	Sensor string     `json:"sensor"`
	Lost   []SeqRange `json:"lost"`
}

// Seqs is the number of sequence numbers asked for.
func (r *ResendRequest) Seqs() uint64 { return countSeqs(r.Missing) }

func countSeqs(rs []SeqRange) uint64 {
	var n uint64
	for _, r := range rs {
		n += r.Len()
	}
	return n
}

// EncodeResendRequest writes r as JSON; nil or no ranges is the empty
// payload that clears a retained request.
func EncodeResendRequest(r *ResendRequest) ([]byte, error) {
	if r == nil || len(r.Missing) == 0 {
		return nil, nil
	}
	if err := checkRanges(r.Sensor, r.Missing, MaxResendRanges, MaxResendSeqs); err != nil {
		return nil, fmt.Errorf("resend request: %w", err)
	}
	return json.Marshal(r)
}

// DecodeResendRequest reads a resend request strictly: one JSON object of
// at most MaxRepairBytes with exactly the fields of ResendRequest, a valid
// sensor id, ranges in increasing order that neither overlap nor touch, no
// seq 0, at most MaxResendRanges ranges and MaxResendSeqs seqs. An empty
// payload is no request (nil, nil). Errors wrap ErrMalformed or
// ErrTooLarge.
func DecodeResendRequest(payload []byte) (*ResendRequest, error) {
	if len(payload) == 0 {
		return nil, nil
	}
	var r ResendRequest
	if err := decodeRepair(payload, &r); err != nil {
		return nil, fmt.Errorf("resend request: %w", err)
	}
	if err := checkRanges(r.Sensor, r.Missing, MaxResendRanges, MaxResendSeqs); err != nil {
		return nil, fmt.Errorf("resend request: %w", err)
	}
	return &r, nil
}

// EncodeLostReport writes r as JSON.
func EncodeLostReport(r *LostReport) ([]byte, error) {
	if err := checkRanges(r.Sensor, r.Lost, MaxLostRanges, 0); err != nil {
		return nil, fmt.Errorf("lost report: %w", err)
	}
	return json.Marshal(r)
}

// DecodeLostReport reads a lost report with the rules of
// DecodeResendRequest, at most MaxLostRanges ranges of any length, and at
// least one range.
func DecodeLostReport(payload []byte) (*LostReport, error) {
	var r LostReport
	if err := decodeRepair(payload, &r); err != nil {
		return nil, fmt.Errorf("lost report: %w", err)
	}
	if err := checkRanges(r.Sensor, r.Lost, MaxLostRanges, 0); err != nil {
		return nil, fmt.Errorf("lost report: %w", err)
	}
	return &r, nil
}

func decodeRepair(payload []byte, v any) error {
	if len(payload) > MaxRepairBytes {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(payload), MaxRepairBytes)
	}
	if len(payload) == 0 || payload[0] != '{' {
		return fmt.Errorf("%w: not a JSON object", ErrMalformed)
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: data after the JSON object", ErrMalformed)
	}
	return nil
}

// checkRanges checks a list of ranges; maxSeqs 0 is no limit on seqs.
func checkRanges(sensor string, rs []SeqRange, maxRanges int, maxSeqs uint64) error {
	if !ValidSensorID(sensor) {
		return fmt.Errorf("%w: sensor id %q: want 1 to 64 of A-Z a-z 0-9 . _ -", ErrMalformed, truncateID(sensor))
	}
	if len(rs) == 0 {
		return fmt.Errorf("%w: no ranges", ErrMalformed)
	}
	if len(rs) > maxRanges {
		return fmt.Errorf("%w: %d ranges, limit %d", ErrTooLarge, len(rs), maxRanges)
	}
	var n uint64
	for i, r := range rs {
		switch {
		case r.First == 0:
			return fmt.Errorf("%w: range %d: seq 0", ErrMalformed, i)
		case r.Last > MaxSeq:
			return fmt.Errorf("%w: range %d: seq %d above 2^63-1", ErrMalformed, i, r.Last)
		case r.Last < r.First:
			return fmt.Errorf("%w: range %d: last %d before first %d", ErrMalformed, i, r.Last, r.First)
		case i > 0 && r.First <= rs[i-1].Last+1:
			return fmt.Errorf("%w: range %d: first %d not after range %d's last %d + 1", ErrMalformed, i, r.First, i-1, rs[i-1].Last)
		}
		n += r.Len() // no overflow: the ranges are disjoint and increasing
		if maxSeqs > 0 && n > maxSeqs {
			return fmt.Errorf("%w: more than %d seqs", ErrTooLarge, maxSeqs)
		}
	}
	return nil
}

func truncateID(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
