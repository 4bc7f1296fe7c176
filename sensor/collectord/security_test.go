package collectord

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
	"github.com/peerwatch/peerwatch/internal/testutil"
	"github.com/peerwatch/peerwatch/sensor/brokerauth"
	"github.com/peerwatch/peerwatch/sensor/collector"
	"github.com/peerwatch/peerwatch/sensor/summary"
	"github.com/peerwatch/peerwatch/sensor/uplink"
)

// clientTLS is the TLS configuration of a test client: it trusts caFile and
// presents cert (none when empty).
func clientTLS(tb testing.TB, caFile string, cert testutil.Issued) *tls.Config {
	tb.Helper()
	tc, err := brokerauth.ClientTLS(caFile, cert.CertFile, cert.KeyFile)
	if err != nil {
		tb.Fatal(err)
	}
	return tc
}

// connect connects a paho client; lost is closed when the broker drops
// the connection.
func connect(tb testing.TB, url, id string, tc *tls.Config, user, pass string) (c mqtt.Client, lost <-chan struct{}, err error) {
	tb.Helper()
	return connectWill(tb, url, id, tc, user, pass, "")
}

// connectWill is connect with a last will on willTopic (none when empty).
func connectWill(tb testing.TB, url, id string, tc *tls.Config, user, pass, willTopic string) (c mqtt.Client, lost <-chan struct{}, err error) {
	tb.Helper()
	l := make(chan struct{})
	var once sync.Once
	// MQTT 3.1.1 only: paho would try 3.1 again after a refusal.
	o := mqtt.NewClientOptions().AddBroker(url).SetClientID(id).SetProtocolVersion(4).SetAutoReconnect(false).SetConnectRetry(false).
		SetConnectTimeout(5 * time.Second).SetTLSConfig(tc).
		SetConnectionLostHandler(func(mqtt.Client, error) { once.Do(func() { close(l) }) })
	if user != "" {
		o.SetUsername(user).SetPassword(pass)
	}
	if willTopic != "" {
		o.SetWill(willTopic, `{"state":"offline"}`, 1, true)
	}
	c = mqtt.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		tb.Fatalf("connect %s as %s: no answer in 10s", url, id)
	}
	if err := tok.Error(); err != nil {
		return nil, nil, err
	}
	tb.Cleanup(func() { c.Disconnect(100) })
	return c, l, nil
}

// refusedAuth tells whether err is the broker's refusal of a CONNECT for
// its credentials: mochi answers "not authorized" (5) and mosquitto "bad
// user name or password" (4) or 5.
func refusedAuth(err error) bool {
	return errors.Is(err, packets.ErrorRefusedNotAuthorised) || errors.Is(err, packets.ErrorRefusedBadUsernameOrPassword)
}

