// Package trafficgen makes the lab's traffic: packets between the
// operator's local prefixes and remote addresses drawn from the real
// country and AS tables, in a mix that looks like a peering point's, or like
// an attack, and counts exactly what it made, per remote prefix, country,
// AS and class, resolved the way sensord resolves it.
//
// A Generator is deterministic: the same options, tables and seed give the
// same packets in the same order.
package trafficgen

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/peerwatch/peerwatch/sensor/aggregate"
	"github.com/peerwatch/peerwatch/sensor/prefixes"
	"github.com/peerwatch/peerwatch/sensor/traffic"
)

// Profile names a traffic mix.
type Profile string

// The profiles.
const (
	// Peering is a peering point's steady exchange with a weighted set of
	// remote hosts in the countries of Options.Mix, both directions, IPv4
	// and IPv6, every class.
	Peering Profile = "peering"
	// Spoofed is a flood towards the local prefixes from random, spoofed
	// source addresses anywhere in the unicast space.
	Spoofed Profile = "spoofed"
	// Burst is a flood towards the local prefixes from many addresses of
	// one country (Options.Country).
	Burst Profile = "burst"
)

// Profiles lists the profiles, for --help and errors.
var Profiles = []Profile{Peering, Spoofed, Burst}

// Share is one country's share of the peering mix; Country "*" is the rest
// of the world (every placed country not named in the mix).
type Share struct {
	Country string
	Weight  float64
}

// DefaultMix is a peering point that exchanges traffic with North Korea,
// China, New Zealand, India, Malaysia and the rest of the world.
var DefaultMix = []Share{{"CN", 22}, {"IN", 16}, {"NZ", 10}, {"MY", 8}, {"KP", 2}, {"*", 42}}

// ParseMix reads a mix written as "CN=22,IN=16,*=40".
func ParseMix(s string) ([]Share, error) {
	var mix []Share
	seen := map[string]bool{}
	for item := range strings.SplitSeq(s, ",") {
		cc, w, ok := strings.Cut(strings.TrimSpace(item), "=")
		if !ok {
			return nil, fmt.Errorf("mix item %q: want COUNTRY=WEIGHT", item)
		}
		cc = strings.ToUpper(strings.TrimSpace(cc))
		if cc != "*" && !isCountryCode(cc) {
			return nil, fmt.Errorf("mix item %q: %q is not a two-letter country code or *", item, cc)
		}
		if seen[cc] {
			return nil, fmt.Errorf("mix item %q: %s is named twice", item, cc)
		}
		seen[cc] = true
		weight, err := strconv.ParseFloat(strings.TrimSpace(w), 64)
		if err != nil || weight <= 0 || math.IsInf(weight, 0) {
			return nil, fmt.Errorf("mix item %q: weight %q is not a positive number", item, w)
		}
		mix = append(mix, Share{cc, weight})
	}
	if len(mix) == 0 {
		return nil, errors.New("empty mix")
	}
	return mix, nil
}

func isCountryCode(s string) bool {
	return len(s) == 2 && 'A' <= s[0] && s[0] <= 'Z' && 'A' <= s[1] && s[1] <= 'Z'
}

// Options of a Generator.
type Options struct {
	Profile Profile
	Seed    uint64
	// Local are the operator's prefixes: local addresses are drawn from
	// them, and remote addresses never fall inside them. At least one IPv4
	// prefix; IPv6 traffic needs an IPv6 prefix too.
	Local []netip.Prefix
	// Mix of the Peering profile; DefaultMix if empty.
	Mix []Share
	// Talkers is the number of remote hosts of the Peering profile (100 if
	// zero), spread over the mix by weight.
	Talkers int
	// IPv6 is the share of IPv6 traffic (of talkers for Peering, of packets
	// otherwise), 0 to 1, where the country has IPv6 space.
	IPv6 float64
	// Country of the Burst profile.
	Country string
	// V4KeyLen and V6KeyLen are the fixed-length blocks that sensord counts
	// addresses no table holds in (its datapath.v4_key_len and v6_key_len;
	// 24 and 48 if zero).
	V4KeyLen, V6KeyLen int
}

