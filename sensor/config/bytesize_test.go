package config

import (
	"testing"

	"github.com/goccy/go-yaml"
)

func TestParseByteSize(t *testing.T) {
	good := []struct {
		in   string
		want ByteSize
	}{
		{"0", 0},
		{"4096", 4096},
		{"268435456", 256 * MiB},
		{"1B", 1},
		{"1kB", 1000},
		{"1K", 1000},
		{"1KB", 1000},
		{"1KiB", 1024},
		{"256MiB", 256 << 20},
		{"256mib", 256 << 20},
		{"256 MiB", 256 << 20},
		{"16MB", 16e6},
		{"1GB", 1e9},
		{"1gb", 1e9},
		{"1.5GiB", 3 << 29},
		{"0.5KiB", 512},
		{".5KiB", 512},
		{"2TiB", 2 << 40},
		{"3TB", 3e12},
		{" 7 ", 7},
	}
	for _, tt := range good {
		got, err := ParseByteSize(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
	bad := []struct{ in, want string }{
		{"", `"" is not a size (want bytes, or a number with B, kB, MB, GB, TB, KiB, MiB, GiB or TiB)`},
		{"MiB", `"MiB" is not a size (want bytes, or a number with B, kB, MB, GB, TB, KiB, MiB, GiB or TiB)`},
		{"-1", `"-1" is not a size (want bytes, or a number with B, kB, MB, GB, TB, KiB, MiB, GiB or TiB)`},
		{"1PB", `"1PB" is not a size (want bytes, or a number with B, kB, MB, GB, TB, KiB, MiB, GiB or TiB)`},
		{"1e9", `"1e9" is not a size (want bytes, or a number with B, kB, MB, GB, TB, KiB, MiB, GiB or TiB)`},
		{"1.2.3MB", `"1.2.3MB" is not a size (want bytes, or a number with B, kB, MB, GB, TB, KiB, MiB, GiB or TiB)`},
		{"256MB2", `"256MB2" is not a size (want bytes, or a number with B, kB, MB, GB, TB, KiB, MiB, GiB or TiB)`},
		{"1.5", `"1.5" is not a whole number of bytes`},
		{"0.1KiB", `"0.1KiB" is not a whole number of bytes`},
		{"9223372036854775808", `"9223372036854775808" is too large`},
		{"99999999TiB", `"99999999TiB" is too large`},
	}
	for _, tt := range bad {
		got, err := ParseByteSize(tt.in)
		if err == nil || err.Error() != tt.want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want error %s", tt.in, got, err, tt.want)
		}
	}
}

func TestByteSizeString(t *testing.T) {
	for _, tt := range []struct {
		in   ByteSize
		want string
	}{
		{0, "0B"},
		{1, "1B"},
		{1500, "1500B"},
		{1000, "1kB"},
		{1024, "1KiB"},
		{256 * MiB, "256MiB"},
		{16 * MiB, "16MiB"},
		{GB, "1GB"},
		{3 << 29, "1536MiB"},
		{2 * TiB, "2TiB"},
	} {
		if got := tt.in.String(); got != tt.want {
			t.Errorf("%d.String() = %q, want %q", uint64(tt.in), got, tt.want)
		}
		back, err := ParseByteSize(tt.in.String())
		if err != nil || back != tt.in {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", tt.in.String(), back, err, uint64(tt.in))
		}
	}
}

// ByteSize also decodes with goccy/go-yaml's own decoder, and round-trips through it.
func TestByteSizeYAML(t *testing.T) {
	var v struct {
		A, B, C, D ByteSize
	}
	if err := yaml.Unmarshal([]byte("a: 256MiB\nb: \"1 GB\"\nc: 4096\nd: 2.5KiB\n"), &v); err != nil {
		t.Fatal(err)
	}
	if v.A != 256*MiB || v.B != GB || v.C != 4096 || v.D != 2560 {
		t.Errorf("got %+v", v)
	}
	out, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if want := "a: 256MiB\nb: 1GB\nc: 4KiB\nd: 2560B\n"; string(out) != want {
		t.Errorf("Marshal = %q, want %q", out, want)
	}
	for _, in := range []string{"a: 1.5\n", "a: [1]\n", "a: 5x\n", "a: -5\n"} {
		if err := yaml.Unmarshal([]byte(in), &v); err == nil {
			t.Errorf("%q: no error", in)
		}
	}
}
