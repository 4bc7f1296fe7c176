package daemon

import (
	"fmt"
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
		st, err := prefixes.LoadFile(spec.Format, path, spec.Labels, b)
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

// loadLocal reads the local prefixes: the configured ones and those of
// CIDR-list files.
func loadLocal(inline []netip.Prefix, files []string) ([]netip.Prefix, error) {
	local := append([]netip.Prefix(nil), inline...)
	for _, path := range files {
		b := prefixes.NewTable("local")
		st, err := prefixes.LoadFile(prefixes.FormatCIDRList, path, prefixes.Entry{}, b)
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
