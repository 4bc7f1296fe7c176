package summary

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"time"
)

// The wire format of a summary, as published on <prefix>/<sensor-id>/summary
// (docs/mqtt.md, docs/summary-v1.schema.json): the JSON of Summary, either
// plain (the first byte is '{') or gzip-compressed (the first bytes are
// 1f 8b).

// Sentinels of the reasons a payload is refused, for errors.Is; the
// collector counts rejects by them. ErrInconsistent (summary.go) is the
// fourth.
var (
	// ErrVersion: the payload's schema version is not SchemaVersion.
	ErrVersion = errors.New("unsupported summary schema version")
	// ErrTooLarge: the payload, once decompressed, or one of its lists is
	// over a limit; or Encode cannot fit the summary under MaxBytes.
	ErrTooLarge = errors.New("summary too large")
	// ErrMalformed: not gzip or JSON, unknown fields, or a field with an
	// invalid value (sensor id, seq, times, prefixes, duplicate keys).
	ErrMalformed = errors.New("malformed summary")
)

// Defaults of EncodeOptions and Limits, used for fields left at zero.
const (
	DefaultCompressAbove   = 1 << 10
	DefaultMaxBytes        = 256 << 10
	DefaultMaxDecompressed = 4 << 20
	DefaultMaxPrefixes     = 100_000
	DefaultMaxCountries    = 1000
	DefaultMaxASes         = 200_000
	DefaultMaxWatch        = 1000
)

// Summaries must lie between minTime and maxTime, which Unix nanoseconds
// (the binary encoding) hold.
var (
	minTime = time.Unix(0, 0)
	maxTime = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)
)

// MaxSensorID is the longest sensor id.
const MaxSensorID = 64

// MaxSeq is the highest sequence number: 2^63-1, which a sensor sending a
// summary a second reaches in 292 billion years, so that counting on from
// a seq never wraps around.
const MaxSeq = 1<<63 - 1

var gzipMagic = []byte{0x1f, 0x8b}

// EncodeOptions tune Encode; zero fields take their defaults.
type EncodeOptions struct {
	// CompressAbove: the JSON is gzip-compressed when it is longer than
	// this many bytes and the gzip is shorter than the JSON.
	CompressAbove int
	// MaxBytes bounds the encoded payload. A summary that does not fit
	// loses prefixes from the end of its list into Other.
	MaxBytes int
	// Format is the encoding: FormatJSON (the default) or FormatBinary.
	Format Format
}

func (o EncodeOptions) withDefaults() EncodeOptions {
	if o.CompressAbove <= 0 {
		o.CompressAbove = DefaultCompressAbove
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	return o
}

// Limits bound what Decode accepts; zero fields take their defaults.
type Limits struct {
	MaxDecompressed int // bytes of JSON after gunzip, or of a binary payload
	MaxPrefixes     int
	MaxCountries    int
	MaxASes         int
	MaxWatch        int
}

func (l Limits) withDefaults() Limits {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&l.MaxDecompressed, DefaultMaxDecompressed)
	def(&l.MaxPrefixes, DefaultMaxPrefixes)
	def(&l.MaxCountries, DefaultMaxCountries)
	def(&l.MaxASes, DefaultMaxASes)
	def(&l.MaxWatch, DefaultMaxWatch)
	return l
}

