// Package config reads the one YAML file that configures sensord.
//
// Every field has a default that suits a 1 GB ARM64 board, so an empty file is a valid
// configuration (the sensor id defaults to the hostname; only a box whose hostname cannot be read
// must set it). Load and Parse decode strictly: an unknown field, a value of the wrong type, a key
// given twice or a value out of range refuses the whole file, and every error names the file, the
// line, the field and the reason:
//
//	/etc/peerwatch/sensord.yaml:12: drain.interval: "5x" is not a duration
//	/etc/peerwatch/sensord.yaml:20: interfaces[1].hook: unknown hook "xpd" (want xdp, xdp-generic, tc or tc-netlink)
//
// A key with no value (null) keeps its default, except a list whose default is not empty
// (tables), where it is refused as ambiguous.
//
// The reference of every field, docs/configuration.md, is generated from the comments of the
// structs below: run go generate ./sensor/config after changing them.
package config

//go:generate go test -run ^TestConfigurationDoc$ -args -update

import (
	"os"
	"time"
)

// Config is the whole configuration of sensord. Its YAML keys are the snake_case names in the
// struct tags; docs/configuration.md lists them all.
type Config struct {
	// Who this sensor is.
	Sensor Sensor `yaml:"sensor"`
	// Directory for the daemon's state: the store and anything else it keeps across restarts.
	// An absolute path.
	DataDir string `yaml:"data_dir"`
	// Directory on a bpffs where the counter program's maps and links are pinned, so that a
	// restart or an upgrade of sensord loses no counts. An absolute path.
	BPFFSDir string `yaml:"bpffs_dir"`
	// The daemon's own log.
	Log Log `yaml:"log"`
	// Interfaces to count on. Empty: sensord counts nothing and only serves its pages (a
	// warning says so).
	Interfaces []Interface `yaml:"interfaces"`
	// The operator's own prefixes, in CIDR notation (IPv4 or IPv6, no host bits set): they
	// decide each packet's direction, and the remote address of a packet is the one outside
	// them. Local IPv6 prefixes must be /16 or longer.
	LocalPrefixes []string `yaml:"local_prefixes"`
	// Files with more local prefixes, one CIDR prefix or address per line ("#" starts a
	// comment), added to local_prefixes.
	LocalPrefixFiles []string `yaml:"local_prefix_files"`
	// Prefix tables that remote addresses are resolved against (country, origin AS, operator
	// lists). Leave the key out for the default country and AS tables; `tables: []` counts in
	// fixed-length blocks only (datapath.v4_key_len, datapath.v6_key_len).
	Tables []Table `yaml:"tables"`
	// Sizes and knobs of the kernel counter program.
	Datapath Datapath `yaml:"datapath"`
	// How often the kernel counters are read out.
	Drain Drain `yaml:"drain"`
	// The embedded store of intervals and rollups.
	Store Store `yaml:"store"`
	// Named sets of countries, origin ASes and prefixes whose traffic is watched and can raise
	// alerts.
	WatchLists []WatchList `yaml:"watch_lists"`
	// The status page, the JSON API and Prometheus /metrics.
	HTTP HTTP `yaml:"http"`
	// Summaries and alerts to an MQTT broker, for the fleet collector.
	Uplink Uplink `yaml:"uplink"`

	// file is the name errors carry; lines maps a field's YAML path (drain.interval,
	// interfaces[1].hook) to its line in that file.
	file  string
	lines map[string]int
}

// Sensor says who this sensor is.
type Sensor struct {
	// Name of this sensor in summaries, alerts and MQTT topics: letters, digits, ".", "_" and
	// "-", at most 64 characters.
	ID string `yaml:"id"`
	// Name of the board profile this box runs (board/<name>), shown on the status page.
	Board string `yaml:"board"`
}

// LogLevel is the least severe level that is logged.
type LogLevel string

// Log levels.
const (
	LogDebug LogLevel = "debug"
	LogInfo  LogLevel = "info"
	LogWarn  LogLevel = "warn"
	LogError LogLevel = "error"
)

// LogFormat is how log records are written.
type LogFormat string

// Log formats.
const (
	LogText LogFormat = "text" // log/slog's TextHandler: key=value
	LogJSON LogFormat = "json" // log/slog's JSONHandler: one object per line
)

// Log configures the daemon's own log, written to standard error.
type Log struct {
	// Least severe level that is logged: debug, info, warn or error.
	Level LogLevel `yaml:"level"`
	// Record format: text (key=value) or json (one object per line).
	Format LogFormat `yaml:"format"`
}

// Hook is where the counter program runs on an interface.
type Hook string

