package drills_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// get fetches a page of sensord (the status page, /metrics) as text.
func (l *lab) get(path string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := httpRequest(ctx, "http://"+l.listen+path)
	if err != nil {
		return "", err
	}
	resp, err := l.client.HTTP.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	return string(b), err
}

// faultShown checks that the status page and /metrics show the store's
// write fault, and returns what the API says of it.
func (l *lab) faultShown(t *testing.T, errText string) {
	t.Helper()
	page, err := l.get("/")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(page, `id="store-write-error">writes fail since`) || !strings.Contains(page, errText) {
		t.Errorf("the status page does not show the store's write error %q", errText)
	}
	metrics, err := l.get("/metrics")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(metrics, "\npeerwatch_store_write_ok 0\n") {
		t.Errorf("/metrics does not say peerwatch_store_write_ok 0")
	}
}

// mount mounts a file system for the data directory, unmounted at cleanup.
func mount(t *testing.T, source, target, fstype, opts string) {
	t.Helper()
	if err := os.MkdirAll(target, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(source, target, fstype, 0, opts); err != nil {
		t.Fatalf("mount %s on %s: %v", fstype, target, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(target, 0); err != nil && !errors.Is(err, unix.EINVAL) {
			_ = unix.Unmount(target, unix.MNT_DETACH)
		}
	})
}

// fill writes zeros into a file of dir until the file system is full.
func fill(t *testing.T, dir string) (string, int64) {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	var n int64
	for {
		m, err := f.Write(buf)
		n += int64(m)
		if errors.Is(err, syscall.ENOSPC) {
			return path, n
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestNetnsDrillDiskFull fills sensord's data partition (a 8 MiB tmpfs)
// under traffic: sensord must keep its program attached, show the fault on
// the status page, in the API and in /metrics, and, once the filler is
// removed, store everything: the store's total equals the packets sent.
func TestNetnsDrillDiskFull(t *testing.T) {
	l := newLab(t)
	hold := time.Duration(envInt(t, "DRILL_FAULT_SECONDS", 5)) * time.Second
	r := newReport(t, "disk-full")
	data := filepath.Join(l.dir, "data")
	mount(t, "tmpfs", data, "tmpfs", "size=8m,mode=0750")
	p := l.start(l.config(data, ""))
	l.waitAttached(p, 60*time.Second)
	tr := l.traffic(envInt(t, "DRILL_RATE", 2000))
	l.waitDrains(2, 10*time.Second)

	filler, n := fill(t, data)
	full := time.Now()
	r.set("filler_bytes", n)
	var st = l.waitFault(t, p, "no space left on device")
	r.set("fault_shown_after", time.Since(full).Round(10*time.Millisecond))
	l.faultShown(t, "no space left on device")
	time.Sleep(hold) // the outage: traffic goes on
	st = l.waitFault(t, p, "no space left on device")
	if st.Interfaces[0].State != "attached" {
		t.Errorf("during the outage the interface is %s", st.Interfaces[0].State)
	}
	r.set("write_errors", st.Store.WriteErrors)
	r.set("held", st.Store.Unstored)

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	freed := time.Now()
	l.waitRecovered(t)
	r.set("recovered_after", time.Since(freed).Round(10*time.Millisecond))
	tr.end()
	sent := tr.sent.Load()
	got := l.settle(sent, 30*time.Second)
	r.set("sent", sent)
	r.set("stored", got)
	p.stop(t)
}

// waitFault waits until the API reports the store's write fault.
func (l *lab) waitFault(t *testing.T, p *sensordProc, errText string) (st apiStatus) {
	t.Helper()
	poll(t, 15*time.Second, "the store's write fault in /api/v1/status", func() (bool, error) {
		if !p.running() {
			t.Fatalf("sensord exited: %v", p.err)
		}
		s, err := l.status()
		if err != nil {
			return false, err
		}
		st = s
		return s.Store.WriteError != "" && strings.Contains(s.Store.WriteError, errText) && s.Store.WriteErrorSince != nil, nil
	})
	return st
}

// waitRecovered waits until the store takes writes again and holds nothing
// in memory.
func (l *lab) waitRecovered(t *testing.T) {
	t.Helper()
	poll(t, 15*time.Second, "the store takes writes again", func() (bool, error) {
		s, err := l.status()
		if err != nil {
			return false, err
		}
		return s.Store.WriteError == "" && s.Store.Unstored == 0, nil
	})
	metrics, err := l.get("/metrics")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(metrics, "\npeerwatch_store_write_ok 1\n") || !strings.Contains(metrics, "\npeerwatch_store_unstored_intervals 0\n") {
		t.Errorf("/metrics after the recovery does not say write_ok 1 and 0 unstored")
	}
}

// TestNetnsDrillReadOnly turns sensord's data partition read-only under
// traffic the way the field does it: an ext4 error with errors=remount-ro
// (triggered through /sys/fs/ext4/<dev>/trigger_fs_error). sensord must
// keep its program attached and show the fault. Such a file system cannot
// be made writable again while sensord holds its store open, so the
// recovery is what an operator (or a reboot) does: stop sensord, fsck,
// mount, start: the intervals the store refused are found again in the
// pinned maps, and the store's total equals the packets sent.
func TestNetnsDrillReadOnly(t *testing.T) {
	l := newLab(t)
	for _, tool := range []string{"mkfs.ext4", "e2fsck", "losetup"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is missing (e2fsprogs, mount): %v", tool, err)
		}
	}
	hold := time.Duration(envInt(t, "DRILL_FAULT_SECONDS", 5)) * time.Second
	r := newReport(t, "read-only")
	img := filepath.Join(l.dir, "data.img")
	if out, err := exec.Command("sh", "-c", "truncate -s 32M "+img+" && mkfs.ext4 -q -F "+img).CombinedOutput(); err != nil {
		t.Fatalf("make the ext4 image: %v\n%s", err, out)
	}
	loop, err := exec.Command("losetup", "--find", "--show", img).Output()
	if err != nil {
		t.Fatalf("losetup: %v", err)
	}
	dev := strings.TrimSpace(string(loop))
	t.Cleanup(func() { _ = exec.Command("losetup", "-d", dev).Run() })
	data := filepath.Join(l.dir, "data")
	mount(t, dev, data, "ext4", "errors=remount-ro")
	cfg := l.config(data, "")
	p := l.start(cfg)
	l.waitAttached(p, 60*time.Second)
	tr := l.traffic(envInt(t, "DRILL_RATE", 2000))
	l.waitDrains(2, 10*time.Second)
	before, err := l.stored()
	if err != nil {
		t.Fatal(err)
	}

	trigger := filepath.Join("/sys/fs/ext4", filepath.Base(dev), "trigger_fs_error")
	if err := os.WriteFile(trigger, []byte("peerwatch drill\n"), 0o200); err != nil {
		t.Fatalf("trigger an ext4 error: %v", err)
	}
	ro := time.Now()
	l.waitFault(t, p, "read-only file system")
	r.set("fault_shown_after", time.Since(ro).Round(10*time.Millisecond))
	l.faultShown(t, "read-only file system")
	time.Sleep(hold)
	st := l.waitFault(t, p, "read-only file system")
	if st.Interfaces[0].State != "attached" {
		t.Errorf("during the outage the interface is %s", st.Interfaces[0].State)
	}
	r.set("write_errors", st.Store.WriteErrors)
	r.set("held", st.Store.Unstored)

	// The operator's repair: stop, fsck, mount again, start.
	p.stop(t)
	if err := unix.Unmount(data, 0); err != nil {
		t.Fatalf("unmount the read-only data partition: %v", err)
	}
	// Right after the unmount the device can still be held for a moment
	// (e2fsck: "/dev/loop0 is in use", exit 8): e2fsck is tried again
	// until it gets the device.
	poll(t, 15*time.Second, "e2fsck on the unmounted partition", func() (bool, error) {
		out, err := exec.Command("e2fsck", "-fy", dev).CombinedOutput()
		var ee *exec.ExitError
		switch {
		case err == nil:
			return true, nil
		case errors.As(err, &ee) && ee.ExitCode() == 1: // errors corrected
			return true, nil
		case errors.As(err, &ee) && ee.ExitCode() == 8 && strings.Contains(string(out), "is in use"):
			return false, fmt.Errorf("%v: %s", err, out)
		}
		t.Fatalf("e2fsck: %v\n%s", err, out)
		return false, nil
	})
	if err := unix.Mount(dev, data, "ext4", 0, "errors=remount-ro"); err != nil {
		t.Fatalf("mount the repaired partition: %v", err)
	}
	repaired := time.Now()
	p = l.start(cfg)
	l.waitAttached(p, 60*time.Second)
	l.waitDrains(1, 10*time.Second)
	r.set("restarted_after", time.Since(repaired).Round(10*time.Millisecond))
	tr.end()
	sent := tr.sent.Load()
	got := l.settle(sent, 30*time.Second)
	r.set("stored_before", before)
	r.set("sent", sent)
	r.set("stored", got)
	p.stop(t)
}