// Encode returns the payload of s. s must be valid as Decode would check it
// (with the default Limits); its Schema must be zero or SchemaVersion, and
// the payload always carries SchemaVersion. s is not modified.
//
// When the payload would be larger than opts.MaxBytes, Encode keeps only the
// first prefixes of s.Prefixes (the top of the list when s is sorted), adds
// the counters of the others to Other and their number to Truncated, so that
// the totals still reconcile; countries, ASes and watch lists are never cut.
// When even no prefixes do not fit, Encode fails with ErrTooLarge.
func Encode(s *Summary, opts EncodeOptions) ([]byte, error) {
	opts = opts.withDefaults()
	if s.Schema != 0 && s.Schema != SchemaVersion {
		return nil, fmt.Errorf("%w: encode schema %d, this code writes version %d", ErrVersion, s.Schema, SchemaVersion)
	}
	w := *s
	w.Schema = SchemaVersion
	if err := validate(&w, Limits{}.withDefaults(), nil); err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	// Lists are written as [] rather than null, as the schema asks.
	if w.Prefixes == nil {
		w.Prefixes = []PrefixCount{}
	}
	if w.Countries == nil {
		w.Countries = []CountryCount{}
	}
	if w.ASes == nil {
		w.ASes = []ASCount{}
	}

	out, err := encodeAll(&w, opts)
	if err != nil || len(out) <= opts.MaxBytes {
		return out, err
	}

	// Too big: keep the first n prefixes, the largest n that fits. The
	// size grows with n (gzip's nearly so), so search for it.
	full := len(w.Prefixes)
	var best []byte
	try := func(n int) (bool, error) {
		c := cut(&w, n)
		b, err := encodeAll(c, opts)
		if err != nil {
			return false, err
		}
		if len(b) > opts.MaxBytes {
			return false, nil
		}
		best = b
		return true, nil
	}
	ok, err := try(0)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("%w: summary of sensor %q does not fit in %d bytes even with no prefixes (%d countries, %d ases, %d watch lists; %d prefixes were to be cut)",
			ErrTooLarge, w.Sensor, opts.MaxBytes, len(w.Countries), len(w.ASes), len(w.Watch), full)
	}
	lo, hi := 0, full // n = lo fits, n = hi does not
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		ok, err := try(mid)
		if err != nil {
			return nil, err
		}
		if ok {
			lo = mid
		} else {
			hi = mid
		}
	}
	return best, nil // the last try that fitted, which was n = lo
}

// cut returns a copy of s that keeps its first n prefixes and moves the
// others into Other.
func cut(s *Summary, n int) *Summary {
	c := *s
	c.Prefixes = s.Prefixes[:n:n]
	for _, p := range s.Prefixes[n:] {
		c.Other.Add(p.Counters)
	}
	c.Truncated += len(s.Prefixes) - n
	return &c
}

// encodeAll marshals s and compresses it when that pays.
func encodeAll(s *Summary, opts EncodeOptions) ([]byte, error) {
	if opts.Format == FormatBinary {
		return encodeBinary(s), nil
	}
	plain, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("encode summary: %w", err)
	}
	if len(plain) <= opts.CompressAbove {
		return plain, nil
	}
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(plain); err != nil {
		return nil, fmt.Errorf("compress summary: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("compress summary: %w", err)
	}
	if buf.Len() >= len(plain) {
		return plain, nil
	}
	return buf.Bytes(), nil
}

// Decode parses and checks a payload written by Encode, by this or another
// sensor. Every refusal wraps one of ErrVersion, ErrTooLarge, ErrMalformed
// or ErrInconsistent. A gzip payload is never inflated past
// limits.MaxDecompressed.
func Decode(payload []byte, limits Limits) (*Summary, error) {
	limits = limits.withDefaults()
	var js []byte
	switch {
	case len(payload) == 0:
		return nil, fmt.Errorf("%w: empty payload", ErrMalformed)
	case isBinary(payload):
		s, err := decodeBinary(payload, limits)
		if err != nil {
			return nil, err
		}
		return finish(s, limits)
	case bytes.HasPrefix(payload, gzipMagic):
		var err error
		if js, err = gunzip(payload, limits.MaxDecompressed); err != nil {
			return nil, err
		}
	case payload[0] == '{':
		if len(payload) > limits.MaxDecompressed {
			return nil, fmt.Errorf("%w: %d bytes of JSON, limit %d", ErrTooLarge, len(payload), limits.MaxDecompressed)
		}
		js = payload
	default:
		return nil, fmt.Errorf("%w: payload starts with %#02x, neither JSON ('{'), gzip (1f 8b) nor binary (PWB)", ErrMalformed, payload[0])
	}
	if len(js) == 0 || js[0] != '{' {
		return nil, fmt.Errorf("%w: decompressed payload is not a JSON object", ErrMalformed)
	}

	// The version first, leniently, so that a newer version is refused as
	// such rather than for its unknown fields.
	var head struct {
		Schema *int `json:"schema"`
	}
	if err := json.Unmarshal(js, &head); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if head.Schema == nil {
		return nil, fmt.Errorf("%w: no schema version in the payload, this code reads version %d", ErrVersion, SchemaVersion)
	}
	if *head.Schema != SchemaVersion {
		return nil, fmt.Errorf("%w: payload has schema version %d, this code reads version %d", ErrVersion, *head.Schema, SchemaVersion)
	}

	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	var s Summary
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: data after the JSON object", ErrMalformed)
	}
	return finish(&s, limits)
}

