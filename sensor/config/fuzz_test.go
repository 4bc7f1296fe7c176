package config

import (
	"os"
	"strings"
	"testing"
)

// FuzzParse feeds arbitrary files to Parse: it must not panic, every error must be positioned in
// the file ("fuzz.yaml:…"), and a config it accepts must validate again, and parse again to the
// same values.
func FuzzParse(f *testing.F) {
	example, err := os.ReadFile(exampleFile)
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{
		string(example),
		"",
		"drain:\n  interval: 5x\n",
		"interfaces:\n  - name: eth0\n  - name: eth1\n    hook: xpd\n",
		"tables: []\ndatapath: {v4_key_len: 16}\n",
		"tables:\n",
		"a: &x [1, *x]\n",
		"watch_lists:\n  - name: a\n    countries: [kp]\n    alert: &a {pps: 1}\n  - name: b\n    asns: [1]\n    alert: *a\n",
		"store: {max_size: 1.5GiB, retention: {interval_10s: 1m}}\n",
		"local_prefixes: [10.0.0.1/8, '::ffff:1.2.3.4/128', 2001:db8::/12]\n",
		"- 1\n",
		"? [a]\n: b\n",
		"drain:\n\tinterval: 1s\n",
		"http: {listen: '[::1]:9100', basic_auth: {user: u}}\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data, "fuzz.yaml")
		if err != nil {
			if c != nil {
				t.Fatal("a config and an error")
			}
			for _, line := range strings.Split(err.Error(), "\n") {
				if !strings.HasPrefix(line, "fuzz.yaml") {
					t.Fatalf("error line without the file: %q", line)
				}
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("accepted config does not validate again: %v", err)
		}
		_ = c.Warnings()
		again, err := Parse(data, "fuzz.yaml")
		if err != nil || !same(*c, *again) {
			t.Fatalf("parsing again gave %+v, %v", again, err)
		}
	})
}