// Generator makes packets. It is not safe for concurrent use.
type Generator struct {
	opt     Options
	rng     *rand.Rand
	tables  []*prefixes.Table
	local   [2][]netip.Prefix // by family: 0 IPv4, 1 IPv6
	byCC    map[string]*countrySpace
	talkers []talker
	cum     []float64 // cumulative talker weights
	targets [2][]netip.Addr
	sources []endpoint // Burst
}

// countrySpace is the address space of one country in the country table.
type countrySpace struct{ prefixes [2][]netip.Prefix }

// endpoint is a remote address with its labels as sensord resolves them.
type endpoint struct {
	addr   netip.Addr
	labels aggregate.Labels
}

// talker is a remote host of the peering mix and the local host it talks to.
type talker struct {
	endpoint
	local netip.Addr
}

// New returns a generator over the tables (the country table first: its
// countries decide where addresses are drawn from; every table labels them,
// as sensord's tables do).
func New(opt Options, tables ...*prefixes.Table) (*Generator, error) {
	if !slices.Contains(Profiles, opt.Profile) {
		return nil, fmt.Errorf("unknown profile %q (want %s)", opt.Profile, profileList())
	}
	if len(tables) == 0 {
		return nil, errors.New("no prefix table: the country table is needed to draw addresses")
	}
	if opt.IPv6 < 0 || opt.IPv6 > 1 || math.IsNaN(opt.IPv6) {
		return nil, fmt.Errorf("ipv6 share %v is not between 0 and 1", opt.IPv6)
	}
	if opt.V4KeyLen == 0 {
		opt.V4KeyLen = 24
	}
	if opt.V6KeyLen == 0 {
		opt.V6KeyLen = 48
	}
	if opt.V4KeyLen < 1 || opt.V4KeyLen > 32 {
		return nil, fmt.Errorf("v4 key length %d is not between 1 and 32", opt.V4KeyLen)
	}
	if opt.V6KeyLen < 1 || opt.V6KeyLen > 128 {
		return nil, fmt.Errorf("v6 key length %d is not between 1 and 128", opt.V6KeyLen)
	}
	if opt.Talkers == 0 {
		opt.Talkers = 100
	}
	if opt.Talkers < 0 || opt.Talkers > 100000 {
		return nil, fmt.Errorf("talkers %d is not between 1 and 100000", opt.Talkers)
	}
	if len(opt.Mix) == 0 {
		opt.Mix = DefaultMix
	}
	g := &Generator{
		opt:    opt,
		rng:    rand.New(rand.NewPCG(opt.Seed, 0x7065657277617463)),
		tables: tables,
		byCC:   map[string]*countrySpace{},
	}
	for _, p := range opt.Local {
		if !p.IsValid() {
			return nil, fmt.Errorf("local prefix %v is not valid", p)
		}
		g.local[family(p.Addr())] = append(g.local[family(p.Addr())], p.Masked())
	}
	if len(g.local[0]) == 0 {
		return nil, errors.New("no local IPv4 prefix: local addresses are drawn from them")
	}
	if len(g.local[1]) == 0 {
		g.opt.IPv6 = 0
	}
	for _, e := range tables[0].Entries() {
		if e.Country == "" {
			continue
		}
		cs := g.byCC[e.Country]
		if cs == nil {
			cs = &countrySpace{}
			g.byCC[e.Country] = cs
		}
		f := family(e.Prefix.Addr())
		cs.prefixes[f] = append(cs.prefixes[f], e.Prefix)
	}
	// A few local hosts that the attacks aim at.
	for f := range 2 {
		for range 4 {
			if len(g.local[f]) > 0 {
				g.targets[f] = append(g.targets[f], g.localHost(f))
			}
		}
	}
	switch opt.Profile {
	case Peering:
		return g, g.makeTalkers()
	case Burst:
		return g, g.makeSources()
	}
	return g, nil
}

