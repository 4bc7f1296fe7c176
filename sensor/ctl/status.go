package ctl

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/peerwatch/peerwatch/sensor/api"
	"github.com/peerwatch/peerwatch/sensor/traffic"
)

var statusCommand = &command{
	name:    "status",
	summary: "the sensor's health: interfaces, drain, invariant, store, rates",
	help: `Prints the sensor's identity and uptime, each interface with its attach mode
and state, the drain's lag, the invariant (OK when the last interval
reconciled: seen = remote + non-IP + malformed + both local + neither local
+ overflow; BROKEN with the numbers otherwise), the store's size, the
uplink, the last interval's rates, and the global counters of the last
interval and since the start. It reads GET /api/v1/status.`,
	run: func(ctx context.Context, c *cli, _ []string) error {
		if c.g.json {
			return c.printJSON(ctx, "status", nil)
		}
		st, err := c.client.Status(ctx)
		if err != nil {
			return c.explain(err)
		}
		return writeStatus(c.env.Stdout, st)
	},
}

// stuckAfter is how many drain intervals of lag make status call the drain
// stuck.
const stuckAfter = 3

// writeStatus writes a status for a terminal.
func writeStatus(w io.Writer, st *api.Status) error {
	var f fields
	f.add("sensor", st.Sensor)
	f.add("version", st.Version)
	f.add("board", orDash(st.Board))
	f.add("kernel", orDash(st.Kernel))
	f.add("uptime", fmt.Sprintf("%s, since %s", fmtDuration(seconds(st.UptimeSeconds).Truncate(1e9)), fmtTime(st.Started)))
	if st.Invariant.OK {
		f.add("invariant", "OK")
	} else {
		f.add("invariant", "BROKEN: "+orDash(st.Invariant.Error))
	}
	interval := seconds(st.DrainIntervalSeconds)
	switch {
	case st.LastDrain == nil || st.DrainLagSeconds == nil:
		f.add("drain lag", fmt.Sprintf("no drain yet (every %s)", fmtDuration(interval)))
	default:
		lag := seconds(*st.DrainLagSeconds)
		s := fmt.Sprintf("%s (last drain %s, every %s, took %s)", fmtDuration(lag), fmtTime(*st.LastDrain),
			fmtDuration(interval), fmtDuration(seconds(st.DrainDurationSeconds)))
		if interval > 0 && lag > stuckAfter*interval {
			s += fmt.Sprintf("; STUCK: more than %d intervals", stuckAfter)
		}
		f.add("drain lag", s)
	}
	store := fmtIEC(st.Store.Bytes)
	if st.Store.MaxBytes > 0 {
		store += fmt.Sprintf(" of %s (%s)", fmtIEC(st.Store.MaxBytes), fmtPercent(uint64(max(st.Store.Bytes, 0)), uint64(st.Store.MaxBytes)))
	} else {
		store += " (unbounded)"
	}
	store += ", " + plural(st.Store.Evicted, "summary", "summaries") + " evicted"
	if st.Store.Path != "" {
		store += ", " + st.Store.Path
	}
	f.add("store", store)
	if st.Store.Recovered != "" {
		f.add("", "recovered at start: "+st.Store.Recovered)
	}
	if st.Store.WriteError != "" {
		since := ""
		if st.Store.WriteErrorSince != nil {
			since = " since " + st.Store.WriteErrorSince.UTC().Format("2006-01-02 15:04:05 UTC")
		}
		f.add("", fmt.Sprintf("WRITES FAIL%s: %s; %s held in memory", since, st.Store.WriteError, plural(uint64(max(st.Store.Unstored, 0)), "interval", "intervals")))
	}
	if st.Store.UnstoredDropped > 0 {
		f.add("", "given up (counts lost): "+plural(st.Store.UnstoredDropped, "interval", "intervals"))
	}
	uplink := st.Uplink.State
	if st.Uplink.State != "disabled" || st.Uplink.Outbox > 0 {
		uplink += ", " + plural(uint64(max(st.Uplink.Outbox, 0)), "summary", "summaries") + " in the outbox"
	}
	f.add("uplink", uplink)
	if err := f.write(w); err != nil {
		return err
	}

	fmt.Fprintln(w)
	if len(st.Interfaces) == 0 {
		fmt.Fprintln(w, "interfaces: none configured; sensord counts nothing")
	} else {
		t := newTable("INTERFACE", "MODE", "STATE", "NOTE")
		for _, i := range st.Interfaces {
			t.add(i.Name, i.Mode, i.State, i.Error)
		}
		if err := t.write(w, ""); err != nil {
			return err
		}
	}

	fmt.Fprintln(w)
	var rates fields
	if l := st.Latest; l == nil {
		rates.add("last interval", "none yet")
	} else {
		rates.add("last interval", fmt.Sprintf("%s (%s)", fmtSpan(l.Start, l.End), fmtDuration(seconds(l.Seconds))))
		rates.add("packets/s", fmt.Sprintf("%s in, %s out", fmtPPS(l.PPS.In), fmtPPS(l.PPS.Out)))
		rates.add("bits/s", fmt.Sprintf("%s in, %s out", fmtBPS(l.BPS.In), fmtBPS(l.BPS.Out)))
		rates.add("tunnel/VPN", fmt.Sprintf("%s of %s", fmtPercent(l.Remote.Classes.Tunnel, l.Remote.Packets()),
			plural(l.Remote.Packets(), "remote packet", "remote packets")))
	}
	if err := rates.write(w); err != nil {
		return err
	}

	fmt.Fprintln(w)
	var last traffic.Globals
	var lastRemote uint64
	if st.Latest != nil {
		last, lastRemote = st.Latest.Globals, st.Latest.Remote.Packets()
	}
	t := newTable("PACKETS", ">LAST INTERVAL", ">SINCE START")
	for _, r := range []struct {
		name        string
		last, total uint64
	}{
		{"seen", last.Seen, st.Totals.Seen},
		{"remote", lastRemote, st.Remote.Packets()},
		{"non-IP", last.NonIP, st.Totals.NonIP},
		{"malformed", last.Malformed, st.Totals.Malformed},
		{"both local", last.BothLocal, st.Totals.BothLocal},
		{"neither local", last.NeitherLocal, st.Totals.NeitherLocal},
		{"overflow", last.Overflow, st.Totals.Overflow},
	} {
		lastCell := groupDigits(r.last)
		if st.Latest == nil {
			lastCell = "–"
		}
		t.add(r.name, lastCell, groupDigits(r.total))
	}
	if err := t.write(w, ""); err != nil {
		return err
	}
	if st.Totals.Overflow > 0 || last.Overflow > 0 {
		fmt.Fprintln(w, "overflow: the counter map was full and remote keys were lost; raise datapath.counter_entries")
	}
	return nil
}

func orDash(s string) string {
	if strings.TrimSpace(s) == "" {
		return "–"
	}
	return s
}
