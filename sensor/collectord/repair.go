package collectord

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/peerwatch/peerwatch/sensor/collector"
	"github.com/peerwatch/peerwatch/sensor/summary"
)

// Gap repair (docs/collectord.md, "Gap repair"): the daemon publishes,
// per sensor with gaps older than ResendGrace, the oldest of them as a
// retained request on <prefix>/<id>/resend, QoS 1; an empty retained
// payload clears it once the gaps are closed or lost. So the request is
// state, not an event: a sensor that connects later, or again, gets it from
// the broker. A request that stays unanswered is published again every
// ResendRetry (the sensor serves the same request at most once per 30 s).

// Defaults of gap repair.
const (
	// DefaultResendGrace: a gap is asked for once it is this old; the
	// summary may still be on its way (about two 10 s drains).
	DefaultResendGrace = 20 * time.Second
	// DefaultResendRetry: an unchanged request is published again this
	// often while it lasts.
	DefaultResendRetry = time.Minute
	// repairEvery is how often the requests are brought up to date.
	repairEvery = time.Second
)

// publishFunc publishes a retained QoS 1 message and waits for it to be
// taken by the broker.
type publishFunc func(topic string, payload []byte) error

// requested is what was last published on one sensor's resend topic.
type requested struct {
	payload []byte // nil: cleared
	at      time.Time
}

// RepairEnabled reports whether the daemon asks sensors for their gaps.
func (d *Daemon) RepairEnabled() bool { return !d.cfg.NoGapRepair && d.cfg.ShareGroup == "" }

// repairLoop keeps the sensors' resend requests up to date until ctx ends.
func (d *Daemon) repairLoop(ctx context.Context, publish publishFunc) {
	if !d.RepairEnabled() {
		return
	}
	t := time.NewTicker(repairEvery)
	defer t.Stop()
	last := map[string]requested{}
	first := true
	for {
		if d.Subscribed() {
			if err := d.repairRound(last, first, publish); err != nil {
				if skipped, ok := d.logNow("resend", d.now()); ok {
					d.log.Warn("publish resend requests", "err", err, "not_logged_since", skipped)
				}
			} else {
				first = false
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// repairRound publishes the requests that changed, those due for a retry,
// and (in the first round) clears the requests of the other sensors that
// had gaps, which a previous run may have left retained.
func (d *Daemon) repairRound(last map[string]requested, first bool, publish publishFunc) error {
	now := d.now()
	reqs := d.col.ResendRequests(now, d.cfg.ResendGrace)
	ids := map[string]bool{}
	for id := range reqs {
		ids[id] = true
	}
	for id := range last {
		ids[id] = true
	}
	if first {
		// A previous run published requests only to sensors with gaps; once
		// closed, those count as repaired or lost.
		for _, s := range d.col.Sensors(now) {
			if s.Repaired > 0 || s.LostSeqs > 0 {
				ids[s.ID] = true
			}
		}
	}
	var errs int
	var firstErr error
	for id := range ids {
		var payload []byte
		if rs := reqs[id]; len(rs) > 0 {
			var err error
			if payload, err = summary.EncodeResendRequest(&summary.ResendRequest{Sensor: id, Missing: rs}); err != nil {
				return fmt.Errorf("sensor %s: %w", id, err)
			}
		}
		old, known := last[id]
		switch {
		case !known && payload == nil && !first:
			continue
		case known && bytes.Equal(old.payload, payload) && now.Sub(old.at) < d.cfg.ResendRetry:
			continue
		}
		if err := publish(d.topic(id, collector.KindResend), payload); err != nil {
			errs++
			if firstErr == nil {
				firstErr = fmt.Errorf("sensor %s: %w", id, err)
			}
			continue
		}
		if payload == nil {
			delete(last, id)
		} else {
			if !known || !bytes.Equal(old.payload, payload) {
				d.log.Info("asked a sensor for the summaries missing in its gaps", "sensor", id, "ranges", len(reqs[id]),
					"first", reqs[id][0].First)
			}
			last[id] = requested{payload: payload, at: now}
		}
		d.resendPublished.Add(1)
	}
	if firstErr != nil {
		return fmt.Errorf("%d requests not published: %w", errs, firstErr)
	}
	return nil
}

func (d *Daemon) topic(id, kind string) string { return d.cfg.TopicPrefix + "/" + id + "/" + kind }

// ResendPublished counts the resend requests (and clearings) published.
func (d *Daemon) ResendPublished() uint64 { return d.resendPublished.Load() }
