package daemon

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"time"

	"github.com/peerwatch/peerwatch/sensor/prefixes"
)

// TableSpec names a prefix table and the files it is loaded from.
type TableSpec struct {
	Name   string
	Format string // ip-location-country, ip-location-asn, cidr-list, rir-delegated, mmdb
	Files  []string
	Labels prefixes.Entry // for cidr-list: the labels of every prefix
}

// loadTable loads one table from its files, logging what each file gave
// and what it skipped.
func loadTable(spec TableSpec, log *slog.Logger) (*prefixes.Table, error) {
	start := time.Now()
	b := prefixes.NewTable(spec.Name)
	for _, path := range spec.Files {
		st, err := loadFile(spec.Format, path, spec.Labels, b)
		if err != nil {
			return nil, fmt.Errorf("table %s: %w", spec.Name, err)
		}
		attrs := []any{"table", spec.Name, "file", path, "lines", st.Lines, "cidrs", st.CIDRs, "skipped", st.Skipped()}
		if st.Skipped() > 0 {
			attrs = append(attrs, "first_skipped", st.FirstSkipped)
			log.Warn("table file has lines that were skipped", attrs...)
		} else {
			log.Info("table file loaded", attrs...)
		}
	}
	t, stats := b.Build()
	v4, v6 := t.Len()
	log.Info("table built", "table", spec.Name, "ipv4", v4, "ipv6", v6, "duplicates", stats.Duplicates, "took", time.Since(start).Round(time.Millisecond))
	return t, nil
}

var errUnknownFormat = errors.New("unknown table format")

func loadFile(format, path string, labels prefixes.Entry, b *prefixes.TableBuilder) (prefixes.LoadStats, error) {
	if format == "mmdb" {
		return prefixes.LoadMMDB(path, path, b)
	}
	f, err := prefixes.OpenFile(path)
	if err != nil {
		return prefixes.LoadStats{}, err
	}
	defer f.Close()
	var load func(io.Reader, string, *prefixes.TableBuilder) (prefixes.LoadStats, error)
	switch format {
	case "ip-location-country":
		load = prefixes.LoadIPLocationCountry
	case "ip-location-asn":
		load = prefixes.LoadIPLocationASN
	case "rir-delegated":
		load = prefixes.LoadRIRDelegated
	case "cidr-list":
		load = func(r io.Reader, name string, b *prefixes.TableBuilder) (prefixes.LoadStats, error) {
			return prefixes.LoadCIDRList(r, name, b, labels)
		}
	default:
		return prefixes.LoadStats{}, fmt.Errorf("%s: %w %q", path, errUnknownFormat, format)
	}
	return load(f, path, b)
}

// loadLocal reads the local prefixes: the configured ones and those of
// CIDR-list files.
func loadLocal(inline []netip.Prefix, files []string) ([]netip.Prefix, error) {
	local := append([]netip.Prefix(nil), inline...)
	for _, path := range files {
		b := prefixes.NewTable("local")
		st, err := loadFile("cidr-list", path, prefixes.Entry{}, b)
		if err != nil {
			return nil, fmt.Errorf("local prefixes: %w", err)
		}
		if st.Skipped() > 0 {
			return nil, fmt.Errorf("local prefixes: %s: %d bad lines, first: %v", path, st.Skipped(), st.FirstSkipped)
		}
		t, _ := b.Build()
		for _, e := range t.Entries() {
			local = append(local, e.Prefix)
		}
	}
	return local, nil
}
