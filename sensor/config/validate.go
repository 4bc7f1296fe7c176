package config

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	neturl "net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Limits that Validate enforces.
const (
	MinCounterEntries = 1024
	MaxCounterEntries = 1 << 24
	MaxSplitEntries   = 1 << 24
	MinDrainInterval  = time.Second
	MaxDrainInterval  = 5 * time.Minute
	MaxTopN           = 100000
	MinStoreSize      = 16 * MiB
	// With prefix tables, a counting key must not straddle a table boundary; the kernel divides
	// /24s and /48s at the boundaries, so the keys outside them must be at least that long.
	MinTableV4KeyLen = 24
	MinTableV6KeyLen = 48
	// Local IPv6 prefixes are expanded into /32s in the kernel: shorter than /16 would be more
	// than 65,536 of them.
	MinLocalV6Bits = 16
	maxIDLen       = 64
	maxNameLen     = 64
)

var (
	idPattern   = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)
	namePattern = regexp.MustCompile(`^[a-z0-9_-]+$`)
)

// problems collects the FieldErrors of one Config.
type problems struct {
	c    *Config
	errs []*FieldError
}

func (p *problems) add(path, format string, args ...any) {
	p.errs = append(p.errs, p.c.Errorf(path, format, args...))
}

// addFor adds a problem of a field that is not in the file because of another that is: the
// line is the other field's.
func (p *problems) addFor(path, other, format string, args ...any) {
	e := p.c.Errorf(path, format, args...)
	if p.c.Line(path) == 0 && p.c.Line(other) != 0 {
		e.Line = p.c.Line(other)
	}
	p.errs = append(p.errs, e)
}

// Errorf returns a FieldError for the field at a YAML path, with the file and the line of that
// field (or of the nearest enclosing field in the file), for problems found after Load: a table
// file that cannot be opened, an interface that does not exist.
func (c *Config) Errorf(path, format string, args ...any) *FieldError {
	return &FieldError{File: c.file, Line: c.lineNear(path), Field: path, Reason: fmt.Sprintf(format, args...)}
}

// sorted returns the problems in the order of their lines; those without one (defaults) last.
func (p *problems) sorted() []*FieldError {
	slices.SortStableFunc(p.errs, func(a, b *FieldError) int {
		if (a.Line == 0) != (b.Line == 0) {
			if a.Line == 0 {
				return 1
			}
			return -1
		}
		return cmp.Compare(a.Line, b.Line)
	})
	return p.errs
}

// Validate checks every field and every rule between fields. It returns nil, or an error that
// joins one *FieldError per problem ("file:line: field: reason"), in the order of the lines.
func (c *Config) Validate() error {
	p := &problems{c: c}
	c.validateSensor(p)
	c.validateLocal(p)
	c.validateInterfaces(p)
	c.validateTables(p)
	c.validateDatapath(p)
	c.validateDrainAndStore(p)
	c.validateWatchLists(p)
	c.validateHTTP(p)
	c.validateUplink(p)
	errs := p.sorted()
	if len(errs) == 0 {
		return nil
	}
	all := make([]error, len(errs))
	for i, e := range errs {
		all[i] = e
	}
	return errors.Join(all...)
}

func (c *Config) validateSensor(p *problems) {
	switch id := c.Sensor.ID; {
	case id == "":
		if _, set := c.lines["sensor.id"]; set {
			p.add("sensor.id", "empty")
		} else {
			p.add("sensor.id", "not set, and the hostname (its default) cannot be read")
		}
	case len(id) > maxIDLen || !idPattern.MatchString(id):
		p.add("sensor.id", "%q is not a sensor id (letters, digits, \".\", \"_\" and \"-\", at most %d)", id, maxIDLen)
	}
	if c.Sensor.Board == "" {
		p.add("sensor.board", "empty")
	}
	for _, f := range []struct {
		path, dir string
	}{{"data_dir", c.DataDir}, {"bpffs_dir", c.BPFFSDir}} {
		absolute(p, f.path, f.dir)
	}
	switch c.Log.Level {
	case LogDebug, LogInfo, LogWarn, LogError:
	default:
		p.add("log.level", "unknown level %q (want %s)", c.Log.Level, oneOf([]LogLevel{LogDebug, LogInfo, LogWarn, LogError}))
	}
	switch c.Log.Format {
	case LogText, LogJSON:
	default:
		p.add("log.format", "unknown format %q (want %s)", c.Log.Format, oneOf([]LogFormat{LogText, LogJSON}))
	}
}

