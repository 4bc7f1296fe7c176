package ctl

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"syscall"
)

var reloadCommand = &command{
	name:    "reload",
	summary: "make sensord reload its tables and watch lists (SIGHUP)",
	help: `Sends SIGHUP to sensord, which reads its configuration file again and
applies its prefix tables, local prefixes and watch lists without losing or
double-counting a packet; other changes need a restart. The API is
read-only, so reload finds sensord by the pid file it writes in its
data_dir, and must run on the sensor as root or as sensord's user. Whether
the reload succeeded is in sensord's log ("reloaded tables and watch
lists", or "reload refused" with the reason).`,
	flags: func(fs *flag.FlagSet, o *options) {
		fs.StringVar(&o.pidFile, "pid-file", DefaultPidFile, "sensord's pid file: <data_dir>/sensord.pid")
	},
	run: func(ctx context.Context, c *cli, _ []string) error {
		pid, err := sensordPid(c.o.pidFile, c.env.ProcName)
		if err != nil {
			return err
		}
		if err := c.env.Kill(pid, syscall.SIGHUP); err != nil {
			if errors.Is(err, syscall.EPERM) {
				return fmt.Errorf("send SIGHUP to sensord (pid %d): %v (run as root or as sensord's user)", pid, err)
			}
			return fmt.Errorf("send SIGHUP to sensord (pid %d): %w", pid, err)
		}
		_, err = fmt.Fprintf(c.env.Stdout, "sent SIGHUP to sensord (pid %d): tables and watch lists reload; see its log\n", pid)
		return err
	},
}

// sensordPid reads sensord's pid file and checks that the process it names
// is a running sensord, so that a stale file never makes sensorctl signal
// another program.
func sensordPid(path string, procName func(int) (string, error)) (int, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("no pid file %s: is sensord running? (its pid file is <data_dir>/sensord.pid; see --pid-file)", path)
	}
	if err != nil {
		return 0, fmt.Errorf("read the pid file: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("the pid file %s holds %q, not a process id", path, shorten(strings.TrimSpace(string(b)), 40))
	}
	name, err := procName(pid)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("the pid file %s names pid %d, which is not running: is sensord running? (the file is stale)", path, pid)
	}
	if err != nil {
		return 0, fmt.Errorf("find the process of pid %d: %w", pid, err)
	}
	if !strings.HasPrefix(name, "sensord") {
		return 0, fmt.Errorf("the pid file %s names pid %d, which is %q, not sensord: not signalling it (the file is stale)", path, pid, name)
	}
	return pid, nil
}

// procName is the command name of a running process, from /proc.
func procName(pid int) (string, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}
