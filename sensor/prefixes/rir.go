package prefixes

import (
	"io"
	"net/netip"
	"strconv"
	"strings"
)

// LoadRIRDelegated reads a Regional Internet Registry's statistics file ("delegated-apnic-latest",
// "delegated-arin-extended-latest" and the like, in the RIR statistics exchange format) and adds
// the country of each IPv4 and IPv6 delegation to b.
//
// A record is "registry|cc|type|start|value|date|status", and the extended files add an opaque
// id and maybe more fields. For type ipv4, value is a number of addresses, not always a power of
// two, and the range start..start+value-1 is converted to its minimal CIDR cover; for type ipv6,
// value is a prefix length. Only records with status allocated or assigned are loaded, and their
// country code must be two letters (it is upper-cased). The date and the extension fields are not
// read.
//
// Ignored: blank lines, "#" comments, the version line that opens the file
// ("2|apnic|20240601|71234|19830613|20240531|+1000", accepted anywhere, so that the files of
// several registries can be loaded concatenated), the summary lines
// ("apnic|*|ipv4|*|50215|summary"), asn records, and records of any other status (available,
// reserved), which name no holder and so no country.
func LoadRIRDelegated(r io.Reader, name string, b *TableBuilder) (LoadStats, error) {
	return load(r, name, b, func(line string) (*ipRange, *lineError) {
		if strings.HasPrefix(line, "#") {
			return nil, nil
		}
		f := strings.Split(line, "|")
		if isVersion(f[0]) {
			if len(f) != 7 || !isWord(f[1]) {
				return nil, malformed("bad version line: want 7 fields version|registry|serial|records|startdate|enddate|UTCoffset")
			}
			return nil, nil
		}
		if len(f) == 6 && f[1] == "*" && f[3] == "*" && f[5] == "summary" {
			return nil, nil
		}
		if len(f) < 7 {
			return nil, malformed("want 7 fields registry|cc|type|start|value|date|status, got %d", len(f))
		}
		registry, cc, typ, start, value, status := f[0], f[1], f[2], f[3], f[4], f[6]
		if !isWord(registry) {
			return nil, malformed("bad registry %q", registry)
		}
		switch typ {
		case "asn":
			return nil, nil
		case "ipv4", "ipv6":
		default:
			return nil, malformed("unknown type %q", typ)
		}
		if !strings.EqualFold(status, "allocated") && !strings.EqualFold(status, "assigned") {
			return nil, nil // available, reserved: no holder, no country
		}
		if cc == "" {
			return nil, malformed("no country code")
		}
		country, ok := countryCode(cc)
		if !ok {
			return nil, malformed("bad country code %q", cc)
		}
		a, err := netip.ParseAddr(start)
		if err != nil || a.Zone() != "" {
			return nil, malformed("bad start address %q", start)
		}
		var rg *ipRange
		if typ == "ipv4" {
			if !a.Is4() {
				return nil, &lineError{unknownFamily, "type ipv4 but start " + start + " is IPv6"}
			}
			n, err := strconv.ParseUint(value, 10, 64)
			if err != nil || n == 0 {
				return nil, malformed("bad address count %q", value)
			}
			lo := addrValue(a).lo
			if n-1 > 0xffffffff-lo {
				return nil, malformed("%d addresses from %v pass 255.255.255.255", n, a)
			}
			rg = &ipRange{family: IPv4, first: uint128{lo: lo}, last: uint128{lo: lo + n - 1}}
		} else {
			if !a.Is6() {
				return nil, &lineError{unknownFamily, "type ipv6 but start " + start + " is IPv4"}
			}
			bits, err := strconv.ParseUint(value, 10, 8)
			if err != nil || bits > 128 {
				return nil, malformed("bad prefix length %q", value)
			}
			p := netip.PrefixFrom(a, int(bits))
			if p.Masked() != p {
				return nil, malformed("%v has host bits set (%v?)", p, p.Masked())
			}
			rg = prefixRange(p)
		}
		rg.labels.Country = country
		return rg, nil
	})
}

// isWord reports whether s is a non-empty run of ASCII letters, as a registry's name is.
func isWord(s string) bool {
	for i := range len(s) {
		if !isLetter(s[i]) {
			return false
		}
	}
	return s != ""
}

// isVersion reports whether s looks like the format version that opens an RIR statistics file:
// digits, maybe with dots ("2", "2.3").
func isVersion(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' {
		return false
	}
	for i := range len(s) {
		if (s[i] < '0' || s[i] > '9') && s[i] != '.' {
			return false
		}
	}
	return true
}
