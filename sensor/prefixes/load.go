package prefixes

import (
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// MaxLineLength is the longest line, without its line ending, that a loader accepts. A longer
// line is skipped as malformed.
const MaxLineLength = 4096

// maxSkippedShown is how many skipped lines LoadStats.FirstSkipped quotes.
const maxSkippedShown = 5

// skipReason says why a loader skipped a line; LoadStats counts each in a field of its own.
type skipReason int

const (
	malformedLine skipReason = iota // wrong number of fields, bad address, number or code, too long
	unknownFamily                   // start and end are not both IPv4 or both IPv6
	startAfterEnd                   // the range ends before it starts
	duplicateLine                   // every prefix of the line was already in the table
	noLabels                        // an MMDB record with neither a country nor an AS number
)

func (r skipReason) String() string {
	switch r {
	case malformedLine:
		return "malformed"
	case unknownFamily:
		return "unknown family"
	case startAfterEnd:
		return "start after end"
	case duplicateLine:
		return "duplicate"
	case noLabels:
		return "no labels"
	}
	return fmt.Sprintf("skipReason(%d)", int(r))
}

// LoadStats counts what a loader read. Every line is added, skipped or ignored:
// Lines == Added + Skipped() + Ignored. For an MMDB file a "line" is a network of its search
// tree that has data.
type LoadStats struct {
	Source         string // name given to the loader
	Lines          int    // lines read
	Added          int    // lines that added at least one prefix
	Ignored        int    // blank lines, comment lines, and lines that carry no prefix to load
	CIDRs          int    // prefixes produced from the lines, duplicates included
	DuplicateCIDRs int    // prefixes not added because the table already had the same prefix

	// Lines skipped, by reason.
	Malformed, UnknownFamily, StartAfterEnd, Duplicate, NoLabels int

	// FirstSkipped quotes the first few skipped lines as "source:line: reason", or for an MMDB
	// file as "source:prefix: reason".
	FirstSkipped []string
}

// Skipped returns the number of lines skipped for any reason.
func (s LoadStats) Skipped() int {
	return s.Malformed + s.UnknownFamily + s.StartAfterEnd + s.Duplicate + s.NoLabels
}

// String summarizes the counts on one line, for a log.
func (s LoadStats) String() string {
	return fmt.Sprintf("%s: %d lines, %d added as %d prefixes (%d duplicate prefixes dropped), "+
		"%d ignored, skipped %d malformed, %d unknown family, %d start after end, %d duplicate, %d no labels",
		s.Source, s.Lines, s.Added, s.CIDRs-s.DuplicateCIDRs, s.DuplicateCIDRs, s.Ignored,
		s.Malformed, s.UnknownFamily, s.StartAfterEnd, s.Duplicate, s.NoLabels)
}

// skip counts a skipped line and quotes it if it is among the first few.
func (s *LoadStats) skip(line int, err *lineError) {
	if s.count(err) {
		s.FirstSkipped = append(s.FirstSkipped, fmt.Sprintf("%s:%d: %v", s.Source, line, err))
	}
}

// skipNetwork counts a skipped MMDB network and quotes it if it is among the first few.
func (s *LoadStats) skipNetwork(p netip.Prefix, err *lineError) {
	if s.count(err) {
		s.FirstSkipped = append(s.FirstSkipped, fmt.Sprintf("%s:%v: %v", s.Source, p, err))
	}
}

// count counts a skipped line by its reason and reports whether to quote it.
func (s *LoadStats) count(err *lineError) bool {
	switch err.reason {
	case malformedLine:
		s.Malformed++
	case unknownFamily:
		s.UnknownFamily++
	case startAfterEnd:
		s.StartAfterEnd++
	case duplicateLine:
		s.Duplicate++
	case noLabels:
		s.NoLabels++
	}
	return len(s.FirstSkipped) < maxSkippedShown
}

// lineError is why one line was skipped.
type lineError struct {
	reason skipReason
	detail string
}

func (e *lineError) Error() string {
	if e.detail == "" {
		return e.reason.String()
	}
	return e.reason.String() + ": " + e.detail
}

// malformed returns the reason for skipping a malformed line.
func malformed(format string, args ...any) *lineError {
	return &lineError{malformedLine, fmt.Sprintf(format, args...)}
}

// ipRange is one parsed line: an inclusive address range of one family and its labels.
type ipRange struct {
	family      Family
	first, last uint128
	labels      Entry
}

// parseLine parses a line without its line ending. It returns a nil range for a line to ignore.
type parseLine func(line string) (*ipRange, *lineError)

// LoadIPLocationCountry reads ip-location-db country ranges, "start,end,country" without a
// header (for example "175.45.176.0,175.45.179.255,KP"), and adds their prefixes to b. The
// country must be empty or two letters.
func LoadIPLocationCountry(r io.Reader, name string, b *TableBuilder) (LoadStats, error) {
	return load(r, name, b, func(line string) (*ipRange, *lineError) {
		start, rest, _ := strings.Cut(line, ",")
		end, country, ok := strings.Cut(rest, ",")
		if !ok || strings.Contains(country, ",") {
			return nil, malformed("want 3 fields start,end,country")
		}
		rg, err := parseRange(start, end)
		if err != nil {
			return nil, err
		}
		if rg.labels.Country, ok = countryCode(country); !ok {
			return nil, malformed("bad country code %q", country)
		}
		return rg, nil
	})
}

// LoadIPLocationASN reads ip-location-db AS ranges, "start,end,asn,as_name" without a header,
// and adds their prefixes to b. The name may be quoted as in CSV, with commas and doubled quotes
// inside (1.0.0.0,1.0.0.255,13335,"Cloudflare, Inc."); an unquoted name is the rest of the line.
func LoadIPLocationASN(r io.Reader, name string, b *TableBuilder) (LoadStats, error) {
	return load(r, name, b, func(line string) (*ipRange, *lineError) {
		start, rest, _ := strings.Cut(line, ",")
		end, rest, _ := strings.Cut(rest, ",")
		asn, asName, ok := strings.Cut(rest, ",")
		if !ok {
			return nil, malformed("want 4 fields start,end,asn,as_name")
		}
		rg, err := parseRange(start, end)
		if err != nil {
			return nil, err
		}
		n, perr := strconv.ParseUint(asn, 10, 32)
		if perr != nil {
			return nil, malformed("bad AS number %q", asn)
		}
		rg.labels.ASN = uint32(n)
		if rg.labels.ASName, err = unquoteCSV(asName); err != nil {
			return nil, err
		}
		return rg, nil
	})
}

// LoadCIDRList reads one prefix (10.0.0.0/8) or address (192.0.2.1, as a /32 or /128) per line
// and adds each with the given labels to b. Text after "#" is a comment; blank lines are ignored.
// A prefix with host bits set (10.0.0.1/8) is skipped as malformed rather than guessed at.
func LoadCIDRList(r io.Reader, name string, b *TableBuilder, labels Entry) (LoadStats, error) {
	return load(r, name, b, func(line string) (*ipRange, *lineError) {
		line, _, _ = strings.Cut(line, "#")
		line = strings.TrimSpace(line)
		if line == "" {
			return nil, nil
		}
		var p netip.Prefix
		if strings.Contains(line, "/") {
			var err error
			if p, err = netip.ParsePrefix(line); err != nil {
				return nil, malformed("bad prefix %q", line)
			}
			if p.Masked() != p {
				return nil, malformed("%v has host bits set (%v?)", p, p.Masked())
			}
		} else {
			a, err := netip.ParseAddr(line)
			if err != nil || a.Zone() != "" {
				return nil, malformed("bad address %q", line)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		rg := prefixRange(p)
		rg.labels = labels
		return rg, nil
	})
}

// prefixRange returns the addresses of a valid, masked prefix as a range. An IPv4-mapped IPv6
// prefix (::ffff:a.b.c.d/96 and longer) becomes IPv4, as in (*TableBuilder).Add.
func prefixRange(p netip.Prefix) *ipRange {
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	f := familyOf(p.Addr())
	first := addrValue(p.Addr())
	return &ipRange{family: f, first: first, last: first.or(hostMask(f.bits() - p.Bits()))}
}

// parseRange parses the start and end addresses of an inclusive range.
func parseRange(start, end string) (*ipRange, *lineError) {
	first, err := netip.ParseAddr(start)
	if err != nil || first.Zone() != "" {
		return nil, malformed("bad start address %q", start)
	}
	last, err := netip.ParseAddr(end)
	if err != nil || last.Zone() != "" {
		return nil, malformed("bad end address %q", end)
	}
	first, last = first.Unmap(), last.Unmap()
	if f := familyOf(first); f != familyOf(last) {
		return nil, &lineError{unknownFamily, fmt.Sprintf("start %v is %v, end %v is %v", first, f, last, familyOf(last))}
	}
	if last.Less(first) {
		return nil, &lineError{startAfterEnd, fmt.Sprintf("%v > %v", first, last)}
	}
	return &ipRange{family: familyOf(first), first: addrValue(first), last: addrValue(last)}, nil
}

// countryCode returns an ISO 3166-1 alpha-2 code in upper case; empty is allowed.
func countryCode(s string) (string, bool) {
	if s == "" {
		return "", true
	}
	if len(s) != 2 || !isLetter(s[0]) || !isLetter(s[1]) {
		return "", false
	}
	return strings.ToUpper(s), true
}

func isLetter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }

// unquoteCSV returns the value of a last CSV field: unquoted as it stands, or quoted with
// doubled quotes inside.
func unquoteCSV(s string) (string, *lineError) {
	if !strings.HasPrefix(s, `"`) {
		return s, nil
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		if s[i] != '"' {
			b.WriteByte(s[i])
			continue
		}
		if i+1 < len(s) && s[i+1] == '"' { // a doubled quote stands for one quote
			b.WriteByte('"')
			i++
			continue
		}
		if i != len(s)-1 {
			return "", malformed("text after quoted name %q", s)
		}
		return b.String(), nil
	}
	return "", malformed("unterminated quote in %q", s)
}

// load reads lines from r, parses each with parse and adds its prefixes to b. Bad lines are
// counted and skipped; only a read error stops it.
func load(r io.Reader, name string, b *TableBuilder, parse parseLine) (LoadStats, error) {
	st := LoadStats{Source: name}
	br := bufio.NewReaderSize(r, 64<<10)
	var cidrs []netip.Prefix
	for {
		raw, err := br.ReadSlice('\n')
		tooLong := false
		for errors.Is(err, bufio.ErrBufferFull) { // drop the rest of an overlong line
			tooLong = true
			_, err = br.ReadSlice('\n')
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return st, fmt.Errorf("read %s: %w", name, err)
		}
		if len(raw) == 0 && !tooLong { // end of input
			return st, nil
		}
		st.Lines++
		raw = trimLineEnd(raw)
		switch {
		case tooLong || len(raw) > MaxLineLength:
			st.skip(st.Lines, malformed("line longer than %d bytes", MaxLineLength))
		case len(raw) == 0:
			st.Ignored++
		default:
			cidrs = st.add(b, st.Lines, string(raw), parse, cidrs[:0])
		}
		if err != nil { // io.EOF after a last line without a line ending
			return st, nil
		}
	}
}

// add parses one line and adds its prefixes to b, reusing cidrs as scratch space.
func (st *LoadStats) add(b *TableBuilder, lineNo int, line string, parse parseLine, cidrs []netip.Prefix) []netip.Prefix {
	rg, lerr := parse(line)
	switch {
	case lerr != nil:
	case rg == nil:
		st.Ignored++
		return cidrs
	default:
		cidrs, lerr = st.addRange(b, rg, cidrs)
	}
	if lerr != nil {
		st.skip(lineNo, lerr)
	}
	return cidrs
}

// addRange adds the prefixes of one parsed line to b, reusing cidrs as scratch space, and counts
// them. When every prefix was already in the table it returns the reason to skip the line, for
// the caller to count and quote.
func (st *LoadStats) addRange(b *TableBuilder, rg *ipRange, cidrs []netip.Prefix) ([]netip.Prefix, *lineError) {
	cidrs = appendRangePrefixes(cidrs[:0], rg.family, rg.first, rg.last)
	added := 0
	for _, p := range cidrs {
		e := rg.labels
		e.Prefix = p
		if err := b.Add(e); err != nil {
			st.DuplicateCIDRs++ // the only error Add can return for a prefix made here
			continue
		}
		added++
	}
	st.CIDRs += len(cidrs)
	if added > 0 {
		st.Added++
		return cidrs, nil
	}
	detail := fmt.Sprintf("%v already in the table", cidrs[0])
	if len(cidrs) > 1 {
		detail = fmt.Sprintf("all %d prefixes from %v to %v already in the table", len(cidrs), cidrs[0], cidrs[len(cidrs)-1])
	}
	return cidrs, &lineError{duplicateLine, detail}
}

// trimLineEnd removes a trailing "\n" or "\r\n".
func trimLineEnd(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\n' {
		b = b[:n-1]
	}
	if n := len(b); n > 0 && b[n-1] == '\r' {
		b = b[:n-1]
	}
	return b
}

// OpenFile opens a prefix table file for reading, transparently decompressing it when its name
// ends in ".gz".
func OpenFile(path string) (io.ReadCloser, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err // *PathError already names the file
	}
	if !strings.HasSuffix(path, ".gz") {
		return f, nil
	}
	z, err := gzip.NewReader(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("gunzip %s: %w", path, err)
	}
	return &gzipFile{Reader: z, file: f}, nil
}

// gzipFile closes both the decompressor and the file under it.
type gzipFile struct {
	*gzip.Reader
	file *os.File
}

func (g *gzipFile) Close() error {
	return errors.Join(g.Reader.Close(), g.file.Close())
}
