package summary

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/peerwatch/peerwatch/sensor/traffic"
)

// The binary encoding of a summary: the same fields as the JSON (schema
// version 1), about a fifth of its size and decoded several times faster,
// for fleets where the collector's CPU is what limits (docs/mqtt.md,
// "Binary encoding"). All integers are unsigned LEB128 varints (uv) unless
// said otherwise; strings are written once, in a table, and referred to by
// index.
//
//	magic     "PWB"
//	schema    uv (1)
//	strings   uv n, then n × (uv length, bytes)
//	sensor    uv string index
//	seq       uv
//	start     zigzag varint, Unix nanoseconds
//	end       zigzag varint, Unix nanoseconds
//	globals   6 × uv: seen non_ip malformed both_local neither_local overflow
//	remote    counters: 9 × uv: packets[2] bytes[2] class[5]
//	other     counters
//	truncated uv
//	outbox_dropped uv
//	prefixes  uv n, then n × (byte: prefix length, plus 64 for IPv6; the
//	          address bytes up to the prefix length, uv country string index + 1 (0: none),
//	          uv asn, uv as name string index + 1, counters)
//	countries uv n, then n × (uv string index, counters)
//	ases      uv n, then n × (uv asn, uv as name index + 1, counters)
//	watch     uv n, then n × (uv string index, counters)
//
// Nothing may follow. Decode checks a binary summary exactly as it checks
// JSON.

var binaryMagic = []byte("PWB")

// Format is a wire encoding of summaries.
type Format int

// The formats Encode writes; Decode reads both.
const (
	FormatJSON   Format = iota // JSON, gzip-compressed when that pays
	FormatBinary               // the binary encoding, never compressed
)

// Bounds of the binary encoding's string table.
const (
	v6Bits       = 64 // added to an IPv6 prefix's length byte
	maxStrings   = 1 << 20
	maxStringLen = 1 << 10
)

type binWriter struct {
	buf     []byte
	strings map[string]uint64
	table   []string
}

func (w *binWriter) uv(v uint64) { w.buf = binary.AppendUvarint(w.buf, v) }

func (w *binWriter) str(s string) uint64 {
	i, ok := w.strings[s]
	if !ok {
		i = uint64(len(w.table))
		w.strings[s] = i
		w.table = append(w.table, s)
	}
	return i
}

// optStr is the index + 1 of s, 0 for the empty string.
func (w *binWriter) optStr(s string) uint64 {
	if s == "" {
		return 0
	}
	return w.str(s) + 1
}

func (w *binWriter) counters(c traffic.Counters) {
	for _, v := range c.Packets {
		w.uv(v)
	}
	for _, v := range c.Bytes {
		w.uv(v)
	}
	for _, v := range c.Class {
		w.uv(v)
	}
}

// encodeBinary writes s in the binary encoding. The body is written first,
// with string indexes, and the string table put in front of it.
func encodeBinary(s *Summary) []byte {
	w := &binWriter{strings: make(map[string]uint64), buf: make([]byte, 0, 64+len(s.Prefixes)*24+(len(s.Countries)+len(s.ASes))*20)}
	w.uv(w.str(s.Sensor))
	w.uv(s.Seq)
	w.buf = binary.AppendVarint(w.buf, s.Start.UnixNano())
	w.buf = binary.AppendVarint(w.buf, s.End.UnixNano())
	g := s.Globals
	for _, v := range []uint64{g.Seen, g.NonIP, g.Malformed, g.BothLocal, g.NeitherLocal, g.Overflow} {
		w.uv(v)
	}
	w.counters(s.Remote)
	w.counters(s.Other)
	w.uv(uint64(s.Truncated))
	w.uv(s.OutboxDropped)
	w.uv(uint64(len(s.Prefixes)))
	for _, p := range s.Prefixes {
		bits := byte(p.Prefix.Bits())
		if p.Prefix.Addr().Is6() {
			bits += v6Bits
		}
		w.buf = append(w.buf, bits)
		a := p.Prefix.Addr().AsSlice()
		w.buf = append(w.buf, a[:(p.Prefix.Bits()+7)/8]...)
		w.uv(w.optStr(p.Country))
		w.uv(uint64(p.ASN))
		w.uv(w.optStr(p.ASName))
		w.counters(p.Counters)
	}
	w.uv(uint64(len(s.Countries)))
	for _, c := range s.Countries {
		w.uv(w.str(c.Country))
		w.counters(c.Counters)
	}
	w.uv(uint64(len(s.ASes)))
	for _, a := range s.ASes {
		w.uv(uint64(a.ASN))
		w.uv(w.optStr(a.ASName))
		w.counters(a.Counters)
	}
	w.uv(uint64(len(s.Watch)))
	for _, l := range s.Watch {
		w.uv(w.str(l.List))
		w.counters(l.Counters)
	}

	head := make([]byte, 0, 16+len(w.buf)+8*len(w.table))
	head = append(head, binaryMagic...)
	head = binary.AppendUvarint(head, SchemaVersion)
	head = binary.AppendUvarint(head, uint64(len(w.table)))
	for _, t := range w.table {
		head = binary.AppendUvarint(head, uint64(len(t)))
		head = append(head, t...)
	}
	return append(head, w.buf...)
}

