package datapath

import (
	"time"

	"golang.org/x/sys/unix"
)

type syscallRusage unix.Rusage

func getrusage(ru *syscallRusage) { _ = unix.Getrusage(unix.RUSAGE_SELF, (*unix.Rusage)(ru)) }

func (ru *syscallRusage) total() time.Duration {
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
