package collector

import (
	"slices"
	"time"
)

// Sealing a window of the finest level adds it to its windows of the
// coarser levels. The fleet-wide rollup is small (a few thousand prefixes)
// and is added at once, under the lock. The per-sensor views are not:
// at 10,000 sensors a minute holds millions of counters, and merging them
// under the lock held every MQTT handler for seconds. So tick only queues
// a seal job with copies of the windows' view pointers (views never change
// once a window holds them, views.go), a goroutine that unlocks merges
// them outside the lock (one at a time; the others go on), and takes the
// lock again only to swap the merged views in. Until then, queries of the
// coarser levels count the sealed views from the job (bucket.pending).

// sealJob merges the views of one sealed window into its coarser windows.
type sealJob struct {
	from  *bucket
	views []*SensorView // from's views as sealed, by sensor number
	into  []*bucket
}

// sealLocked seals b, a window of the finest level, at now: its rollup is
// added to the coarser levels, and a job to merge its views is queued.
func (c *Collector) sealLocked(b *bucket, now time.Time) {
	b.sealed, b.dirty = true, true
	sum := b.sum.Summary(0)
	job := &sealJob{from: b}
	for _, l := range c.levels[1:] {
		cb := l.bucketLocked(b.started, now, c.opts.TopN)
		if cb == nil {
			continue
		}
		cb.dirty = true
		cb.sum.Add(sum)
		if cb.seen != nil && b.seen != nil {
			job.into = append(job.into, cb)
		}
	}
	if len(job.into) == 0 {
		return
	}
	job.views = slices.Clone(b.seen.bySensor)
	b.pending = job.views
	c.seals = append(c.seals, job)
}

// unlock releases mu, then runs the seal jobs that were queued, unless
// another goroutine is running them: the others go on, and their
// messages' acks do not wait for a merge that takes seconds at 10,000
// sensors. A job queued as the runner finishes is run by the next unlock
// or Checkpoint; queries count it meanwhile (bucket.pending).
func (c *Collector) unlock() {
	queued := len(c.seals) > 0
	c.mu.Unlock()
	for queued && c.sealMu.TryLock() {
		c.runSeals()
		c.sealMu.Unlock()
		c.mu.Lock()
		queued = len(c.seals) > 0
		c.mu.Unlock()
	}
}

// runSeals runs the queued seal jobs, until none is left; the caller holds
// sealMu, not mu.
func (c *Collector) runSeals() {
	for jobs := c.takeSeals(); len(jobs) > 0; jobs = c.takeSeals() {
		for _, j := range jobs {
			c.seal(j)
		}
	}
}

// takeSeals empties the queue of seal jobs and returns what it held.
func (c *Collector) takeSeals() []*sealJob {
	c.mu.Lock()
	defer c.mu.Unlock()
	jobs := c.seals
	c.seals = nil
	return jobs
}

// seal runs a job: the merges outside the lock, the swaps under it.
func (c *Collector) seal(j *sealJob) {
	// The views of the coarser windows as they are now; one that
	// changes meanwhile (a late summary added to the coarser window
	// directly) is merged again under the lock.
	base := make([][]*SensorView, len(j.into))
	c.mu.Lock()
	for i, into := range j.into {
		if into.seen != nil {
			base[i] = slices.Clone(into.seen.bySensor)
		}
	}
	c.mu.Unlock()
	merged := make([][]*SensorView, len(j.into))
	for i := range j.into {
		merged[i] = make([]*SensorView, len(j.views))
		for n, v := range j.views {
			if v != nil {
				merged[i][n] = mergeViews(viewAt(base[i], n), v)
			}
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, into := range j.into {
		if into.seen == nil {
			continue // dropped meanwhile (view retention)
		}
		into.dirty = true
		for n, v := range j.views {
			if v == nil {
				continue
			}
			m := merged[i][n]
			if cur := into.seen.get(n); cur != viewAt(base[i], n) {
				m = mergeViews(cur, v) // changed since queued: rare, and one sensor's
			}
			into.seen.set(n, int(c.shards[n]), m)
		}
	}
	j.from.pending = nil
}

func viewAt(bySensor []*SensorView, n int) *SensorView {
	if n < len(bySensor) {
		return bySensor[n]
	}
	return nil
}

// dropViewsLocked drops the per-sensor views of the windows past their
// level's view retention at now. A window of the finest level keeps them
// until it is sealed: the coarser levels need them.
func (c *Collector) dropViewsLocked(now time.Time) {
	for i, l := range c.levels {
		h := l.viewHorizon(now)
		if !h.After(l.viewsPruned) {
			continue
		}
		l.viewsPruned = h
		for start, b := range l.buckets {
			if b.seen != nil && start.Before(h) && (i > 0 || b.sealed || len(c.levels) == 1) {
				b.seen, b.dirty = nil, true
			}
		}
	}
}
