package prefixes

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"net/netip"
	"os"
	"reflect"
	"strconv"
	"strings"

	"github.com/oschwald/maxminddb-golang/v2"
)

// LoadMMDB reads a MaxMind DB file (see LoadMMDBBytes) and adds its networks to b. The file is
// read whole into memory, which a MaxMind DB's random access needs, and released on return.
func LoadMMDB(path, name string, b *TableBuilder) (LoadStats, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return LoadStats{Source: name}, err // *PathError already names the file
	}
	return LoadMMDBBytes(data, name, b)
}

// LoadMMDBBytes walks every network of a MaxMind DB (the MMDB format of GeoLite2, GeoIP2,
// DB-IP, ipinfo and ip-location-db) and adds it to b with the labels of its record. It
// understands these record shapes, and any mix of their fields:
//
//   - GeoLite2/GeoIP2 Country and City: country.iso_code, or registered_country.iso_code when
//     there is no country;
//   - GeoLite2 ASN: autonomous_system_number and autonomous_system_organization;
//   - flat records as DB-IP, ipinfo and ip-location-db make them: country_code, asn (13335 or
//     "AS13335") and as_name or name.
//
// A record with neither a country nor an AS number is skipped as "no labels"; one with a field
// of the wrong type or a bad value (a country code that is not two letters, an AS number out of
// range) is skipped as malformed. An AS name is kept only with an AS number. IPv4 networks are
// added as IPv4 prefixes; the IPv6 networks that an IPv6 database aliases to its IPv4 subtree
// (::ffff:0:0/96, 2001::/32 Teredo, 2002::/16 6to4) are not walked again, so each IPv4 network is
// added once. Networks without data are not counted.
//
// A file that is not a MaxMind DB, or whose search tree is corrupt, is an error; data is not
// retained after the call.
func LoadMMDBBytes(data []byte, name string, b *TableBuilder) (LoadStats, error) {
	st := LoadStats{Source: name}
	db, err := maxminddb.OpenBytes(data)
	if err != nil {
		return st, fmt.Errorf("open %s as a MaxMind DB: %w", name, err)
	}
	defer db.Close()
	if err := checkSearchTree(data, db.Metadata); err != nil {
		return st, fmt.Errorf("open %s as a MaxMind DB: %w", name, err)
	}
	type decoded struct {
		labels Entry
		err    *lineError
	}
	records := make(map[uintptr]decoded) // by offset: networks share a few records
	var cidrs []netip.Prefix
	// Networks skips the aliases of the IPv4 subtree by default (IncludeAliasedNetworks would
	// walk them) and networks without data (IncludeNetworksWithoutData would yield them).
	for res := range db.Networks() {
		if err := res.Err(); err != nil {
			return st, fmt.Errorf("read %s at %v: %w", name, res.Prefix(), err)
		}
		st.Lines++
		p := res.Prefix()
		rec, ok := records[res.Offset()]
		if !ok {
			rec.labels, rec.err = decodeMMDBRecord(res)
			records[res.Offset()] = rec
		}
		if rec.err != nil {
			st.skipNetwork(p, rec.err)
			continue
		}
		if !p.IsValid() { // not seen from the reader; guards prefixRange
			st.skipNetwork(p, malformed("invalid network"))
			continue
		}
		rg := prefixRange(p.Masked())
		rg.labels = rec.labels
		var lerr *lineError
		if cidrs, lerr = st.addRange(b, rg, cidrs); lerr != nil {
			st.skipNetwork(p, lerr)
		}
	}
	return st, nil
}

