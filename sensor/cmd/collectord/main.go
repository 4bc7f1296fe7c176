// Command collectord is the peerwatch fleet collector: it receives the
// summaries, alerts and status messages the sensors publish over MQTT and
// serves the fleet's view as a dashboard, a JSON API and Prometheus metrics
// (docs/collectord.md).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/peerwatch/peerwatch/sensor/collectord"
	"github.com/peerwatch/peerwatch/sensor/fleetstore"
	"github.com/peerwatch/peerwatch/sensor/version"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "collectord:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("collectord", flag.ContinueOnError)
	var cfg collectord.Config
	fs.StringVar(&cfg.EmbeddedBroker, "embedded-broker", "", "run an MQTT broker in-process on `ADDR` (e.g. :1883) and collect from it")
	fs.StringVar(&cfg.Broker, "broker", "", "collect from the external broker at `URL` (tcp://host:1883, or ssl://host:8883 for TLS)")
	fs.StringVar(&cfg.ShareGroup, "share-group", "", "with --broker, subscribe as a member of the shared subscription `NAME`")
	fs.StringVar(&cfg.ClientID, "client-id", "", "with --broker, the MQTT client `ID` of the persistent session (default peerwatch-collectord-<host>; one per collector)")
	fs.StringVar(&cfg.TopicPrefix, "topic-prefix", collectord.DefaultTopicPrefix, "the first level(s) of the sensors' topics")
	fs.StringVar(&cfg.DataDir, "data-dir", collectord.DefaultDataDir, "keep the collector's state in `DIR`/"+fleetstore.FileName+" across restarts (\"\": in memory only)")
	fs.DurationVar(&cfg.FlushInterval, "flush-interval", collectord.DefaultFlushInterval, "write the collector's state to the store every `DURATION` (and at shutdown)")
	fs.StringVar(&cfg.Sync, "sync", collectord.DefaultSync, "the store's sync `POLICY`: always (each journal write is fsynced), everysecond or never")
	keep := fs.String("keep", collectord.FormatKeep(collectord.Config{}.Levels()), "how many windows each level keeps, as `LEVEL=N,...`")
	keepPerSensor := fs.String("keep-per-sensor", collectord.FormatKeepPerSensor(collectord.Config{}.Levels()),
		"how many of those windows keep per-sensor counters (whosees, per-sensor series; about 100 bytes per sensor, country or AS and window), as `LEVEL=N,...`")
	fs.BoolVar(&cfg.NoGapRepair, "no-gap-repair", false, "do not ask the sensors for the summaries missing in their gaps (always off with --share-group)")
	fs.DurationVar(&cfg.ResendGrace, "resend-grace", collectord.DefaultResendGrace, "ask a sensor for a gap once it is `DURATION` old (a summary may still be on its way)")
	fs.DurationVar(&cfg.ResendRetry, "resend-retry", collectord.DefaultResendRetry, "publish an unanswered resend request again every `DURATION`")
	listen := fs.String("listen", collectord.DefaultListen, "serve the dashboard (/), the JSON API (/api/v1/) and /metrics on `ADDR`")
	h := &cfg.HTTPSecurity
	fs.StringVar(&h.CertFile, "listen-cert", "", "serve --listen over HTTPS with the certificate in `FILE` (PEM)")
	fs.StringVar(&h.KeyFile, "listen-key", "", "the private key `FILE` (PEM) of --listen-cert")
	fs.StringVar(&h.PasswordFile, "listen-password-file", "", "ask for HTTP basic authentication on every path of --listen, with the users and password hashes in `FILE`, written by mosquitto_passwd")
	showVersion := fs.Bool("version", false, "print the version and exit")
	e, sub := &cfg.EmbeddedSecurity, &cfg.SubscriberSecurity
	fs.StringVar(&e.CertFile, "embedded-cert", "", "with --embedded-broker, the broker's certificate `FILE` (PEM): the listener speaks TLS")
	fs.StringVar(&e.KeyFile, "embedded-key", "", "the private key `FILE` (PEM) of --embedded-cert")
	fs.StringVar(&e.ClientCAFile, "embedded-client-ca", "", "require client certificates signed by the CA in `FILE` (PEM); a client's identity is its certificate's common name. Without this or --embedded-password-file, every client may connect and publish (lab use; docs/broker.md)")
	fs.StringVar(&e.CRLFile, "embedded-crl", "", "with --embedded-client-ca, refuse the client certificates revoked in `FILE` (PEM CRLs of the client CA, as openssl ca -gencrl writes); read again when it changes")
	fs.StringVar(&e.PasswordFile, "embedded-password-file", "", "require a username and password from `FILE`, written by mosquitto_passwd; with --embedded-client-ca too, the username must be the certificate's common name")
	fs.Func("embedded-readers", "comma-separated `NAMES` (identities) that may subscribe to everything under the topic prefix, e.g. other collectors; every other identity is a sensor and may publish only under <prefix>/<identity>/", func(v string) error {
		for r := range strings.SplitSeq(v, ",") {
			if r = strings.TrimSpace(r); r != "" {
				e.Readers = append(e.Readers, r)
			}
		}
		return nil
	})
	fs.StringVar(&sub.CAFile, "broker-ca", "", "with --broker ssl://..., verify the broker with the CA in `FILE` (PEM) instead of the system's roots")
	fs.StringVar(&sub.CertFile, "broker-cert", "", "with --broker ssl://..., the client certificate `FILE` (PEM) collectord presents")
	fs.StringVar(&sub.KeyFile, "broker-key", "", "the private key `FILE` (PEM) of --broker-cert")
	fs.StringVar(&sub.Username, "broker-username", "", "with --broker, log in as `USER`")
	fs.StringVar(&sub.PasswordFile, "broker-password-file", "", "with --broker-username, the password is the first line of `FILE`")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `Usage: collectord (--embedded-broker ADDR | --broker URL [--share-group NAME]) [flags]

collectord receives what the peerwatch sensors publish over MQTT, checks it,
aggregates the fleet's traffic per window and serves it as a dashboard (/),
a JSON API (/api/v1/) and Prometheus /metrics (see docs/collectord.md). Its
state (windows, sensors, dedupe, alerts) is kept in a store in --data-dir:
every accepted summary is journaled before it is acknowledged, and the state
is written every --flush-interval and at shutdown, so that a restart or a
crash neither loses a summary nor counts one twice. With --broker the MQTT
session is persistent: the broker queues what arrives while collectord is
away.

Flags:
`)
		fs.PrintDefaults()
	}
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	if *showVersion {
		fmt.Println(version.String("collectord"))
		return nil
	}
	if cfg.Keep, err = collectord.ParseKeep(*keep); err != nil {
		return err
	}
	if cfg.KeepPerSensor, err = collectord.ParseKeep(*keepPerSensor); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	d, err := collectord.New(cfg, log)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		_ = d.Close()
		return fmt.Errorf("listen on %s: %w", *listen, err)
	}
	log.Info("starting", "version", version.Version)
	return d.Run(ctx, ln)
}
