// Package doctor checks whether a board can run sensord: the kernel, its
// BPF features, which attach modes work on an interface, memory against
// what the configuration needs, and the clock. `sensorctl doctor` prints
// its checks, one line each.
//
// The checks read the system through System, whose zero value is the real
// one; tests replace its fields. The attach probe loads a two-instruction
// program (XDP_PASS, or TCX_NEXT at TC) and attaches it for an instant, on
// a named interface or on a veth pair it creates in a network namespace of
// its own and removes.
package doctor

import (
	"fmt"
	"io"
	"strings"
)

// Result is the verdict of one check.
type Result string

// Results. WARN: sensord runs, but not as well as it could (a fallback, a
// missing convenience). FAIL: sensord will not run or will count wrongly.
const (
	Pass Result = "PASS"
	Warn Result = "WARN"
	Fail Result = "FAIL"
)

// Check is one line of the report.
type Check struct {
	Name   string `json:"name"`
	Result Result `json:"result"`
	Reason string `json:"reason"`
}

// Report is every check in the order they ran.
type Report []Check

// Failed counts the checks that failed.
func (r Report) Failed() int {
	n := 0
	for _, c := range r {
		if c.Result == Fail {
			n++
		}
	}
	return n
}

// Write prints one line per check: the result, the check's name, the
// reason.
func (r Report) Write(w io.Writer) error {
	width := 0
	for _, c := range r {
		width = max(width, len(c.Name))
	}
	var b strings.Builder
	for _, c := range r {
		fmt.Fprintf(&b, "%-4s  %-*s  %s\n", c.Result, width, c.Name, c.Reason)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func pass(name, format string, a ...any) Check {
	return Check{name, Pass, fmt.Sprintf(format, a...)}
}

func warn(name, format string, a ...any) Check {
	return Check{name, Warn, fmt.Sprintf(format, a...)}
}

func fail(name, format string, a ...any) Check {
	return Check{name, Fail, fmt.Sprintf(format, a...)}
}