// finish validates a decoded summary and puts it in canonical form.
func finish(s *Summary, limits Limits) (*Summary, error) {
	if err := validate(s, limits, nil); err != nil {
		return nil, err
	}
	// Canonical form: empty lists are nil.
	if len(s.Prefixes) == 0 {
		s.Prefixes = nil
	}
	if len(s.Countries) == 0 {
		s.Countries = nil
	}
	if len(s.ASes) == 0 {
		s.ASes = nil
	}
	if len(s.Watch) == 0 {
		s.Watch = nil
	}
	return s, nil
}

// gunzip inflates payload, refusing more than limit bytes of output. It
// inflates twice: once into io.Discard to learn the size (and check the
// CRC) with a small fixed buffer, then into a buffer of exactly that size,
// so that a gzip bomb costs CPU up to the limit but no memory.
func gunzip(payload []byte, limit int) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(payload))
	if err != nil {
		return nil, fmt.Errorf("%w: gzip: %v", ErrMalformed, err)
	}
	defer zr.Close()
	n, err := io.Copy(io.Discard, io.LimitReader(zr, int64(limit)+1))
	if err != nil {
		return nil, fmt.Errorf("%w: gzip: %v", ErrMalformed, err)
	}
	if n > int64(limit) {
		return nil, fmt.Errorf("%w: decompresses to more than %d bytes", ErrTooLarge, limit)
	}
	if err := zr.Reset(bytes.NewReader(payload)); err != nil {
		return nil, fmt.Errorf("%w: gzip: %v", ErrMalformed, err)
	}
	out := make([]byte, n)
	if _, err := io.ReadFull(zr, out); err != nil {
		return nil, fmt.Errorf("%w: gzip: %v", ErrMalformed, err)
	}
	return out, nil
}

// validScratch is the memory validate reuses between calls (a Decoder's).
type validScratch struct {
	prefixes4 keySet // IPv4 prefixes (prefixKey)
	prefixes6 map[netip.Prefix]struct{}
	countries map[string]struct{}
	ases      keySet
	watch     map[string]struct{}
}

// scratchMap returns *m emptied, made for n keys when nil.
func scratchMap[K comparable](m *map[K]struct{}, n int) map[K]struct{} {
	if *m == nil {
		*m = make(map[K]struct{}, n)
	}
	clear(*m)
	return *m
}