// Hooks. They are sensor/datapath's hook names; sensord hands them over as they are.
const (
	// HookXDP attaches in the driver (native XDP), falling back to generic XDP.
	HookXDP Hook = "xdp"
	// HookXDPGeneric forces generic (skb) XDP.
	HookXDPGeneric Hook = "xdp-generic"
	// HookTC attaches at TC ingress and egress through TCX, falling back to a clsact qdisc.
	HookTC Hook = "tc"
	// HookTCNetlink forces the clsact qdisc and its filters.
	HookTCNetlink Hook = "tc-netlink"
)

// hooks lists every hook in the order the documentation gives them.
var hooks = []Hook{HookXDP, HookXDPGeneric, HookTC, HookTCNetlink}

// Interface selects one network interface to count on. It names the interface by name, MAC
// address or alternative name, at least one of them; an interface must match all that are given.
type Interface struct {
	// Kernel name of the interface (eth0, enp1s0): at most 15 characters, no "/", ":" or spaces.
	Name string `yaml:"name"`
	// MAC address of the interface (00:11:22:33:44:55), for names that change between boots.
	MAC string `yaml:"mac"`
	// Alternative name of the interface (ip link property add dev eth0 altname uplink0), at
	// most 127 characters.
	AltName string `yaml:"altname"`
	// Where the program runs: xdp (native XDP, generic XDP where the driver has none),
	// xdp-generic, tc (TCX, or a clsact qdisc on kernels without TCX) or tc-netlink (always the
	// clsact qdisc). XDP sees only what the interface receives; TC sees both directions.
	Hook Hook `yaml:"hook"`
}

func (i *Interface) setDefaults() { i.Hook = HookXDP }

// TableFormat is the format of a prefix table's files.
type TableFormat string

// Table formats.
const (
	// FormatIPLocationCountry: ip-location-db CSV, start,end,country.
	FormatIPLocationCountry TableFormat = "ip-location-country"
	// FormatIPLocationASN: ip-location-db CSV, start,end,asn,as_name.
	FormatIPLocationASN TableFormat = "ip-location-asn"
	// FormatCIDRList: one prefix or address per line, all with the table's labels.
	FormatCIDRList TableFormat = "cidr-list"
	// FormatRIRDelegated: an RIR's delegated-extended statistics file.
	FormatRIRDelegated TableFormat = "rir-delegated"
	// FormatMMDB: a MaxMind DB file (country or ASN).
	FormatMMDB TableFormat = "mmdb"
)

// tableFormats lists every table format in the order the documentation gives them.
var tableFormats = []TableFormat{FormatIPLocationCountry, FormatIPLocationASN, FormatCIDRList, FormatRIRDelegated, FormatMMDB}

// Table is one prefix table: remote addresses are resolved to its prefixes and their labels.
type Table struct {
	// Name of the table in the API, the pages and the summaries: lower-case letters, digits,
	// "_" and "-", unique among the tables.
	Name string `yaml:"name"`
	// Format of the files: ip-location-country, ip-location-asn, cidr-list, rir-delegated or
	// mmdb.
	Format TableFormat `yaml:"format"`
	// Files the table is loaded from, in order (earlier files win where prefixes coincide);
	// a name ending in .gz is decompressed.
	Files []string `yaml:"files"`
	// Labels given to every prefix of a cidr-list table (the other formats carry their own).
	Labels TableLabels `yaml:"labels"`
}

// TableLabels are what a cidr-list table says about each of its prefixes.
type TableLabels struct {
	// ISO 3166-1 alpha-2 country code (NZ); empty if none.
	Country string `yaml:"country"`
	// Origin AS number; 0 if none.
	ASN uint32 `yaml:"asn"`
	// Name of the origin AS; may be empty.
	ASName string `yaml:"as_name"`
}

// IsZero reports whether no label is set.
func (l TableLabels) IsZero() bool { return l == TableLabels{} }

// Datapath sizes the kernel counter program's maps and sets its knobs. The kernel memory they take
// is computed by sensor/datapath (KernelMemory) and described in docs/datapath.md.
type Datapath struct {
	// Remote keys each counting epoch holds (there are two); keys that do not fit in an
	// interval are counted as overflow. Between 1024 and 16777216.
	CounterEntries uint32 `yaml:"counter_entries"`
	// Prefix length of the IPv4 counting blocks outside the /24s that prefix tables divide,
	// 1 to 32; at least 24 when tables are loaded.
	V4KeyLen int `yaml:"v4_key_len"`
	// Prefix length of the IPv6 counting blocks outside the /48s that prefix tables divide,
	// 1 to 128; at least 48 when tables are loaded.
	V6KeyLen int `yaml:"v6_key_len"`
	// Drop every packet after counting it (XDP hooks only). Only for a pure mirror (SPAN/TAP)
	// port, where nothing else needs the packets: on a routed port it cuts the link.
	XDPDrop bool `yaml:"xdp_drop"`
	// Entries for the IPv4 /24s that prefix tables divide, both table sets together (a table
	// swap holds both). Between 1 and 16777216.
	V4SplitEntries uint32 `yaml:"v4_split_entries"`
	// Entries for the IPv6 /48s that prefix tables divide, both table sets together. Between 1
	// and 16777216.
	V6SplitEntries uint32 `yaml:"v6_split_entries"`
}