// binReader reads the binary encoding; the first error sticks, and every
// read after it returns zero.
type binReader struct {
	b     []byte
	off   int
	err   error
	table []string
}

func (r *binReader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: binary summary at byte %d: %s", ErrMalformed, r.off, fmt.Sprintf(format, args...))
	}
}

func (r *binReader) uv() uint64 {
	// Most values (class counters, indexes, lengths) are one byte: that
	// case inlined.
	if off := r.off; off < len(r.b) && r.b[off] < 0x80 && r.err == nil {
		r.off = off + 1
		return uint64(r.b[off])
	}
	return r.uvSlow()
}

func (r *binReader) uvSlow() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b[r.off:])
	if n <= 0 {
		r.fail("truncated or overlong varint")
		return 0
	}
	r.off += n
	return v
}

// count reads a list length, at most limit; what is over is ErrTooLarge.
func (r *binReader) count(name string, limit int) int {
	n := r.uv()
	if r.err == nil && n > uint64(limit) {
		r.err = fmt.Errorf("%w: %d %s, limit %d", ErrTooLarge, n, name, limit)
		return 0
	}
	// Every entry takes at least 10 bytes (its counters): a length the
	// payload cannot hold is refused before anything is allocated.
	if r.err == nil && n > uint64(len(r.b)-r.off)/10 {
		r.fail("%d %s do not fit in the %d bytes left", n, name, len(r.b)-r.off)
		return 0
	}
	return int(n)
}

func (r *binReader) u32(name string) uint32 {
	v := r.uv()
	if v > 1<<32-1 {
		r.fail("%s %d does not fit in 32 bits", name, v)
		return 0
	}
	return uint32(v)
}

func (r *binReader) str() string {
	i := r.uv()
	if r.err == nil && i >= uint64(len(r.table)) {
		r.fail("string index %d, the table has %d", i, len(r.table))
		return ""
	}
	if r.err != nil {
		return ""
	}
	return r.table[i]
}

func (r *binReader) optStr() string {
	i := r.uv()
	if r.err != nil || i == 0 {
		return ""
	}
	if i > uint64(len(r.table)) {
		r.fail("string index %d, the table has %d", i-1, len(r.table))
		return ""
	}
	return r.table[i-1]
}

func (r *binReader) time() time.Time {
	if r.err != nil {
		return time.Time{}
	}
	v, n := binary.Varint(r.b[r.off:])
	if n <= 0 {
		r.fail("truncated or overlong time")
		return time.Time{}
	}
	r.off += n
	return time.Unix(0, v).UTC()
}

func (r *binReader) counters(c *traffic.Counters) {
	// The nine varints in one loop over the bytes, one-byte values
	// without a call: most of a payload is counters.
	var v [2 + 2 + traffic.NumClasses]uint64
	b, off := r.b, r.off
	for i := range v {
		if off < len(b) && b[off] < 0x80 {
			v[i] = uint64(b[off])
			off++
			continue
		}
		// Up to 8 bytes (56 bits: packet and byte counts) inline, as
		// binary.Uvarint reads them; anything else, errors included,
		// through uvSlow.
		if off+8 <= len(b) {
			x, shift, j := uint64(0), uint(0), off
			for ; j < off+8; j++ {
				c := b[j]
				x |= uint64(c&0x7f) << shift
				if c < 0x80 {
					break
				}
				shift += 7
			}
			if j < off+8 {
				v[i], off = x, j+1
				continue
			}
		}
		r.off = off
		v[i] = r.uvSlow()
		off = r.off
	}
	r.off = off
	if r.err != nil {
		*c = traffic.Counters{}
		return
	}
	c.Packets = traffic.ByDirection{v[0], v[1]}
	c.Bytes = traffic.ByDirection{v[2], v[3]}
	c.Class = traffic.ByClass(v[4:])
}

func (r *binReader) prefix() netip.Prefix {
	if r.err != nil {
		return netip.Prefix{}
	}
	if r.off >= len(r.b) {
		r.fail("truncated prefix")
		return netip.Prefix{}
	}
	bits, size := int(r.b[r.off]), 4
	switch {
	case bits <= 32:
	case bits >= v6Bits && bits <= v6Bits+128:
		bits, size = bits-v6Bits, 16
	default:
		r.fail("prefix length byte %#02x", bits)
		return netip.Prefix{}
	}
	r.off++
	n := (bits + 7) / 8
	if len(r.b)-r.off < n {
		r.fail("truncated prefix")
		return netip.Prefix{}
	}
	var a [16]byte
	copy(a[:], r.b[r.off:r.off+n])
	r.off += n
	if size == 4 {
		return netip.PrefixFrom(netip.AddrFrom4([4]byte(a[:4])), bits)
	}
	return netip.PrefixFrom(netip.AddrFrom16(a), bits)
}

