package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

const testHost = "sensor-test"

func TestMain(m *testing.M) {
	hostname = func() (string, error) { return testHost, nil }
	os.Exit(m.Run())
}

// same reports whether two configs hold the same values, whatever file they came from.
func same(a, b Config) bool {
	a.file, a.lines, b.file, b.lines = "", nil, "", nil
	return reflect.DeepEqual(a, b)
}

func TestDefaults(t *testing.T) {
	want := Default()
	for _, empty := range []string{"", "\n", "# nothing set\n", "---\n", "~\n", "{}\n", "---\n# comment\n...\n"} {
		c, err := Parse([]byte(empty), "sensord.yaml")
		if err != nil {
			t.Fatalf("%q: %v", empty, err)
		}
		if !same(*c, want) {
			t.Errorf("%q: got %+v, want the defaults %+v", empty, *c, want)
		}
	}

	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatalf("Default() does not validate: %v", err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"sensor.id", c.Sensor.ID, testHost},
		{"sensor.board", c.Sensor.Board, "generic-arm64"},
		{"data_dir", c.DataDir, "/var/lib/peerwatch"},
		{"bpffs_dir", c.BPFFSDir, "/sys/fs/bpf/peerwatch"},
		{"log.level", c.Log.Level, LogInfo},
		{"log.format", c.Log.Format, LogText},
		{"interfaces", len(c.Interfaces), 0},
		{"local_prefixes", len(c.LocalPrefixes), 0},
		{"tables", len(c.Tables), 2},
		{"tables[0].name", c.Tables[0].Name, "country"},
		{"tables[0].format", c.Tables[0].Format, FormatIPLocationCountry},
		{"tables[0].files", c.Tables[0].Files, []string{"/usr/share/peerwatch/ipdb/geo-whois-asn-country-ipv4.csv.gz", "/usr/share/peerwatch/ipdb/geo-whois-asn-country-ipv6.csv.gz"}},
		{"tables[1].name", c.Tables[1].Name, "asn"},
		{"tables[1].format", c.Tables[1].Format, FormatIPLocationASN},
		{"tables[1].files", c.Tables[1].Files, []string{"/usr/share/peerwatch/ipdb/asn-ipv4.csv.gz", "/usr/share/peerwatch/ipdb/asn-ipv6.csv.gz"}},
		{"datapath.counter_entries", c.Datapath.CounterEntries, uint32(65536)},
		{"datapath.v4_key_len", c.Datapath.V4KeyLen, 24},
		{"datapath.v6_key_len", c.Datapath.V6KeyLen, 48},
		{"datapath.xdp_drop", c.Datapath.XDPDrop, false},
		{"datapath.v4_split_entries", c.Datapath.V4SplitEntries, uint32(65536)},
		{"datapath.v6_split_entries", c.Datapath.V6SplitEntries, uint32(32768)},
		{"drain.interval", c.Drain.Interval, 10 * time.Second},
		{"drain.top_n", c.Drain.TopN, 1000},
		{"store.path", c.Store.Path, "/var/lib/peerwatch/sensord.db"},
		{"store.max_size", c.Store.MaxSize, 256 * MiB},
		{"store.sync", c.Store.Sync, SyncEverySecond},
		{"store.retention.interval_10s", c.Store.Retention.Interval, 6 * time.Hour},
		{"store.retention.minute", c.Store.Retention.Minute, 168 * time.Hour},
		{"store.retention.hour", c.Store.Retention.Hour, 2160 * time.Hour},
		{"store.retention.day", c.Store.Retention.Day, 17520 * time.Hour},
		{"watch_lists", len(c.WatchLists), 0},
		{"http.listen", c.HTTP.Listen, "127.0.0.1:9100"},
		{"http.basic_auth", c.HTTP.BasicAuth, BasicAuth{}},
		{"http.tls", c.HTTP.TLS, TLS{}},
	}
	for _, ch := range checks {
		if !reflect.DeepEqual(ch.got, ch.want) {
			t.Errorf("default %s = %v, want %v", ch.name, ch.got, ch.want)
		}
	}
	// Default returns fresh slices: changing one copy leaves the next alone.
	c.Tables[0].Files[0] = "changed"
	if Default().Tables[0].Files[0] == "changed" {
		t.Error("Default shares its slices between calls")
	}
}

func TestDefaultWithoutHostname(t *testing.T) {
	hostname = func() (string, error) { return "", errors.New("no hostname") }
	defer func() { hostname = func() (string, error) { return testHost, nil } }()

	_, err := Parse(nil, "sensord.yaml")
	wantError(t, err, "sensord.yaml: sensor.id: not set, and the hostname (its default) cannot be read")
	c, err := Parse([]byte("sensor:\n  id: box-1\n"), "sensord.yaml")
	if err != nil || c.Sensor.ID != "box-1" {
		t.Fatalf("got %v, %v", c, err)
	}
}

func wantError(t *testing.T, err error, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want:\n%s", want)
	}
	if err.Error() != want {
		t.Fatalf("error:\n%s\nwant:\n%s", err, want)
	}
}

