package brokerauth

import (
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	mochi "github.com/mochi-mqtt/server/v2"

	"github.com/peerwatch/peerwatch/internal/testutil"
)

func TestPasswordsFixture(t *testing.T) {
	p, err := LoadPasswords("testdata/passwd")
	if err != nil {
		t.Fatal(err)
	}
	if p.Len() != 3 {
		t.Errorf("%d users, want 3", p.Len())
	}
	for _, tc := range []struct {
		user, password string
		ok             bool
	}{
		{"alice", "secret", true},
		{"alice", "Secret", false},
		{"alice", "", false},
		{"bob", "p:w d", true},
		{"bob", "secret", false},
		{"carol", "secret", true}, // $6$
		{"carol", "secret ", false},
		{"dave", "secret", false},
	} {
		if got := p.Verify(tc.user, tc.password); got != tc.ok {
			t.Errorf("Verify(%q, %q) = %v, want %v", tc.user, tc.password, got, tc.ok)
		}
	}
}

// TestMosquittoPasswd checks the format against the mosquitto_passwd of
// the system (Debian's mosquitto package), with both of its hashes and an
// iteration count other than its default.
func TestMosquittoPasswd(t *testing.T) {
	testutil.RequireNative(t)
	bin, err := exec.LookPath("mosquitto_passwd")
	if err != nil {
		t.Skipf("mosquitto_passwd not installed (scripts/install-deps installs the mosquitto package): %v", err)
	}
	path := filepath.Join(t.TempDir(), "passwd")
	users := map[string]string{"s1": "correct horse", "collectord": "x", "s-2.b_c": "ünïcödé $7$ : #"}
	args := []string{"-c"} // the first call creates the file
	for _, user := range []string{"s1", "collectord", "s-2.b_c"} {
		if out, err := exec.Command(bin, append(args, "-b", path, user, users[user])...).CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_passwd: %v\n%s", err, out)
		}
		args = nil
	}
	if out, err := exec.Command(bin, "-H", "sha512", "-b", path, "old", "legacy").CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_passwd -H sha512: %v\n%s", err, out)
	}
	users["old"] = "legacy"
	p, err := LoadPasswords(path)
	if err != nil {
		b, _ := os.ReadFile(path)
		t.Fatalf("%v\n%s", err, b)
	}
	if p.Len() != len(users) {
		t.Errorf("%d users, want %d", p.Len(), len(users))
	}
	for user, pw := range users {
		if !p.Verify(user, pw) {
			t.Errorf("Verify(%q, %q) = false", user, pw)
		}
		if p.Verify(user, pw+"x") {
			t.Errorf("Verify(%q, %q+x) = true", user, pw)
		}
	}
}

func TestPasswordFileErrors(t *testing.T) {
	good := "alice:$7$101$fUG4OzfjWlYdRlb7$9161+rnsoOXonsMWPo68Dsqb9cHkLMPiJD1+4C9qIQn1Mg84LeT2zt+ucJZ1LAXqQYelof+nvs24jXYX/zJKSg=="
	for _, tc := range []struct{ name, text, want string }{
		{"plain", "# c\nalice:secret\n", "pw:2: user \"alice\": not a hash"},
		{"no colon", good + "\nbob\n", "pw:2: want user:$7$"},
		{"empty user", ":$7$1$AA==$AA==\n", "pw:1: want user:"},
		{"dup", good + "\n\n" + good + "\n", "pw:3: user \"alice\" again (first on line 1)"},
		{"iterations", "a:$7$0$fUG4OzfjWlYdRlb7$AA==\n", "pw:1: user \"a\": iterations \"0\""},
		{"huge iterations", "a:$7$99999999$fUG4OzfjWlYdRlb7$AA==\n", "pw:1: user \"a\": iterations \"99999999\""},
		{"bad salt", "a:$7$101$!!$AA==\n", "pw:1: user \"a\": salt \"!!\": not base64"},
		{"short hash", "a:$7$101$fUG4OzfjWlYdRlb7$AAAA\n", "pw:1: user \"a\": hash: want 64 bytes"},
		{"other type", "a:$5$x$y\n", "pw:1: user \"a\": hash type $5$"},
		{"long line", good + "\n" + strings.Repeat("x", MaxLine+1) + "\n", "pw:2: line longer than 1024 bytes"},
		{"empty", "# nobody\n", "pw: no user in it"},
	} {
		_, err := ParsePasswords("pw", strings.NewReader(tc.text))
		if !errors.Is(err, ErrFile) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want ErrFile with %q", tc.name, err, tc.want)
		}
	}
	big := strings.Repeat("#\n", MaxPasswordFile/2+1)
	if _, err := ParsePasswords("pw", strings.NewReader(big)); !errors.Is(err, ErrFile) || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("big file: %v", err)
	}
}

