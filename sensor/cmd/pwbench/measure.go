package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// CPU is read from the kernel's own accounting, never from wall time:
//
//   - each measured process tree (the traffic source, the counter under
//     test) runs in a control group of its own, whose CPU time the
//     scheduler charges in nanoseconds (cgroup v1 cpuacct.usage, or
//     cgroup v2 cpu.stat usage_usec). The traffic source's group also
//     holds the softirq work its sends run in their own context: the
//     frames' way through the veth pairs, the bridge, the mirror and
//     whatever a counter hooks there (XDP, TC, AF_PACKET copies);
//   - ksoftirqd's threads (utime+stime in /proc/<pid>/stat), where the
//     kernel defers softirq work it could not do inline;
//   - the whole machine's busy time (/proc/stat), which on a machine shared
//     with other work also counts that work: recorded with its idle share
//     so a reader can tell a quiet run from a busy one.

// cgroup is a control group whose CPU time can be read.
type cgroup struct {
	dir string
	v2  bool
}

// cgroupRoots finds where to make control groups: cgroup v1's cpuacct
// hierarchy if mounted (nanosecond accounting), else cgroup v2.
func cgroupRoot() (cgroup, error) {
	b, err := os.ReadFile("/proc/mounts")
	if err != nil {
		return cgroup{}, err
	}
	var v2 string
	for line := range strings.SplitSeq(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		switch f[2] {
		case "cgroup":
			if strings.Contains(","+f[3]+",", ",cpuacct,") {
				return cgroup{dir: f[1]}, nil
			}
		case "cgroup2":
			if v2 == "" {
				v2 = f[1]
			}
		}
	}
	if v2 != "" {
		return cgroup{dir: v2, v2: true}, nil
	}
	return cgroup{}, fmt.Errorf("no cgroup v1 cpuacct or cgroup v2 hierarchy in /proc/mounts")
}

// child makes (or reuses) the group name below g.
func (g cgroup) child(name string) (cgroup, error) {
	c := cgroup{dir: filepath.Join(g.dir, name), v2: g.v2}
	if err := os.MkdirAll(c.dir, 0o755); err != nil {
		return cgroup{}, fmt.Errorf("make control group: %w", err)
	}
	return c, nil
}

// remove removes the (empty) group.
func (g cgroup) remove() error { return os.Remove(g.dir) }

// procsFile is where a process is moved into the group.
func (g cgroup) procsFile() string { return filepath.Join(g.dir, "cgroup.procs") }

// pids are the processes in the group.
func (g cgroup) pids() []int {
	b, _ := os.ReadFile(g.procsFile())
	var out []int
	for f := range strings.FieldsSeq(string(b)) {
		if n, err := strconv.Atoi(f); err == nil {
			out = append(out, n)
		}
	}
	return out
}

// cpu is the CPU time charged to the group so far.
func (g cgroup) cpu() (time.Duration, error) {
	if !g.v2 {
		b, err := os.ReadFile(filepath.Join(g.dir, "cpuacct.usage"))
		if err != nil {
			return 0, err
		}
		n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		return time.Duration(n), err
	}
	b, err := os.ReadFile(filepath.Join(g.dir, "cpu.stat"))
	if err != nil {
		return 0, err
	}
	return parseCPUStat(b)
}

// parseCPUStat reads usage_usec of a cgroup v2 cpu.stat.
func parseCPUStat(b []byte) (time.Duration, error) {
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "usage_usec "); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			return time.Duration(n) * time.Microsecond, err
		}
	}
	return 0, fmt.Errorf("cpu.stat: no usage_usec")
}

// userHZ is the unit of /proc/stat and /proc/<pid>/stat times (USER_HZ is
// 100 on every Linux architecture peerwatch runs on).
const userHZ = 100

// machineCPU is the busy and idle time of all CPUs (/proc/stat's cpu line).
type machineCPU struct {
	Busy, Idle, Softirq time.Duration
}

func readMachineCPU() (machineCPU, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return machineCPU{}, err
	}
	return parseProcStat(b)
}

// parseProcStat reads the cpu line of /proc/stat: user nice system idle
// iowait irq softirq steal …; busy is everything but idle and iowait.
func parseProcStat(b []byte) (machineCPU, error) {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 8 || f[0] != "cpu" {
		return machineCPU{}, fmt.Errorf("/proc/stat: first line %q is not the cpu line", line)
	}
	var m machineCPU
	for i, s := range f[1:] {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return machineCPU{}, fmt.Errorf("/proc/stat: field %d: %w", i+1, err)
		}
		d := time.Duration(n) * time.Second / userHZ
		switch i {
		case 3, 4: // idle, iowait
			m.Idle += d
		case 8, 9: // guest, guest_nice: already in user and nice
		default:
			m.Busy += d
			if i == 6 {
				m.Softirq += d
			}
		}
	}
	return m, nil
}

// procCPU is utime+stime of a process (/proc/<pid>/stat).
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parsePidStat(b)
}

