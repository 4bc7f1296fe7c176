package main

import (
	"context"
	"strings"
	"testing"
)

// Bad arguments are refused with the flag and the reason, before any
// table is loaded or any socket opened.
func TestRunRefusesBadArguments(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{}, "no link to send on: give --site NAME, or --peer-iface and --local-iface"},
		{[]string{"--site", "ams1", "--peer-iface", "x"}, "--site sets the --peer-* and --local-* flags"},
		{[]string{"--site", "ams1", "extra"}, `unexpected argument "extra"`},
		{[]string{"--site", "ams1", "--local", "192.0.2.1/24"}, "--local: 192.0.2.1/24 has host bits set (192.0.2.0/24)"},
		{[]string{"--site", "ams1", "--local", "192.0.2.0/33"}, "--local: netip.ParsePrefix"},
		{[]string{"--site", "ams1", "--mix", "CN=1,XYZ=2"}, `--mix: mix item "XYZ=2": "XYZ" is not a two-letter country code or *`},
		{[]string{"--site", "ams1", "--rate", "-1"}, "--rate: -1 is negative"},
		{[]string{"--site", "ams1", "--attack", "peering"}, `--attack: "peering" is not an attack profile (want spoofed or burst)`},
		{[]string{"--site", "ams1", "--attack-rate", "-5"}, "--attack-rate: -5 is negative"},
		{[]string{"--site", "ams1", "--ipdb", t.TempDir()}, "--ipdb: table country:"},
		{[]string{"--site", "ams1", "--rate", "fast"}, `invalid value "fast" for flag -rate`},
		{[]string{"--site", "ams1", "--profile", "flood"}, `--profile: unknown profile "flood" (want peering, spoofed or burst)`},
	} {
		err := run(context.Background(), tc.args)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("pwtraffic %s: %v, want %q", strings.Join(tc.args, " "), err, tc.want)
		}
	}
}