func encode(tb testing.TB, s *summary.Summary) []byte {
	tb.Helper()
	b, err := summary.Encode(s, summary.EncodeOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// startSensor runs an uplink for sensor id that publishes n summaries;
// it returns their sum.
func startSensor(tb testing.TB, cfg uplink.Config, n int) summary.Summary {
	tb.Helper()
	q := &memQueue{}
	now := time.Now().UTC()
	var want summary.Summary
	for seq := uint64(1); seq <= uint64(n); seq++ {
		s := testSummary(tb, cfg.SensorID, seq, now.Add(-time.Duration(n+1-int(seq))*time.Minute))
		want.Merge(s)
		if err := q.Enqueue(uplink.Topic("", cfg.SensorID, uplink.KindSummary), encode(tb, s), seq); err != nil {
			tb.Fatal(err)
		}
	}
	cfg.Poll, cfg.MaxBackoff, cfg.PublishTimeout = 100*time.Millisecond, 300*time.Millisecond, 2*time.Second
	up := uplink.New(cfg, q, testLog(tb))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = up.Run(ctx); close(done) }()
	tb.Cleanup(func() { cancel(); <-done })
	return want
}

// sensorSummaries returns the sensor's accepted summaries at the collector
// whose API is api (0 when it is unknown there).
func sensorSummaries(tb testing.TB, api, id string) uint64 {
	tb.Helper()
	var sensors struct{ Sensors []collector.SensorState }
	getJSON(tb, api+"/sensors", &sensors)
	for _, s := range sensors.Sensors {
		if s.ID == id {
			return s.Summaries
		}
	}
	return 0
}

// secEnv is a broker under test: sensors connect to sensorURL with a
// certificate from ca; apis are the collectors fed by it.
type secEnv struct {
	ca, other *testutil.CA
	sensorURL string
	apis      []string
}

// checkClientCerts is test (e) with client certificates and test (f),
// against the broker of env:
//   - a client that trusts another CA refuses the broker; the broker
//     refuses a client certificate of another CA, and a client without one;
//   - sensor sA publishes a summary naming sB on its own topic (the
//     collector rejects it: sensor_mismatch) and a forged summary on sB's
//     topic (the broker drops it), and may not subscribe to the fleet;
//   - sA's uplink then delivers its 5 summaries; each collector knows
//     exactly sA, with 5 summaries, 1 sensor_mismatch and nothing else.
func checkClientCerts(t *testing.T, env secEnv) {
	sA := env.ca.Client(t, "sA")

	_, _, err := connect(t, env.sensorURL, "wrong-ca", clientTLS(t, env.other.CertFile, sA), "", "")
	if err == nil || !strings.Contains(err.Error(), "x509: certificate signed by unknown authority") {
		t.Errorf("client trusting another CA: %v, want the broker refused (unknown authority)", err)
	}
	// The same CN from another CA. Go's client would not even send a
	// certificate the broker's list of CAs does not name: force it.
	itc := clientTLS(t, env.ca.CertFile, env.other.Client(t, "sA"))
	itc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &itc.Certificates[0], nil }
	// Under TLS 1.3 the broker's alert may come before or after the client
	// sent CONNECT (then the error is a reset); under TLS 1.2 it ends the
	// handshake.
	if _, _, err := connect(t, env.sensorURL, "impostor", itc, "", ""); err == nil {
		t.Error("client certificate from another CA (TLS 1.3): connected, want refused")
	}
	itc.MaxVersion = tls.VersionTLS12
	if _, _, err := connect(t, env.sensorURL, "impostor-tls12", itc, "", ""); err == nil || !strings.Contains(err.Error(), "tls: unknown certificate authority") {
		t.Errorf("client certificate from another CA (TLS 1.2): %v, want refused by the broker (unknown certificate authority)", err)
	}
	if _, _, err := connect(t, env.sensorURL, "no-cert", clientTLS(t, env.ca.CertFile, testutil.Issued{}), "", ""); err == nil {
		t.Error("client without a certificate: connected, want refused")
	}

	now := time.Now().UTC()
	c, lost, err := connect(t, env.sensorURL, "sA-forger", clientTLS(t, env.ca.CertFile, sA), "", "")
	if err != nil {
		t.Fatalf("sA connect: %v", err)
	}
	mismatch := encode(t, testSummary(t, "sB", 99, now.Add(-time.Minute)))
	if tok := c.Publish(uplink.Topic("", "sA", uplink.KindSummary), 1, false, mismatch); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("sA publishing on its own topic: %v", tok.Error())
	}
	// The sensor may not read the fleet: mochi refuses the subscription,
	// mosquitto grants it but delivers nothing (checked below).
	var spied sync.Map
	tok := c.Subscribe("peerwatch/#", 1, func(_ mqtt.Client, m mqtt.Message) { spied.Store(m.Topic(), true) })
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	granted := tok.(*mqtt.SubscribeToken).Result()["peerwatch/#"]
	t.Logf("sensor subscribing peerwatch/#: granted %#x", granted)
	forged := encode(t, testSummary(t, "sB", 1, now.Add(-time.Minute)))
	ptok := c.Publish(uplink.Topic("", "sB", uplink.KindSummary), 1, false, forged)
	select { // mosquitto acknowledges and drops it; mochi disconnects sA
	case <-ptok.Done():
		t.Logf("forged publish: PUBACK or error: %v", ptok.Error())
	case <-lost:
		t.Log("forged publish: the broker closed the connection")
	case <-time.After(10 * time.Second):
		t.Fatal("forged publish: neither PUBACK nor disconnect in 10s")
	}

	want := startSensor(t, uplink.Config{Broker: env.sensorURL, SensorID: "sA", CAFile: env.ca.CertFile,
		CertFile: sA.CertFile, KeyFile: sA.KeyFile}, 5)
	for _, api := range env.apis {
		waitFor(t, "sA's 5 summaries at "+api, 15*time.Second, func() bool { return sensorSummaries(t, api, "sA") == 5 })
	}
	var spiedTopics []any
	spied.Range(func(k, _ any) bool { spiedTopics = append(spiedTopics, k); return true })
	if granted != 0x80 && len(spiedTopics) > 0 {
		t.Errorf("sensor subscribed to peerwatch/# received %v, want nothing", spiedTopics)
	}
	for _, api := range env.apis {
		var sensors struct{ Sensors []collector.SensorState }
		getJSON(t, api+"/sensors", &sensors)
		if len(sensors.Sensors) != 1 || sensors.Sensors[0].ID != "sA" || sensors.Sensors[0].Summaries != 5 ||
			sensors.Sensors[0].Duplicates != 0 || len(sensors.Sensors[0].Gaps) != 0 {
			t.Errorf("%s: sensors %+v, want sA alone with 5 summaries", api, sensors.Sensors)
		}
		var rejects struct{ Rejects map[string]uint64 }
		getJSON(t, api+"/rejects", &rejects)
		for reason, n := range rejects.Rejects {
			if wantN := map[bool]uint64{true: 1}[reason == collector.ReasonSensorMismatch]; n != wantN {
				t.Errorf("%s: %d %s rejects, want %d", api, n, reason, wantN)
			}
		}
		var top TopResponse
		getJSON(t, api+"/top?by=country&window=1h", &top)
		if top.Remote != want.Remote || top.Globals != want.Globals {
			t.Errorf("%s: remote %+v globals %+v, want sA's %+v %+v", api, top.Remote, top.Globals, want.Remote, want.Globals)
		}
	}
}