// TestParseErrors checks the exact text of errors, line numbers included. The file name is
// "s.yaml"; lines are numbered from 1.
func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want string
	}{
		// Syntax.
		{"unclosed list", "local_prefixes: [10.0.0.0/8\n", `s.yaml:1: syntax error: sequence end token ']' not found`},
		{"tab indent", "drain:\n\tinterval: 10s\n", `s.yaml:2: syntax error: found character '\t' that cannot start any token (indent with spaces: YAML does not allow tabs)`},
		{"two documents", "drain:\n  top_n: 5\n---\ndrain:\n  top_n: 6\n", "s.yaml:4: a second YAML document (after ---): the configuration is one document"},
		{"top level list", "- sensor\n", "s.yaml:1: the file holds a list, not a mapping of fields (sensor:, interfaces:, …)"},
		{"top level scalar", "sensord\n", `s.yaml:1: the file holds "sensord", not a mapping of fields (sensor:, interfaces:, …)`},

		// Unknown and repeated fields.
		{"unknown top-level", "sensor:\n  id: a\nintefaces: []\n", "s.yaml:3: intefaces: unknown field (did you mean interfaces?)"},
		{"unknown far from any", "colour: blue\n", "s.yaml:1: colour: unknown field (want sensor, data_dir, bpffs_dir, log, interfaces, local_prefixes, local_prefix_files, tables, datapath, drain, store, watch_lists, http or uplink)"},
		{"unknown nested", "drain:\n  interval: 10s\n  intervall: 20s\n", "s.yaml:3: drain.intervall: unknown field (did you mean interval?)"},
		{"unknown in list entry", "interfaces:\n  - name: eth0\n    hok: tc\n", "s.yaml:3: interfaces[0].hok: unknown field (did you mean hook?)"},
		{"unknown in alert", "watch_lists:\n  - name: a\n    countries: [NZ]\n    alert:\n      ppps: 5\n", "s.yaml:5: watch_lists[0].alert.ppps: unknown field (did you mean pps?)"},
		{"key twice", "drain:\n  top_n: 5\n  top_n: 6\n", "s.yaml:3: drain.top_n: set twice (first on line 2)"},
		{"section twice", "log:\n  level: info\nlog:\n  level: debug\n", "s.yaml:3: log: set twice (first on line 1)"},
		{"merge key", "drain: &d\n  top_n: 5\nstore:\n  <<: *d\n", "s.yaml:4: store: merge keys (<<) are not supported: write the fields out"},
		{"complex key", "? [a, b]\n: 1\n", "s.yaml:2: syntax error: found an invalid key for this map"},
		{"unknown alias", "drain:\n  interval: *x\n", "s.yaml:2: drain.interval: alias *x names no anchor before it"},

		// Wrong types.
		{"duration", "drain:\n  interval: 5x\n", `s.yaml:2: drain.interval: "5x" is not a duration`},
		{"duration days", "store:\n  retention:\n    day: 730d\n", `s.yaml:3: store.retention.day: "730d" is not a duration`},
		{"duration number", "drain:\n  interval: 10\n", "s.yaml:2: drain.interval: 10 is not a duration (a number needs a unit, e.g. 10s)"},
		{"duration list", "drain:\n  interval: [10s]\n", "s.yaml:2: drain.interval: a list is not a duration"},
		{"integer word", "drain:\n  top_n: many\n", `s.yaml:2: drain.top_n: "many" is not a whole number`},
		{"integer fraction", "drain:\n  top_n: 1.5\n", "s.yaml:2: drain.top_n: 1.5 is not a whole number"},
		{"integer bool", "drain:\n  top_n: true\n", "s.yaml:2: drain.top_n: true is not a whole number"},
		{"uint32 overflow", "datapath:\n  counter_entries: 4294967296\n", "s.yaml:2: datapath.counter_entries: 4294967296 is out of range (0 to 4294967295)"},
		{"uint32 negative", "datapath:\n  counter_entries: -1\n", "s.yaml:2: datapath.counter_entries: -1 is out of range (0 to 4294967295)"},
		{"asn with AS", "watch_lists:\n  - name: a\n    asns: [AS131279]\n", `s.yaml:3: watch_lists[0].asns[0]: "AS131279" is not a whole number (write 131279)`},
		{"bool yes", "datapath:\n  xdp_drop: yes\n", `s.yaml:2: datapath.xdp_drop: "yes" is not true or false`},
		{"bool number", "datapath:\n  xdp_drop: 1\n", "s.yaml:2: datapath.xdp_drop: 1 is not true or false"},
		{"float word", "watch_lists:\n  - name: a\n    countries: [KP]\n    alert: {pps: lots}\n", `s.yaml:4: watch_lists[0].alert.pps: "lots" is not a number`},
		{"float inf", "watch_lists:\n  - name: a\n    countries: [KP]\n    alert: {bps: .inf}\n", "s.yaml:4: watch_lists[0].alert.bps: .inf is not a finite number"},
		{"string given list", "log:\n  level: [info]\n", "s.yaml:2: log.level: a list is not a string"},
		{"string given mapping", "sensor:\n  id:\n    name: x\n", "s.yaml:2: sensor.id: a mapping is not a string"},
		{"list given scalar", "local_prefixes: 10.0.0.0/8\n", `s.yaml:1: local_prefixes: "10.0.0.0/8" is not a list`},
		{"list given mapping", "interfaces:\n  name: eth0\n", "s.yaml:1: interfaces: a mapping is not a list"},
		{"section given scalar", "drain: 10s\n", `s.yaml:1: drain: "10s" is not a mapping of fields`},
		{"section given list", "http:\n  - listen: :80\n", "s.yaml:1: http: a list is not a mapping of fields"},
		{"size", "store:\n  max_size: 256MB2\n", `s.yaml:2: store.max_size: "256MB2" is not a size (want bytes, or a number with B, kB, MB, GB, TB, KiB, MiB, GiB or TiB)`},
		{"size fraction of byte", "store:\n  max_size: 1.5B\n", `s.yaml:2: store.max_size: "1.5B" is not a whole number of bytes`},
		{"size list", "store:\n  max_size: [1]\n", "s.yaml:2: store.max_size: a list is not a size"},
		{"empty list entry", "interfaces:\n  - name: eth0\n  -\n", "s.yaml:3: interfaces[1]: empty entry"},
		{"tables no value", "tables:\n", "s.yaml:1: tables: no value: write [] for none, or leave the key out for the default"},
		{"every decoding error at once", "drain:\n  interval: 5x\n  top_n: x\nlog:\n  lvl: info\n",
			"s.yaml:2: drain.interval: \"5x\" is not a duration\ns.yaml:3: drain.top_n: \"x\" is not a whole number\ns.yaml:5: log.lvl: unknown field (want level or format)"},

		// Sensor, paths, log.
		{"empty id", "sensor:\n  id: ''\n", "s.yaml:2: sensor.id: empty"},
		{"id with slash", "sensor:\n  id: pop/1\n", `s.yaml:2: sensor.id: "pop/1" is not a sensor id (letters, digits, ".", "_" and "-", at most 64)`},
		{"empty board", "sensor:\n  board: \"\"\n", "s.yaml:2: sensor.board: empty"},
		{"relative data_dir", "data_dir: var/lib/peerwatch\n", `s.yaml:1: data_dir: "var/lib/peerwatch" is not an absolute path`},
		{"empty bpffs_dir", "bpffs_dir: ''\n", "s.yaml:1: bpffs_dir: empty"},
		{"log level", "log:\n  level: verbose\n", `s.yaml:2: log.level: unknown level "verbose" (want debug, info, warn or error)`},
		{"log format", "log:\n  format: logfmt\n", `s.yaml:2: log.format: unknown format "logfmt" (want text or json)`},

		// Interfaces.
		{"hook", "interfaces:\n  - name: eth0\n  - name: eth1\n    hook: xpd\n", `s.yaml:4: interfaces[1].hook: unknown hook "xpd" (want xdp, xdp-generic, tc or tc-netlink)`},
		{"empty hook", "interfaces:\n  - name: eth0\n    hook: ''\n", `s.yaml:3: interfaces[0].hook: unknown hook "" (want xdp, xdp-generic, tc or tc-netlink)`},
		{"interface without name", "interfaces:\n  - hook: tc\n", "s.yaml:2: interfaces[0]: names no interface (set name, mac or altname)"},
		{"interface name too long", "interfaces:\n  - name: enp1s0f0np0vlan100\n", `s.yaml:2: interfaces[0].name: "enp1s0f0np0vlan100" is not an interface name (at most 15 characters, no "/", ":" or spaces)`},
		{"interface alias", "interfaces:\n  - name: eth0:1\n", `s.yaml:2: interfaces[0].name: "eth0:1" is not an interface name (at most 15 characters, no "/", ":" or spaces)`},
		{"bad mac", "interfaces:\n  - mac: 00:11:22:33:44\n", `s.yaml:2: interfaces[0].mac: "00:11:22:33:44" is not a MAC address (want 00:11:22:33:44:55)`},
		{"bad altname", "interfaces:\n  - altname: up link\n", `s.yaml:2: interfaces[0].altname: "up link" is not an interface name (at most 127 characters, no "/", ":" or spaces)`},
		{"interface twice", "interfaces:\n  - name: eth0\n  - name: eth1\n  - name: eth0\n    hook: tc\n", `s.yaml:4: interfaces[2].name: interface "eth0" is already interfaces[0]`},
		{"mac twice", "interfaces:\n  - mac: 00:11:22:33:44:55\n  - mac: 00-11-22-33-44-55\n", `s.yaml:3: interfaces[1].mac: MAC address "00:11:22:33:44:55" is already interfaces[0]`},

		// Local prefixes.
		{"local not cidr", "local_prefixes:\n  - 192.0.2.0/24\n  - 10.0.0.300/8\n", `s.yaml:3: local_prefixes[1]: "10.0.0.300/8" is not a CIDR prefix`},
		{"local address", "local_prefixes: [192.0.2.1]\n", `s.yaml:1: local_prefixes[0]: "192.0.2.1" is not a CIDR prefix (want address/length, e.g. 192.0.2.1/32)`},
		{"local host bits", "local_prefixes:\n  - 10.1.2.3/8\n", `s.yaml:2: local_prefixes[0]: "10.1.2.3/8" has host bits set (did you mean 10.0.0.0/8?)`},
		{"local v6 host bits", "local_prefixes:\n  - 2001:db8::1/32\n", `s.yaml:2: local_prefixes[0]: "2001:db8::1/32" has host bits set (did you mean 2001:db8::/32?)`},
		{"local v6 short", "local_prefixes:\n  - 2000::/12\n", "s.yaml:2: local_prefixes[0]: 2000::/12 is shorter than /16 (local IPv6 prefixes are expanded into /32s in the kernel)"},
		{"local v4-mapped", "local_prefixes:\n  - ::ffff:10.0.0.0/104\n", `s.yaml:2: local_prefixes[0]: "::ffff:10.0.0.0/104" is an IPv4-mapped IPv6 prefix (write 10.0.0.0/8)`},
		{"local zone", "local_prefixes:\n  - fe80::%eth0/64\n", `s.yaml:2: local_prefixes[0]: "fe80::%eth0/64" is not a CIDR prefix`},
		{"local file empty", "local_prefix_files: ['']\n", "s.yaml:1: local_prefix_files[0]: empty path"},

		// Tables.
		{"table name twice", "tables:\n  - name: geo\n    format: ip-location-country\n    files: [a.csv]\n  - name: geo\n    format: ip-location-asn\n    files: [b.csv]\n",
			`s.yaml:5: tables[1].name: "geo" is already the name of tables[0]`},
		{"table name empty", "tables:\n  - format: cidr-list\n    files: [a.txt]\n", "s.yaml:2: tables[0].name: empty"},
		{"table name upper", "tables:\n  - name: Geo\n    format: cidr-list\n    files: [a.txt]\n", `s.yaml:2: tables[0].name: "Geo" is not a table name (lower-case letters, digits, "_" and "-", at most 64)`},
		{"table format", "tables:\n  - name: geo\n    format: csv\n    files: [a.csv]\n", `s.yaml:3: tables[0].format: unknown format "csv" (want ip-location-country, ip-location-asn, cidr-list, rir-delegated or mmdb)`},
		{"table without format", "tables:\n  - name: geo\n    files: [a.csv]\n", `s.yaml:2: tables[0].format: unknown format "" (want ip-location-country, ip-location-asn, cidr-list, rir-delegated or mmdb)`},
		{"table without files", "tables:\n  - name: geo\n    format: mmdb\n", "s.yaml:2: tables[0].files: no files (want at least one)"},
		{"table empty files", "tables:\n  - name: geo\n    format: mmdb\n    files: []\n", "s.yaml:4: tables[0].files: no files (want at least one)"},
		{"table empty file", "tables:\n  - name: geo\n    format: mmdb\n    files:\n      - a.mmdb\n      - ''\n", "s.yaml:6: tables[0].files[1]: empty path"},
		{"labels on csv", "tables:\n  - name: geo\n    format: ip-location-asn\n    files: [a.csv]\n    labels: {asn: 64500}\n", "s.yaml:5: tables[0].labels: only a cidr-list table takes labels (format ip-location-asn carries its own)"},
		{"labels country", "tables:\n  - name: mine\n    format: cidr-list\n    files: [a.txt]\n    labels:\n      country: NZL\n", `s.yaml:6: tables[0].labels.country: "NZL" is not a country code (want two letters, e.g. NZ)`},

		// Datapath.
		{"counter entries low", "datapath:\n  counter_entries: 512\n", "s.yaml:2: datapath.counter_entries: 512 is out of range (1024 to 16777216)"},
		{"counter entries high", "datapath:\n  counter_entries: 16777217\n", "s.yaml:2: datapath.counter_entries: 16777217 is out of range (1024 to 16777216)"},
		{"v4 key len", "datapath:\n  v4_key_len: 33\n", "s.yaml:2: datapath.v4_key_len: 33 is out of range (1 to 32)"},
		{"v4 key len zero", "datapath:\n  v4_key_len: 0\n", "s.yaml:2: datapath.v4_key_len: 0 is out of range (1 to 32)"},
		{"v6 key len", "datapath:\n  v6_key_len: 129\n", "s.yaml:2: datapath.v6_key_len: 129 is out of range (1 to 128)"},
		{"v4 key len with tables", "datapath:\n  v4_key_len: 16\n",
			"s.yaml:2: datapath.v4_key_len: /16 is shorter than /24: with prefix tables, a counting key must not straddle a table boundary, and the kernel divides only /24s at boundaries (set tables: [] to count in fixed /16 blocks)"},
		{"v6 key len with tables", "datapath:\n  v6_key_len: 32\n",
			"s.yaml:2: datapath.v6_key_len: /32 is shorter than /48: with prefix tables, a counting key must not straddle a table boundary, and the kernel divides only /48s at boundaries (set tables: [] to count in fixed /32 blocks)"},
		{"split entries", "datapath:\n  v4_split_entries: 0\n  v6_split_entries: 0\n",
			"s.yaml:2: datapath.v4_split_entries: 0 is out of range (1 to 16777216)\ns.yaml:3: datapath.v6_split_entries: 0 is out of range (1 to 16777216)"},

		// Drain and store.
		{"drain interval short", "drain:\n  interval: 500ms\n", "s.yaml:2: drain.interval: 500ms is out of range (1s to 5m)"},
		{"drain interval long", "drain:\n  interval: 10m\n", "s.yaml:2: drain.interval: 10m is out of range (1s to 5m)"},
		{"top n", "drain:\n  top_n: 0\n", "s.yaml:2: drain.top_n: 0 is out of range (1 to 100000)"},
		{"top n high", "drain:\n  top_n: 100001\n", "s.yaml:2: drain.top_n: 100001 is out of range (1 to 100000)"},
		{"store path", "store:\n  path: sensord.db\n", `s.yaml:2: store.path: "sensord.db" is not an absolute path`},
		{"store size", "store:\n  max_size: 8MiB\n", "s.yaml:2: store.max_size: 8MiB is less than the least, 16MiB"},
		{"store sync", "store:\n  sync: sometimes\n", `s.yaml:2: store.sync: unknown policy "sometimes" (want everysecond, always or never)`},
		{"retention zero", "store:\n  retention:\n    minute: 0s\n    hour: -1h\n",
			"s.yaml:3: store.retention.minute: 0s is not a positive duration\ns.yaml:4: store.retention.hour: -1h is not a positive duration"},
		{"retention vs interval", "drain:\n  interval: 1m\nstore:\n  retention:\n    interval_10s: 90s\n",
			"s.yaml:5: store.retention.interval_10s: 1m30s is less than twice drain.interval (1m): the raw intervals must be kept for at least two intervals"},
		{"empty second document", "store:\n  retention:\n    interval_10s: 1m\n    minute: 1h\n    hour: 2h\n    day: 3h\n---\n", ""},

		// Watch lists.
		{"watch name twice", "watch_lists:\n  - name: dprk\n    countries: [KP]\n  - name: other\n    asns: [1]\n  - name: dprk\n    asns: [131279]\n",
			`s.yaml:6: watch_lists[2].name: "dprk" is already the name of watch_lists[0]`},
		{"watch name chars", "watch_lists:\n  - name: North Korea\n    countries: [KP]\n", `s.yaml:2: watch_lists[0].name: "North Korea" is not a watch list name (lower-case letters, digits, "_" and "-", at most 64)`},
		{"watch name empty", "watch_lists:\n  - countries: [KP]\n", "s.yaml:2: watch_lists[0].name: empty"},
		{"watch nothing", "watch_lists:\n  - name: empty\n    alert: {any: true}\n", "s.yaml:2: watch_lists[0]: watches nothing (set countries, asns or prefixes)"},
		{"watch country", "watch_lists:\n  - name: a\n    countries: [KP, PRK]\n", `s.yaml:3: watch_lists[0].countries[1]: "PRK" is not a country code (want two letters, e.g. NZ)`},
		{"watch prefix", "watch_lists:\n  - name: a\n    prefixes:\n      - 175.45.176.0/22\n      - 175.45.177.0/22\n", `s.yaml:5: watch_lists[0].prefixes[1]: "175.45.177.0/22" has host bits set (did you mean 175.45.176.0/22?)`},
		{"watch rates", "watch_lists:\n  - name: a\n    asns: [1]\n    alert:\n      pps: -1\n      bps: -2\n",
			"s.yaml:5: watch_lists[0].alert.pps: -1 is not a rate (want 0 for off, or more)\ns.yaml:6: watch_lists[0].alert.bps: -2 is not a rate (want 0 for off, or more)"},
		{"watch baseline", "watch_lists:\n  - name: a\n    asns: [1]\n    alert:\n      baseline_factor: 0.5\n", "s.yaml:5: watch_lists[0].alert.baseline_factor: 0.5 is not a factor over the baseline (want 0 for off, or more than 1)"},
		{"watch baseline one", "watch_lists:\n  - name: a\n    asns: [1]\n    alert:\n      baseline_factor: 1\n", "s.yaml:5: watch_lists[0].alert.baseline_factor: 1 is not a factor over the baseline (want 0 for off, or more than 1)"},
		{"watch min duration", "watch_lists:\n  - name: a\n    asns: [1]\n    alert:\n      min_duration: -1m\n", "s.yaml:5: watch_lists[0].alert.min_duration: -1m is negative"},

		// HTTP.
		{"listen without port", "http:\n  listen: 127.0.0.1\n", `s.yaml:2: http.listen: "127.0.0.1" is not host:port (e.g. 127.0.0.1:9100, or :9100 for every address)`},
		{"listen port name", "http:\n  listen: localhost:http\n", `s.yaml:2: http.listen: "localhost:http": port "http" is not a number from 1 to 65535`},
		{"listen port zero", "http:\n  listen: ':0'\n", `s.yaml:2: http.listen: ":0": port "0" is not a number from 1 to 65535`},
		{"basic auth half", "http:\n  basic_auth:\n    user: admin\n", "s.yaml:3: http.basic_auth.password_file: missing (user is set: set both or neither)"},
		{"basic auth other half", "http:\n  basic_auth:\n    password_file: /etc/pw\n", "s.yaml:3: http.basic_auth.user: missing (password_file is set: set both or neither)"},
		{"tls half", "http:\n  tls:\n    cert_file: /etc/cert.pem\n", "s.yaml:3: http.tls.key_file: missing (cert_file is set: set both or neither)"},

		// Several validation errors come in the order of their lines.
		{"in line order", "watch_lists:\n  - name: A\n    asns: [1]\ndrain:\n  top_n: 0\nlog:\n  level: loud\n",
			"s.yaml:2: watch_lists[0].name: \"A\" is not a watch list name (lower-case letters, digits, \"_\" and \"-\", at most 64)\ns.yaml:5: drain.top_n: 0 is out of range (1 to 100000)\ns.yaml:7: log.level: unknown level \"loud\" (want debug, info, warn or error)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.yaml), "s.yaml")
			if tt.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if c != nil {
				t.Errorf("got a config with the error")
			}
			wantError(t, err, tt.want)
			var fe *FieldError
			if !errors.As(err, &fe) || fe.File != "s.yaml" || fe.Line == 0 {
				t.Errorf("errors.As(*FieldError) = %+v", fe)
			}
		})
	}
}