// mmdbRecord holds the fields of the record shapes LoadMMDBBytes understands. Each is decoded as
// whatever the database stores there, so that a field of an unexpected type (ipinfo's "country"
// is a name, where GeoIP2 has a map) is no decoding error; mmdbLabels then checks the types.
type mmdbRecord struct {
	Country           any `maxminddb:"country"`                        // GeoIP2: {"iso_code": "AU", …}
	RegisteredCountry any `maxminddb:"registered_country"`             // GeoIP2: {"iso_code": "AU", …}
	CountryCode       any `maxminddb:"country_code"`                   // flat: "AU"
	ASNumber          any `maxminddb:"autonomous_system_number"`       // GeoLite2 ASN: 13335
	ASOrganization    any `maxminddb:"autonomous_system_organization"` // GeoLite2 ASN
	ASN               any `maxminddb:"asn"`                            // flat: "AS13335" or 13335
	ASName            any `maxminddb:"as_name"`                        // flat
	Name              any `maxminddb:"name"`                           // ipinfo ASN
}

// decodeMMDBRecord returns the labels of the record of one network.
func decodeMMDBRecord(res maxminddb.Result) (Entry, *lineError) {
	var rec mmdbRecord
	if err := res.Decode(&rec); err != nil {
		return Entry{}, malformed("decode record: %v", err)
	}
	return mmdbLabels(&rec)
}

// mmdbLabels returns the labels of a decoded record.
func mmdbLabels(rec *mmdbRecord) (Entry, *lineError) {
	var e Entry
	for _, v := range []any{isoCode(rec.Country), rec.CountryCode, isoCode(rec.RegisteredCountry)} {
		if v == nil || v == "" {
			continue
		}
		s, ok := v.(string)
		if !ok {
			return Entry{}, malformed("country code %v is a %T", v, v)
		}
		if e.Country, ok = countryCode(s); !ok {
			return Entry{}, malformed("bad country code %q", s)
		}
		break
	}
	for _, v := range []any{rec.ASNumber, rec.ASN} {
		n, err := asNumber(v)
		if err != nil {
			return Entry{}, err
		}
		if n != 0 {
			e.ASN = n
			break
		}
	}
	if e.ASN != 0 {
		for _, v := range []any{rec.ASOrganization, rec.ASName, rec.Name} {
			if v == nil || v == "" {
				continue
			}
			s, ok := v.(string)
			if !ok {
				return Entry{}, malformed("AS name %v is a %T", v, v)
			}
			e.ASName = s
			break
		}
	}
	if e.Country == "" && e.ASN == 0 {
		return Entry{}, &lineError{reason: noLabels}
	}
	return e, nil
}

// isoCode returns the iso_code of a GeoIP2 country map, and nil for anything else.
func isoCode(country any) any {
	if m, ok := country.(map[string]any); ok {
		return m["iso_code"]
	}
	return nil
}

// asNumber returns the AS number of a decoded field: a number, or a string such as "13335" or
// "AS13335". A missing field, an empty string and 0 are 0, no AS.
func asNumber(v any) (uint32, *lineError) {
	var n uint64
	switch v := v.(type) {
	case nil:
		return 0, nil
	case uint64:
		n = v
	case int, int32, int64:
		i := reflect.ValueOf(v).Int()
		if i < 0 {
			return 0, malformed("bad AS number %d", i)
		}
		n = uint64(i)
	case *big.Int:
		if !v.IsUint64() {
			return 0, malformed("bad AS number %v", v)
		}
		n = v.Uint64()
	case string:
		if v == "" {
			return 0, nil
		}
		digits := v
		if len(digits) > 2 && strings.EqualFold(digits[:2], "AS") {
			digits = digits[2:]
		}
		var err error
		if n, err = strconv.ParseUint(digits, 10, 32); err != nil {
			return 0, malformed("bad AS number %q", v)
		}
	default:
		return 0, malformed("AS number %v is a %T", v, v)
	}
	if n > math.MaxUint32 {
		return 0, malformed("bad AS number %d", n)
	}
	return uint32(n), nil
}

