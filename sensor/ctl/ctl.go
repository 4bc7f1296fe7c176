// Package ctl is sensorctl, the operator's command line over a sensor's
// local JSON API: status, top lists, address lookups, alerts, and a reload
// of the tables and watch lists by SIGHUP (the API is read-only by design).
//
// Run parses the command line and runs one command; sensor/cmd/sensorctl is
// its main. docs/sensorctl.md documents the commands.
package ctl

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/peerwatch/peerwatch/sensor/api"
)

// Defaults of the global flags.
const (
	DefaultAddr    = "http://127.0.0.1:9100"
	DefaultPidFile = "/var/lib/peerwatch/sensord.pid"
	// AddrEnv names the environment variable that replaces DefaultAddr.
	AddrEnv        = "PEERWATCH_ADDR"
	defaultTimeout = 10 * time.Second
)

// Env is what Run reads and writes besides its arguments; the zero value of
// a field is the process's own (os.Stdout, os.Getenv, time.Now…). Tests set
// them.
type Env struct {
	Stdout, Stderr io.Writer
	Getenv         func(string) string
	Now            func() time.Time
	// HTTP sends the API's requests; nil: a client with --timeout.
	HTTP *http.Client
	// Kill sends a signal to a process (reload); nil: syscall.Kill.
	Kill func(pid int, sig syscall.Signal) error
	// ProcName is the command name of a running process (reload), an
	// error wrapping fs.ErrNotExist when there is none; nil: /proc.
	ProcName func(pid int) (string, error)
}

func (e *Env) fill() {
	if e.Stdout == nil {
		e.Stdout = os.Stdout
	}
	if e.Stderr == nil {
		e.Stderr = os.Stderr
	}
	if e.Getenv == nil {
		e.Getenv = os.Getenv
	}
	if e.Now == nil {
		e.Now = time.Now
	}
	if e.Kill == nil {
		e.Kill = syscall.Kill
	}
	if e.ProcName == nil {
		e.ProcName = procName
	}
}

// UsageError is a command line that sensorctl does not understand: main
// exits with 2.
type UsageError struct {
	Command string // "" for the global flags
	Err     error
}

func (e *UsageError) Error() string {
	help := "sensorctl --help"
	if e.Command != "" {
		help = "sensorctl " + e.Command + " --help"
	}
	msg := e.Err.Error()
	if e.Command != "" {
		msg = e.Command + ": " + msg
	}
	return msg + " (see " + help + ")"
}

func (e *UsageError) Unwrap() error { return e.Err }

func usage(cmd, format string, a ...any) error {
	return &UsageError{Command: cmd, Err: fmt.Errorf(format, a...)}
}

// ExitCode is the exit status for Run's error: 0 without one, 2 for a
// usage error, 1 for anything else.
func ExitCode(err error) int {
	var ue *UsageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ue):
		return 2
	}
	return 1
}

// globals are the flags that every command takes, before or after its name.
type globals struct {
	addr         string
	user         string
	passwordFile string
	json         bool
	timeout      time.Duration
}

func (g *globals) register(fs *flag.FlagSet, defAddr string) {
	fs.StringVar(&g.addr, "addr", defAddr, "sensord's HTTP address; $"+AddrEnv+" sets the default")
	fs.StringVar(&g.user, "user", "", "the user of sensord's basic-auth account (http.basic_auth)")
	fs.StringVar(&g.passwordFile, "password-file", "", "a file holding that account's password")
	fs.BoolVar(&g.json, "json", false, "print the API's JSON as received, indented")
	fs.DurationVar(&g.timeout, "timeout", defaultTimeout, "how long to wait for sensord's answer")
}

// command is one subcommand.
type command struct {
	name    string
	args    string // the positional arguments, for the usage line
	summary string // one line, for sensorctl --help
	help    string // a paragraph, for sensorctl CMD --help
	nargs   int    // positional arguments wanted
	flags   func(fs *flag.FlagSet, o *options)
	run     func(ctx context.Context, c *cli, args []string) error
}

