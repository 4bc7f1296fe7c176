package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/peerwatch/peerwatch/sensor/prefixes"
)

// The tables' files in an ipdb directory (board/common/ipdb), as sensord's
// configuration and pwtraffic name them.
var tableFiles = []struct{ name, format, stem string }{
	{"country", prefixes.FormatIPLocationCountry, "geo-whois-asn-country"},
	{"asn", prefixes.FormatIPLocationASN, "asn"},
}

// tablePaths lists the four table files of dir, checking that they exist.
func tablePaths(dir string) (map[string][]string, error) {
	paths := map[string][]string{}
	for _, tf := range tableFiles {
		for _, fam := range []string{"ipv4", "ipv6"} {
			p := filepath.Join(dir, tf.stem+"-"+fam+".csv.gz")
			if _, err := os.Stat(p); err != nil {
				return nil, fmt.Errorf("--ipdb: table %s: %w", tf.name, err)
			}
			paths[tf.name] = append(paths[tf.name], p)
		}
	}
	return paths, nil
}

// writeNetworks writes pmacct's networks_file: every prefix of the country
// and AS tables (the union, as sensord and pwtraffic resolve an address to
// the longest prefix of either table), and the local prefixes, one CIDR a
// line. It returns the number of lines.
func writeNetworks(path, ipdb string, local []netip.Prefix) (int, error) {
	paths, err := tablePaths(ipdb)
	if err != nil {
		return 0, err
	}
	seen := map[netip.Prefix]bool{}
	var order []netip.Prefix
	for _, tf := range tableFiles {
		b := prefixes.NewTable(tf.name)
		for _, p := range paths[tf.name] {
			if _, err := prefixes.LoadFile(tf.format, p, prefixes.Entry{}, b); err != nil {
				return 0, fmt.Errorf("table %s: %w", tf.name, err)
			}
		}
		t, _ := b.Build()
		for _, e := range t.Entries() {
			if !seen[e.Prefix] {
				seen[e.Prefix] = true
				order = append(order, e.Prefix)
			}
		}
	}
	for _, p := range local {
		if !seen[p] {
			seen[p] = true
			order = append(order, p)
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	w := bufio.NewWriter(f)
	for _, p := range order {
		fmt.Fprintln(w, p.String())
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return 0, fmt.Errorf("write %s: %w", path, err)
	}
	return len(order), f.Close()
}

func runNetworks(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("pwbench networks", flag.ContinueOnError)
	fs.SetOutput(stderr)
	ipdb := fs.String("ipdb", "board/common/ipdb", "`DIR` of the country and AS tables")
	local := fs.String("local", defaultLocal, "the operator's `PREFIXES`, comma-separated")
	out := fs.String("out", "networks.lst", "the `FILE` to write")
	if err := fs.Parse(args); err != nil {
		return err
	}
	loc, err := parseLocal(*local)
	if err != nil {
		return err
	}
	n, err := writeNetworks(*out, *ipdb, loc)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "pwbench: %s: %d networks\n", *out, n)
	return nil
}
