// Package prefixes loads prefix tables (address ranges and CIDR prefixes labelled with a
// country, an origin AS or an operator's list name) and answers longest-prefix-match on them.
//
// The sensor uses it to resolve counted remote addresses to the prefixes of a table, and to find
// where table boundaries fall: the kernel counts per cell, a range of addresses in which no table
// has a boundary (see Boundaries and MergeBoundaries).
//
// IPv4 and IPv6 are separate families and never share a lookup structure; IPv4-mapped IPv6
// addresses (::ffff:a.b.c.d) are treated as IPv4 everywhere.
//
// # Tables
//
// A Table is built once with NewTable, (*TableBuilder).Add and Build, then only read. Prefixes
// may nest, as in BGP tables with more-specifics; Lookup returns the longest match. Two CIDR
// prefixes are either nested or disjoint, so nesting is the only overlap a table can hold. An
// exact duplicate of a prefix already added is dropped and counted: the first one keeps its
// labels. Build flattens each family into sorted, disjoint address intervals, each pointing at
// its longest match, so a lookup is one binary search with no allocation.
//
// # Loaders
//
// Each loader adds the prefixes of one file to a TableBuilder and returns a LoadStats:
//
//   - LoadIPLocationCountry and LoadIPLocationASN read ip-location-db CSV ranges;
//   - LoadCIDRList reads a plain list of prefixes and addresses, all with the same labels;
//   - LoadRIRDelegated reads a Regional Internet Registry's statistics file (delegated-apnic-latest,
//     delegated-arin-extended-latest, …): the country of each allocated or assigned IPv4 and IPv6
//     block;
//   - LoadMMDB and LoadMMDBBytes walk a MaxMind DB (GeoLite2/GeoIP2 Country, City and ASN, and the
//     flat records of DB-IP, ipinfo and ip-location-db): the country and origin AS of each network.
//
// Each address range is converted to its minimal CIDR cover (RangeToPrefixes). Bad lines, or bad
// records of an MMDB file, are counted by reason in LoadStats and skipped, never fatal; only a read
// error stops a load, or for an MMDB file a file that is not one or whose search tree is corrupt.
// Lines longer than MaxLineLength are skipped as malformed.
//
// Real range data sometimes has ranges from different lines that overlap partially. Their CIDR
// covers then either nest, and an address in the overlap resolves to whichever line produced the
// more specific prefix covering it, or coincide exactly, and the line read first keeps the
// prefix: the later copy is dropped and counted in LoadStats.DuplicateCIDRs. A line is skipped as
// "duplicate" only when all of its prefixes were already in the table; a line that still added
// some prefixes counts as added. The loaders keep input order, so earlier files and earlier lines
// win ties.
package prefixes
