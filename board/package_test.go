package board

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket/layers"

	"github.com/peerwatch/peerwatch/internal/testutil"
)

// release runs make release's script into dist for the architectures.
func release(t *testing.T, dist, version, arches string) {
	t.Helper()
	cmd := exec.Command(filepath.Join("..", "scripts", "release", "release"))
	cmd.Env = append(os.Environ(), "DIST="+dist, "VERSION="+version, "ARCHES="+arches)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("release %s: %v\n%s", version, err, out)
	}
}

func debName(pkg, version, arch string) string {
	return fmt.Sprintf("peerwatch-%s_%s_%s.deb", pkg, version, arch)
}

// TestRelease builds a release as make release does and checks it: the
// binaries, the checksums, the packages; then installs the amd64 package
// into an overlay of this machine's root, runs it as its unit says, and
// upgrades it without losing a count.
func TestRelease(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a release (a minute or two)")
	}
	requireTools(t, "dpkg-deb", "tar", "sha256sum")
	dist := filepath.Join(t.TempDir(), "dist")
	const v1 = "1.0.0"
	release(t, dist, v1, "arm64 amd64")

	t.Run("binaries", func(t *testing.T) { checkBinaries(t, dist, v1) })
	t.Run("checksums", func(t *testing.T) { checkSums(t, dist, v1) })
	t.Run("tarballs", func(t *testing.T) { checkTarballs(t, dist, v1) })
	t.Run("packages", func(t *testing.T) { checkPackages(t, dist, v1) })
	t.Run("install and upgrade", func(t *testing.T) {
		testutil.RequireBPF(t)
		requireTools(t, "unshare", "nsenter", "setpriv", "chroot", "dpkg")
		const v2 = "1.0.1"
		dist2 := filepath.Join(t.TempDir(), "dist")
		release(t, dist2, v2, "amd64")
		installAndUpgrade(t, filepath.Join(dist, debName("sensor", v1, "amd64")), filepath.Join(dist2, debName("sensor", v2, "amd64")))
	})
}