func TestEmbeddedBrokerClientCerts(t *testing.T) {
	dir := t.TempDir()
	ca, other := testutil.NewCA(t, dir, "fleet"), testutil.NewCA(t, dir, "other")
	srv := ca.Server(t, "broker")
	addr := testutil.FreeAddr(t)
	d, api := startDaemon(t, Config{EmbeddedBroker: addr, EmbeddedSecurity: EmbeddedSecurity{
		CertFile: srv.CertFile, KeyFile: srv.KeyFile, ClientCAFile: ca.CertFile, Readers: []string{"collector-2"}}})
	// A second collectord reads from the first with a certificate of its
	// own, as a reader, in a share group.
	c2 := ca.Client(t, "collector-2")
	_, api2 := startDaemon(t, Config{Broker: "ssl://" + addr, ShareGroup: "collectors", SubscriberSecurity: SubscriberSecurity{
		CAFile: ca.CertFile, CertFile: c2.CertFile, KeyFile: c2.KeyFile}})

	checkClientCerts(t, secEnv{ca: ca, other: other, sensorURL: "ssl://" + addr, apis: []string{api, api2}})

	// A certificate of the fleet whose CN is no sensor id, and the reader
	// trying to publish.
	odd := ca.Client(t, "not a sensor")
	if _, _, err := connect(t, "ssl://"+addr, "odd", clientTLS(t, ca.CertFile, odd), "", ""); !refusedAuth(err) {
		t.Errorf("CN %q: %v, want refused (not authorized)", "not a sensor", err)
	}
	rc, lost, err := connect(t, "ssl://"+addr, "reader-publishing", clientTLS(t, ca.CertFile, c2), "", "")
	if err != nil {
		t.Fatal(err)
	}
	rc.Publish(uplink.Topic("", "sA", uplink.KindSummary), 1, false, []byte("{}"))
	select {
	case <-lost:
	case <-time.After(10 * time.Second):
		t.Error("a reader publishing: not disconnected")
	}
	// Another sensor taking sA's client id (sA's uplink is connected), the
	// broker's own inline client id, and a last will on another sensor's
	// topic.
	s9 := clientTLS(t, ca.CertFile, ca.Client(t, "s9"))
	for _, id := range []string{"peerwatch-sA", "inline"} {
		if _, _, err := connect(t, "ssl://"+addr, id, s9, "", ""); !refusedAuth(err) {
			t.Errorf("s9 as client id %q: %v, want refused", id, err)
		}
	}
	if _, _, err := connectWill(t, "ssl://"+addr, "s9-will", s9, "", "", "peerwatch/sA/status"); !refusedAuth(err) {
		t.Errorf("s9 with a will on sA's status: %v, want refused", err)
	}
	if _, _, err := connectWill(t, "ssl://"+addr, "s9-own-will", s9, "", "", "peerwatch/s9/status"); err != nil {
		t.Errorf("s9 with a will on its own status: %v", err)
	}
	want := brokerauth.Stats{ConnectsRefused: 4, PublishesDenied: 2, SubscribesDenied: 1}
	if got := d.BrokerRefusals(); got != want {
		t.Errorf("broker refusals %+v, want %+v", got, want)
	}
	res, err := http.Get(strings.TrimSuffix(api, "/api/v1") + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if wantText := `<span id="broker-refusals">broker refused 4 connections, 2 publishes, 1 subscriptions</span>`; !strings.Contains(string(page), wantText) {
		t.Errorf("the dashboard lacks %s", wantText)
	}
	if got := sensorSummaries(t, api, "sA"); got != 5 {
		t.Errorf("sA: %d summaries after the reader's publish, want 5", got)
	}
}

func TestEmbeddedBrokerPasswords(t *testing.T) {
	dir := t.TempDir()
	ca := testutil.NewCA(t, dir, "fleet")
	srv := ca.Server(t, "broker")
	addr := testutil.FreeAddr(t)
	// testdata/passwd of brokerauth, written by mosquitto_passwd:
	// alice/secret and bob/"p:w d" ($7$), carol/secret ($6$).
	passwd, err := filepath.Abs("../brokerauth/testdata/passwd")
	if err != nil {
		t.Fatal(err)
	}
	d, api := startDaemon(t, Config{EmbeddedBroker: addr, EmbeddedSecurity: EmbeddedSecurity{
		CertFile: srv.CertFile, KeyFile: srv.KeyFile, PasswordFile: passwd, Readers: []string{"bob"}}})
	bobPW := filepath.Join(dir, "bob.password")
	if err := os.WriteFile(bobPW, []byte("p:w d\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, api2 := startDaemon(t, Config{Broker: "ssl://" + addr, SubscriberSecurity: SubscriberSecurity{
		CAFile: ca.CertFile, Username: "bob", PasswordFile: bobPW}})

	url := "ssl://" + addr
	for _, tc := range []struct{ user, pass string }{{"alice", "wrong"}, {"alice", ""}, {"dave", "secret"}, {"", ""}} {
		if _, _, err := connect(t, url, "c-"+tc.user, clientTLS(t, ca.CertFile, testutil.Issued{}), tc.user, tc.pass); !refusedAuth(err) {
			t.Errorf("user %q password %q: %v, want refused (not authorized)", tc.user, tc.pass, err)
		}
	}
	want := startSensor(t, uplink.Config{Broker: url, SensorID: "alice", CAFile: ca.CertFile, Username: "alice", Password: "secret"}, 3)
	for _, a := range []string{api, api2} {
		waitFor(t, "alice's 3 summaries at "+a, 15*time.Second, func() bool { return sensorSummaries(t, a, "alice") == 3 })
		var top TopResponse
		getJSON(t, a+"/top?by=as&window=1h", &top)
		if top.Remote != want.Remote {
			t.Errorf("%s: remote %+v, want %+v", a, top.Remote, want.Remote)
		}
	}
	// carol ($6$) is a sensor too, but not alice.
	c, lost, err := connect(t, url, "carol", clientTLS(t, ca.CertFile, testutil.Issued{}), "carol", "secret")
	if err != nil {
		t.Fatalf("carol: %v", err)
	}
	c.Publish(uplink.Topic("", "alice", uplink.KindSummary), 1, false, encode(t, testSummary(t, "alice", 4, time.Now().UTC())))
	select {
	case <-lost:
	case <-time.After(10 * time.Second):
		t.Error("carol publishing as alice: not disconnected")
	}
	if got, want := d.BrokerRefusals(), (brokerauth.Stats{ConnectsRefused: 4, PublishesDenied: 1}); got != want {
		t.Errorf("broker refusals %+v, want %+v", got, want)
	}
	_, value := scrape(t, strings.TrimSuffix(api, "/api/v1"))
	for kind, want := range map[string]float64{"connect": 4, "publish": 1, "subscribe": 0} {
		if got, ok := value("peerwatch_collector_broker_refusals_total", "kind", kind); !ok || got != want {
			t.Errorf("/metrics: broker %s refusals %v (present %v), want %v", kind, got, ok, want)
		}
	}
	if got := sensorSummaries(t, api, "alice"); got != 3 {
		t.Errorf("alice: %d summaries, want 3", got)
	}
}