// Profile is the generator's profile.
func (g *Generator) Profile() Profile { return g.opt.Profile }

// Seed is the generator's seed.
func (g *Generator) Seed() uint64 { return g.opt.Seed }

func profileList() string {
	var s []string
	for _, p := range Profiles {
		s = append(s, string(p))
	}
	return strings.Join(s, ", ")
}

func family(a netip.Addr) int {
	if a.Is4() {
		return 0
	}
	return 1
}

// makeTalkers draws the remote hosts of the peering mix: each share gets
// talkers in proportion to its weight, and within a share the talkers'
// weights fall off as 1/rank, so a few hosts dominate, as at a real
// peering point.
func (g *Generator) makeTalkers() error {
	var sum float64
	named := map[string]bool{}
	for _, s := range g.opt.Mix {
		sum += s.Weight
		named[s.Country] = true
	}
	var rest []string // the rest of the world, sorted for determinism
	for cc := range g.byCC {
		if !named[cc] {
			rest = append(rest, cc)
		}
	}
	sort.Strings(rest)
	total := 0.0
	for _, s := range g.opt.Mix {
		n := max(1, int(math.Round(float64(g.opt.Talkers)*s.Weight/sum)))
		var harmonic float64
		for i := range n {
			harmonic += 1 / float64(i+1)
		}
		for i := range n {
			cc := s.Country
			if cc == "*" {
				if len(rest) == 0 {
					return errors.New("mix: the country table has no country outside the mix for *")
				}
				cc = rest[g.rng.IntN(len(rest))]
			}
			f := 0
			if g.rng.Float64() < g.opt.IPv6 && len(g.byCC[cc].prefixesOf(1)) > 0 {
				f = 1
			}
			if s.Country == "*" && len(g.byCC[cc].prefixesOf(0)) == 0 {
				f = 1 // a country of the rest of the world with IPv6 space only
			}
			ep, err := g.remoteIn(cc, f)
			if err != nil {
				return fmt.Errorf("mix: %w", err)
			}
			w := s.Weight / sum / harmonic / float64(i+1)
			total += w
			g.talkers = append(g.talkers, talker{endpoint: ep, local: g.localHost(f)})
			g.cum = append(g.cum, total)
		}
	}
	return nil
}

func (cs *countrySpace) prefixesOf(f int) []netip.Prefix {
	if cs == nil {
		return nil
	}
	return cs.prefixes[f]
}

// makeSources draws the Burst profile's sources: 256 addresses of the
// country, some IPv6 if it has IPv6 space.
func (g *Generator) makeSources() error {
	cc := strings.ToUpper(g.opt.Country)
	if !isCountryCode(cc) {
		return fmt.Errorf("burst: %q is not a two-letter country code", g.opt.Country)
	}
	if g.byCC[cc] == nil {
		return fmt.Errorf("burst: the country table has no prefix of %s", cc)
	}
	for range 256 {
		f := 0
		if g.rng.Float64() < g.opt.IPv6 && len(g.byCC[cc].prefixesOf(1)) > 0 {
			f = 1
		}
		ep, err := g.remoteIn(cc, f)
		if err != nil {
			return fmt.Errorf("burst: %w", err)
		}
		g.sources = append(g.sources, ep)
	}
	return nil
}

// remoteIn draws an address of country cc in family f that the tables
// place in cc (a more specific prefix of another country may sit inside a
// country's prefix) and that is not local.
func (g *Generator) remoteIn(cc string, f int) (endpoint, error) {
	space := g.byCC[cc].prefixesOf(f)
	if len(space) == 0 {
		return endpoint{}, fmt.Errorf("the country table has no %s prefix of %s", [2]string{"IPv4", "IPv6"}[f], cc)
	}
	for range 1000 {
		a := g.hostIn(space[g.rng.IntN(len(space))])
		if g.isLocal(a) {
			continue
		}
		ep := g.resolve(a)
		if ep.labels.Country == cc {
			return ep, nil
		}
	}
	return endpoint{}, fmt.Errorf("no address of %s found that the tables place in %s", [2]string{"IPv4", "IPv6"}[f], cc)
}