// validate checks everything Decode promises about a summary beyond its
// syntax; sc, when not nil, holds maps to reuse.
func validate(s *Summary, l Limits, sc *validScratch) error {
	if s.Schema != SchemaVersion {
		return fmt.Errorf("%w: schema version %d, this code reads version %d", ErrVersion, s.Schema, SchemaVersion)
	}
	if !ValidSensorID(s.Sensor) {
		return fmt.Errorf("%w: sensor id %q is not 1 to %d of A-Z a-z 0-9 . _ -", ErrMalformed, truncateForError(s.Sensor), MaxSensorID)
	}
	if s.Seq == 0 || s.Seq > MaxSeq {
		return fmt.Errorf("%w: seq %d is not in [1, 2^63-1]", ErrMalformed, s.Seq)
	}
	if s.Start.IsZero() || s.End.IsZero() {
		return fmt.Errorf("%w: start or end missing", ErrMalformed)
	}
	if s.Start.Before(minTime) || s.End.After(maxTime) {
		return fmt.Errorf("%w: start %s or end %s outside %d to %d", ErrMalformed, s.Start, s.End, minTime.Year(), maxTime.Year())
	}
	if s.End.Before(s.Start) {
		return fmt.Errorf("%w: end %s before start %s", ErrMalformed, s.End, s.Start)
	}
	if s.Truncated < 0 {
		return fmt.Errorf("%w: truncated %d is negative", ErrMalformed, s.Truncated)
	}
	for _, c := range []struct {
		name   string
		n, max int
	}{
		{"prefixes", len(s.Prefixes), l.MaxPrefixes},
		{"countries", len(s.Countries), l.MaxCountries},
		{"ases", len(s.ASes), l.MaxASes},
		{"watch", len(s.Watch), l.MaxWatch},
	} {
		if c.n > c.max {
			return fmt.Errorf("%w: %d %s, limit %d", ErrTooLarge, c.n, c.name, c.max)
		}
	}
	if sc == nil {
		sc = new(validScratch)
	}
	// IPv4 prefixes, nearly all of them, in a keySet; the others in a map.
	sc.prefixes4.reset(len(s.Prefixes))
	var prefixes6 map[netip.Prefix]struct{}
	for i := range s.Prefixes {
		p := &s.Prefixes[i]
		if !p.Prefix.IsValid() {
			return fmt.Errorf("%w: prefixes[%d]: missing or invalid prefix", ErrMalformed, i)
		}
		if p.Prefix != p.Prefix.Masked() {
			return fmt.Errorf("%w: prefixes[%d]: %s has host bits set (want %s)", ErrMalformed, i, p.Prefix, p.Prefix.Masked())
		}
		dup := false
		if k, ok := prefixKey(p.Prefix); ok {
			dup = !sc.prefixes4.add(k)
		} else {
			if prefixes6 == nil {
				prefixes6 = scratchMap(&sc.prefixes6, 0)
			}
			_, dup = prefixes6[p.Prefix]
			prefixes6[p.Prefix] = struct{}{}
		}
		if dup {
			return fmt.Errorf("%w: prefixes[%d]: duplicate prefix %s", ErrMalformed, i, p.Prefix)
		}
	}
	for i := range s.Prefixes {
		if !ValidCountry(s.Prefixes[i].Country) {
			return fmt.Errorf("%w: prefixes[%d]: country %q is not two capital letters", ErrMalformed, i, truncateForError(s.Prefixes[i].Country))
		}
	}
	for i := range s.Countries {
		if !ValidCountry(s.Countries[i].Country) {
			return fmt.Errorf("%w: countries[%d]: country %q is not two capital letters", ErrMalformed, i, truncateForError(s.Countries[i].Country))
		}
	}
	if err := noDuplicates("countries", s.Countries, scratchMap(&sc.countries, len(s.Countries)), func(c CountryCount) string { return c.Country }); err != nil {
		return err
	}
	sc.ases.reset(len(s.ASes))
	for i := range s.ASes {
		if !sc.ases.add(uint64(s.ASes[i].ASN)) {
			return fmt.Errorf("%w: ases[%d]: duplicate key %d", ErrMalformed, i, s.ASes[i].ASN)
		}
	}
	if err := noDuplicates("watch", s.Watch, scratchMap(&sc.watch, len(s.Watch)), func(w WatchCount) string { return w.List }); err != nil {
		return err
	}
	return s.Check()
}

func noDuplicates[T any, K comparable](name string, list []T, seen map[K]struct{}, key func(T) K) error {
	for i, x := range list {
		k := key(x)
		if _, dup := seen[k]; dup {
			return fmt.Errorf("%w: %s[%d]: duplicate key %v", ErrMalformed, name, i, k)
		}
		seen[k] = struct{}{}
	}
	return nil
}

// ValidCountry reports whether cc is a country code as sensors send them:
// two capital letters (ISO 3166-1 alpha-2, as the prefix tables give
// them), or "" for traffic no table places.
func ValidCountry(cc string) bool {
	return cc == "" || len(cc) == 2 && 'A' <= cc[0] && cc[0] <= 'Z' && 'A' <= cc[1] && cc[1] <= 'Z'
}

