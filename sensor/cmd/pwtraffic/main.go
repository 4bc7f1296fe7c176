// Command pwtraffic is the lab's traffic source: it sends raw Ethernet
// frames between the operator's local prefixes and remote addresses drawn
// from the real country and AS tables, on the two sides of a lab link, and
// writes exactly what it sent per remote prefix, country, AS and class as
// JSON (docs/lab.md).
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/peerwatch/peerwatch/sensor/prefixes"
	"github.com/peerwatch/peerwatch/sensor/traffic"
	"github.com/peerwatch/peerwatch/sensor/trafficgen"
	"github.com/peerwatch/peerwatch/sensor/version"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "pwtraffic:", err)
		os.Exit(1)
	}
}

// The tables' files in an ipdb directory (board/common/ipdb).
var tableFiles = []struct{ name, format, stem string }{
	{"country", prefixes.FormatIPLocationCountry, "geo-whois-asn-country"},
	{"asn", prefixes.FormatIPLocationASN, "asn"},
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("pwtraffic", flag.ContinueOnError)
	var (
		profile   = fs.String("profile", string(trafficgen.Peering), "traffic `MIX`: peering, spoofed or burst")
		seed      = fs.Uint64("seed", 1, "seed of the random choices: the same seed sends the same frames")
		rate      = fs.Float64("rate", 1000, "send `PPS` packets per second; 0 is as fast as the pacing allows")
		count     = fs.Uint64("count", 0, "stop after `N` packets (0: no limit)")
		duration  = fs.Duration("duration", 0, "stop after this long (0: no limit; with neither limit, until SIGINT)")
		local     = fs.String("local", "192.0.2.0/24,2001:db8:1::/48", "the operator's `PREFIXES`, comma-separated: local addresses come from them")
		mix       = fs.String("mix", "CN=22,IN=16,NZ=10,MY=8,KP=2,*=42", "peering: `SHARES` of the countries; * is the rest of the world")
		talkers   = fs.Int("talkers", 100, "peering: number of remote hosts, spread over the mix")
		ipv6      = fs.Float64("ipv6", 0.25, "share of IPv6 (talkers, or packets of an attack), 0 to 1")
		country   = fs.String("country", "KP", "burst: the `COUNTRY` the burst comes from")
		attack    = fs.String("attack", "", "also send an attack `PROFILE` (spoofed or burst), interleaved with the main one")
		atkAfter  = fs.Duration("attack-after", 0, "start the attack this long after the main traffic")
		atkRate   = fs.Float64("attack-rate", 500, "send the attack at `PPS` packets per second; 0 is as fast as the pacing allows")
		atkCount  = fs.Uint64("attack-count", 0, "stop the attack after `N` packets (0: no limit)")
		atkDur    = fs.Duration("attack-duration", 0, "stop the attack after this long (0: no limit)")
		ipdb      = fs.String("ipdb", defaultIPDB(), "`DIR` of the country and AS tables (geo-whois-asn-country-ipv{4,6}.csv.gz, asn-ipv{4,6}.csv.gz)")
		v4Key     = fs.Int("v4-key-len", 24, "sensord's datapath.v4_key_len: the block of an IPv4 address no table holds")
		v6Key     = fs.Int("v6-key-len", 48, "sensord's datapath.v6_key_len: the block of an IPv6 address no table holds")
		site      = fs.String("site", "", "send on the lab link `NAME` (scripts/lab): sets the four --peer-*/--local-* flags")
		labPrefix = fs.String("lab", "pwlab", "with --site: the lab's name `PREFIX` (scripts/lab's LAB_PREFIX)")
		peerNS    = fs.String("peer-netns", "", "network `NAMESPACE` of the peer's side of the link (empty: this one)")
		peerIf    = fs.String("peer-iface", "", "`INTERFACE` that remote-to-local frames are sent on")
		localNS   = fs.String("local-netns", "", "network `NAMESPACE` of the local side of the link (empty: this one)")
		localIf   = fs.String("local-iface", "", "`INTERFACE` that local-to-remote frames are sent on")
		report    = fs.String("report", "-", "write the JSON report of what was sent to `FILE` (- is stdout)")
		progress  = fs.Duration("progress", 0, "print the packets sent so far to stderr this often (0: never)")
		wait      = fs.Bool("wait", false, "after loading the tables, print \"ready\" to stderr and send only when a line arrives on stdin")
		showVer   = fs.Bool("version", false, "print the version and exit")
	)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `Usage: pwtraffic [flags] (--site NAME | --peer-iface IF --local-iface IF)

pwtraffic sends raw Ethernet frames (AF_PACKET) on the two sides of a lab
link: remote-to-local frames on the peer's interface, local-to-remote frames
on the local network's. Remote addresses come from the real country and AS
tables; the report (JSON) says exactly what was sent per remote prefix,
country and AS, resolved as sensord resolves them, with packets and frame
bytes per direction and packets per class (tcp, udp, icmp, tunnel, other).

Profiles:
  peering  a peering point's steady mix with the countries of --mix, both
           directions, IPv4 and IPv6, every class
  spoofed  a flood from random spoofed sources towards the local prefixes
  burst    a flood from many addresses of one --country

--attack adds a spoofed or burst flood to the main profile, after
--attack-after, with its own rate and limits; the run ends when both
streams reached their limits (or on SIGINT/SIGTERM; the report is written
either way).

Example: the lab's ams1 link, a steady mix at 300 packets/s, and after 30 s a
burst of 3000 packets from KP at 500 packets/s:

  pwtraffic --site ams1 --rate 300 --attack burst --attack-after 30s \
            --attack-count 3000 --report ams1.json

It needs root (CAP_NET_RAW, and CAP_SYS_ADMIN to enter a namespace).
See docs/lab.md.

Flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if *showVer {
		fmt.Println(version.String("pwtraffic"))
		return nil
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (flags only; see --help)", fs.Arg(0))
	}
	if *site != "" {
		if *peerNS != "" || *peerIf != "" || *localNS != "" || *localIf != "" {
			return errors.New("--site sets the --peer-* and --local-* flags: give one or the other")
		}
		*peerNS, *peerIf = *labPrefix+"-peer", *site
		*localNS, *localIf = *labPrefix+"-local", *site
	}
	if *peerIf == "" || *localIf == "" {
		return errors.New("no link to send on: give --site NAME, or --peer-iface and --local-iface")
	}
	opt := trafficgen.Options{
		Profile:  trafficgen.Profile(*profile),
		Seed:     *seed,
		Talkers:  *talkers,
		IPv6:     *ipv6,
		Country:  *country,
		V4KeyLen: *v4Key,
		V6KeyLen: *v6Key,
	}
	for s := range strings.SplitSeq(*local, ",") {
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("--local: %w", err)
		}
		if p != p.Masked() {
			return fmt.Errorf("--local: %s has host bits set (%s)", p, p.Masked())
		}
		opt.Local = append(opt.Local, p)
	}
	var err error
	if opt.Mix, err = trafficgen.ParseMix(*mix); err != nil {
		return fmt.Errorf("--mix: %w", err)
	}
	if !slices.Contains(trafficgen.Profiles, trafficgen.Profile(*profile)) {
		return fmt.Errorf("--profile: unknown profile %q (want peering, spoofed or burst)", *profile)
	}
	if *rate < 0 {
		return fmt.Errorf("--rate: %v is negative", *rate)
	}
	if *atkRate < 0 {
		return fmt.Errorf("--attack-rate: %v is negative", *atkRate)
	}
	if *attack != "" && *attack != string(trafficgen.Spoofed) && *attack != string(trafficgen.Burst) {
		return fmt.Errorf("--attack: %q is not an attack profile (want spoofed or burst)", *attack)
	}

	// The tables' files and the link first: a missing file or lab fails at
	// once, not after seconds of loading.
	for _, tf := range tableFiles {
		for _, fam := range []string{"ipv4", "ipv6"} {
			if _, err := os.Stat(filepath.Join(*ipdb, tf.stem+"-"+fam+".csv.gz")); err != nil {
				return fmt.Errorf("--ipdb: table %s: %w", tf.name, err)
			}
		}
	}
	hint := func(err error) error {
		if *site != "" {
			return fmt.Errorf("%w (is the lab up? scripts/lab status, with LAB_PREFIX=%s)", err, *labPrefix)
		}
		return err
	}
	peer, err := trafficgen.OpenPort(*peerNS, *peerIf)
	if err != nil {
		return hint(err)
	}
	defer peer.Close()
	lcl, err := trafficgen.OpenPort(*localNS, *localIf)
	if err != nil {
		return hint(err)
	}
	defer lcl.Close()

	tables, err := loadTables(*ipdb)
	if err != nil {
		return err
	}
	gen, err := trafficgen.New(opt, tables...)
	if err != nil {
		return fmt.Errorf("--profile %s: %w", opt.Profile, err)
	}
	streams := []*trafficgen.Stream{{Gen: gen, Rate: *rate, Count: *count, Duration: *duration}}
	if *attack != "" {
		aopt := opt
		aopt.Profile, aopt.Seed = trafficgen.Profile(*attack), opt.Seed+1
		agen, err := trafficgen.New(aopt, tables...)
		if err != nil {
			return fmt.Errorf("--attack %s: %w", aopt.Profile, err)
		}
		streams = append(streams, &trafficgen.Stream{Gen: agen, Rate: *atkRate, Count: *atkCount, Duration: *atkDur, After: *atkAfter})
	}

	r := &trafficgen.Run{Streams: streams, Peer: peer, Local: lcl}
	if *progress > 0 {
		last := time.Time{}
		r.Progress = func(c traffic.Counters) {
			if time.Since(last) >= *progress {
				last = time.Now()
				fmt.Fprintf(os.Stderr, "pwtraffic: %s %s: %d packets sent (%d in, %d out)\n", *site, *profile, c.Total(), c.Packets[traffic.In], c.Packets[traffic.Out])
			}
		}
	}
	if *wait {
		fmt.Fprintln(os.Stderr, "ready")
		line := make(chan error, 1)
		go func() {
			_, err := bufio.NewReader(os.Stdin).ReadString('\n')
			line <- err
		}()
		select {
		case err := <-line:
			if err != nil {
				return fmt.Errorf("--wait: stdin: %w", err)
			}
		case <-ctx.Done():
			return nil
		}
	}
	var tally trafficgen.Tally
	start := time.Now()
	sendErr := r.Send(ctx, &tally)
	rep := tally.Report()
	rep.Site = *site
	for _, st := range streams {
		rep.Streams = append(rep.Streams, trafficgen.StreamReport{Profile: st.Gen.Profile(), Seed: st.Gen.Seed(), Sent: st.Sent})
	}
	rep.Start, rep.End = start.UTC(), time.Now().UTC()
	if err := writeReport(*report, rep); err != nil {
		return errors.Join(sendErr, err)
	}
	what := *profile
	if *attack != "" {
		what += fmt.Sprintf(" and %s (%d packets)", *attack, streams[1].Sent.Total())
	}
	fmt.Fprintf(os.Stderr, "pwtraffic: %s: sent %d packets (%d in, %d out), %d bytes, %d prefixes, %d countries in %s\n",
		what, rep.Sent.Total(), rep.Sent.Packets[traffic.In], rep.Sent.Packets[traffic.Out], rep.Sent.TotalBytes(),
		len(rep.Prefixes), len(rep.Countries), rep.End.Sub(rep.Start).Round(time.Millisecond))
	return sendErr
}

// defaultIPDB is board/common/ipdb when run from the repository, the
// installed tables otherwise.
func defaultIPDB() string {
	if _, err := os.Stat("board/common/ipdb"); err == nil {
		return "board/common/ipdb"
	}
	return "/usr/share/peerwatch/ipdb"
}

func loadTables(dir string) ([]*prefixes.Table, error) {
	var tables []*prefixes.Table
	for _, tf := range tableFiles {
		b := prefixes.NewTable(tf.name)
		for _, fam := range []string{"ipv4", "ipv6"} {
			path := filepath.Join(dir, tf.stem+"-"+fam+".csv.gz")
			if _, err := prefixes.LoadFile(tf.format, path, prefixes.Entry{}, b); err != nil {
				return nil, fmt.Errorf("--ipdb: table %s: %w", tf.name, err)
			}
		}
		t, _ := b.Build()
		tables = append(tables, t)
	}
	return tables, nil
}

// writeReport writes the report as indented JSON to path, atomically for
// a file.
func writeReport(path string, rep trafficgen.Report) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if path == "-" {
		_, err = os.Stdout.Write(b)
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}