// resolve labels an address as sensord's summaries do: the longest prefix
// of any table, or the fixed-length block no table holds.
func (g *Generator) resolve(a netip.Addr) endpoint {
	l := aggregate.Resolve(g.tables, a)
	if !l.Prefix.IsValid() {
		bits := g.opt.V4KeyLen
		if a.Is6() {
			bits = g.opt.V6KeyLen
		}
		l.Prefix = netip.PrefixFrom(a, bits).Masked()
	}
	return endpoint{addr: a, labels: l}
}

func (g *Generator) isLocal(a netip.Addr) bool {
	for _, p := range g.local[family(a)] {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// hostIn returns a random address inside p.
func (g *Generator) hostIn(p netip.Prefix) netip.Addr {
	b := p.Addr().As16()
	off, bits := 0, p.Bits()
	if p.Addr().Is4() {
		off = 12
	}
	for i := off; i < 16; i++ {
		bitPos := (i - off) * 8 // first bit of this byte
		if bitPos+8 <= bits {
			continue
		}
		r := byte(g.rng.Uint32())
		if bitPos < bits {
			keep := byte(0xff) << (8 - (bits - bitPos))
			b[i] = b[i]&keep | r&^keep
		} else {
			b[i] = r
		}
	}
	if p.Addr().Is4() {
		return netip.AddrFrom4([4]byte(b[12:]))
	}
	return netip.AddrFrom16(b)
}

// localHost returns a random host of a local prefix of family f.
func (g *Generator) localHost(f int) netip.Addr {
	ps := g.local[f]
	return g.hostIn(ps[g.rng.IntN(len(ps))])
}

// Next returns the next packet, with the labels of its remote address.
func (g *Generator) Next() (Packet, aggregate.Labels) {
	switch g.opt.Profile {
	case Spoofed:
		return g.nextSpoofed()
	case Burst:
		return g.nextBurst()
	}
	return g.nextPeering()
}

func (g *Generator) nextPeering() (Packet, aggregate.Labels) {
	t := &g.talkers[g.pick()]
	p := Packet{Src: t.addr, Dst: t.local, Remote: t.addr, Direction: traffic.In}
	if g.rng.IntN(100) < 45 {
		p.Src, p.Dst, p.Direction = t.local, t.addr, traffic.Out
	}
	g.class(&p, [traffic.NumClasses]int{56, 24, 5, 13, 2})
	return p, t.labels
}

// pick draws a talker by weight.
func (g *Generator) pick() int {
	x := g.rng.Float64() * g.cum[len(g.cum)-1]
	i, _ := slices.BinarySearch(g.cum, x)
	return min(i, len(g.cum)-1)
}

func (g *Generator) nextSpoofed() (Packet, aggregate.Labels) {
	var a netip.Addr
	for {
		if g.rng.Float64() < g.opt.IPv6 {
			a = g.hostIn(netip.MustParsePrefix("2000::/3"))
		} else {
			a = g.hostIn(netip.MustParsePrefix("0.0.0.0/0"))
			if b := a.As4(); b[0] == 0 || b[0] == 127 || b[0] >= 224 {
				continue // not a unicast source a router would pass
			}
		}
		if !g.isLocal(a) {
			break
		}
	}
	ep := g.resolve(a)
	p := Packet{Src: a, Dst: g.target(family(a)), Remote: a, Direction: traffic.In}
	g.class(&p, [traffic.NumClasses]int{70, 20, 10, 0, 0})
	if p.Proto == protoTCP {
		p.Payload = 0 // a SYN flood
	}
	return p, ep.labels
}

func (g *Generator) nextBurst() (Packet, aggregate.Labels) {
	ep := g.sources[g.rng.IntN(len(g.sources))]
	p := Packet{Src: ep.addr, Dst: g.target(family(ep.addr)), Remote: ep.addr, Direction: traffic.In}
	g.class(&p, [traffic.NumClasses]int{40, 45, 10, 5, 0})
	return p, ep.labels
}

func (g *Generator) target(f int) netip.Addr {
	return g.targets[f][g.rng.IntN(len(g.targets[f]))]
}

// Well-known ports: services on the remote or local side, and the tunnel
// ports the sensor classifies (docs/datapath.md).
var (
	tcpServices = []uint16{443, 443, 443, 80, 80, 22, 25, 993, 8443}
	udpServices = []uint16{53, 53, 443, 123, 3478, 5060}
)

const (
	portWireGuard = 51820
	portOpenVPN   = 1194
	portIKE       = 500
	portNATT      = 4500
)

// class chooses the protocol, ports and size of p by the weights of each
// class, so that the sensor counts it in p.Class.
func (g *Generator) class(p *Packet, weights [traffic.NumClasses]int) {
	total := 0
	for _, w := range weights {
		total += w
	}
	x := g.rng.IntN(total)
	c := traffic.Class(0)
	for ; x >= weights[c]; c++ {
		x -= weights[c]
	}
	p.Class = c
	v6 := p.Src.Is6()
	service := func(list []uint16) {
		svc, eph := list[g.rng.IntN(len(list))], g.ephemeral()
		// The remote side is the service as often as the local one.
		if g.rng.IntN(2) == 0 {
			p.SrcPort, p.DstPort = svc, eph
		} else {
			p.SrcPort, p.DstPort = eph, svc
		}
	}
	switch c {
	case traffic.TCP:
		p.Proto = protoTCP
		service(tcpServices)
	case traffic.UDP:
		p.Proto = protoUDP
		service(udpServices)
	case traffic.ICMP:
		p.Proto = protoICMP
		if v6 {
			p.Proto = protoICMPv6
		}
		p.SrcPort, p.DstPort = uint16(g.rng.IntN(65536)), uint16(g.rng.IntN(65536)) // id, sequence
	case traffic.Tunnel:
		switch k := g.rng.IntN(10); k {
		case 0:
			p.Proto = protoGRE
		case 1, 2:
			p.Proto = protoESP
		case 3:
			p.Proto = protoAH
		case 4:
			p.Proto = protoIPIP
			if v6 {
				p.Proto = protoIPv6
			}
		case 5:
			p.Proto = protoIPv6 // 6in4, or IPv6 in IPv6
		default:
			p.Proto = protoUDP
			port := []uint16{portWireGuard, portOpenVPN, portIKE, portNATT}[k-6]
			if port == portIKE || port == portNATT {
				p.SrcPort, p.DstPort = port, port
			} else {
				p.SrcPort, p.DstPort = g.ephemeral(), port
			}
		}
		p.SrcPort, p.DstPort = cmp16(p.SrcPort, uint16(g.rng.IntN(65536))), cmp16(p.DstPort, uint16(g.rng.IntN(65536)))
	default:
		p.Proto = protoSCTP
		p.SrcPort, p.DstPort = 38412, 38412
	}
	maxPayload := MaxIPLen - p.headerLen()
	switch r := g.rng.IntN(10); {
	case p.Proto == protoTCP && r < 3:
		p.Payload = 0 // handshakes and bare ACKs
	case r < 3:
		p.Payload = 56 // ping-sized
	case r < 5:
		p.Payload = 1 + g.rng.IntN(300)
	default:
		p.Payload = maxPayload - g.rng.IntN(300)
	}
}

// cmp16 returns a unless it is zero, then b: tunnel protocols without
// ports use the fields for SPI and sequence.
func cmp16(a, b uint16) uint16 {
	if a != 0 {
		return a
	}
	return b
}

// ephemeral is a client port that is not a tunnel port.
func (g *Generator) ephemeral() uint16 {
	for {
		p := uint16(32768 + g.rng.IntN(61000-32768))
		if p != portWireGuard {
			return p
		}
	}
}