func absolute(p *problems, path, dir string) {
	switch {
	case dir == "":
		p.add(path, "empty")
	case !filepath.IsAbs(dir):
		p.add(path, "%q is not an absolute path", dir)
	}
}

func (c *Config) validateInterfaces(p *problems) {
	type seenAt struct{ name, mac, alt map[string]int }
	seen := seenAt{map[string]int{}, map[string]int{}, map[string]int{}}
	dup := func(m map[string]int, key string, i int, path string, what string) {
		if key == "" {
			return
		}
		if j, ok := m[key]; ok {
			p.add(path, "%s %q is already interfaces[%d]", what, key, j)
			return
		}
		m[key] = i
	}
	for i, ifc := range c.Interfaces {
		at := fmt.Sprintf("interfaces[%d]", i)
		if ifc.Name == "" && ifc.MAC == "" && ifc.AltName == "" {
			p.add(at, "names no interface (set name, mac or altname)")
		}
		if ifc.Name != "" && !validIfName(ifc.Name, 15) {
			p.add(at+".name", "%q is not an interface name (at most 15 characters, no \"/\", \":\" or spaces)", ifc.Name)
		}
		mac := ""
		if ifc.MAC != "" {
			hw, err := net.ParseMAC(ifc.MAC)
			if err != nil || len(hw) != 6 {
				p.add(at+".mac", "%q is not a MAC address (want 00:11:22:33:44:55)", ifc.MAC)
			} else {
				mac = hw.String()
			}
		}
		if ifc.AltName != "" && !validIfName(ifc.AltName, 127) {
			p.add(at+".altname", "%q is not an interface name (at most 127 characters, no \"/\", \":\" or spaces)", ifc.AltName)
		}
		if !slices.Contains(hooks, ifc.Hook) {
			p.add(at+".hook", "unknown hook %q (want %s)", ifc.Hook, oneOf(hooks))
		}
		dup(seen.name, ifc.Name, i, at+".name", "interface")
		dup(seen.mac, mac, i, at+".mac", "MAC address")
		dup(seen.alt, ifc.AltName, i, at+".altname", "interface")
	}
}

// validIfName is the kernel's rule for interface names (dev_valid_name).
func validIfName(s string, max int) bool {
	return len(s) <= max && s != "." && s != ".." && !strings.ContainsAny(s, "/: \t\n\r\v\f")
}

// parsePrefix checks a CIDR prefix as written in the file and says what is wrong with it.
func parsePrefix(s string) (netip.Prefix, string) {
	if !strings.Contains(s, "/") {
		if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
			return netip.Prefix{}, fmt.Sprintf("%q is not a CIDR prefix (want address/length, e.g. %s/%d)", s, s, a.BitLen())
		}
		return netip.Prefix{}, fmt.Sprintf("%q is not a CIDR prefix", s)
	}
	pfx, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Sprintf("%q is not a CIDR prefix", s)
	}
	if a := pfx.Addr(); a.Is4In6() {
		if pfx.Bits() >= 96 {
			return netip.Prefix{}, fmt.Sprintf("%q is an IPv4-mapped IPv6 prefix (write %s)", s, netip.PrefixFrom(a.Unmap(), pfx.Bits()-96).Masked())
		}
	}
	if pfx.Masked() != pfx {
		return netip.Prefix{}, fmt.Sprintf("%q has host bits set (did you mean %s?)", s, pfx.Masked())
	}
	return pfx, ""
}