// options are the commands' own flags.
type options struct {
	by, window, direction string
	limit                 int
	pidFile               string
	clientOnly            bool
	configPath, iface     string // doctor
}

// cli is one run of sensorctl: its flags, its client and its output.
type cli struct {
	env    Env
	g      globals
	o      options
	client *api.Client
}

var commands []*command

func init() {
	commands = []*command{statusCommand, topCommand, lookupCommand, alertsCommand, reloadCommand, doctorCommand, versionCommand}
}

func find(name string) *command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return nil
}

// Run runs sensorctl with the command line args (without the program's
// name). Its error is one line for the operator; ExitCode tells its exit
// status.
func Run(ctx context.Context, args []string, env Env) error {
	env.fill()
	defAddr := DefaultAddr
	if a := env.Getenv(AddrEnv); a != "" {
		defAddr = a
	}

	// The global flags before the command: they are parsed again with the
	// command's own flags, so they may come before or after its name.
	top := flag.NewFlagSet("sensorctl", flag.ContinueOnError)
	top.SetOutput(io.Discard)
	var g globals
	g.register(top, defAddr)
	showVersion := top.Bool("version", false, "print sensorctl's version and exit")
	if err := top.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return writeMainUsage(env.Stdout, top)
		}
		return &UsageError{Err: err}
	}
	if *showVersion {
		_, err := fmt.Fprintln(env.Stdout, versionLine())
		return err
	}
	rest := top.Args()
	if len(rest) == 0 {
		_ = writeMainUsage(env.Stderr, top)
		return usage("", "no command given")
	}
	before := args[:len(args)-len(rest)]
	if n := len(before); n > 0 && before[n-1] == "--" {
		before = before[:n-1] // "sensorctl -- status": the end of the global flags only
	}
	name, rest := rest[0], rest[1:]
	if name == "help" {
		return help(env, top, defAddr, rest)
	}
	cmd := find(name)
	if cmd == nil {
		return usage("", "%q is not a command: want %s", name, commandNames())
	}

	c := &cli{env: env}
	fs := cmd.flagSet(&c.g, &c.o, defAddr)
	pos, err := parseInterspersed(fs, append(append([]string(nil), before...), rest...))
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return writeCommandUsage(env.Stdout, cmd, defAddr)
		}
		return &UsageError{Command: cmd.name, Err: err}
	}
	if len(pos) != cmd.nargs {
		switch {
		case cmd.nargs == 0:
			return usage(cmd.name, "takes no arguments, got %q", strings.Join(pos, " "))
		case len(pos) < cmd.nargs:
			return usage(cmd.name, "missing %s", cmd.args)
		default:
			return usage(cmd.name, "one %s only, got %q", cmd.args, strings.Join(pos, " "))
		}
	}
	if err := c.setup(cmd); err != nil {
		return err
	}
	return cmd.run(ctx, c, pos)
}

func (cmd *command) flagSet(g *globals, o *options, defAddr string) *flag.FlagSet {
	fs := flag.NewFlagSet("sensorctl "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if cmd.flags != nil {
		cmd.flags(fs, o)
	}
	g.register(fs, defAddr)
	return fs
}

// parseInterspersed parses flags and positional arguments in any order
// ("lookup 192.0.2.1 --json"); "--" ends the flags.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if used := args[:len(args)-len(rest)]; len(used) > 0 && used[len(used)-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// setup checks the global flags and makes the API client.
func (c *cli) setup(cmd *command) error {
	if c.g.timeout <= 0 {
		return usage(cmd.name, "--timeout: %s is not positive", c.g.timeout)
	}
	addr := strings.TrimRight(strings.TrimSpace(c.g.addr), "/")
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr // "127.0.0.1:9100" is what an operator types
	}
	u, err := url.Parse(addr)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return usage(cmd.name, "--addr: %q is not an http:// or https:// address like %s", c.g.addr, DefaultAddr)
	}
	c.g.addr = addr
	hc := c.env.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: c.g.timeout}
	}
	c.client = &api.Client{BaseURL: addr, HTTP: hc, User: c.g.user}
	if c.g.passwordFile != "" {
		b, err := os.ReadFile(c.g.passwordFile)
		if err != nil {
			return fmt.Errorf("read the password file: %w", err)
		}
		c.client.Password = strings.TrimRight(string(b), "\r\n")
	}
	return nil
}