// docBlock returns the fenced block of docs/broker.md after the marker
// "<!-- begin NAME -->".
func docBlock(tb testing.TB, name string) string {
	tb.Helper()
	b, err := os.ReadFile("../../docs/broker.md")
	if err != nil {
		tb.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "<!-- begin "+name+" -->\n")
	if !ok {
		tb.Fatalf("docs/broker.md: no <!-- begin %s --> marker", name)
	}
	_, rest, ok = strings.Cut(rest, "```")
	if ok {
		_, rest, ok = strings.Cut(rest, "\n")
	}
	block, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		tb.Fatalf("docs/broker.md: no fenced block after <!-- begin %s -->", name)
	}
	return block
}

// replaceAll replaces old with new in s and fails when old is not there:
// the documented configuration changed under the test.
func replaceAll(tb testing.TB, s, old, new string) string {
	tb.Helper()
	if !strings.Contains(s, old) {
		tb.Fatalf("docs/broker.md: %q not in the block:\n%s", old, s)
	}
	return strings.ReplaceAll(s, old, new)
}

// TestMosquittoDocConfig runs mosquitto with the configuration and ACL of
// docs/broker.md (its paths and ports replaced), collectord subscribed with
// the documented account and share group, and checks (e) and (f) against
// it; then a second collector joins the share group and the two split a
// sensor's summaries.
func TestMosquittoDocConfig(t *testing.T) {
	testutil.RequireMosquitto(t)
	mpw, err := exec.LookPath("mosquitto_passwd")
	if err != nil {
		t.Skipf("mosquitto_passwd not installed: %v", err)
	}
	dir := testutil.SharedTempDir(t)
	ca, other := testutil.NewCA(t, dir, "ca"), testutil.NewCA(t, dir, "other")
	srv := ca.Server(t, "broker")
	for from, to := range map[string]string{srv.CertFile: "broker.crt", srv.KeyFile: "broker.key"} {
		if err := os.Rename(from, filepath.Join(dir, to)); err != nil {
			t.Fatal(err)
		}
	}
	const password = "collector password"
	if out, err := exec.Command(mpw, "-c", "-b", filepath.Join(dir, "passwd"), "collectord", password).CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_passwd: %v\n%s", err, out)
	}
	if err := os.WriteFile(filepath.Join(dir, "acl"), []byte(docBlock(t, "file: acl")), 0o644); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	if err := os.Mkdir(data, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(data, 0o777); err != nil { // past the umask
		t.Fatal(err)
	}
	// the CRL that the config names: sR is revoked
	sR := ca.Client(t, "sR")
	ca.WriteCRL(t, filepath.Join(dir, "ca.crl"), sR)
	certAddr, pwAddr := testutil.FreeAddr(t), testutil.FreeAddr(t)
	port := func(addr string) string { return addr[strings.LastIndex(addr, ":")+1:] }
	conf := docBlock(t, "file: mosquitto.conf")
	conf = replaceAll(t, conf, "/etc/mosquitto/peerwatch/", dir+"/")
	conf = replaceAll(t, conf, "/var/lib/mosquitto/", data+"/")
	conf = replaceAll(t, conf, "listener 8883\n", "listener "+port(certAddr)+" 127.0.0.1\n")
	conf = replaceAll(t, conf, "listener 8884\n", "listener "+port(pwAddr)+" 127.0.0.1\n")
	testutil.StartMosquitto(t, dir, conf+"log_dest stderr\n", certAddr, pwAddr)

	pwFile := filepath.Join(dir, "collectord.password")
	if err := os.WriteFile(pwFile, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	colCfg := Config{Broker: "ssl://" + pwAddr, ShareGroup: "collectors", SubscriberSecurity: SubscriberSecurity{
		CAFile: ca.CertFile, Username: "collectord", PasswordFile: pwFile}}
	_, api := startDaemon(t, colCfg)

	for _, pw := range []string{"wrong", ""} {
		_, _, err := connect(t, "ssl://"+pwAddr, "wrong-pw", clientTLS(t, ca.CertFile, testutil.Issued{}), "collectord", pw)
		if !refusedAuth(err) {
			t.Errorf("password %q: %v, want refused", pw, err)
		}
	}
	checkClientCerts(t, secEnv{ca: ca, other: other, sensorURL: "ssl://" + certAddr, apis: []string{api}})

	if _, _, err := connect(t, "ssl://"+certAddr, "sR", clientTLS(t, ca.CertFile, sR), "", ""); err == nil {
		t.Error("sR, revoked in the CRL: connected, want refused")
	}

	// use_username_as_clientid: a sensor's client id is its certificate's
	// CN, whatever it asks for, so that another sensor that asks for the
	// same id does not take over its connection. mosquitto closes the
	// session a new CONNECT takes over before its CONNACK, so sA publishing
	// after s9's CONNACK shows that sA's connection is still there.
	sC, sCLost, err := connect(t, "ssl://"+certAddr, "peerwatch-sC", clientTLS(t, ca.CertFile, ca.Client(t, "sC")), "", "")
	if err != nil {
		t.Fatalf("sC connect: %v", err)
	}
	if _, _, err := connect(t, "ssl://"+certAddr, "peerwatch-sC", clientTLS(t, ca.CertFile, ca.Client(t, "s9")), "", ""); err != nil {
		t.Fatalf("s9 asking for sC's client id: %v, want connected (under its own)", err)
	}
	status := uplink.Topic("", "sC", uplink.KindStatus)
	if tok := sC.Publish(status, 1, true, []byte(`{"state":"online"}`)); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Errorf("sC publishing after s9 asked for its client id: %v", tok.Error())
	}
	select {
	case <-sCLost:
		t.Error("sC's connection was taken over by s9 asking for its client id")
	default:
	}

	// Gap repair: the collectors' account writes the resend requests; a
	// sensor reads only its own and writes none.
	colClient, _, err := connect(t, "ssl://"+pwAddr, "collectord-resend", clientTLS(t, ca.CertFile, testutil.Issued{}), "collectord", password)
	if err != nil {
		t.Fatal(err)
	}
	checkResendACL(t, "ssl://"+certAddr, func(id string) *tls.Config { return clientTLS(t, ca.CertFile, ca.Client(t, id)) },
		func(topic string, payload []byte) {
			if tok := colClient.Publish(topic, 1, true, payload); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
				t.Fatalf("the collectors' account publishing %s: %v", topic, tok.Error())
			}
		})

	// Load sharing: a second collector joins the group.
	colCfg.ClientID = "collectord-2" // the default is per host: one persistent session
	_, api2 := startDaemon(t, colCfg)
	const n = 10
	s2 := ca.Client(t, "s2")
	startSensor(t, uplink.Config{Broker: "ssl://" + certAddr, SensorID: "s2", CAFile: ca.CertFile,
		CertFile: s2.CertFile, KeyFile: s2.KeyFile}, n)
	waitFor(t, fmt.Sprintf("%d summaries of s2 over the two collectors", n), 15*time.Second, func() bool {
		return sensorSummaries(t, api, "s2")+sensorSummaries(t, api2, "s2") >= n
	})
	got := []uint64{sensorSummaries(t, api, "s2"), sensorSummaries(t, api2, "s2")}
	t.Logf("s2's summaries per collector: %v", got)
	if got[0]+got[1] != n || slices.Contains(got, 0) {
		t.Errorf("s2's summaries per collector %v: want %d in all, some at each", got, n)
	}
	// Every member of the group knows that s2 is online: its status,
	// live for these two, and retained for a third that joins later
	// (brokers send no retained messages to a shared subscription).
	colCfg.ClientID = "collectord-3"
	_, api3 := startDaemon(t, colCfg)
	for _, a := range []string{api, api2, api3} {
		waitFor(t, "s2 online at "+a, 10*time.Second, func() bool {
			var sensors struct{ Sensors []collector.SensorState }
			getJSON(t, a+"/sensors", &sensors)
			for _, st := range sensors.Sensors {
				if st.ID == "s2" {
					return st.HasStatus && st.Online
				}
			}
			return false
		})
	}
}

