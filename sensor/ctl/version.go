package ctl

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"

	"github.com/peerwatch/peerwatch/sensor/version"
)

var versionCommand = &command{
	name:    "version",
	summary: "sensorctl's version and the sensor's",
	help: `Prints sensorctl's version, then asks the sensor for its own (sensord's
version, sensor id, board and kernel). --client prints sensorctl's only,
like --version.`,
	flags: func(fs *flag.FlagSet, o *options) {
		fs.BoolVar(&o.clientOnly, "client", false, "print sensorctl's version only; do not ask the sensor")
	},
	run: func(ctx context.Context, c *cli, _ []string) error {
		local := versionLine()
		if c.o.clientOnly {
			if c.g.json {
				return writeIndented(c, map[string]string{"sensorctl": version.Version})
			}
			_, err := fmt.Fprintln(c.env.Stdout, local)
			return err
		}
		if !c.g.json {
			fmt.Fprintln(c.env.Stdout, local)
		}
		st, err := c.client.Status(ctx)
		if err != nil {
			return c.explain(err)
		}
		if c.g.json {
			return writeIndented(c, struct {
				Sensorctl string `json:"sensorctl"`
				Sensord   string `json:"sensord"`
				Sensor    string `json:"sensor"`
				Board     string `json:"board"`
				Kernel    string `json:"kernel"`
			}{version.Version, st.Version, st.Sensor, st.Board, st.Kernel})
		}
		_, err = fmt.Fprintf(c.env.Stdout, "sensord %s on sensor %s (board %s, kernel %s) at %s\n",
			st.Version, st.Sensor, orDash(st.Board), orDash(st.Kernel), c.g.addr)
		return err
	},
}

func versionLine() string { return version.String("sensorctl") }

func writeIndented(c *cli, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = c.env.Stdout.Write(append(b, '\n'))
	return err
}
