package config

import (
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"

	"github.com/goccy/go-yaml"
)

// ByteSize is a size in bytes. In YAML it is a plain number of bytes (268435456) or a number
// with a unit (256MiB, 1.5GB): B; kB, MB, GB, TB (powers of 1000); KiB, MiB, GiB, TiB (powers of
// 1024). Units are case-insensitive, K and KB are kB, and a space may separate number and unit.
type ByteSize uint64

// Sizes.
const (
	B   ByteSize = 1
	KiB ByteSize = 1 << 10
	MiB ByteSize = 1 << 20
	GiB ByteSize = 1 << 30
	TiB ByteSize = 1 << 40
	KB  ByteSize = 1e3
	MB  ByteSize = 1e6
	GB  ByteSize = 1e9
	TB  ByteSize = 1e12
)

var byteUnits = map[string]ByteSize{
	"": B, "b": B,
	"k": KB, "kb": KB, "mb": MB, "gb": GB, "tb": TB,
	"kib": KiB, "mib": MiB, "gib": GiB, "tib": TiB,
}

// ParseByteSize parses a size such as "256MiB", "1GB", "1.5 GiB" or "4096".
func ParseByteSize(s string) (ByteSize, error) {
	bad := func() (ByteSize, error) {
		return 0, fmt.Errorf("%q is not a size (want bytes, or a number with B, kB, MB, GB, TB, KiB, MiB, GiB or TiB)", s)
	}
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	num, unit := t[:i], strings.ToLower(strings.TrimSpace(t[i:]))
	mult, ok := byteUnits[unit]
	if !ok || num == "" || num == "." || strings.Count(num, ".") > 1 {
		return bad()
	}
	// Exact decimal arithmetic: 1.5GiB is a whole number of bytes, 1.5B is not.
	r, ok := new(big.Rat).SetString(num)
	if !ok {
		return bad()
	}
	r.Mul(r, new(big.Rat).SetUint64(uint64(mult)))
	if !r.IsInt() {
		return 0, fmt.Errorf("%q is not a whole number of bytes", s)
	}
	n := r.Num()
	if !n.IsUint64() || n.Uint64() > math.MaxInt64 {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return ByteSize(n.Uint64()), nil
}

// String writes the size with the largest unit that divides it exactly, binary units first:
// 256MiB, 1GB, 1000B is 1kB, 1500 is 1500B.
func (b ByteSize) String() string {
	if b == 0 {
		return "0B"
	}
	for _, u := range []struct {
		size ByteSize
		name string
	}{{TiB, "TiB"}, {GiB, "GiB"}, {MiB, "MiB"}, {KiB, "KiB"}, {TB, "TB"}, {GB, "GB"}, {MB, "MB"}, {KB, "kB"}} {
		if b%u.size == 0 {
			return fmt.Sprintf("%d%s", b/u.size, u.name)
		}
	}
	return fmt.Sprintf("%dB", uint64(b))
}

// MarshalText writes the size as String does.
func (b ByteSize) MarshalText() ([]byte, error) { return []byte(b.String()), nil }

// UnmarshalText parses a size as ParseByteSize does.
func (b *ByteSize) UnmarshalText(text []byte) error {
	v, err := ParseByteSize(string(text))
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// UnmarshalYAML decodes a YAML scalar, quoted or not, for decoders other than this package's
// (goccy/go-yaml's Unmarshal).
func (b *ByteSize) UnmarshalYAML(data []byte) error {
	var v any
	if err := yaml.Unmarshal(data, &v); err != nil {
		return fmt.Errorf("decode size: %w", err)
	}
	switch v := v.(type) {
	case string:
		return b.UnmarshalText([]byte(v))
	case uint64:
		return b.UnmarshalText(fmt.Appendf(nil, "%d", v))
	case int64:
		return b.UnmarshalText(fmt.Appendf(nil, "%d", v))
	case float64:
		return b.UnmarshalText([]byte(strconv.FormatFloat(v, 'f', -1, 64)))
	}
	return fmt.Errorf("%s is not a size", strings.TrimSpace(string(data)))
}