func TestSecurityConfig(t *testing.T) {
	dir := t.TempDir()
	ca := testutil.NewCA(t, dir, "fleet")
	srv := ca.Server(t, "broker")
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"key without cert", Config{EmbeddedBroker: ":0", EmbeddedSecurity: EmbeddedSecurity{KeyFile: srv.KeyFile}}, "certificate and key: want both"},
		{"client CA without TLS", Config{EmbeddedBroker: ":0", EmbeddedSecurity: EmbeddedSecurity{ClientCAFile: ca.CertFile}}, "needs the broker's own certificate"},
		{"readers without auth", Config{EmbeddedBroker: ":0", EmbeddedSecurity: EmbeddedSecurity{Readers: []string{"c"}}}, "readers: need a client CA or a password file"},
		{"embedded flags with --broker", Config{Broker: "tcp://b:1883", EmbeddedSecurity: EmbeddedSecurity{PasswordFile: "p"}}, "need --embedded-broker"},
		{"broker flags with embedded", Config{EmbeddedBroker: ":0", SubscriberSecurity: SubscriberSecurity{CAFile: "ca"}}, "need --broker"},
		{"CA with tcp://", Config{Broker: "tcp://b:1883", SubscriberSecurity: SubscriberSecurity{CAFile: ca.CertFile}}, "needs TLS: ssl://"},
		{"user without password", Config{Broker: "ssl://b:8883", SubscriberSecurity: SubscriberSecurity{Username: "u"}}, "username and password file: want both"},
		{"broker cert without key", Config{Broker: "ssl://b:8883", SubscriberSecurity: SubscriberSecurity{CertFile: "c"}}, "client certificate and key: want both"},
	} {
		if _, err := New(tc.cfg, nil); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want ErrConfig with %q", tc.name, err, tc.want)
		}
	}
	// Bad files: the error names the file and line.
	badPW := filepath.Join(dir, "passwd")
	if err := os.WriteFile(badPW, []byte("# sensors\nsA:plain\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := New(Config{EmbeddedBroker: ":0", EmbeddedSecurity: EmbeddedSecurity{PasswordFile: badPW}}, nil)
	if !errors.Is(err, brokerauth.ErrFile) || !strings.Contains(err.Error(), badPW+":2: user \"sA\": not a hash") {
		t.Errorf("bad password file: %v", err)
	}
	badCA := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(badCA, []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = New(Config{EmbeddedBroker: ":0", EmbeddedSecurity: EmbeddedSecurity{CertFile: srv.CertFile, KeyFile: srv.KeyFile, ClientCAFile: badCA}}, nil)
	if !errors.Is(err, brokerauth.ErrFile) || !strings.Contains(err.Error(), "client CA "+badCA+":1: certificate 1:") {
		t.Errorf("bad client CA: %v", err)
	}
	_, err = New(Config{Broker: "ssl://b:8883", SubscriberSecurity: SubscriberSecurity{Username: "u", PasswordFile: filepath.Join(dir, "none")}}, nil)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "none")) {
		t.Errorf("missing password file: %v", err)
	}
}

