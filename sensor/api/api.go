// Package api is the sensor's JSON API as Go types: the bodies that sensord
// answers under /api/v1/ (sensor/web writes them) and a Client that reads
// them (sensorctl uses it). docs/api.md documents every field.
//
// The package is plain data and net/http: it imports nothing of the sensor
// but its traffic counters, so that a tool can speak to a sensor without
// linking the daemon.
package api

import (
	"net/netip"
	"strconv"
	"time"

	"github.com/peerwatch/peerwatch/sensor/traffic"
)

// Error is the body of every error answer: {"error": "…"}. A parameter's
// error starts with the parameter's name.
type Error struct {
	Error string `json:"error"`
}

// Counters are the traffic of one key (a prefix, a country, an AS) or of a
// sum of keys: in is remote to local, out local to remote.
type Counters struct {
	PacketsIn  uint64  `json:"packets_in"`
	PacketsOut uint64  `json:"packets_out"`
	BytesIn    uint64  `json:"bytes_in"`  // frame bytes as seen at the hook
	BytesOut   uint64  `json:"bytes_out"` // frame bytes as seen at the hook
	Classes    Classes `json:"classes"`
}

// Classes are packets by protocol class, both directions.
type Classes struct {
	TCP    uint64 `json:"tcp"`
	UDP    uint64 `json:"udp"`
	ICMP   uint64 `json:"icmp"`
	Tunnel uint64 `json:"tunnel"` // GRE, ESP/AH, IP-in-IP, WireGuard, OpenVPN, IKE, NAT-T
	Other  uint64 `json:"other"`
}

// CountersOf is c with named fields.
func CountersOf(c traffic.Counters) Counters {
	return Counters{
		PacketsIn: c.Packets[traffic.In], PacketsOut: c.Packets[traffic.Out],
		BytesIn: c.Bytes[traffic.In], BytesOut: c.Bytes[traffic.Out],
		Classes: Classes{
			TCP: c.Class[traffic.TCP], UDP: c.Class[traffic.UDP], ICMP: c.Class[traffic.ICMP],
			Tunnel: c.Class[traffic.Tunnel], Other: c.Class[traffic.Other],
		},
	}
}

// Packets are the packets of both directions.
func (c Counters) Packets() uint64 { return c.PacketsIn + c.PacketsOut }

// Bytes are the bytes of both directions.
func (c Counters) Bytes() uint64 { return c.BytesIn + c.BytesOut }

// PacketsTo are the packets in a direction: "in", "out", or both for
// anything else.
func (c Counters) PacketsTo(direction string) uint64 {
	switch direction {
	case "in":
		return c.PacketsIn
	case "out":
		return c.PacketsOut
	}
	return c.Packets()
}

// Status is GET /api/v1/status: the sensor's health, its counters since
// start and its last interval.
type Status struct {
	Sensor               string          `json:"sensor"`
	Version              string          `json:"version"`
	Board                string          `json:"board"`
	Kernel               string          `json:"kernel"`
	Now                  time.Time       `json:"now"`
	Started              time.Time       `json:"started"`
	UptimeSeconds        float64         `json:"uptime_seconds"`
	Interfaces           []Interface     `json:"interfaces"`
	LastDrain            *time.Time      `json:"last_drain"`        // nil before the first drain
	DrainLagSeconds      *float64        `json:"drain_lag_seconds"` // now − LastDrain; nil before the first drain
	DrainIntervalSeconds float64         `json:"drain_interval_seconds"`
	DrainDurationSeconds float64         `json:"drain_duration_seconds"`
	Invariant            Invariant       `json:"invariant"`
	Totals               traffic.Globals `json:"totals"` // since the sensor started
	Remote               Counters        `json:"remote"` // since the sensor started
	Latest               *Interval       `json:"latest"` // nil before the first interval
	Store                Store           `json:"store"`
	Uplink               Uplink          `json:"uplink"`
}

