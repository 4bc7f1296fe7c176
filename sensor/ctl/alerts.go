package ctl

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/peerwatch/peerwatch/sensor/api"
)

var alertsCommand = &command{
	name:    "alerts",
	summary: "the watch-list alerts active now and the recent ones",
	help: `Prints the watch-list alerts that are active now and the recent ones that
have ended, most recent first: when each started and how long it lasted,
its peak rates, its traffic since it started, the remote prefixes that
carried most of it, and why it fired. It reads GET /api/v1/alerts.`,
	run: func(ctx context.Context, c *cli, _ []string) error {
		if c.g.json {
			return c.printJSON(ctx, "alerts", nil)
		}
		a, err := c.client.Alerts(ctx)
		if err != nil {
			return c.explain(err)
		}
		return writeAlerts(c.env.Stdout, a, c.env.Now())
	},
}

// alertPrefixes is how many prefixes an alert's row names.
const alertPrefixes = 1

// writeAlerts writes the alerts for a terminal; now is how long the active
// ones have lasted.
func writeAlerts(w io.Writer, a *api.Alerts, now time.Time) error {
	if len(a.Active) == 0 && len(a.Recent) == 0 {
		_, err := fmt.Fprintln(w, "no alerts: none active, none recent")
		return err
	}
	fmt.Fprintf(w, "%d active, %d recent\n", len(a.Active), len(a.Recent))
	t := newTable("STATE", "ID", "LIST", "START", ">DURATION", ">PEAK PPS", ">PEAK BPS", ">PACKETS", ">BYTES", "PREFIXES", "REASON")
	for _, al := range append(append([]api.Alert(nil), a.Active...), a.Recent...) {
		state, end := "ended", now
		if al.End != nil {
			end = *al.End
		}
		if al.Active || al.End == nil {
			state = "active"
		}
		var ps []string
		for i, p := range al.Prefixes {
			if i == alertPrefixes {
				ps = append(ps, fmt.Sprintf("+%d", len(al.Prefixes)-alertPrefixes))
				break
			}
			ps = append(ps, p.String())
		}
		t.add(state, al.ID, al.List, al.Start.UTC().Format("2006-01-02 15:04 UTC"), fmtDuration(end.Sub(al.Start).Truncate(time.Second)),
			fmtPPS(al.PeakPPS), fmtBPS(al.PeakBPS), groupDigits(al.Packets), fmtBytes(al.Bytes), orDash(strings.Join(ps, " ")), al.Reason)
	}
	return t.write(w, "")
}
