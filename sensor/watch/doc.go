// Package watch turns the per-interval watch-list counters of the sensor's
// summaries into alerts.
//
// An operator names watch lists (countries, origin ASes, prefixes) and gives
// each an alert Rule: any traffic at all, a packet or bit rate, or a packet
// rate well above what the list usually does at that hour of the week. The
// Engine observes one summary per drained interval, in order, and reports
// when an alert starts, is updated and ends. An alert keeps its peak rates,
// its exact packets and bytes (the list's counters, both directions), and
// the remote prefixes that caused it.
//
// # Time
//
// Time comes only from the summaries (their Start and End, wall clock),
// never from the clock, so the engine is deterministic and can replay stored
// intervals. A summary without a start, or whose end is not after its start
// (the clock stepped back during the interval), is ignored with a warning
// that is rate-limited (the 1st, 2nd, 4th, 8th … time); the summaries after
// it are used as they come, even if their times are earlier than before,
// and an alert's End is never before its Start. Durations (MinDuration,
// Clear, the baseline's window and warm-up) count observed interval time: a
// gap between summaries, while sensord was down, neither holds nor clears a
// condition.
//
// # Alerts
//
// A rule triggers in an interval if any of its enabled conditions holds.
// Once it has triggered in consecutive intervals covering MinDuration, an
// alert starts, dated from the first of them. It is updated in each interval
// in which the rule triggers again, and ends once the rule has not triggered
// for Clear (default: one interval); its End is then the end of the last
// interval that triggered. The quiet intervals between two that trigger
// belong to the alert: its totals are exact over [Start, End]. Its Reason is
// that of the interval with the highest packet rate. Its prefixes are the
// list's among each summary's top prefixes (a prefix counts if its country
// or AS is in the list or it lies inside one of the list's prefixes), summed
// over the alert; the top TopPrefixes are shown, and they are exact as long
// as the alert has seen no more than a thousand distinct prefixes. Ended
// alerts are kept, the last MaxRecent of them, for Recent.
//
// # Baseline
//
// For each list the engine learns the usual packet rate of every hour of the
// week (168 slots, UTC so that daylight saving does not fold two hours into
// one slot); an interval counts in the slot of its start. Until a slot has
// seen one window of data (BaselineWindow, default 1 h) it is the
// time-weighted mean of what it saw; from then on an exponentially weighted
// moving average in which an interval of length d weighs 1 - exp(-d/window),
// so that, whatever the interval length, one window of data moves the slot
// ~63% of the way to a new rate (a 10 s interval weighs ~1/360). The
// baseline condition is evaluated in a slot only once the slot has seen
// BaselineWarmup of data in total (default 1 h: a week of learning), and
// compares with at least BaselineMinPPS (default 1 pps), so that a list that
// is usually silent does not alert on a few packets. An interval in which
// the rule triggers, on any condition, or that falls inside an alert, is not
// learned: an attack does not teach itself as the usual traffic. (During a
// slot's warm-up the baseline condition cannot trigger, so an attack then is
// learned unless another condition catches it. A rule with Any learns only
// silent intervals.)
//
// # State
//
// MarshalState and RestoreState save and restore, as JSON, the baselines
// and the active and pending alerts, so that sensord keeps them across
// restarts in its store. The history of ended alerts is not saved.
package watch