// TestDocCerts runs the openssl script of docs/broker.md and serves the
// embedded broker with its files: sensor akl-ix-01's certificate gets its
// summary to the collector, and wlg-ix-01's may not publish as akl-ix-01.
func TestDocCerts(t *testing.T) {
	testutil.RequireNative(t)
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skipf("openssl not installed: %v", err)
	}
	dir := t.TempDir()
	cmd := exec.Command("bash", "-c", docBlock(t, "script: make-certs.sh"))
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make-certs.sh: %v\n%s", err, out)
	}
	f := func(name string) string { return filepath.Join(dir, name) }
	addr := testutil.FreeAddr(t)
	d, api := startDaemon(t, Config{EmbeddedBroker: addr, EmbeddedSecurity: EmbeddedSecurity{
		CertFile: f("broker.crt"), KeyFile: f("broker.key"), ClientCAFile: f("ca.crt")}})
	sensorTLS := func(id string) *tls.Config {
		tc := clientTLS(t, f("ca.crt"), testutil.Issued{CertFile: f(id + ".crt"), KeyFile: f(id + ".key")})
		tc.ServerName = "mqtt.example.net" // the script's host; the test dials 127.0.0.1
		return tc
	}
	c, _, err := connect(t, "ssl://"+addr, "akl", sensorTLS("akl-ix-01"), "", "")
	if err != nil {
		t.Fatalf("akl-ix-01: %v", err)
	}
	s := testSummary(t, "akl-ix-01", 1, time.Now().UTC())
	if tok := c.Publish(uplink.Topic("", "akl-ix-01", uplink.KindSummary), 1, false, encode(t, s)); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
	waitFor(t, "akl-ix-01's summary", 10*time.Second, func() bool { return sensorSummaries(t, api, "akl-ix-01") == 1 })
	w, lost, err := connect(t, "ssl://"+addr, "wlg", sensorTLS("wlg-ix-01"), "", "")
	if err != nil {
		t.Fatalf("wlg-ix-01: %v", err)
	}
	w.Publish(uplink.Topic("", "akl-ix-01", uplink.KindSummary), 1, false, encode(t, testSummary(t, "akl-ix-01", 2, time.Now().UTC())))
	select {
	case <-lost:
	case <-time.After(10 * time.Second):
		t.Fatal("wlg-ix-01 publishing as akl-ix-01: not disconnected")
	}
	if got := sensorSummaries(t, api, "akl-ix-01"); got != 1 {
		t.Errorf("akl-ix-01: %d summaries, want 1", got)
	}
	if got := d.BrokerRefusals().PublishesDenied; got != 1 {
		t.Errorf("%d publishes denied, want 1", got)
	}

	// revoke.sh revokes wlg-ix-01; a broker with its CRL refuses it and
	// still lets akl-ix-01 in.
	cmd = exec.Command("bash", "-c", docBlock(t, "script: revoke.sh"))
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("revoke.sh: %v\n%s", err, out)
	}
	addr = testutil.FreeAddr(t)
	startDaemon(t, Config{EmbeddedBroker: addr, EmbeddedSecurity: EmbeddedSecurity{
		CertFile: f("broker.crt"), KeyFile: f("broker.key"), ClientCAFile: f("ca.crt"), CRLFile: f("ca.crl")}})
	if _, _, err := connect(t, "ssl://"+addr, "akl-2", sensorTLS("akl-ix-01"), "", ""); err != nil {
		t.Errorf("akl-ix-01 with the CRL: %v", err)
	}
	if _, _, err := connect(t, "ssl://"+addr, "wlg-2", sensorTLS("wlg-ix-01"), "", ""); err == nil {
		t.Error("wlg-ix-01, revoked by revoke.sh: connected, want refused")
	}
}

