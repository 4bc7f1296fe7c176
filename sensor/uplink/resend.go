package uplink

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/peerwatch/peerwatch/sensor/store"
	"github.com/peerwatch/peerwatch/sensor/summary"
)

// Gap repair (docs/uplink.md, "Gap repair"): the collector keeps a
// retained request on <prefix>/<id>/resend for the seqs it misses; the
// uplink subscribes to it on every connect, looks the seqs up through
// Config.Resend and puts the summaries back in the outbox under their own
// seq (so they go out in order, survive a restart, and the outbox's
// idempotence keeps a seq still waiting there once), and reports the seqs
// it no longer holds on <prefix>/<id>/lost through the outbox too.

// Topic kinds of gap repair.
const (
	KindResend = "resend" // collector -> sensor, retained
	KindLost   = "lost"   // sensor -> collector
)

// Defaults of gap repair.
const (
	// DefaultResendPerMinute bounds the summaries looked up and queued
	// again per minute (one full request).
	DefaultResendPerMinute = summary.MaxResendSeqs
	// resendRepeat: a request identical to the one served last is served
	// again only this long after it (a reconnect delivers the retained
	// request again; the collector publishes it again when it still misses
	// the seqs after its retry interval, which is longer).
	resendRepeat = 30 * time.Second
)

// ResendSource returns the payload of the summary with sequence number
// seq exactly as it was first published (or an equivalent encoding), or an
// error that wraps store.ErrNoData when the sensor no longer holds it.
type ResendSource func(seq uint64) ([]byte, error)

// StoreSource is the ResendSource of a sensor's store: the raw record of
// the seq (Store.Interval), encoded with opts, the uplink's settings. The
// record is the summary as Put numbered it and the uplink first encoded it
// (outbox_dropped included), so the payload is the same bytes as the first
// time (store.TestIntervalBySeq). A seq the store no longer holds is
// store.ErrNoData.
func StoreSource(st *store.Store, opts summary.EncodeOptions) ResendSource {
	return func(seq uint64) ([]byte, error) {
		s, err := st.Interval(seq)
		if err != nil {
			return nil, err
		}
		return summary.Encode(s, opts)
	}
}

// resendState is the request being served; u.mu guards it.
type resendState struct {
	req      *summary.ResendRequest // nil: none
	raw      []byte                 // its payload
	next     uint64                 // the next seq to look up
	lost     []summary.SeqRange     // found missing so far
	tokens   float64                // rate limit: seqs that may be looked up now
	refilled time.Time
	// served is the payload of the last request served in full, and when.
	served   []byte
	servedAt time.Time
	// counters for Status
	resent, reportedLost, refused uint64
	// errLogged: the last log of a failure to serve (at most one a minute).
	errLogged  time.Time
	errSkipped uint64
}

// onResend is paho's handler of the resend topic: it decodes the request
// and hands it to Run; it never blocks.
func (u *Uplink) onResend(_ mqtt.Client, m mqtt.Message) {
	req, err := summary.DecodeResendRequest(m.Payload())
	if err == nil && req != nil && req.Sensor != u.cfg.SensorID {
		err = fmt.Errorf("%w: request names sensor %q", summary.ErrMalformed, req.Sensor)
	}
	u.mu.Lock()
	if err != nil {
		u.rs.refused++
		u.mu.Unlock()
		u.log.Warn("refused a resend request", "topic", m.Topic(), "err", err)
		return
	}
	switch {
	case req == nil:
		u.rs.req, u.rs.raw, u.rs.lost = nil, nil, nil
	case bytes.Equal(m.Payload(), u.rs.raw):
		// Being served already.
	case bytes.Equal(m.Payload(), u.rs.served) && time.Since(u.rs.servedAt) < resendRepeat:
		// Served a moment ago: a reconnect delivered it again.
	default:
		u.rs.req, u.rs.raw, u.rs.next, u.rs.lost = req, bytes.Clone(m.Payload()), req.Missing[0].First, nil
	}
	u.mu.Unlock()
	u.Notify()
}