func (c *Config) validateLocal(p *problems) {
	for i, s := range c.LocalPrefixes {
		at := fmt.Sprintf("local_prefixes[%d]", i)
		pfx, bad := parsePrefix(s)
		switch {
		case bad != "":
			p.add(at, "%s", bad)
		case pfx.Addr().Is6() && pfx.Bits() < MinLocalV6Bits:
			p.add(at, "%s is shorter than /%d (local IPv6 prefixes are expanded into /32s in the kernel)", pfx, MinLocalV6Bits)
		}
	}
	for i, f := range c.LocalPrefixFiles {
		if f == "" {
			p.add(fmt.Sprintf("local_prefix_files[%d]", i), "empty path")
		}
	}
}

// checkName checks the name of list[i]: present, well formed, not taken by
// an earlier entry (seen maps names to indexes).
func (p *problems) checkName(at, what, list, name string, i int, seen map[string]int) {
	switch {
	case name == "":
		p.add(at+".name", "empty")
	case len(name) > maxNameLen || !namePattern.MatchString(name):
		p.add(at+".name", "%q is not a %s name (lower-case letters, digits, \"_\" and \"-\", at most %d)", name, what, maxNameLen)
	default:
		if j, ok := seen[name]; ok {
			p.add(at+".name", "%q is already the name of %s[%d]", name, list, j)
		} else {
			seen[name] = i
		}
	}
}

func (c *Config) validateTables(p *problems) {
	seen := map[string]int{}
	for i, t := range c.Tables {
		at := fmt.Sprintf("tables[%d]", i)
		p.checkName(at, "table", "tables", t.Name, i, seen)
		if !slices.Contains(tableFormats, t.Format) {
			p.add(at+".format", "unknown format %q (want %s)", t.Format, oneOf(tableFormats))
		}
		if len(t.Files) == 0 {
			p.add(at+".files", "no files (want at least one)")
		}
		for j, f := range t.Files {
			if f == "" {
				p.add(fmt.Sprintf("%s.files[%d]", at, j), "empty path")
			}
		}
		if !t.Labels.IsZero() && t.Format != FormatCIDRList && slices.Contains(tableFormats, t.Format) {
			p.add(at+".labels", "only a %s table takes labels (format %s carries its own)", FormatCIDRList, t.Format)
		}
		if cc := t.Labels.Country; cc != "" && !isCountryCode(cc) {
			p.add(at+".labels.country", "%q is not a country code (want two letters, e.g. NZ)", cc)
		}
	}
}

func (c *Config) validateDatapath(p *problems) {
	d := c.Datapath
	if d.CounterEntries < MinCounterEntries || d.CounterEntries > MaxCounterEntries {
		p.add("datapath.counter_entries", "%d is out of range (%d to %d)", d.CounterEntries, MinCounterEntries, MaxCounterEntries)
	}
	if d.V4KeyLen < 1 || d.V4KeyLen > 32 {
		p.add("datapath.v4_key_len", "%d is out of range (1 to 32)", d.V4KeyLen)
	} else if len(c.Tables) > 0 && d.V4KeyLen < MinTableV4KeyLen {
		p.add("datapath.v4_key_len", "/%d is shorter than /%d: with prefix tables, a counting key must not straddle a table boundary, and the kernel divides only /%ds at boundaries (set tables: [] to count in fixed /%d blocks)", d.V4KeyLen, MinTableV4KeyLen, MinTableV4KeyLen, d.V4KeyLen)
	}
	if d.V6KeyLen < 1 || d.V6KeyLen > 128 {
		p.add("datapath.v6_key_len", "%d is out of range (1 to 128)", d.V6KeyLen)
	} else if len(c.Tables) > 0 && d.V6KeyLen < MinTableV6KeyLen {
		p.add("datapath.v6_key_len", "/%d is shorter than /%d: with prefix tables, a counting key must not straddle a table boundary, and the kernel divides only /%ds at boundaries (set tables: [] to count in fixed /%d blocks)", d.V6KeyLen, MinTableV6KeyLen, MinTableV6KeyLen, d.V6KeyLen)
	}
	if d.V4SplitEntries < 1 || d.V4SplitEntries > MaxSplitEntries {
		p.add("datapath.v4_split_entries", "%d is out of range (1 to %d)", d.V4SplitEntries, MaxSplitEntries)
	}
	if d.V6SplitEntries < 1 || d.V6SplitEntries > MaxSplitEntries {
		p.add("datapath.v6_split_entries", "%d is out of range (1 to %d)", d.V6SplitEntries, MaxSplitEntries)
	}
}