// CountryCodes is the number of country codes ValidCountry accepts: "" and
// AA to ZZ.
const CountryCodes = 1 + 26*26

// CountryCode numbers the country codes ValidCountry accepts in the order
// of the strings, from 0 for "" to CountryCodes-1 for ZZ; it is -1 for any
// other string.
func CountryCode(cc string) int {
	switch {
	case cc == "":
		return 0
	case ValidCountry(cc):
		return 1 + int(cc[0]-'A')*26 + int(cc[1]-'A')
	}
	return -1
}

// countryNames are the country codes by CountryCode.
var countryNames = func() (names [CountryCodes]string) {
	for a := range 26 {
		for b := range 26 {
			names[1+a*26+b] = string([]byte{byte('A' + a), byte('A' + b)})
		}
	}
	return names
}()

// CountryOf is the country code numbered code by CountryCode; "" for a
// number outside [0, CountryCodes).
func CountryOf(code int) string {
	if code < 0 || code >= CountryCodes {
		return ""
	}
	return countryNames[code]
}

// ValidSensorID reports whether id is a sensor id (docs/mqtt.md): 1 to 64
// of A-Z a-z 0-9 . _ -, so that it is one topic level and never a wildcard.
func ValidSensorID(id string) bool {
	if len(id) == 0 || len(id) > MaxSensorID {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// truncateForError keeps error messages short when a field is huge.
func truncateForError(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

// A Decoder decodes summaries as Decode does, for a caller that decodes
// many of them (the collector): it reuses the memory of the summary it
// decoded before, and hands out one string per distinct country, AS name
// or watch list instead of one per payload. The summary it returns is
// valid until its next Decode. A Decoder is not safe for concurrent use.
type Decoder struct {
	limits Limits
	sum    Summary
	// The lists of the last summary, kept for the next one.
	prefixes  []PrefixCount
	countries []CountryCount
	ases      []ASCount
	watch     []WatchCount
	in        interner
	scratch   validScratch
}

// maxKeptEntries bounds the list entries a Decoder keeps between calls, so
// that one huge summary does not pin its memory.
const maxKeptEntries = 1 << 14

// NewDecoder returns a decoder that enforces limits as Decode does.
func NewDecoder(limits Limits) *Decoder {
	return &Decoder{limits: limits.withDefaults()}
}

// Decode parses and checks payload exactly as Decode(payload, limits) does.
// The summary returned, and its lists, are overwritten by the next call.
func (d *Decoder) Decode(payload []byte) (*Summary, error) {
	if !isBinary(payload) {
		return Decode(payload, d.limits)
	}
	s := &d.sum
	s.Prefixes, s.Countries, s.ASes, s.Watch = d.prefixes, d.countries, d.ases, d.watch
	err := decodeBinaryInto(payload, d.limits, s, &d.in)
	d.prefixes, d.countries, d.ases, d.watch = keep(s.Prefixes), keep(s.Countries), keep(s.ASes), keep(s.Watch)
	if err == nil {
		err = validate(s, d.limits, &d.scratch)
		d.scratch.prefixes6 = keepMap(d.scratch.prefixes6)
	}
	if err != nil {
		*s = Summary{}
		return nil, err
	}
	// Canonical form, as finish: empty lists are nil.
	s.Prefixes, s.Countries, s.ASes, s.Watch = nilIfEmpty(s.Prefixes), nilIfEmpty(s.Countries), nilIfEmpty(s.ASes), nilIfEmpty(s.Watch)
	return s, nil
}

func keep[T any](list []T) []T {
	if cap(list) > maxKeptEntries {
		return nil
	}
	return list[:0]
}

func keepMap[K comparable](m map[K]struct{}) map[K]struct{} {
	if len(m) > maxKeptEntries {
		return nil
	}
	return m
}

func nilIfEmpty[T any](list []T) []T {
	if len(list) == 0 {
		return nil
	}
	return list
}