// serveResend looks up the seqs of the pending request, as far as the
// rate limit allows, and queues them; once the request is done it queues
// the report of the seqs not held. It returns whether it queued anything.
func (u *Uplink) serveResend() (bool, error) {
	if u.cfg.Resend == nil {
		return false, nil
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	rs := &u.rs
	if rs.req == nil {
		return false, nil
	}
	now := time.Now()
	per := float64(u.cfg.ResendPerMinute)
	if rs.refilled.IsZero() {
		rs.tokens = per
	} else {
		rs.tokens = min(per, rs.tokens+now.Sub(rs.refilled).Minutes()*per)
	}
	rs.refilled = now
	queued := false
	for _, r := range rs.req.Missing {
		if r.Last < rs.next {
			continue
		}
		for seq := max(r.First, rs.next); seq <= r.Last; seq++ {
			if rs.tokens < 1 {
				return queued, nil // the rest at the next poll
			}
			rs.tokens--
			payload, err := u.cfg.Resend(seq)
			switch {
			case errors.Is(err, store.ErrNoData):
				if n := len(rs.lost); n > 0 && rs.lost[n-1].Last+1 == seq {
					rs.lost[n-1].Last = seq
				} else {
					rs.lost = append(rs.lost, summary.SeqRange{First: seq, Last: seq})
				}
			case err != nil:
				return queued, fmt.Errorf("resend %d: %w", seq, err)
			default:
				if err := u.q.Enqueue(u.topic(KindSummary), payload, seq); err != nil {
					return queued, fmt.Errorf("resend %d: %w", seq, err)
				}
				rs.resent++
				queued = true
			}
			rs.next = seq + 1
		}
	}
	for part := range chunks(rs.lost, summary.MaxLostRanges) {
		b, err := summary.EncodeLostReport(&summary.LostReport{Sensor: u.cfg.SensorID, Lost: part})
		if err == nil {
			err = u.q.Enqueue(u.topic(KindLost), b, u.nextAlertSeqLocked())
		}
		if err != nil {
			return queued, fmt.Errorf("report lost seqs: %w", err)
		}
		queued = true
		n := uint64(0)
		for _, r := range part {
			n += r.Len()
		}
		rs.reportedLost += n
		u.log.Warn("asked for summaries this sensor no longer holds: reported lost", "seqs", n, "first", part[0].First)
	}
	u.log.Info("served a resend request", "seqs", rs.req.Seqs(), "lost_ranges", len(rs.lost))
	rs.served, rs.servedAt = rs.raw, now
	rs.req, rs.raw, rs.lost = nil, nil, nil
	return queued, nil
}

func chunks(rs []summary.SeqRange, n int) func(func([]summary.SeqRange) bool) {
	return func(yield func([]summary.SeqRange) bool) {
		for len(rs) > 0 {
			k := min(n, len(rs))
			if !yield(rs[:k]) {
				return
			}
			rs = rs[k:]
		}
	}
}

// subscribeResend subscribes to the sensor's resend topic (in paho's
// connect handler: without waiting).
func (u *Uplink) subscribeResend(c mqtt.Client) {
	if u.cfg.Resend == nil {
		return
	}
	topic := u.topic(KindResend)
	tok := c.Subscribe(topic, 1, u.onResend)
	go func() {
		switch {
		case !tok.WaitTimeout(u.cfg.PublishTimeout):
			u.log.Warn("subscribe to resend requests: no SUBACK in time", "topic", topic)
		case tok.Error() != nil:
			u.log.Warn("subscribe to resend requests", "topic", topic, "err", tok.Error())
		}
	}()
}

// serveResendContext runs serveResend unless ctx is done.
func (u *Uplink) serveResendContext(ctx context.Context) {
	if ctx.Err() != nil {
		return
	}
	if _, err := u.serveResend(); err != nil {
		u.mu.Lock()
		now, skipped := time.Now(), u.rs.errSkipped
		log := now.Sub(u.rs.errLogged) >= time.Minute
		if log {
			u.rs.errLogged, u.rs.errSkipped = now, 0
		} else {
			u.rs.errSkipped++
		}
		u.mu.Unlock()
		if log {
			u.log.Warn("serve resend request; retrying at the next poll", "err", err, "not_logged_since", skipped)
		}
	}
}