func TestReadSecret(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if s, err := ReadSecret(write("a", "s3cret word\r\nignored\n")); err != nil || s != "s3cret word" {
		t.Errorf("ReadSecret = %q, %v", s, err)
	}
	if _, err := ReadSecret(write("b", "\n")); !errors.Is(err, ErrFile) || !strings.Contains(err.Error(), "b:1: empty password") {
		t.Errorf("empty: %v", err)
	}
	if _, err := ReadSecret(write("c", strings.Repeat("x", MaxSecret+1))); !errors.Is(err, ErrFile) {
		t.Errorf("long: %v", err)
	}
	if _, err := ReadSecret(filepath.Join(dir, "none")); err == nil || !strings.Contains(err.Error(), "none") {
		t.Errorf("missing: %v", err)
	}
}

func TestRulesAllowed(t *testing.T) {
	r := Rules{TopicPrefix: "peerwatch", Readers: []string{"collectord"}}
	for _, tc := range []struct {
		id, topic string
		write, ok bool
	}{
		{"s1", "peerwatch/s1/summary", true, true},
		{"s1", "peerwatch/s1/status", true, true},
		{"s1", "peerwatch/s2/summary", true, false},
		{"s1", "peerwatch/s10/summary", true, false},
		{"s1", "peerwatch/s1", true, false},
		{"s1", "other/s1/summary", true, false},
		{"s1", "peerwatch/s1/#", false, true},
		{"s1", "peerwatch/#", false, false},
		{"s1", "peerwatch/+/summary", false, false},
		{"s1", "#", false, false},
		{"s1", "$share/g/peerwatch/s1/summary", false, false},
		{"s1", "$SYS/broker/uptime", false, false},
		{"bad id", "peerwatch/bad id/summary", true, false},
		{"", "peerwatch//summary", true, false},
		{"collectord", "peerwatch/+/+", false, true},
		{"collectord", "peerwatch/#", false, true},
		{"collectord", "$share/collectors/peerwatch/+/+", false, true},
		{"collectord", "$share//peerwatch/+/+", false, false},
		{"collectord", "$share/g", false, false},
		{"collectord", "#", false, false},
		{"collectord", "peerwatch/collectord/summary", true, false},
		// Gap repair: a sensor reads its own resend topic, writes its lost
		// reports, and neither writes its resend topic nor reads another's.
		{"s1", "peerwatch/s1/resend", false, true},
		{"s1", "peerwatch/s1/resend", true, false},
		{"s1", "peerwatch/s1/lost", true, true},
		{"s1", "peerwatch/s2/resend", false, false},
		{"s1", "peerwatch/s2/resend", true, false},
		{"collectord", "peerwatch/s1/resend", true, false},
	} {
		if got := r.Allowed(tc.id, tc.topic, tc.write); got != tc.ok {
			t.Errorf("Allowed(%q, %q, write %v) = %v, want %v", tc.id, tc.topic, tc.write, got, tc.ok)
		}
	}
	if got := (Rules{TopicPrefix: "org/pw/"}).Allowed("s1", "org/pw/s1/summary", true); !got {
		t.Error("multi-level prefix with a slash: refused")
	}
}