// checkBinaries: static ELF executables of the right machine, stamped with
// the version, and the very same BPF object in sensord for both.
func checkBinaries(t *testing.T, dist, version string) {
	object, err := os.ReadFile(filepath.Join("..", "bpf", "counter_bpfel.o"))
	if err != nil {
		t.Fatal(err)
	}
	if big, _ := filepath.Glob(filepath.Join("..", "bpf", "*_bpfeb.*")); len(big) > 0 {
		t.Errorf("big-endian objects %v: the release carries one bpfel object", big)
	}
	machines := map[string]elf.Machine{"arm64": elf.EM_AARCH64, "amd64": elf.EM_X86_64}
	for arch, machine := range machines {
		for _, cmd := range []string{"sensord", "sensorctl", "collectord"} {
			path := filepath.Join(dist, "build", arch, cmd)
			f, err := elf.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			if f.Machine != machine || f.Class != elf.ELFCLASS64 || f.Type != elf.ET_EXEC {
				t.Errorf("%s/%s: %v %v %v, want a 64-bit %v executable", arch, cmd, f.Class, f.Machine, f.Type, machine)
			}
			for _, p := range f.Progs {
				if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
					t.Errorf("%s/%s: has %v: not static", arch, cmd, p.Type)
				}
			}
			f.Close()
		}
		bin, err := os.ReadFile(filepath.Join(dist, "build", arch, "sensord"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(bin, object) {
			t.Errorf("%s sensord does not embed bpf/counter_bpfel.o (%d bytes)", arch, len(object))
		}
	}
	// "sensord 1.0.0 (71f28c516738) linux/amd64 go1.26.8": the revision
	// is there when the build saw the git checkout.
	stamp := func(cmd, arch string) *regexp.Regexp {
		return regexp.MustCompile(`^` + cmd + ` ` + regexp.QuoteMeta(version) + ` (\([0-9a-f]+(-dirty)?\) )?linux/` + arch + ` go`)
	}
	out, err := exec.Command(filepath.Join(dist, "build", "amd64", "sensord"), "--version").Output()
	if err != nil || !stamp("sensord", "amd64").Match(out) {
		t.Errorf("amd64 sensord --version: %q %v", out, err)
	}
	if qemu, err := exec.LookPath("qemu-aarch64-static"); err == nil {
		out, err := exec.Command(qemu, filepath.Join(dist, "build", "arm64", "sensorctl"), "--version").Output()
		if err != nil || !stamp("sensorctl", "arm64").Match(out) {
			t.Errorf("arm64 sensorctl --version under qemu: %q %v", out, err)
		}
	}
}

// checkSums: SHA256SUMS lists every artefact, with the right sums.
func checkSums(t *testing.T, dist, version string) {
	f, err := os.Open(filepath.Join(dist, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var names []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		sum, name, ok := strings.Cut(sc.Text(), "  ")
		if !ok {
			t.Fatalf("SHA256SUMS: %q", sc.Text())
		}
		b, err := os.ReadFile(filepath.Join(dist, name))
		if err != nil {
			t.Fatal(err)
		}
		if h := sha256.Sum256(b); hex.EncodeToString(h[:]) != sum {
			t.Errorf("%s: sum differs", name)
		}
		names = append(names, name)
	}
	var want []string
	for _, arch := range []string{"amd64", "arm64"} {
		want = append(want, debName("collector", version, arch), debName("sensor", version, arch),
			fmt.Sprintf("peerwatch_%s_linux_%s.tar.gz", version, arch))
	}
	slices.Sort(names)
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Errorf("SHA256SUMS lists %v, want %v", names, want)
	}
}

// checkTarballs: each tarball holds its architecture's binaries and what a
// manual install needs.
func checkTarballs(t *testing.T, dist, version string) {
	for _, arch := range []string{"arm64", "amd64"} {
		top := fmt.Sprintf("peerwatch_%s_linux_%s", version, arch)
		f, err := os.Open(filepath.Join(dist, top+".tar.gz"))
		if err != nil {
			t.Fatal(err)
		}
		zr, err := gzip.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		files := map[string][]byte{}
		tr := tar.NewReader(zr)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if h.Uid != 0 || h.Gid != 0 {
				t.Errorf("%s: %s owned by %d:%d", top, h.Name, h.Uid, h.Gid)
			}
			if h.Typeflag == tar.TypeReg {
				b, _ := io.ReadAll(tr)
				files[h.Name] = b
			}
		}
		f.Close()
		for _, cmd := range []string{"sensord", "sensorctl", "collectord"} {
			built, _ := os.ReadFile(filepath.Join(dist, "build", arch, cmd))
			if got := files[top+"/bin/"+cmd]; len(built) == 0 || !bytes.Equal(got, built) {
				t.Errorf("%s: bin/%s is not the built %s binary", top, cmd, arch)
			}
		}
		for _, name := range []string{"board/common/systemd/peerwatch-sensord.service", "board/common/libexec/prepare-bpffs",
			"board/common/ipdb/asn-ipv4.csv.gz", "board/rpi5/sensord.yaml", "docs/install.md"} {
			if _, ok := files[top+"/"+name]; !ok {
				t.Errorf("%s lacks %s", top, name)
			}
		}
	}
}