func TestParseGood(t *testing.T) {
	tests := []struct {
		name  string
		yaml  string
		check func(t *testing.T, c *Config)
	}{
		{"tables left out", "drain:\n  top_n: 10\n", func(t *testing.T, c *Config) {
			if !reflect.DeepEqual(c.Tables, Default().Tables) {
				t.Errorf("tables = %+v, want the defaults", c.Tables)
			}
		}},
		{"tables empty", "tables: []\ndatapath:\n  v4_key_len: 16\n  v6_key_len: 32\n", func(t *testing.T, c *Config) {
			if c.Tables == nil || len(c.Tables) != 0 {
				t.Errorf("tables = %#v, want empty and not nil", c.Tables)
			}
			if c.Datapath.V4KeyLen != 16 || c.Datapath.V6KeyLen != 32 {
				t.Errorf("key lengths %d, %d", c.Datapath.V4KeyLen, c.Datapath.V6KeyLen)
			}
		}},
		{"tables replaced", "tables:\n  - name: bgp\n    format: cidr-list\n    files: [/etc/peerwatch/bgp.txt]\n", func(t *testing.T, c *Config) {
			want := []Table{{Name: "bgp", Format: FormatCIDRList, Files: []string{"/etc/peerwatch/bgp.txt"}}}
			if !reflect.DeepEqual(c.Tables, want) {
				t.Errorf("tables = %+v", c.Tables)
			}
		}},
		{"key lengths at the least for tables", "datapath:\n  v4_key_len: 24\n  v6_key_len: 48\n", nil},
		{"key lengths longer", "datapath:\n  v4_key_len: 32\n  v6_key_len: 128\n", nil},
		{"store path follows data_dir", "data_dir: /data/peerwatch\n", func(t *testing.T, c *Config) {
			if c.Store.Path != "/data/peerwatch/sensord.db" {
				t.Errorf("store.path = %q", c.Store.Path)
			}
		}},
		{"store path set", "data_dir: /data\nstore:\n  path: /mnt/flash/pw.db\n", func(t *testing.T, c *Config) {
			if c.Store.Path != "/mnt/flash/pw.db" {
				t.Errorf("store.path = %q", c.Store.Path)
			}
		}},
		{"no values keep defaults", "log:\ndrain:\n  interval:\n  top_n: ~\ninterfaces:\nhttp: null\n", func(t *testing.T, c *Config) {
			if !same(*c, Default()) {
				t.Errorf("got %+v", *c)
			}
		}},
		{"interface defaults per entry", "interfaces:\n  - name: eth0\n  - name: eth1\n    hook: tc-netlink\n  - mac: 00-11-22-AA-BB-CC\n", func(t *testing.T, c *Config) {
			want := []Interface{{Name: "eth0", Hook: HookXDP}, {Name: "eth1", Hook: HookTCNetlink}, {MAC: "00:11:22:aa:bb:cc", Hook: HookXDP}}
			if !reflect.DeepEqual(c.Interfaces, want) {
				t.Errorf("interfaces = %+v", c.Interfaces)
			}
		}},
		{"countries upper-cased", "watch_lists:\n  - name: x\n    countries: [kp, Nz]\ntables:\n  - name: mine\n    format: cidr-list\n    files: [a]\n    labels: {country: au}\n", func(t *testing.T, c *Config) {
			if got := c.WatchLists[0].Countries; !reflect.DeepEqual(got, []string{"KP", "NZ"}) {
				t.Errorf("countries = %q", got)
			}
			if got := c.Tables[0].Labels.Country; got != "AU" {
				t.Errorf("labels.country = %q", got)
			}
		}},
		{"flow style", "drain: {interval: 30s, top_n: 500}\nhttp: {listen: '[::1]:9100'}\n", func(t *testing.T, c *Config) {
			if c.Drain.Interval != 30*time.Second || c.Drain.TopN != 500 || c.HTTP.Listen != "[::1]:9100" {
				t.Errorf("got %+v %+v", c.Drain, c.HTTP)
			}
		}},
		{"numbers as written", "datapath:\n  counter_entries: 0x20000\n  v4_split_entries: 1_024\n  v6_split_entries: \"2048\"\n", func(t *testing.T, c *Config) {
			if d := c.Datapath; d.CounterEntries != 131072 || d.V4SplitEntries != 1024 || d.V6SplitEntries != 2048 {
				t.Errorf("datapath = %+v", d)
			}
		}},
		{"sizes", "store:\n  max_size: 1GB\n", func(t *testing.T, c *Config) {
			if c.Store.MaxSize != GB {
				t.Errorf("max_size = %d", c.Store.MaxSize)
			}
		}},
		{"size in bytes", "store:\n  max_size: 33554432\n", func(t *testing.T, c *Config) {
			if c.Store.MaxSize != 32*MiB {
				t.Errorf("max_size = %d", c.Store.MaxSize)
			}
		}},
		{"string from a number", "sensor:\n  id: 4711\n  board: !!str 5\n", func(t *testing.T, c *Config) {
			if c.Sensor.ID != "4711" || c.Sensor.Board != "5" {
				t.Errorf("sensor = %+v", c.Sensor)
			}
		}},
		{"anchors and aliases", "watch_lists:\n  - name: a\n    asns: [1]\n    alert: &loud\n      pps: 1000\n      min_duration: 1m\n  - name: b\n    asns: [2]\n    alert: *loud\n", func(t *testing.T, c *Config) {
			want := Alert{PPS: 1000, MinDuration: time.Minute}
			if c.WatchLists[0].Alert != want || c.WatchLists[1].Alert != want {
				t.Errorf("alerts = %+v, %+v", c.WatchLists[0].Alert, c.WatchLists[1].Alert)
			}
		}},
		{"alert numbers", "watch_lists:\n  - name: a\n    prefixes: [2001:db8::/32]\n    alert: {pps: 10, bps: 1.5e6, baseline_factor: 2.5, min_duration: 0}\n", func(t *testing.T, c *Config) {
			want := Alert{PPS: 10, BPS: 1.5e6, BaselineFactor: 2.5}
			if c.WatchLists[0].Alert != want {
				t.Errorf("alert = %+v", c.WatchLists[0].Alert)
			}
		}},
		{"max asn", "watch_lists:\n  - name: a\n    asns: [4294967295, 0]\n", func(t *testing.T, c *Config) {
			if got := c.WatchLists[0].ASNs; !reflect.DeepEqual(got, []uint32{4294967295, 0}) {
				t.Errorf("asns = %v", got)
			}
		}},
		{"local prefixes", "local_prefixes: [10.0.0.0/8, 192.0.2.7/32, 2001:db8::/32, 2a00::/16, 0.0.0.0/0]\n", nil},
		{"retention at twice the interval", "drain:\n  interval: 5m\nstore:\n  retention:\n    interval_10s: 10m\n", nil},
		{"every hook", "interfaces:\n  - {name: a, hook: xdp}\n  - {name: b, hook: xdp-generic}\n  - {name: c, hook: tc}\n  - {name: d, hook: tc-netlink}\n", nil},
		{"listen forms", "http:\n  listen: ':8080'\n", nil},
		{"listen by name", "http:\n  listen: localhost:9100\n", nil},
		{"comments and document markers", "# sensord\n---\nsensor:\n  id: x # trailing\n...\n", func(t *testing.T, c *Config) {
			if c.Sensor.ID != "x" {
				t.Errorf("id = %q", c.Sensor.ID)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.yaml), "s.yaml")
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Validate(); err != nil {
				t.Fatalf("a parsed config does not validate again: %v", err)
			}
			if tt.check != nil {
				tt.check(t, c)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	c, err := Load(exampleFile)
	if err != nil {
		t.Fatal(err)
	}
	if c.File() != exampleFile || c.Line("drain.interval") == 0 {
		t.Errorf("File() = %q, Line(drain.interval) = %d", c.File(), c.Line("drain.interval"))
	}
	if c.Sensor.ID != "akl-ix-01" || len(c.Interfaces) != 3 || len(c.Tables) != 3 || len(c.WatchLists) != 2 {
		t.Errorf("example: %+v", c)
	}

	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.yaml")
	_, err = Load(missing)
	wantError(t, err, "read config: open "+missing+": no such file or directory")
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("errors.Is(err, os.ErrNotExist) = false for %v", err)
	}

	bad := filepath.Join(dir, "sensord.yaml")
	if err := os.WriteFile(bad, []byte("# sensord\ndrain:\n  interval: 5x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Load(bad)
	wantError(t, err, bad+`:3: drain.interval: "5x" is not a duration`)
}

// Validate works on a Config built in code too: no file, no lines.
func TestValidateInCode(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	c.Drain.Interval = 0
	c.Interfaces = []Interface{{Name: "eth0", Hook: "xdp"}, {Name: "eth1", Hook: "xpd"}}
	c.Tables = nil
	c.Datapath.V4KeyLen = 16 // allowed without tables
	wantError(t, c.Validate(), "interfaces[1].hook: unknown hook \"xpd\" (want xdp, xdp-generic, tc or tc-netlink)\n"+
		"drain.interval: 0s is out of range (1s to 5m)")
}

// An error about a field that is not in the file carries the line of the nearest field that is.
func TestErrorLines(t *testing.T) {
	c, err := Parse([]byte("store:\n  max_size: 1GiB\ninterfaces:\n  - name: eth0\n"), "s.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		path string
		want string
	}{
		{"store.max_size", "s.yaml:2: store.max_size: oops"},
		{"store.retention.day", "s.yaml:1: store.retention.day: oops"},
		{"interfaces[0].hook", "s.yaml:4: interfaces[0].hook: oops"},
		{"drain.interval", "s.yaml: drain.interval: oops"},
	} {
		if got := c.Errorf(tt.path, "oops").Error(); got != tt.want {
			t.Errorf("Errorf(%q) = %q, want %q", tt.path, got, tt.want)
		}
	}
	for _, tt := range []struct {
		e    FieldError
		want string
	}{
		{FieldError{File: "f", Line: 3, Field: "a.b", Reason: "r"}, "f:3: a.b: r"},
		{FieldError{File: "f", Field: "a.b", Reason: "r"}, "f: a.b: r"},
		{FieldError{Line: 3, Field: "a.b", Reason: "r"}, "line 3: a.b: r"},
		{FieldError{Field: "a.b", Reason: "r"}, "a.b: r"},
		{FieldError{File: "f", Line: 3, Reason: "syntax error: x"}, "f:3: syntax error: x"},
	} {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("%+v: %q, want %q", tt.e, got, tt.want)
		}
	}
}

func TestWarnings(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{"empty file", "", []string{"s.yaml: interfaces: none: sensord counts nothing and only serves its pages"}},
		{"no local prefixes", "interfaces: [{name: eth0}]\n", []string{"s.yaml: local_prefixes: none, and no local_prefix_files: no packet has a local address, so every one is counted as neither_local"}},
		{"local prefix file is enough", "interfaces: [{name: eth0}]\nlocal_prefix_files: [/etc/local.txt]\n", nil},
		{"xdp drop", "interfaces: [{name: eth0}]\nlocal_prefixes: [192.0.2.0/24]\ndatapath:\n  xdp_drop: true\n",
			[]string{"s.yaml:4: datapath.xdp_drop: true: every packet the XDP program counts is dropped; only for a pure mirror (SPAN/TAP) port"}},
		{"country codes", "interfaces: [{name: eth0}]\nlocal_prefixes: [192.0.2.0/24]\nwatch_lists:\n  - name: a\n    countries: [GB, uk, QQ, XK]\n",
			[]string{
				`s.yaml:5: watch_lists[0].countries[1]: "UK" is not an ISO 3166-1 country code, so the country tables never match it (the United Kingdom is GB)`,
				`s.yaml:5: watch_lists[0].countries[2]: "QQ" is not an ISO 3166-1 country code, so the country tables never match it`,
			}},
		{"retention order", "interfaces: [{name: eth0}]\nlocal_prefixes: [192.0.2.0/24]\nstore:\n  retention:\n    hour: 24h\n",
			[]string{"s.yaml:5: store.retention.hour: the hour rollups are kept for less time than the minute rollups"}},
		{"open listen", "interfaces: [{name: eth0}]\nlocal_prefixes: [192.0.2.0/24]\nhttp:\n  listen: :9100\n",
			[]string{"s.yaml:4: http.listen: the pages are served on every address without basic_auth"}},
		{"password in clear", "interfaces: [{name: eth0}]\nlocal_prefixes: [192.0.2.0/24]\nhttp:\n  listen: 192.0.2.1:9100\n  basic_auth: {user: a, password_file: /p}\n",
			[]string{"s.yaml:4: http.listen: the password of basic_auth crosses the network in clear on 192.0.2.1 without tls"}},
		{"loopback v6", "interfaces: [{name: eth0}]\nlocal_prefixes: [192.0.2.0/24]\nhttp:\n  listen: '[::1]:9100'\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.yaml), "s.yaml")
			if err != nil {
				t.Fatal(err)
			}
			if got := c.Warnings(); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("warnings:\n%q\nwant:\n%q", got, tt.want)
			}
		})
	}
}

