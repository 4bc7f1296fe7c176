package ctl

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/peerwatch/peerwatch/sensor/api"
)

// Bounds the API sets (docs/api.md); sensorctl checks them first so that a
// typo is a usage error.
const (
	maxLimit  = 10000
	maxWindow = 730 * 24 * time.Hour
)

var topCommand = &command{
	name:    "top",
	summary: "the top remote prefixes, countries or origin ASes of a window",
	help: `Ranks the remote prefixes (--by prefix), countries (--by country) or origin
ASes (--by as) of the last --window by their packets in --direction, and
prints each with its packets and bytes in and out, its share of all remote
packets in that direction, and its tunnel/VPN share. "others" is what the
rows leave out, "total" all remote traffic of the window. Counts by prefix
are lower bounds (each stored interval keeps only its top prefixes);
countries and ASes are exact. It reads GET /api/v1/top.`,
	flags: func(fs *flag.FlagSet, o *options) {
		fs.StringVar(&o.by, "by", api.ByPrefix, "what to rank: prefix, country or as")
		fs.StringVar(&o.window, "window", "1h", "the window that ends now: a duration (15m, 6h) or days (7d), at most 730d")
		fs.StringVar(&o.direction, "direction", "both", "the packets to rank by: in (remote to local), out or both")
		fs.IntVar(&o.limit, "limit", 20, "rows, 1 to 10000")
	},
	run: func(ctx context.Context, c *cli, _ []string) error {
		o := c.o
		switch o.by {
		case api.ByPrefix, api.ByCountry, api.ByAS:
		default:
			return usage("top", "--by: %q is not prefix, country or as", o.by)
		}
		switch o.direction {
		case "in", "out", "both":
		default:
			return usage("top", "--direction: %q is not in, out or both", o.direction)
		}
		if o.limit < 1 || o.limit > maxLimit {
			return usage("top", "--limit: %d is not between 1 and %d", o.limit, maxLimit)
		}
		if err := checkWindow(o.window); err != nil {
			return usage("top", "--window: %v", err)
		}
		if c.g.json {
			return c.printJSON(ctx, "top", api.TopQuery(o.by, o.window, o.direction, o.limit))
		}
		t, err := c.client.Top(ctx, o.by, o.window, o.direction, o.limit)
		if err != nil {
			return c.explain(err)
		}
		return writeTop(c.env.Stdout, t)
	},
}

// checkWindow checks a window the way the API reads it: a Go duration or
// whole days, positive, at most 730 days.
func checkWindow(s string) error {
	var d time.Duration
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseUint(days, 10, 16)
		if err != nil {
			return fmt.Errorf("%q is not a duration (like 15m, 6h or 7d)", s)
		}
		d = time.Duration(n) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return fmt.Errorf("%q is not a duration (like 15m, 6h or 7d)", s)
		}
	}
	switch {
	case d <= 0:
		return fmt.Errorf("%s is not positive", s)
	case d > maxWindow:
		return fmt.Errorf("%s is more than 730 days", s)
	}
	return nil
}

// topRow is a row of any top list.
type topRow struct {
	key     []string // the key's columns
	counter api.Counters
}

// writeTop writes a top list for a terminal.
func writeTop(w io.Writer, t *api.Top) error {
	noun := map[string]string{api.ByPrefix: "prefixes", api.ByCountry: "countries", api.ByAS: "origin ASes"}[t.By]
	dir := map[string]string{"in": "packets in", "out": "packets out"}[t.Direction]
	if dir == "" {
		dir = "packets in both directions"
	}
	fmt.Fprintf(w, "top %s by %s, last %s (%s)\n", noun, dir, t.Window, fmtSpan(t.From, t.To))
	if t.NoData {
		_, err := fmt.Fprintf(w, "no data in the last %s yet\n", t.Window)
		return err
	}
	if t.DataStart != nil && t.DataStart.After(t.From) {
		fmt.Fprintf(w, "data from %s only: the sensor has no earlier interval\n", fmtTime(*t.DataStart))
	}

	var keys []string
	var rows []topRow
	switch t.By {
	case api.ByPrefix:
		keys = []string{"PREFIX", "COUNTRY", "AS", "AS NAME"}
		for _, r := range t.PrefixRows() {
			rows = append(rows, topRow{[]string{r.Prefix.String(), api.CountryLabel(r.Country), api.ASLabel(r.ASN), shorten(r.ASName, 28)}, r.Counters})
		}
	case api.ByCountry:
		keys = []string{"COUNTRY"}
		for _, r := range t.CountryRows() {
			rows = append(rows, topRow{[]string{api.CountryLabel(r.Country)}, r.Counters})
		}
	case api.ByAS:
		keys = []string{"AS", "AS NAME"}
		for _, r := range t.ASRows() {
			rows = append(rows, topRow{[]string{api.ASLabel(r.ASN), shorten(r.ASName, 28)}, r.Counters})
		}
	}
	if len(rows) == 0 {
		_, err := fmt.Fprintf(w, "no remote %s with %s in the last %s\n", noun, dir, t.Window)
		return err
	}
	header := append(append([]string{">RANK"}, keys...), ">PACKETS IN", ">PACKETS OUT", ">BYTES IN", ">BYTES OUT", ">SHARE", ">TUNNEL")
	tb := newTable(header...)
	all := t.Total.PacketsTo(t.Direction)
	line := func(rank string, key []string, c api.Counters) {
		cells := append(append([]string{rank}, key...), make([]string, len(keys)-len(key))...)
		tb.add(append(cells, groupDigits(c.PacketsIn), groupDigits(c.PacketsOut), fmtBytes(c.BytesIn), fmtBytes(c.BytesOut),
			fmtPercent(c.PacketsTo(t.Direction), all), fmtPercent(c.Classes.Tunnel, c.Packets()))...)
	}
	for i, r := range rows {
		line(strconv.Itoa(i+1), r.key, r.counter)
	}
	if t.Other.Packets() > 0 {
		line("", []string{"others"}, t.Other)
	}
	line("", []string{"total"}, t.Total)
	if err := tb.write(w, ""); err != nil {
		return err
	}
	if t.Approximate {
		_, err := fmt.Fprintln(w, "by prefix, counts are lower bounds: each stored interval keeps only its top prefixes")
		return err
	}
	return nil
}
