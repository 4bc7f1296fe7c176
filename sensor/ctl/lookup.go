package ctl

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/netip"

	"github.com/peerwatch/peerwatch/sensor/api"
)

var lookupCommand = &command{
	name:    "lookup",
	args:    "ADDR",
	nargs:   1,
	summary: "what the sensor knows of an address: prefix, country, AS, traffic",
	help: `Prints the longest prefix of the loaded tables that holds the IPv4 or IPv6
address ADDR, with its country, origin AS and table, and the traffic of the
last --window: of its prefix when the prefix is in the window's top list,
and of its country and AS (exact). It reads GET /api/v1/lookup.`,
	flags: func(fs *flag.FlagSet, o *options) {
		fs.StringVar(&o.window, "window", "1h", "the window that ends now: a duration (15m, 6h) or days (7d), at most 730d")
	},
	run: func(ctx context.Context, c *cli, args []string) error {
		addr, err := netip.ParseAddr(args[0])
		if err != nil || addr.Zone() != "" {
			return usage("lookup", "%q is not an IPv4 or IPv6 address", args[0])
		}
		if err := checkWindow(c.o.window); err != nil {
			return usage("lookup", "--window: %v", err)
		}
		if c.g.json {
			return c.printJSON(ctx, "lookup", api.LookupQuery(addr, c.o.window))
		}
		l, err := c.client.LookupWindow(ctx, addr, c.o.window)
		if err != nil {
			return c.explain(err)
		}
		return writeLookup(c.env.Stdout, l)
	},
}

// writeLookup writes a lookup for a terminal.
func writeLookup(w io.Writer, l *api.Lookup) error {
	var f fields
	f.add("address", l.Addr.String())
	if lb := l.Labels; lb == nil {
		f.add("prefix", "no loaded table holds it")
	} else {
		f.add("prefix", fmt.Sprintf("%s (table %s)", lb.Prefix, orDash(lb.Table)))
		f.add("country", api.CountryLabel(lb.Country))
		as := api.ASLabel(lb.ASN)
		if lb.ASName != "" {
			as += " " + lb.ASName
		}
		f.add("AS", as)
	}
	f.add("window", fmt.Sprintf("last %s (%s)", l.Window, fmtSpan(l.From, l.To)))
	if err := f.write(w); err != nil {
		return err
	}

	t := newTable("TRAFFIC OF", ">PACKETS IN", ">PACKETS OUT", ">BYTES IN", ">BYTES OUT", ">TUNNEL")
	add := func(name string, c *api.Counters) {
		if c != nil {
			t.add(name, groupDigits(c.PacketsIn), groupDigits(c.PacketsOut), fmtBytes(c.BytesIn), fmtBytes(c.BytesOut),
				fmtPercent(c.Classes.Tunnel, c.Packets()))
		}
	}
	if l.InTop && l.Prefix != nil {
		add("prefix "+l.Prefix.String(), l.Counters)
	}
	if l.Labels != nil {
		add("country "+api.CountryLabel(l.Labels.Country), l.Country)
		add(api.ASLabel(l.Labels.ASN), l.AS)
	}
	fmt.Fprintln(w)
	if len(t.rows) == 0 {
		fmt.Fprintf(w, "no traffic of its prefix, country or AS in the last %s\n", l.Window)
	} else if err := t.write(w, ""); err != nil {
		return err
	}
	if l.Note != "" {
		if _, err := fmt.Fprintln(w, "note: "+l.Note); err != nil {
			return err
		}
	}
	return nil
}
