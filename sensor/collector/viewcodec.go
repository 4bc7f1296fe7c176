package collector

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/peerwatch/peerwatch/sensor/summary"
	"github.com/peerwatch/peerwatch/sensor/traffic"
)

// The store's encoding of per-sensor views, the body of its view files
// (docs/collectord.md, "View files"): JSON took about 150 bytes and a map
// per counter, and one window of 10,000 sensors was far over a record's
// bound. Binary, with varints:
//
//	"PWV1"
//	uvarint sensors, then per sensor, by id:
//	  uvarint len(id), id
//	  uvarint countries, then per country, by code:
//	    uvarint len(code), code, counters
//	  uvarint ASes, then per AS, by ASN:
//	    uvarint ASN, counters
//
// where counters are 9 uvarints: packets in, out; bytes in, out; packets
// by class (tcp, udp, icmp, tunnel, other).

const viewMagic = "PWV1"

// ErrViews: a view record that DecodeViews refuses.
var ErrViews = errors.New("invalid per-sensor view record")

// maxCountryBytes bounds a country code in a view record; codes are two
// capital letters, or "" for traffic no table places (checkView).
const maxCountryBytes = 2

// writeChunk is about the bytes WriteViews hands to each Write.
const writeChunk = 512 << 10

// WriteViews writes the encoding of views (sorted by sensor, as Checkpoint
// gives them) to w, in writes of about 512 KiB: a window of 10,000 sensors
// is about 110 MB, which one buffer would hold, zeroed first, all at once.
func WriteViews(w io.Writer, views []*SensorView) error {
	b := make([]byte, 0, writeChunk+64<<10)
	b = binary.AppendUvarint(append(b, viewMagic...), uint64(len(views)))
	for _, v := range views {
		b = appendView(b, v)
		if len(b) >= writeChunk {
			if _, err := w.Write(b); err != nil {
				return err
			}
			b = b[:0]
		}
	}
	_, err := w.Write(b)
	return err
}

// appendView appends the encoding of one sensor's view.
func appendView(b []byte, v *SensorView) []byte {
	b = binary.AppendUvarint(b, uint64(len(v.Sensor)))
	b = append(b, v.Sensor...)
	b = binary.AppendUvarint(b, uint64(len(v.Countries)))
	for _, e := range v.Countries {
		cc := summary.CountryOf(int(e.Key))
		b = binary.AppendUvarint(b, uint64(len(cc)))
		b = append(b, cc...)
		b = appendCounters(b, &e.Counters)
	}
	b = binary.AppendUvarint(b, uint64(len(v.ASes)))
	for _, e := range v.ASes {
		b = binary.AppendUvarint(b, uint64(e.Key))
		b = appendCounters(b, &e.Counters)
	}
	return b
}

func appendCounters(b []byte, c *traffic.Counters) []byte {
	for _, n := range c.Packets {
		b = binary.AppendUvarint(b, n)
	}
	for _, n := range c.Bytes {
		b = binary.AppendUvarint(b, n)
	}
	for _, n := range c.Class {
		b = binary.AppendUvarint(b, n)
	}
	return b
}

// viewReader reads a view record, remembering the first error.
type viewReader struct {
	b   []byte
	err error
}

func (r *viewReader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	n, size := binary.Uvarint(r.b)
	if size <= 0 {
		r.err = errors.New("truncated or overlong varint")
		return 0
	}
	r.b = r.b[size:]
	return n
}

// count reads a count of items of at least minBytes each, at most limit:
// a count that the bytes left cannot hold is refused before anything is
// allocated for it.
func (r *viewReader) count(what string, limit, minBytes int) int {
	n := r.uvarint()
	switch {
	case r.err != nil:
		return 0
	case n > uint64(limit):
		r.err = fmt.Errorf("%d %s, limit %d", n, what, limit)
		return 0
	case n > uint64(len(r.b)/minBytes):
		r.err = fmt.Errorf("%d %s in %d bytes", n, what, len(r.b))
		return 0
	}
	return int(n)
}