// parsePidStat reads utime and stime (fields 14 and 15) of a
// /proc/<pid>/stat line, whose comm (field 2) may hold spaces.
func parsePidStat(b []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("stat: no comm")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state): utime is field 14, f[11].
	if len(f) < 13 {
		return 0, fmt.Errorf("stat: %d fields after comm", len(f))
	}
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	s, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("stat: utime %q stime %q", f[11], f[12])
	}
	return time.Duration(u+s) * time.Second / userHZ, nil
}

// ksoftirqdPIDs are the kernel's ksoftirqd/N threads.
func ksoftirqdPIDs() []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, err := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
		if err == nil && strings.HasPrefix(string(comm), "ksoftirqd/") {
			out = append(out, pid)
		}
	}
	return out
}

func sumProcCPU(pids []int) time.Duration {
	var t time.Duration
	for _, p := range pids {
		d, _ := procCPU(p)
		t += d
	}
	return t
}

// peakRSS sums the peak resident set (VmHWM) of the processes.
func peakRSS(pids []int) uint64 {
	var total uint64
	for _, p := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p))
		if err == nil {
			total += parseVmHWM(b)
		}
	}
	return total
}

// parseVmHWM reads VmHWM (kB) of /proc/<pid>/status, in bytes.
func parseVmHWM(b []byte) uint64 {
	return parseKB(b, "VmHWM:")
}

// bpfMapMemory sums the kernel memory (memlock in fdinfo) of the BPF maps
// the processes hold open, each map once.
func bpfMapMemory(pids []int) uint64 {
	seen := map[string]bool{}
	var total uint64
	for _, p := range pids {
		dir := fmt.Sprintf("/proc/%d/fdinfo", p)
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			b, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil || !bytes.Contains(b, []byte("map_id:")) {
				continue
			}
			id, mem := parseMapFdinfo(b)
			if id == "" || seen[id] {
				continue
			}
			seen[id] = true
			total += mem
		}
	}
	return total
}

// fdinfoFields reads the "key:\tvalue" lines of an fdinfo file.
func fdinfoFields(b []byte) map[string]string {
	fields := make(map[string]string)
	for line := range strings.SplitSeq(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			fields[k] = strings.TrimSpace(v)
		}
	}
	return fields
}

// parseMapFdinfo reads map_id and memlock of a BPF map's fdinfo.
func parseMapFdinfo(b []byte) (id string, memlock uint64) {
	f := fdinfoFields(b)
	memlock, _ = strconv.ParseUint(f["memlock"], 10, 64)
	return f["map_id"], memlock
}

// pss sums the proportional set size (Pss in smaps_rollup) of the
// processes: their memory now, shared pages divided among them.
func pss(pids []int) uint64 {
	var total uint64
	for _, p := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", p))
		if err == nil {
			total += parseKB(b, "Pss:")
		}
	}
	return total
}

// parseKB reads a "Name:   123 kB" line, in bytes.
func parseKB(b []byte, name string) uint64 {
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name); ok {
			f := strings.Fields(v)
			if len(f) >= 1 {
				n, _ := strconv.ParseUint(f[0], 10, 64)
				return n * 1024
			}
		}
	}
	return 0
}

// progStats sums the run time and run count (fdinfo run_time_ns, run_cnt;
// counted while kernel.bpf_stats_enabled is 1) of the BPF programs the
// processes hold open, each program once.
func progStats(pids []int) (runNS, runs uint64) {
	seen := map[string]bool{}
	for _, p := range pids {
		dir := fmt.Sprintf("/proc/%d/fdinfo", p)
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			b, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil || !bytes.Contains(b, []byte("run_time_ns:")) {
				continue
			}
			id, ns, n := parseProgFdinfo(b)
			if id == "" || seen[id] {
				continue
			}
			seen[id] = true
			runNS += ns
			runs += n
		}
	}
	return runNS, runs
}

// parseProgFdinfo reads prog_id, run_time_ns and run_cnt of a BPF
// program's fdinfo.
func parseProgFdinfo(b []byte) (id string, runNS, runs uint64) {
	f := fdinfoFields(b)
	runNS, _ = strconv.ParseUint(f["run_time_ns"], 10, 64)
	runs, _ = strconv.ParseUint(f["run_cnt"], 10, 64)
	return f["prog_id"], runNS, runs
}

const bpfStatsSysctl = "/proc/sys/kernel/bpf_stats_enabled"

// enableBPFStats sets kernel.bpf_stats_enabled to 1 and returns a function
// that puts back the value it had.
func enableBPFStats() (restore func(), err error) {
	old, err := os.ReadFile(bpfStatsSysctl)
	if err != nil {
		return nil, fmt.Errorf("bpf stats: %w", err)
	}
	if err := os.WriteFile(bpfStatsSysctl, []byte("1\n"), 0o644); err != nil {
		return nil, fmt.Errorf("bpf stats: %w", err)
	}
	return func() { _ = os.WriteFile(bpfStatsSysctl, old, 0o644) }, nil
}