func dpkgDeb(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("dpkg-deb", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("dpkg-deb %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// checkPackages: the control fields, the files, the conffiles, the board
// configuration each architecture installs, maintainer scripts that leave
// the pins alone, and lintian when it is installed.
func checkPackages(t *testing.T, dist, version string) {
	boardOf := map[string]string{"arm64": "generic-arm64", "amd64": "x86-64"}
	for _, arch := range []string{"arm64", "amd64"} {
		for _, pkg := range []string{"sensor", "collector"} {
			deb := filepath.Join(dist, debName(pkg, version, arch))
			fields := dpkgDeb(t, "-f", deb, "Package", "Version", "Architecture", "Depends")
			want := fmt.Sprintf("Package: peerwatch-%s\nVersion: %s\nArchitecture: %s\nDepends: passwd\n", pkg, version, arch)
			if fields != want {
				t.Errorf("%s control:\n%s\nwant:\n%s", filepath.Base(deb), fields, want)
			}
			control := t.TempDir()
			dpkgDeb(t, "-e", deb, control)
			conffiles, _ := os.ReadFile(filepath.Join(control, "conffiles"))
			var wantConf, wantFiles []string
			if pkg == "sensor" {
				wantConf = []string{"/etc/peerwatch/local-prefixes.txt", "/etc/peerwatch/sensord.yaml"}
				wantFiles = []string{"./usr/bin/sensord", "./usr/bin/sensorctl", "./usr/libexec/peerwatch/prepare-bpffs",
					"./usr/lib/systemd/system/peerwatch-sensord.service", "./usr/share/peerwatch/ipdb/asn-ipv4.csv.gz",
					"./usr/share/peerwatch/boards/rpi4/sensord.yaml", "./usr/share/doc/peerwatch-sensor/copyright"}
			} else {
				wantConf = []string{"/etc/default/peerwatch-collectord"}
				wantFiles = []string{"./usr/bin/collectord", "./usr/lib/systemd/system/peerwatch-collectord.service"}
			}
			got := strings.Fields(string(conffiles))
			slices.Sort(got)
			if !slices.Equal(got, wantConf) {
				t.Errorf("%s conffiles %v, want %v", filepath.Base(deb), got, wantConf)
			}
			contents := dpkgDeb(t, "-c", deb)
			for _, f := range wantFiles {
				if !strings.Contains(contents, " "+f+"\n") {
					t.Errorf("%s lacks %s", filepath.Base(deb), f)
				}
			}
			// No maintainer script touches the bpffs: the pins hold the counts.
			for _, s := range []string{"postinst", "prerm", "postrm"} {
				b, err := os.ReadFile(filepath.Join(control, s))
				if err != nil {
					t.Fatalf("%s: %v", filepath.Base(deb), err)
				}
				for i, line := range strings.Split(string(b), "\n") {
					if strings.Contains(line, "/sys/fs/bpf") && !strings.HasPrefix(strings.TrimSpace(line), "#") {
						t.Errorf("%s %s:%d touches the bpffs: %s", filepath.Base(deb), s, i+1, line)
					}
				}
			}
			if pkg == "sensor" {
				data := t.TempDir()
				dpkgDeb(t, "-x", deb, data)
				got, _ := os.ReadFile(filepath.Join(data, "etc", "peerwatch", "sensord.yaml"))
				want, _ := os.ReadFile(filepath.Join(boardOf[arch], "sensord.yaml"))
				if len(want) == 0 || !bytes.Equal(got, want) {
					t.Errorf("%s installs another /etc/peerwatch/sensord.yaml than board/%s's", filepath.Base(deb), boardOf[arch])
				}
			}
			lintian(t, deb)
		}
	}
}

// lintian runs lintian on a package when it is installed, and wants no
// error and no warning. The packages carry their overrides, each explained
// (board/common/lintian/).
func lintian(t *testing.T, deb string) {
	t.Helper()
	bin, err := exec.LookPath("lintian")
	if err != nil {
		t.Logf("lintian is not installed (apt-get install lintian): %s not checked", filepath.Base(deb))
		return
	}
	out, _ := exec.Command(bin, "--no-tag-display-limit", deb).CombinedOutput()
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if strings.HasPrefix(line, "E: ") || strings.HasPrefix(line, "W: ") {
			t.Errorf("lintian: %s", line)
		}
	}
}

// installAndUpgrade installs deb1 with dpkg into an overlay of this
// machine's root (a fresh bpffs stands for a fresh boot), starts sensord as
// peerwatch-sensord.service does, counts, runs sensorctl doctor there,
// upgrades to deb2 while sensord runs, restarts it as the postinst would,
// and checks that the packets counted while no sensord ran are not lost.
func installAndUpgrade(t *testing.T, deb1, deb2 string) {
	work, err := os.MkdirTemp("", "peerwatch-root-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(work) })
	if err := os.Chmod(work, 0o755); err != nil {
		t.Fatal(err)
	}
	share := filepath.Join(work, "share") // seen as /run/peerwatch-test inside
	root := filepath.Join(work, "root")
	for _, d := range []string{share, root} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	collector := strings.Replace(deb1, "peerwatch-sensor_", "peerwatch-collector_", 1)
	for _, deb := range []string{deb1, deb2, collector} {
		b, err := os.ReadFile(deb)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(share, filepath.Base(deb)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// The mount namespace that holds the throwaway root lives as long as this
	// process.
	const setup = `set -e
mount --make-rprivate /
mount -t tmpfs tmpfs "$1"
mkdir "$1/upper" "$1/work" "$1/root"
mount -t overlay overlay -o lowerdir=/,upperdir="$1/upper",workdir="$1/work" "$1/root"
r="$1/root"
mount -t proc proc "$r/proc"
mount --rbind /sys "$r/sys"
mount -t bpf -o mode=0700 bpf "$r/sys/fs/bpf"
mount --rbind /dev "$r/dev"
mount -t tmpfs tmpfs "$r/run"
mkdir "$r/run/peerwatch-test"
mount --bind "$2" "$r/run/peerwatch-test"
touch "$2/ready"
exec sleep 3600
`
	holder := start(t, exec.Command("unshare", "-m", "sh", "-c", setup, "setup", root, share), filepath.Join(work, "holder.log"))
	for deadline := time.Now().Add(30 * time.Second); ; {
		if _, err := os.Stat(filepath.Join(share, "ready")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the throwaway root was not set up in 30 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	mnt := fmt.Sprintf("--mount=/proc/%d/ns/mnt", holder.cmd.Process.Pid)
	chroot := filepath.Join(root, "root")
	// in runs a command inside the throwaway root (and netns, if given).
	in := func(netns string, args ...string) *exec.Cmd {
		ns := []string{mnt}
		if netns != "" {
			ns = append(ns, "--net=/var/run/netns/"+netns)
		}
		return exec.Command("nsenter", append(append(ns, "chroot", chroot), args...)...)
	}
	sh := func(script string) string {
		t.Helper()
		out, err := in("", "sh", "-c", script).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", script, err, out)
		}
		return string(out)
	}

	// Install, with the collector's package from the same release.
	sh("dpkg -i /run/peerwatch-test/" + filepath.Base(deb1) + " /run/peerwatch-test/" + filepath.Base(collector))
	if _, err := exec.LookPath("systemd-analyze"); err == nil {
		// The units as systemd reads them, with their binaries in place.
		if out := sh("systemd-analyze verify /usr/lib/systemd/system/peerwatch-sensord.service /usr/lib/systemd/system/peerwatch-collectord.service 2>&1"); out != "" {
			t.Errorf("systemd-analyze verify:\n%s", out)
		}
	}
	if got := sh("getent passwd peerwatch-collector | cut -d: -f6; stat -c '%U %a' /var/lib/peerwatch-collector"); got != "/var/lib/peerwatch-collector\npeerwatch-collector 750\n" {
		t.Errorf("collector user and directory: %q", got)
	}
	if got := sh("dpkg-query -W -f '${Version} ${Status}' peerwatch-sensor"); got != "1.0.0 install ok installed" {
		t.Errorf("installed: %q", got)
	}
	if got := sh("getent passwd peerwatch | cut -d: -f6,7; stat -c '%U:%G %a' /var/lib/peerwatch"); got != "/var/lib/peerwatch:/usr/sbin/nologin\npeerwatch:peerwatch 750\n" {
		t.Errorf("user and data directory: %q", got)
	}
	sh("echo 192.0.2.0/24 >> /etc/peerwatch/local-prefixes.txt") // the operator's prefixes

	// Start as the unit does, in a network namespace whose veth is named
	// like the x86-64 board's counted port.
	peer, sensor := testutil.NewNamespace(t), testutil.NewNamespace(t)
	testutil.Veth(t, peer, "pw-peer", sensor, "enp2s0")
	from := testutil.NewSender(t, peer, "pw-peer")
	api := sensor.HTTPClient()
	const addr = "127.0.0.1:9100"
	msgs := testutil.NotifySocket(t, filepath.Join(share, "notify"))
	startUnit := func(name string) *process {
		t.Helper()
		const unitPath = "/usr/lib/systemd/system/peerwatch-sensord.service"
		uu := parseUnit(t, unitPath, sh("cat "+unitPath))
		pre := strings.TrimPrefix(uu.one(t, "ExecStartPre"), "+")
		caps := setprivCaps(strings.Fields(uu.one(t, "AmbientCapabilities")))
		script := fmt.Sprintf("%s && exec setpriv --reuid=%s --regid=%s --init-groups --inh-caps=%s --ambient-caps=%s --bounding-set=%s --no-new-privs %s",
			pre, uu.one(t, "User"), uu.one(t, "Group"), caps, caps, caps, uu.one(t, "ExecStart"))
		cmd := in(sensor.Name, "sh", "-c", script)
		cmd.Env = append(os.Environ(), "NOTIFY_SOCKET=/run/peerwatch-test/notify", "WATCHDOG_USEC=60000000")
		p := start(t, cmd, filepath.Join(work, name+".log"))
		if got, want := waitReady(t, msgs, p.exited, 120*time.Second), "READY=1\nSTATUS=counting: enp2s0 attached (xdp-native)"; got != want {
			t.Fatalf("%s: notification %q, want %q", name, got, want)
		}
		return p
	}
	send := func(n int) {
		t.Helper()
		frame := testutil.Frame{Src: netip.MustParseAddr("8.8.8.8"), Dst: netip.MustParseAddr("192.0.2.9"),
			Proto: layers.IPProtocolUDP, SrcPort: 53, DstPort: 40000}.Bytes(t)
		frames := make([][]byte, n)
		for i := range frames {
			frames[i] = frame
		}
		if err := from.SendPaced(frames, 64); err != nil {
			t.Fatal(err)
		}
	}

	const before, between = 300, 200
	old := startUnit("sensord-" + "1.0.0")
	send(before)
	if s := waitSeen(t, api, addr, before); s.Version != "1.0.0" {
		t.Errorf("running version %q", s.Version)
	}

	// sensorctl doctor passes on this root.
	doctor, err := in(sensor.Name, "sensorctl", "doctor").CombinedOutput()
	if err != nil {
		t.Errorf("sensorctl doctor: %v\n%s", err, doctor)
	}
	for _, line := range []string{"PASS  config ", "PASS  local prefixes      1\n", "PASS  bpffs ", "PASS  interface 0         name enp2s0 is enp2s0",
		"PASS  attach xdp-native ", "PASS  memory "} {
		if !strings.Contains(string(doctor), line) {
			t.Errorf("sensorctl doctor does not say %q:\n%s", line, doctor)
		}
	}
	t.Logf("sensorctl doctor in the installed root:\n%s", doctor)

	// Upgrade while sensord runs; the conffile keeps the operator's line,
	// and the pins stay.
	pins := sh("ls /sys/fs/bpf/peerwatch")
	sh("dpkg -i /run/peerwatch-test/" + filepath.Base(deb2))
	if got := sh("dpkg-query -W -f '${Version}' peerwatch-sensor; tail -n1 /etc/peerwatch/local-prefixes.txt"); got != "1.0.1192.0.2.0/24\n" {
		t.Errorf("after the upgrade: %q", got)
	}
	if got := sh("ls /sys/fs/bpf/peerwatch"); got != pins {
		t.Errorf("the upgrade changed the pins: %q, was %q", got, pins)
	}
	// systemctl try-restart: the old sensord drains and stops, packets
	// arrive with no sensord running, the new one takes the pins over.
	old.stop(t)
	send(between)
	startUnit("sensord-1.0.1")
	if s := waitSeen(t, api, addr, between); s.Version != "1.0.1" {
		t.Errorf("running version %q after the upgrade", s.Version)
	}
	var top struct {
		Total struct {
			PacketsIn uint64 `json:"packets_in"`
		} `json:"total"`
	}
	resp, err := api.Get("http://" + addr + "/api/v1/top?by=prefix&window=1h&limit=10")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err := json.Unmarshal(body, &top); err != nil {
		t.Fatalf("top: %v\n%s", err, body)
	}
	if top.Total.PacketsIn != before+between {
		t.Errorf("the store holds %d packets in over the upgrade, want %d + %d", top.Total.PacketsIn, before, between)
	}
	t.Logf("counted %d before the upgrade and %d while no sensord ran: %s in the store", before, between, strconv.FormatUint(top.Total.PacketsIn, 10))
}