func (c *Config) validateDrainAndStore(p *problems) {
	interval := c.Drain.Interval
	if interval < MinDrainInterval || interval > MaxDrainInterval {
		p.add("drain.interval", "%s is out of range (%s to %s)", formatDuration(interval), formatDuration(MinDrainInterval), formatDuration(MaxDrainInterval))
	}
	if c.Drain.TopN < 1 || c.Drain.TopN > MaxTopN {
		p.add("drain.top_n", "%d is out of range (1 to %d)", c.Drain.TopN, MaxTopN)
	}

	s := c.Store
	// A store.path derived from a bad data_dir is data_dir's error only.
	derived := s.Path == filepath.Join(c.DataDir, storeFile) && c.lines["store.path"] == 0
	if !derived || filepath.IsAbs(c.DataDir) {
		absolute(p, "store.path", s.Path)
	}
	if s.MaxSize < MinStoreSize {
		p.add("store.max_size", "%s is less than the least, %s", s.MaxSize, MinStoreSize)
	}
	switch s.Sync {
	case SyncEverySecond, SyncAlways, SyncNever:
	default:
		p.add("store.sync", "unknown policy %q (want %s)", s.Sync, oneOf([]StoreSync{SyncEverySecond, SyncAlways, SyncNever}))
	}
	r := s.Retention
	for _, lvl := range []struct {
		path string
		d    time.Duration
	}{
		{"store.retention.interval_10s", r.Interval},
		{"store.retention.minute", r.Minute},
		{"store.retention.hour", r.Hour},
		{"store.retention.day", r.Day},
	} {
		if lvl.d <= 0 {
			p.add(lvl.path, "%s is not a positive duration", formatDuration(lvl.d))
		}
	}
	if r.Interval > 0 && interval >= MinDrainInterval && interval <= MaxDrainInterval && r.Interval < 2*interval {
		// Point at drain.interval when only that is in the file.
		p.addFor("store.retention.interval_10s", "drain.interval", "%s is less than twice drain.interval (%s): the raw intervals must be kept for at least two intervals", formatDuration(r.Interval), formatDuration(interval))
	}
}

func (c *Config) validateWatchLists(p *problems) {
	seen := map[string]int{}
	for i, w := range c.WatchLists {
		at := fmt.Sprintf("watch_lists[%d]", i)
		p.checkName(at, "watch list", "watch_lists", w.Name, i, seen)
		if len(w.Countries) == 0 && len(w.ASNs) == 0 && len(w.Prefixes) == 0 {
			p.add(at, "watches nothing (set countries, asns or prefixes)")
		}
		for j, cc := range w.Countries {
			if !isCountryCode(cc) {
				p.add(fmt.Sprintf("%s.countries[%d]", at, j), "%q is not a country code (want two letters, e.g. NZ)", cc)
			}
		}
		for j, s := range w.Prefixes {
			if _, bad := parsePrefix(s); bad != "" {
				p.add(fmt.Sprintf("%s.prefixes[%d]", at, j), "%s", bad)
			}
		}
		a := w.Alert
		for _, rate := range []struct {
			name string
			v    float64
		}{{"pps", a.PPS}, {"bps", a.BPS}} {
			if rate.v < 0 || math.IsInf(rate.v, 0) || math.IsNaN(rate.v) {
				p.add(at+".alert."+rate.name, "%s is not a rate (want 0 for off, or more)", formatFloat(rate.v))
			}
		}
		if f := a.BaselineFactor; f != 0 && !(f > 1) || math.IsInf(f, 0) {
			p.add(at+".alert.baseline_factor", "%s is not a factor over the baseline (want 0 for off, or more than 1)", formatFloat(f))
		}
		if a.MinDuration < 0 {
			p.add(at+".alert.min_duration", "%s is negative", formatDuration(a.MinDuration))
		}
	}
}