func TestTLSFiles(t *testing.T) {
	dir := t.TempDir()
	ca := testutil.NewCA(t, dir, "ca")
	srv := ca.Server(t, "broker")
	if _, err := ServerTLS(srv.CertFile, srv.KeyFile, ca.CertFile); err != nil {
		t.Fatal(err)
	}
	cl := ca.Client(t, "s1")
	if _, err := ClientTLS(ca.CertFile, cl.CertFile, cl.KeyFile); err != nil {
		t.Fatal(err)
	}
	caPEM, _ := os.ReadFile(ca.CertFile)
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// A second certificate whose body is damaged, on line 3 of the bundle
	// after a comment line.
	lines := strings.Split(strings.TrimSpace(string(caPEM)), "\n")
	damaged := append([]string{}, lines...)
	damaged[2] = strings.Repeat("A", len(damaged[2]))
	bundle := write("bundle.pem", "# CAs\n"+string(caPEM)+strings.Join(damaged, "\n")+"\n")
	_, err := LoadCertPool("client CA", bundle)
	wantLine := len(lines) + 2
	if !errors.Is(err, ErrFile) || !strings.Contains(err.Error(), "client CA "+bundle+":"+strconv.Itoa(wantLine)+": certificate 2:") {
		t.Errorf("damaged second certificate: %v, want line %d", err, wantLine)
	}
	noEnd := write("noend.pem", string(caPEM)+"\n"+strings.Join(lines[:len(lines)-1], "\n")+"\n")
	if _, err := LoadCertPool("client CA", noEnd); !errors.Is(err, ErrFile) || !strings.Contains(err.Error(), ":"+strconv.Itoa(len(lines)+2)+": PEM block does not decode") {
		t.Errorf("block without END: %v", err)
	}
	if _, err := LoadCertPool("client CA", write("empty.pem", "nothing\n")); !errors.Is(err, ErrFile) || !strings.Contains(err.Error(), "no PEM CERTIFICATE block") {
		t.Errorf("no PEM: %v", err)
	}
	other := ca.Client(t, "s2")
	if _, err := ServerTLS(srv.CertFile, other.KeyFile, ""); !errors.Is(err, ErrFile) || !strings.Contains(err.Error(), other.KeyFile) {
		t.Errorf("key of another certificate: %v", err)
	}
	old := ca.Expired(t, "s3")
	if _, err := ClientTLS(ca.CertFile, old.CertFile, old.KeyFile); !errors.Is(err, ErrFile) || !strings.Contains(err.Error(), "not now") {
		t.Errorf("expired: %v", err)
	}
	if _, err := ServerTLS(filepath.Join(dir, "missing.crt"), srv.KeyFile, ""); err == nil || !strings.Contains(err.Error(), "missing.crt") {
		t.Errorf("missing: %v", err)
	}
}

// TestHookACLCounts: every denial is counted, and logged at most once per
// kind per RefusalLogInterval.
func TestHookACLCounts(t *testing.T) {
	var buf testutil.SyncBuffer
	h := NewHook(Rules{TopicPrefix: "peerwatch", ClientCerts: true, Readers: []string{"collectord"}}, slog.New(slog.NewTextHandler(&buf, nil)))
	sA := &mochi.Client{ID: "peerwatch-sA", Properties: mochi.ClientProperties{Username: []byte("sA")}}
	col := &mochi.Client{ID: "col", Properties: mochi.ClientProperties{Username: []byte("collectord")}}
	if !h.OnACLCheck(sA, "peerwatch/sA/summary", true) || !h.OnACLCheck(col, "$share/g/peerwatch/+/+", false) {
		t.Fatal("allowed topics refused")
	}
	for range 5 {
		if h.OnACLCheck(sA, "peerwatch/sB/summary", true) {
			t.Fatal("sA publishing as sB: allowed")
		}
	}
	if h.OnACLCheck(col, "peerwatch/sA/summary", true) || h.OnACLCheck(sA, "peerwatch/#", false) {
		t.Fatal("reader publishing or sensor reading the fleet: allowed")
	}
	if got, want := h.Stats(), (Stats{PublishesDenied: 6, SubscribesDenied: 1}); got != want {
		t.Errorf("Stats %+v, want %+v", got, want)
	}
	if n := strings.Count(buf.String(), "broker refused a client"); n != 2 {
		t.Errorf("%d log lines, want 2 (publish once, subscribe once):\n%s", n, buf.String())
	}
}