// Interface is one interface the program is attached to, or meant to be.
type Interface struct {
	Name  string `json:"name"`
	Mode  string `json:"mode"`  // "xdp-native", "xdp-generic", "tcx" or "tc-netlink"
	State string `json:"state"` // "attached" (counting), "down", "missing" or "error"
	Error string `json:"error,omitempty"`
}

// Attached is the State of an interface whose program counts packets.
const Attached = "attached"

// Invariant says whether the last interval reconciled: seen == remote +
// non_ip + malformed + both_local + neither_local + overflow.
type Invariant struct {
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"` // the numbers, when not OK
}

// Interval is the last drained interval: its counters and rates.
type Interval struct {
	Start   time.Time       `json:"start"`
	End     time.Time       `json:"end"`
	Seconds float64         `json:"seconds"`
	PPS     Rates           `json:"packets_per_second"`
	BPS     Rates           `json:"bits_per_second"`
	Globals traffic.Globals `json:"globals"`
	Remote  Counters        `json:"remote"`
}

// Rates are per second, by direction.
type Rates struct {
	In  float64 `json:"in"`
	Out float64 `json:"out"`
}

// Store is the embedded store's state.
type Store struct {
	Path      string `json:"path"`
	Bytes     int64  `json:"bytes"`
	MaxBytes  int64  `json:"max_bytes"` // 0: unbounded
	Evicted   uint64 `json:"evicted"`   // summaries removed to stay under MaxBytes, since start
	Recovered string `json:"recovered,omitempty"`
	// WriteError is the store's last failed write while it lasts (a full
	// or read-only data partition), since WriteErrorSince.
	WriteError      string     `json:"write_error,omitempty"`
	WriteErrorSince *time.Time `json:"write_error_since,omitempty"`
	WriteErrors     uint64     `json:"write_errors"`     // failed writes of an interval since start
	Unstored        int        `json:"unstored"`         // intervals held in memory until the store takes them
	UnstoredDropped uint64     `json:"unstored_dropped"` // intervals given up (counts lost) since start
}

// Uplink is the MQTT uplink's state.
type Uplink struct {
	State  string `json:"state"`
	Outbox int    `json:"outbox"` // summaries waiting for the broker
	// Gap repair since start (docs/uplink.md): summaries queued again at
	// the collector's request, and requested seqs reported lost (no
	// longer in the store).
	Resent       uint64 `json:"resent,omitempty"`
	ReportedLost uint64 `json:"reported_lost,omitempty"`
}

// What a top list ranks (Top.By).
const (
	ByPrefix  = "prefix"
	ByCountry = "country"
	ByAS      = "as"
)

// Top is GET /api/v1/top: the top remote prefixes, countries or origin ASes
// of a window that ends now.
type Top struct {
	By          string    `json:"by"`
	Direction   string    `json:"direction"`
	Window      string    `json:"window"`
	From        time.Time `json:"from"`
	To          time.Time `json:"to"`
	Limit       int       `json:"limit"`
	Approximate bool      `json:"approximate"`
	NoData      bool      `json:"no_data,omitempty"`
	Total       Counters  `json:"total"`
	// Rows are []PrefixRow, []CountryRow or []ASRow, after By. A Top that
	// json.Unmarshal decodes has them as []any: use DecodeTop, or the
	// Client, to get them typed.
	Rows      any        `json:"rows"`
	Other     Counters   `json:"other"` // what the rows leave out of Total
	DataStart *time.Time `json:"data_start,omitempty"`
	DataEnd   *time.Time `json:"data_end,omitempty"`
}

// PrefixRow is a row of a top list by prefix.
type PrefixRow struct {
	Prefix  netip.Prefix `json:"prefix"`
	Country string       `json:"country"` // "" when no table places it
	ASN     uint32       `json:"asn"`     // 0 when no table places it
	ASName  string       `json:"as_name"`
	Counters
}

// CountryRow is a row of a top list by country.
type CountryRow struct {
	Country string `json:"country"` // ISO 3166 code; "" is traffic no table places
	Counters
}