// decodeBinary parses the binary encoding (after its magic was seen); the
// caller validates the result.
func decodeBinary(b []byte, l Limits) (*Summary, error) {
	s := new(Summary)
	if err := decodeBinaryInto(b, l, s, nil); err != nil {
		return nil, err
	}
	return s, nil
}

// decodeBinaryInto is decodeBinary into s, whose lists it reuses: every
// field of s is overwritten. With in, the strings of the payload's table
// are interned.
func decodeBinaryInto(b []byte, l Limits, s *Summary, in *interner) error {
	if len(b) > l.MaxDecompressed {
		return fmt.Errorf("%w: %d bytes of binary summary, limit %d", ErrTooLarge, len(b), l.MaxDecompressed)
	}
	r := &binReader{b: b, off: len(binaryMagic)}
	if in != nil {
		r.table = in.table[:0]
		defer func() { in.table = keep(r.table) }()
	}
	if v := r.uv(); r.err == nil && v != SchemaVersion {
		return fmt.Errorf("%w: payload has schema version %d, this code reads version %d", ErrVersion, v, SchemaVersion)
	}
	n := r.uv()
	if r.err == nil && (n > maxStrings || n > uint64(len(b)-r.off)) {
		r.fail("%d strings in the table", n)
	}
	if r.err == nil {
		r.table = slices.Grow(r.table[:0], int(n))[:n]
	}
	for i := range r.table {
		size := r.uv()
		if r.err == nil && (size > maxStringLen || size > uint64(len(b)-r.off)) {
			r.fail("string %d of %d bytes", i, size)
		}
		if r.err != nil {
			break
		}
		if in != nil {
			r.table[i] = in.intern(b[r.off : r.off+int(size)])
		} else {
			r.table[i] = string(b[r.off : r.off+int(size)])
		}
		r.off += int(size)
	}

	*s = Summary{Schema: SchemaVersion, Prefixes: s.Prefixes[:0], Countries: s.Countries[:0], ASes: s.ASes[:0], Watch: s.Watch[:0]}
	s.Sensor = r.str()
	s.Seq = r.uv()
	s.Start = r.time()
	s.End = r.time()
	g := &s.Globals
	for _, p := range []*uint64{&g.Seen, &g.NonIP, &g.Malformed, &g.BothLocal, &g.NeitherLocal, &g.Overflow} {
		*p = r.uv()
	}
	r.counters(&s.Remote)
	r.counters(&s.Other)
	if t := r.uv(); t > 1<<40 {
		r.fail("truncated %d", t)
	} else {
		s.Truncated = int(t)
	}
	s.OutboxDropped = r.uv()
	if n := r.count("prefixes", l.MaxPrefixes); n > 0 {
		s.Prefixes = slices.Grow(s.Prefixes, n)[:n]
		for i := range s.Prefixes {
			p := &s.Prefixes[i]
			p.Prefix = r.prefix()
			p.Country = r.optStr()
			p.ASN = r.u32("asn")
			p.ASName = r.optStr()
			r.counters(&p.Counters)
		}
	}
	if n := r.count("countries", l.MaxCountries); n > 0 {
		s.Countries = slices.Grow(s.Countries, n)[:n]
		for i := range s.Countries {
			s.Countries[i].Country = r.str()
			r.counters(&s.Countries[i].Counters)
		}
	}
	if n := r.count("ases", l.MaxASes); n > 0 {
		s.ASes = slices.Grow(s.ASes, n)[:n]
		for i := range s.ASes {
			s.ASes[i].ASN = r.u32("asn")
			s.ASes[i].ASName = r.optStr()
			r.counters(&s.ASes[i].Counters)
		}
	}
	if n := r.count("watch", l.MaxWatch); n > 0 {
		s.Watch = slices.Grow(s.Watch, n)[:n]
		for i := range s.Watch {
			s.Watch[i].List = r.str()
			r.counters(&s.Watch[i].Counters)
		}
	}
	if r.err != nil {
		return r.err
	}
	if r.off != len(b) {
		return fmt.Errorf("%w: %d bytes after the binary summary", ErrMalformed, len(b)-r.off)
	}
	return nil
}

// Bounds of the strings an interner keeps: past either, it starts afresh
// (the strings already handed out stay valid), so that payloads full of
// distinct strings cannot grow it.
const (
	maxInterned      = 1 << 16
	maxInternedBytes = 4 << 20
)

// interner hands out one string per distinct content, so that decoding the
// same country codes and AS names again and again allocates nothing.
type interner struct {
	strings map[string]string
	bytes   int      // of the strings kept
	table   []string // the string table of the payload being decoded
}

func (in *interner) intern(b []byte) string {
	if s, ok := in.strings[string(b)]; ok { // no allocation for the lookup
		return s
	}
	if in.strings == nil || len(in.strings) >= maxInterned || in.bytes+len(b) > maxInternedBytes {
		in.strings, in.bytes = make(map[string]string, 1024), 0
	}
	s := string(b)
	in.strings[s] = s
	in.bytes += len(s)
	return s
}

func isBinary(b []byte) bool { return bytes.HasPrefix(b, binaryMagic) }