// checkSearchTree makes sure that walking the search tree of an MMDB file takes time in
// proportion to its size, before maxminddb's Networks walks it. Networks follows every path from
// the root. In a tree as the writers make it each node has one parent, apart from the root of
// the IPv4 subtree of an IPv6 database, whose aliases the walk skips, so there are about as many
// paths as nodes. In a corrupt or crafted file nodes can be shared, and a hundred of them make
// 2^100 paths, which the reader would walk without end. checkSearchTree counts the paths in
// O(nodes), remembering the count below each node, and refuses a tree with a cycle or with more
// than twice as many paths as nodes.
func checkSearchTree(data []byte, md maxminddb.Metadata) error {
	n := md.NodeCount
	if n == 0 {
		return nil
	}
	nodeSize := md.RecordSize / 4 // two records per node
	if md.RecordSize != 24 && md.RecordSize != 28 && md.RecordSize != 32 {
		return fmt.Errorf("unsupported record size %d", md.RecordSize)
	}
	if n > uint(len(data))/nodeSize {
		return errors.New("search tree larger than the file") // maxminddb.OpenBytes checks this too
	}
	children := func(node uint) (left, right uint) {
		b := data[node*nodeSize : (node+1)*nodeSize]
		switch md.RecordSize {
		case 24:
			return uint(b[0])<<16 | uint(b[1])<<8 | uint(b[2]), uint(b[3])<<16 | uint(b[4])<<8 | uint(b[5])
		case 28:
			return uint(b[3]&0xf0)<<20 | uint(b[0])<<16 | uint(b[1])<<8 | uint(b[2]),
				uint(b[3]&0x0f)<<24 | uint(b[4])<<16 | uint(b[5])<<8 | uint(b[6])
		}
		return uint(b[0])<<24 | uint(b[1])<<16 | uint(b[2])<<8 | uint(b[3]),
			uint(b[4])<<24 | uint(b[5])<<16 | uint(b[6])<<8 | uint(b[7])
	}

	// The IPv4 subtree of an IPv6 database is the node at the end of ::/96, as maxminddb finds
	// it; the walk follows it only from there, and cuts every other pointer to it (an alias).
	// Paths through the IPv4 subtree are counted once, and an alias as one path.
	var ipv4Start uint
	root, rootDepth := uint(0), 96 // an IPv4 database: the reader puts its root at ::/96
	if md.IPVersion == 6 {
		rootDepth = 0
		depth := 0
		for ipv4Start = 0; depth < 96 && ipv4Start < n; depth++ {
			ipv4Start, _ = children(ipv4Start)
		}
		if ipv4Start == 0 {
			return errors.New("invalid search tree: ::/96 leads back to the root")
		}
		if ipv4Start < n {
			root = ipv4Start
			rootDepth = depth
		}
	}

	const onPath = math.MaxUint32 // the node is on the current path
	limit := 2*uint64(n) + 2
	paths := make([]uint32, n) // 0: not counted yet, onPath, or the count, at most limit+1
	var count func(ptr uint, depth int) (uint64, error)
	count = func(ptr uint, depth int) (uint64, error) {
		if ptr >= n || ptr == ipv4Start && root != ipv4Start {
			return 1, nil // a data or empty record, or an alias of the IPv4 subtree
		}
		switch c := paths[ptr]; c {
		case 0:
		case onPath:
			return 0, fmt.Errorf("invalid search tree: cycle through node %d", ptr)
		default:
			return uint64(c), nil
		}
		if depth >= 128 {
			return 0, errors.New("invalid search tree: deeper than 128 bits")
		}
		paths[ptr] = onPath
		left, right := children(ptr)
		l, err := count(left, depth+1)
		if err != nil {
			return 0, err
		}
		r, err := count(right, depth+1)
		if err != nil {
			return 0, err
		}
		total := min(l+r, limit+1, onPath-1)
		paths[ptr] = uint32(total)
		return total, nil
	}
	total, err := count(root, rootDepth) // the IPv4 subtree first, when it is not the whole tree
	if err == nil && root != 0 {
		root = 0 // from now on a pointer to ipv4Start is an alias
		var rest uint64
		rest, err = count(0, 0)
		total += rest
	}
	if err != nil {
		return err
	}
	if total > limit {
		return fmt.Errorf("invalid search tree: more than %d networks from %d nodes, so nodes are shared", limit, n)
	}
	return nil
}