// printJSON asks an endpoint and prints its answer as received, indented
// (--json).
func (c *cli) printJSON(ctx context.Context, endpoint string, q url.Values) error {
	body, err := c.client.Get(ctx, endpoint, q)
	if err != nil {
		return c.explain(err)
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, bytes.TrimSpace(body), "", "  "); err != nil {
		return fmt.Errorf("sensord at %s answered %s with malformed JSON: %w", c.g.addr, endpoint, err)
	}
	buf.WriteByte('\n')
	_, err = c.env.Stdout.Write(buf.Bytes())
	return err
}

func commandNames() string {
	var names []string
	for _, c := range commands {
		names = append(names, c.name)
	}
	return strings.Join(names, ", ")
}

func help(env Env, top *flag.FlagSet, defAddr string, args []string) error {
	switch len(args) {
	case 0:
		return writeMainUsage(env.Stdout, top)
	case 1:
		cmd := find(args[0])
		if cmd == nil {
			return usage("", "help: %q is not a command: want %s", args[0], commandNames())
		}
		return writeCommandUsage(env.Stdout, cmd, defAddr)
	}
	return usage("", "help: one command only")
}

func writeMainUsage(w io.Writer, top *flag.FlagSet) error {
	var b strings.Builder
	b.WriteString(`Usage: sensorctl [flags] COMMAND [flags] [ARGS]

sensorctl reads a peerwatch sensor's JSON API (sensord's /api/v1/) and
prints it for a terminal; --json prints the API's own JSON.

Commands:
`)
	rows := &table{header: []string{"", ""}, right: []bool{false, false}}
	for _, c := range commands {
		rows.add(strings.TrimSpace(c.name+" "+c.args), c.summary)
	}
	rows.add("help [COMMAND]", "this text, or a command's")
	var tb bytes.Buffer
	_ = rows.write(&tb, "  ")
	// The header row of the table is empty: drop it.
	_, tail, _ := strings.Cut(tb.String(), "\n")
	b.WriteString(tail)
	b.WriteString("\nFlags (before or after the command):\n")
	b.WriteString(flagDefaults(top))
	b.WriteString("\nExit status: 0 done, 1 the command failed, 2 a usage error.\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func writeCommandUsage(w io.Writer, cmd *command, defAddr string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "Usage: sensorctl %s [flags]", cmd.name)
	if cmd.args != "" {
		b.WriteString(" " + cmd.args)
	}
	b.WriteString("\n\n" + cmd.help + "\n")
	if cmd.flags != nil {
		own := flag.NewFlagSet(cmd.name, flag.ContinueOnError)
		cmd.flags(own, &options{})
		b.WriteString("\nFlags:\n" + flagDefaults(own))
	}
	global := flag.NewFlagSet("sensorctl", flag.ContinueOnError)
	(&globals{}).register(global, defAddr)
	b.WriteString("\nGlobal flags (before or after the command):\n" + flagDefaults(global))
	_, err := io.WriteString(w, b.String())
	return err
}

func flagDefaults(fs *flag.FlagSet) string {
	var b strings.Builder
	fs.SetOutput(&b)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
	// Long flags with two dashes, as the documentation writes them.
	return strings.TrimPrefix(strings.ReplaceAll("\n"+b.String(), "\n  -", "\n  --"), "\n")
}