// ASRow is a row of a top list by origin AS.
type ASRow struct {
	ASN    uint32 `json:"asn"` // 0 is traffic no table places
	ASName string `json:"as_name"`
	Counters
}

// PrefixRows are the rows of a top list by prefix; nil for another list.
func (t *Top) PrefixRows() []PrefixRow { r, _ := t.Rows.([]PrefixRow); return r }

// CountryRows are the rows of a top list by country; nil for another list.
func (t *Top) CountryRows() []CountryRow { r, _ := t.Rows.([]CountryRow); return r }

// ASRows are the rows of a top list by AS; nil for another list.
func (t *Top) ASRows() []ASRow { r, _ := t.Rows.([]ASRow); return r }

// Labels are what the loaded tables say of an address.
type Labels struct {
	Prefix  netip.Prefix `json:"prefix"` // the longest table prefix holding the address
	Country string       `json:"country"`
	ASN     uint32       `json:"asn"`
	ASName  string       `json:"as_name"`
	Table   string       `json:"table"` // the table the prefix comes from
}

// Lookup is GET /api/v1/lookup: what the sensor knows of one address.
type Lookup struct {
	Addr     netip.Addr    `json:"addr"`
	Window   string        `json:"window"`
	From     time.Time     `json:"from"`
	To       time.Time     `json:"to"`
	Labels   *Labels       `json:"labels"` // nil when no table holds the address
	InTop    bool          `json:"in_top"`
	Prefix   *netip.Prefix `json:"prefix,omitempty"`           // with InTop
	Counters *Counters     `json:"counters,omitempty"`         // the Prefix's traffic, with InTop
	Country  *Counters     `json:"country_counters,omitempty"` // the address's country, when it had traffic
	AS       *Counters     `json:"as_counters,omitempty"`      // the address's AS, when it had traffic
	Note     string        `json:"note,omitempty"`
}

// Series is GET /api/v1/series: one key's traffic, one point per stored
// summary of a rollup level.
type Series struct {
	Key         string    `json:"key"`
	Level       string    `json:"level"`
	From        time.Time `json:"from"`
	To          time.Time `json:"to"`
	StepSeconds float64   `json:"step_seconds"`
	Points      []Point   `json:"points"`
}

// Point is one stored summary of a Series: T is its start.
type Point struct {
	T          time.Time `json:"t"`
	Seconds    float64   `json:"seconds"`
	PacketsIn  uint64    `json:"packets_in"`
	PacketsOut uint64    `json:"packets_out"`
	BytesIn    uint64    `json:"bytes_in"`
	BytesOut   uint64    `json:"bytes_out"`
}

// Alerts is GET /api/v1/alerts: the alerts active now and the recent ones
// that have ended, most recent first.
type Alerts struct {
	Active []Alert `json:"active"`
	Recent []Alert `json:"recent"`
}

// Alert is a watch-list alert.
type Alert struct {
	ID       string         `json:"id"`
	List     string         `json:"list"`   // the watch list
	Reason   string         `json:"reason"` // why it fired, for a human
	Active   bool           `json:"active"`
	Start    time.Time      `json:"start"`
	End      *time.Time     `json:"end"` // nil while active
	PeakPPS  float64        `json:"peak_pps"`
	PeakBPS  float64        `json:"peak_bps"`
	Packets  uint64         `json:"packets"` // since Start
	Bytes    uint64         `json:"bytes"`
	Prefixes []netip.Prefix `json:"prefixes"` // the remote prefixes that carried most of it
}

// CountryLabel is a country of the API for people: "" is traffic that no
// table places.
func CountryLabel(cc string) string {
	if cc == "" {
		return "unknown"
	}
	return cc
}

// ASLabel is an AS number of the API for people: 0 is traffic that no
// table places.
func ASLabel(asn uint32) string {
	if asn == 0 {
		return "unknown"
	}
	return "AS" + strconv.FormatUint(uint64(asn), 10)
}