// TestEmbeddedBrokerCertAndPassword: with a client CA and a password file,
// a client needs both, and its username must be its certificate's CN.
func TestEmbeddedBrokerCertAndPassword(t *testing.T) {
	dir := t.TempDir()
	ca := testutil.NewCA(t, dir, "fleet")
	srv := ca.Server(t, "broker")
	addr := testutil.FreeAddr(t)
	d, _ := startDaemon(t, Config{EmbeddedBroker: addr, EmbeddedSecurity: EmbeddedSecurity{
		CertFile: srv.CertFile, KeyFile: srv.KeyFile, ClientCAFile: ca.CertFile, PasswordFile: "../brokerauth/testdata/passwd"}})
	alice := clientTLS(t, ca.CertFile, ca.Client(t, "alice"))
	url := "ssl://" + addr
	for _, tc := range []struct {
		user, pass string
		ok         bool
	}{
		{"alice", "secret", true},
		{"alice", "wrong", false},
		{"carol", "secret", false}, // carol's password, alice's certificate
		{"", "", false},
	} {
		_, _, err := connect(t, url, "alice-"+tc.user+"-"+tc.pass, alice, tc.user, tc.pass)
		if tc.ok && err != nil || !tc.ok && !refusedAuth(err) {
			t.Errorf("alice's certificate, user %q password %q: %v, want ok %v", tc.user, tc.pass, err, tc.ok)
		}
	}
	if _, _, err := connect(t, url, "no-cert", clientTLS(t, ca.CertFile, testutil.Issued{}), "alice", "secret"); err == nil {
		t.Error("password without a certificate: connected, want refused")
	}
	if got, want := d.BrokerRefusals(), (brokerauth.Stats{ConnectsRefused: 3}); got != want {
		t.Errorf("broker refusals %+v, want %+v", got, want)
	}
}