// Drain says how often the kernel counters are read out.
type Drain struct {
	// Length of one counting interval: the counters are drained, stored and summarised this
	// often. Between 1s and 5m.
	Interval time.Duration `yaml:"interval"`
	// Remote prefixes kept per interval in the store and the summaries, largest first; the
	// rest is added up as "other". Between 1 and 100000.
	TopN int `yaml:"top_n"`
}

// StoreSync is when the store's file is synced to disk.
type StoreSync string

// Store sync policies.
const (
	SyncEverySecond StoreSync = "everysecond"
	SyncAlways      StoreSync = "always"
	SyncNever       StoreSync = "never"
)

// Store configures the embedded store.
type Store struct {
	// The store's file. Empty: sensord.db in data_dir. An absolute path.
	Path string `yaml:"path"`
	// Largest size of the store's file; the oldest data goes first. At least 16MiB.
	MaxSize ByteSize `yaml:"max_size"`
	// When the file is synced to disk: everysecond (at most a second of data lost on a power
	// cut), always (after every write: wears flash) or never (left to the kernel).
	Sync StoreSync `yaml:"sync"`
	// How long each level of data is kept.
	Retention Retention `yaml:"retention"`
}

// Retention is how long each rollup level is kept.
type Retention struct {
	// How long the raw intervals (one per drain.interval) are kept; at least twice
	// drain.interval.
	Interval time.Duration `yaml:"interval_10s"`
	// How long the one-minute rollups are kept.
	Minute time.Duration `yaml:"minute"`
	// How long the one-hour rollups are kept.
	Hour time.Duration `yaml:"hour"`
	// How long the one-day rollups are kept.
	Day time.Duration `yaml:"day"`
}

// WatchList is a named set of countries, origin ASes and prefixes whose traffic is tracked on
// its own, and the thresholds over which it raises an alert.
type WatchList struct {
	// Name of the list in alerts and on the pages: lower-case letters, digits, "_" and "-",
	// unique among the watch lists.
	Name string `yaml:"name"`
	// ISO 3166-1 alpha-2 country codes (KP, NZ), as the country table labels prefixes; written
	// in any case, kept in upper case.
	Countries []string `yaml:"countries"`
	// Origin AS numbers, as plain numbers (131279, not AS131279).
	ASNs []uint32 `yaml:"asns"`
	// Remote prefixes in CIDR notation (175.45.176.0/22), no host bits set.
	Prefixes []string `yaml:"prefixes"`
	// When the list's traffic raises an alert: any one of the conditions that are set. With
	// none set, the list is counted and shown but never alerts.
	Alert Alert `yaml:"alert"`
}

// Alert holds the thresholds of a watch list. A threshold of 0 is off; any threshold that is
// crossed raises an alert.
type Alert struct {
	// Alert on any traffic at all.
	Any bool `yaml:"any"`
	// Alert above this many packets per second, both directions together; 0 is off.
	PPS float64 `yaml:"pps"`
	// Alert above this many bits per second (bytes × 8), both directions together; 0 is off.
	BPS float64 `yaml:"bps"`
	// Alert when the packet rate is above this many times the list's usual rate for the same
	// hour of the week, which the sensor learns (the first such alerts come after a week); 0 is
	// off, otherwise more than 1.
	BaselineFactor float64 `yaml:"baseline_factor"`
	// How long a threshold must be crossed before the alert is raised; 0 raises it in the
	// first interval.
	MinDuration time.Duration `yaml:"min_duration"`
}

// IsZero reports whether no threshold is set.
func (a Alert) IsZero() bool { return a == Alert{} }

// HTTP configures the status page, the JSON API and /metrics.
type HTTP struct {
	// Address to listen on, host:port. ":9100" listens on every address; a name or address
	// other than loopback without basic_auth is warned about.
	Listen string `yaml:"listen"`
	// Password protection of every page. Set both fields or neither.
	BasicAuth BasicAuth `yaml:"basic_auth"`
	// HTTPS instead of HTTP. Set both fields or neither.
	TLS TLS `yaml:"tls"`
}

