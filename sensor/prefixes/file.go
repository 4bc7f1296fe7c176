package prefixes

import (
	"errors"
	"fmt"
	"io"
)

// Formats of table files, as the configuration names them.
const (
	FormatIPLocationCountry = "ip-location-country"
	FormatIPLocationASN     = "ip-location-asn"
	FormatCIDRList          = "cidr-list"
	FormatRIRDelegated      = "rir-delegated"
	FormatMMDB              = "mmdb"
)

// ErrUnknownFormat reports a format name LoadFile does not know.
var ErrUnknownFormat = errors.New("unknown table format")

// LoadFile loads one file of the given format into b (gzipped when its name
// ends in .gz). labels are given to every prefix of a CIDR list; the other
// formats carry their own.
func LoadFile(format, path string, labels Entry, b *TableBuilder) (LoadStats, error) {
	if format == FormatMMDB {
		return LoadMMDB(path, path, b)
	}
	var load func(io.Reader, string, *TableBuilder) (LoadStats, error)
	switch format {
	case FormatIPLocationCountry:
		load = LoadIPLocationCountry
	case FormatIPLocationASN:
		load = LoadIPLocationASN
	case FormatRIRDelegated:
		load = LoadRIRDelegated
	case FormatCIDRList:
		load = func(r io.Reader, name string, b *TableBuilder) (LoadStats, error) {
			return LoadCIDRList(r, name, b, labels)
		}
	default:
		return LoadStats{}, fmt.Errorf("%s: %w %q", path, ErrUnknownFormat, format)
	}
	f, err := OpenFile(path)
	if err != nil {
		return LoadStats{}, err
	}
	defer f.Close()
	return load(f, path, b)
}