// TestEmbeddedBrokerConnectTimeout: a client that connects and sends
// nothing (no TLS handshake, no CONNECT) is cut after connectTimeout.
func TestEmbeddedBrokerConnectTimeout(t *testing.T) {
	old := connectTimeout
	connectTimeout = 300 * time.Millisecond
	t.Cleanup(func() { connectTimeout = old })
	dir := t.TempDir()
	ca := testutil.NewCA(t, dir, "fleet")
	srv := ca.Server(t, "broker")
	for _, cfg := range []Config{
		{EmbeddedBroker: testutil.FreeAddr(t)},
		{EmbeddedBroker: testutil.FreeAddr(t), EmbeddedSecurity: EmbeddedSecurity{CertFile: srv.CertFile, KeyFile: srv.KeyFile, ClientCAFile: ca.CertFile}},
	} {
		var logs syncBuffer
		d, err := New(cfg, slog.New(slog.NewTextHandler(&logs, nil)))
		if err != nil {
			t.Fatal(err)
		}
		apiLn, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- d.Run(ctx, apiLn) }()
		waitFor(t, "the embedded broker", 10*time.Second, d.Subscribed)

		c, err := net.Dial("tcp", cfg.EmbeddedBroker)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		_ = c.SetReadDeadline(start.Add(5 * time.Second))
		_, err = c.Read(make([]byte, 1))
		took := time.Since(start)
		c.Close()
		t.Logf("tls %v: silent client: %v after %v", cfg.EmbeddedSecurity.CertFile != "", err, took)
		if err == nil || took >= 5*time.Second {
			t.Errorf("tls %v: silent client: read %v after %v, want closed after %v", cfg.EmbeddedSecurity.CertFile != "", err, took, connectTimeout)
		}
		// mochi logs the failed connection once it is done with it; stopping
		// the broker before would race with its bookkeeping.
		waitFor(t, "mochi done with the connection", 5*time.Second, func() bool { return logs.count("read connection") == 1 })
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
}

// TestEmbeddedBrokerCRL: with --embedded-crl, a revoked client certificate
// is refused at the TLS handshake, the others are not, and a new CRL takes
// effect at the next connection without a restart.
func TestEmbeddedBrokerCRL(t *testing.T) {
	dir := t.TempDir()
	ca := testutil.NewCA(t, dir, "fleet")
	srv := ca.Server(t, "broker")
	sA, sB := ca.Client(t, "sA"), ca.Client(t, "sB")
	crl := filepath.Join(dir, "fleet.crl")
	ca.WriteCRL(t, crl, sB)
	addr := testutil.FreeAddr(t)
	startDaemon(t, Config{EmbeddedBroker: addr, EmbeddedSecurity: EmbeddedSecurity{
		CertFile: srv.CertFile, KeyFile: srv.KeyFile, ClientCAFile: ca.CertFile, CRLFile: crl}})
	url := "ssl://" + addr
	// Under TLS 1.2 the server's refusal ends the handshake, so the client
	// sees its alert (under 1.3 it may come after the client sent CONNECT).
	tls12 := func(is testutil.Issued) *tls.Config {
		tc := clientTLS(t, ca.CertFile, is)
		tc.MaxVersion = tls.VersionTLS12
		return tc
	}
	a, aLost, err := connect(t, url, "sA", tls12(sA), "", "")
	if err != nil {
		t.Fatalf("sA (not revoked): %v", err)
	}
	if _, _, err := connect(t, url, "sB", tls12(sB), "", ""); err == nil || !strings.Contains(err.Error(), "tls: bad certificate") {
		t.Errorf("sB (revoked): %v, want refused at the handshake (bad certificate)", err)
	}
	if _, _, err := connect(t, url, "sB-tls13", clientTLS(t, ca.CertFile, sB), "", ""); err == nil {
		t.Error("sB (revoked) over TLS 1.3: connected, want refused")
	}

	// sA revoked too: its next connection is refused; the one it holds
	// stays until it ends (a CRL is checked at the handshake).
	ca.WriteCRL(t, crl, sA, sB)
	if _, _, err := connect(t, url, "sA-again", tls12(sA), "", ""); err == nil || !strings.Contains(err.Error(), "tls: bad certificate") {
		t.Errorf("sA after the new CRL: %v, want refused", err)
	}
	select {
	case <-aLost:
		t.Error("sA's open connection was closed by the new CRL")
	default:
	}
	a.Disconnect(0)

	// A CRL that no longer reads keeps the last good list in force.
	if err := os.WriteFile(crl, []byte("garbage\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := connect(t, url, "sA-garbage", tls12(sA), "", ""); err == nil {
		t.Error("sA with an unreadable CRL: connected, want the previous list (sA revoked) in force")
	}
	if _, _, err := connect(t, url, "s9", tls12(ca.Client(t, "s9")), "", ""); err != nil {
		t.Errorf("s9 (never revoked) with an unreadable CRL: %v", err)
	}
}