// BasicAuth is HTTP basic authentication with a single user.
type BasicAuth struct {
	// User name.
	User string `yaml:"user"`
	// File that holds the password (its first line), readable by sensord only.
	PasswordFile string `yaml:"password_file"`
}

// TLS is the server's certificate and key.
type TLS struct {
	// PEM file with the certificate chain, leaf first.
	CertFile string `yaml:"cert_file"`
	// PEM file with the private key.
	KeyFile string `yaml:"key_file"`
}

// Uplink sends each interval's summary and every alert to an MQTT broker (QoS 1) from a
// durable outbox in the store, so that a broker outage or a reboot delays summaries but loses
// none.
type Uplink struct {
	// Broker URL: tcp://host:1883, or ssl://host:8883 for TLS. Empty: no uplink; summaries stay
	// on the sensor.
	Broker string `yaml:"broker"`
	// First level of the topics: <topic_prefix>/<sensor id>/summary, /alert and /status.
	TopicPrefix string `yaml:"topic_prefix"`
	// User name for the broker; empty for none (client certificates, or an open broker).
	Username string `yaml:"username"`
	// File that holds the broker password (its first line). Set with username.
	PasswordFile string `yaml:"password_file"`
	// PEM file of the certificate authorities that sign the broker's certificate; empty: the
	// system's.
	CAFile string `yaml:"ca_file"`
	// PEM file of the sensor's client certificate. Set both cert_file and key_file or neither.
	CertFile string `yaml:"cert_file"`
	// PEM file of the client certificate's private key.
	KeyFile string `yaml:"key_file"`
	// Largest summary message; larger summaries keep fewer top prefixes (totals stay exact).
	// Between 4KiB and 16MiB.
	MaxPayload ByteSize `yaml:"max_payload"`
	// Encoding of the summaries: binary (compact, and decoded about 25 times faster by the
	// collector) or json (gzip-compressed when that pays; readable with any MQTT client).
	// docs/mqtt.md describes both.
	Encoding string `yaml:"encoding"`
}

// Defaults that are not plain values.
const (
	// DefaultTableDir is where the boards install the default country and AS tables.
	DefaultTableDir = "/usr/share/peerwatch/ipdb"
	// storeFile is the store's file name in data_dir when store.path is empty.
	storeFile = "sensord.db"
)

// hostname is the default sensor id; tests replace it.
var hostname = os.Hostname

// Default returns the configuration of an empty file: every default, with the sensor id set to
// the hostname (empty if it cannot be read) and the store in data_dir.
func Default() Config {
	c := defaults()
	c.derive()
	return c
}

// defaults are the values a file's fields start from, before the fields that depend on others
// (store.path) are derived.
func defaults() Config {
	id, err := hostname()
	if err != nil {
		id = ""
	}
	return Config{
		Sensor:   Sensor{ID: id, Board: "generic-arm64"},
		DataDir:  "/var/lib/peerwatch",
		BPFFSDir: "/sys/fs/bpf/peerwatch",
		Log:      Log{Level: LogInfo, Format: LogText},
		Tables: []Table{
			{
				Name:   "country",
				Format: FormatIPLocationCountry,
				Files: []string{
					DefaultTableDir + "/geo-whois-asn-country-ipv4.csv.gz",
					DefaultTableDir + "/geo-whois-asn-country-ipv6.csv.gz",
				},
			},
			{
				Name:   "asn",
				Format: FormatIPLocationASN,
				Files: []string{
					DefaultTableDir + "/asn-ipv4.csv.gz",
					DefaultTableDir + "/asn-ipv6.csv.gz",
				},
			},
		},
		Datapath: Datapath{
			CounterEntries: 65536,
			V4KeyLen:       24,
			V6KeyLen:       48,
			V4SplitEntries: 65536,
			V6SplitEntries: 32768,
		},
		Drain: Drain{Interval: 10 * time.Second, TopN: 1000},
		Store: Store{
			MaxSize: 256 * MiB,
			Sync:    SyncEverySecond,
			Retention: Retention{
				Interval: 6 * time.Hour,
				Minute:   7 * 24 * time.Hour,
				Hour:     90 * 24 * time.Hour,
				Day:      2 * 365 * 24 * time.Hour,
			},
		},
		HTTP:   HTTP{Listen: "127.0.0.1:9100"},
		Uplink: Uplink{TopicPrefix: "peerwatch", MaxPayload: 256 * KiB, Encoding: "binary"},
	}
}
