package board

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// unit is a systemd unit file's directives: key → values, in order.
type unit map[string][]string

func readUnit(t *testing.T, path string) unit {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return parseUnit(t, path, string(b))
}

func parseUnit(t *testing.T, path, text string) unit {
	t.Helper()
	u := unit{}
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == '[' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s: %q is not a directive", path, line)
		}
		u[k] = append(u[k], v)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return u
}

// one is the single value of a directive.
func (u unit) one(t *testing.T, key string) string {
	t.Helper()
	if len(u[key]) != 1 {
		t.Fatalf("%s= set %d times, want once", key, len(u[key]))
	}
	return u[key][0]
}

// setprivCaps turns "CAP_BPF CAP_NET_ADMIN" into setpriv's "-all,+bpf,+net_admin".
func setprivCaps(caps []string) string {
	s := "-all"
	for _, c := range caps {
		s += ",+" + strings.ToLower(strings.TrimPrefix(c, "CAP_"))
	}
	return s
}

// capMask is the capability bit mask of names like CAP_BPF.
func capMask(t *testing.T, caps []string) uint64 {
	t.Helper()
	bits := map[string]uint{"CAP_NET_ADMIN": 12, "CAP_SYS_ADMIN": 21, "CAP_PERFMON": 38, "CAP_BPF": 39}
	var m uint64
	for _, c := range caps {
		b, ok := bits[c]
		if !ok {
			t.Fatalf("unknown capability %s", c)
		}
		m |= 1 << b
	}
	return m
}

// procStatus is a field of /proc/PID/status.
func procStatus(t *testing.T, pid int, field string) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return ""
}

// waitReady waits for READY=1 and returns the message.
func waitReady(t *testing.T, ch <-chan string, exited <-chan error, within time.Duration) string {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case m := <-ch:
			if strings.HasPrefix(m, "READY=1") {
				return m
			}
		case err := <-exited:
			t.Fatalf("sensord exited before READY=1: %v", err)
		case <-deadline:
			t.Fatalf("no READY=1 within %s", within)
		}
	}
}

// process is a command started by a test, killed at cleanup if still running.
type process struct {
	cmd    *exec.Cmd
	exited chan error
	log    string
}

func start(t *testing.T, cmd *exec.Cmd, logPath string) *process {
	t.Helper()
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logFile.Close()
	p := &process{cmd: cmd, exited: make(chan error, 1), log: logPath}
	go func() { p.exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("%s:\n%s", filepath.Base(logPath), b)
		}
	})
	return p
}

// stop sends SIGTERM and waits for a clean exit.
func (p *process) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.exited:
		if err != nil {
			b, _ := os.ReadFile(p.log)
			t.Fatalf("exit: %v\n%s", err, b)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("no exit 60 s after SIGTERM")
	}
}

// status is the part of sensord's /api/v1/status the tests read.
type status struct {
	Version    string `json:"version"`
	Interfaces []struct {
		Name, Mode, State string
	} `json:"interfaces"`
	Totals struct {
		Seen uint64 `json:"seen"`
	} `json:"totals"`
	Invariant struct {
		OK bool `json:"ok"`
	} `json:"invariant"`
}

func getStatus(c *http.Client, addr string) (status, error) {
	var s status
	resp, err := c.Get("http://" + addr + "/api/v1/status")
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return s, fmt.Errorf("%s: %s", resp.Status, b)
	}
	return s, json.Unmarshal(b, &s)
}

// waitSeen polls the status until sensord's totals reach want packets,
// and fails if they pass it or never reach it.
func waitSeen(t *testing.T, c *http.Client, addr string, want uint64) status {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		s, err := getStatus(c, addr)
		if err == nil && s.Totals.Seen >= want {
			if s.Totals.Seen != want || !s.Invariant.OK {
				t.Fatalf("sensord counted %d packets (invariant ok %v), want %d", s.Totals.Seen, s.Invariant.OK, want)
			}
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("sensord counted %d packets after 60 s, want %d (%v)", s.Totals.Seen, want, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func requireTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (util-linux/dpkg): %v", tool, err)
		}
	}
}