func (r *viewReader) str(what string, limit int) string {
	n := r.uvarint()
	switch {
	case r.err != nil:
		return ""
	case n > uint64(limit) || n > uint64(len(r.b)):
		r.err = fmt.Errorf("%s of %d bytes, limit %d, %d left", what, n, limit, len(r.b))
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

func (r *viewReader) counters() (c traffic.Counters) {
	for i := range c.Packets {
		c.Packets[i] = r.uvarint()
	}
	for i := range c.Bytes {
		c.Bytes[i] = r.uvarint()
	}
	for i := range c.Class {
		c.Class[i] = r.uvarint()
	}
	return c
}

// countersBytes is the fewest bytes a counters' encoding takes.
const countersBytes = 2 + 2 + traffic.NumClasses

// DecodeViews decodes and checks a view record (WriteViews) within the
// bounds of a view (MaxViewCountries, MaxViewASes): ids
// valid, sensors, countries and ASes sorted without repeats. The error
// wraps ErrViews.
func DecodeViews(b []byte) ([]*SensorView, error) {
	if len(b) < len(viewMagic) || string(b[:len(viewMagic)]) != viewMagic {
		return nil, fmt.Errorf("%w: no %s header", ErrViews, viewMagic)
	}
	r := viewReader{b: b[len(viewMagic):]}
	n := r.count("sensors", MaxRestoreSensors, 3)
	views := make([]*SensorView, 0, n)
	for range n {
		v := &SensorView{Sensor: r.str("sensor id", math.MaxUint8)}
		if n := r.count("countries", MaxViewCountries, 1+countersBytes); n > 0 {
			v.Countries = make([]Seen[uint16], n)
		}
		for i := range v.Countries {
			cc := r.str("country", maxCountryBytes)
			key, ok := countryKey(cc)
			if !ok && r.err == nil {
				r.err = fmt.Errorf("sensor %q: country %q is not two capital letters", truncate(v.Sensor), cc)
			}
			v.Countries[i] = Seen[uint16]{Key: key, Counters: r.counters()}
		}
		if n := r.count("ASes", MaxViewASes, 1+countersBytes); n > 0 {
			v.ASes = make([]Seen[uint32], n)
		}
		for i := range v.ASes {
			asn := r.uvarint()
			if asn > math.MaxUint32 && r.err == nil {
				r.err = fmt.Errorf("ASN %d", asn)
			}
			v.ASes[i] = Seen[uint32]{Key: uint32(asn), Counters: r.counters()}
		}
		if r.err != nil {
			return nil, fmt.Errorf("%w: sensor %d of %d: %w", ErrViews, len(views)+1, n, r.err)
		}
		if len(views) > 0 && views[len(views)-1].Sensor >= v.Sensor {
			return nil, fmt.Errorf("%w: sensor %q after %q", ErrViews, truncate(v.Sensor), truncate(views[len(views)-1].Sensor))
		}
		if err := checkView(v); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrViews, err)
		}
		views = append(views, v)
	}
	if r.err != nil {
		return nil, fmt.Errorf("%w: %w", ErrViews, r.err)
	}
	if len(r.b) > 0 {
		return nil, fmt.Errorf("%w: %d bytes after the last sensor", ErrViews, len(r.b))
	}
	return views, nil
}

// checkView checks what Restore and DecodeViews need of a view: a valid
// sensor id, country codes, keys sorted without repeats, within the
// bounds of a view.
func checkView(v *SensorView) error {
	switch {
	case v == nil:
		return errors.New("no view")
	case !summary.ValidSensorID(v.Sensor):
		return fmt.Errorf("view of an invalid sensor id %q", truncate(v.Sensor))
	case len(v.Countries) > MaxViewCountries:
		return fmt.Errorf("sensor %s: %d countries, limit %d", v.Sensor, len(v.Countries), MaxViewCountries)
	case len(v.ASes) > MaxViewASes:
		return fmt.Errorf("sensor %s: %d ASes, limit %d", v.Sensor, len(v.ASes), MaxViewASes)
	}
	for i := range v.Countries {
		if v.Countries[i].Key >= summary.CountryCodes {
			return fmt.Errorf("sensor %s: country number %d, there are %d", v.Sensor, v.Countries[i].Key, summary.CountryCodes)
		}
		if i > 0 && v.Countries[i-1].Key >= v.Countries[i].Key {
			return fmt.Errorf("sensor %s: country %q after %q", v.Sensor, summary.CountryOf(int(v.Countries[i].Key)), summary.CountryOf(int(v.Countries[i-1].Key)))
		}
	}
	for i := 1; i < len(v.ASes); i++ {
		if v.ASes[i-1].Key >= v.ASes[i].Key {
			return fmt.Errorf("sensor %s: AS %d after %d", v.Sensor, v.ASes[i].Key, v.ASes[i-1].Key)
		}
	}
	return nil
}