// The raw intervals must outlive two drains; the error points at the field in the file.
func TestRetentionAgainstInterval(t *testing.T) {
	_, err := Parse([]byte("drain:\n  interval: 5m\nstore:\n  retention: {interval_10s: 9m}\n"), "s.yaml")
	wantError(t, err, "s.yaml:4: store.retention.interval_10s: 9m is less than twice drain.interval (5m): the raw intervals must be kept for at least two intervals")

	c := Default()
	c.file, c.lines = "s.yaml", map[string]int{"drain": 1, "drain.interval": 2}
	c.Drain.Interval = 4 * time.Minute
	c.Store.Retention.Interval = 5 * time.Minute
	wantError(t, c.Validate(), "s.yaml:2: store.retention.interval_10s: 5m is less than twice drain.interval (4m): the raw intervals must be kept for at least two intervals")
}

func TestUplinkErrors(t *testing.T) {
	for in, want := range map[string]string{
		"uplink:\n  broker: http://b:1883\n": `s.yaml:2: uplink.broker: "http://b:1883": scheme "http" (want tcp://host:1883 or ssl://host:8883)`,
		"uplink:\n  topic_prefix: a/#\n":     `s.yaml:2: uplink.topic_prefix: "a/#" is not a topic prefix (no + or #, no leading or trailing /)`,
		"uplink:\n  username: s1\n":          `s.yaml:1: uplink.password_file: set username and password_file together, or neither`,
		"uplink:\n  cert_file: /c.pem\n":     `s.yaml:1: uplink.key_file: set cert_file and key_file together, or neither`,
		"uplink:\n  max_payload: 1KiB\n":     `s.yaml:2: uplink.max_payload: 1KiB is out of range (4KiB to 16MiB)`,
	} {
		_, err := Parse([]byte("sensor: {id: s1}\n"+in), "s.yaml")
		if err == nil {
			t.Errorf("%q accepted", in)
			continue
		}
		// Lines count from the sensor line; compare without the line number.
		got := err.Error()
		if i := strings.Index(got, ": "); i > 0 && strings.Contains(want, ": ") {
			got, want = got[i:], want[strings.Index(want, ": "):]
		}
		if got != want {
			t.Errorf("%q:\n got %s\nwant %s", in, got, want)
		}
	}
}