// isCountryCode reports whether s is two upper-case ASCII letters.
func isCountryCode(s string) bool {
	return len(s) == 2 && 'A' <= s[0] && s[0] <= 'Z' && 'A' <= s[1] && s[1] <= 'Z'
}

func (c *Config) validateHTTP(p *problems) {
	h := c.HTTP
	if _, bad := splitListen(h.Listen); bad != "" {
		p.add("http.listen", "%s", bad)
	}
	pair := func(at, aName, a, bName, b string) {
		switch {
		case a != "" && b == "":
			p.addFor(at+"."+bName, at+"."+aName, "missing (%s is set: set both or neither)", aName)
		case a == "" && b != "":
			p.addFor(at+"."+aName, at+"."+bName, "missing (%s is set: set both or neither)", bName)
		}
	}
	pair("http.basic_auth", "user", h.BasicAuth.User, "password_file", h.BasicAuth.PasswordFile)
	pair("http.tls", "cert_file", h.TLS.CertFile, "key_file", h.TLS.KeyFile)
}

func (c *Config) validateUplink(p *problems) {
	u := c.Uplink
	if u.Broker != "" {
		url, err := neturl.Parse(u.Broker)
		switch {
		case err != nil:
			p.add("uplink.broker", "%q is not a URL", u.Broker)
		case url.Scheme != "tcp" && url.Scheme != "ssl" && url.Scheme != "tls":
			p.add("uplink.broker", "%q: scheme %q (want tcp://host:1883 or ssl://host:8883)", u.Broker, url.Scheme)
		case url.Hostname() == "":
			p.add("uplink.broker", "%q has no host", u.Broker)
		}
	}
	if u.TopicPrefix == "" || strings.ContainsAny(u.TopicPrefix, "+#") || strings.HasPrefix(u.TopicPrefix, "/") || strings.HasSuffix(u.TopicPrefix, "/") {
		p.add("uplink.topic_prefix", "%q is not a topic prefix (no + or #, no leading or trailing /)", u.TopicPrefix)
	}
	if (u.Username == "") != (u.PasswordFile == "") {
		p.add("uplink.password_file", "set username and password_file together, or neither")
	}
	if (u.CertFile == "") != (u.KeyFile == "") {
		p.add("uplink.key_file", "set cert_file and key_file together, or neither")
	}
	if u.MaxPayload < 4*KiB || u.MaxPayload > 16*MiB {
		p.add("uplink.max_payload", "%s is out of range (4KiB to 16MiB)", u.MaxPayload)
	}
	if u.Encoding != "binary" && u.Encoding != "json" {
		p.add("uplink.encoding", "%q: want binary or json", u.Encoding)
	}
}

// splitListen checks a listen address and returns its host.
func splitListen(listen string) (host, bad string) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Sprintf("%q is not host:port (e.g. 127.0.0.1:9100, or :9100 for every address)", listen)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", fmt.Sprintf("%q: port %q is not a number from 1 to 65535", listen, port)
	}
	if strings.ContainsAny(host, " \t/%") {
		return "", fmt.Sprintf("%q: %q is not a host name or address", listen, host)
	}
	return host, ""
}

// loopback reports whether a listen host is reachable from this box only.
func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

// formatDuration writes a duration as it is written in the file: 10s, 5m, 168h, 1h30m.
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func formatFloat(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }
