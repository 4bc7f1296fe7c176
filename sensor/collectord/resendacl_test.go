package collectord

import (
	"crypto/tls"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/peerwatch/peerwatch/internal/testutil"
	"github.com/peerwatch/peerwatch/sensor/summary"
	"github.com/peerwatch/peerwatch/sensor/uplink"
)

// received keeps the payloads a client got on one topic.
type received struct {
	mu   sync.Mutex
	msgs []string
}

func (r *received) add(_ mqtt.Client, m mqtt.Message) {
	r.mu.Lock()
	r.msgs = append(r.msgs, string(m.Payload()))
	r.mu.Unlock()
}

func (r *received) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.msgs...)
}

// checkResendACL: with a retained resend request for sensor sB published by
// the collector (publishRequest), sB reads it from its resend topic;
// another sensor (sS) cannot read sB's resend topic (mochi refuses the
// subscription, mosquitto grants it and delivers nothing), and a sensor
// (sF) cannot publish a resend request, on its own topic or on sB's (mochi
// disconnects it, mosquitto drops the message): sB gets the collector's
// request and nothing else. Each identity holds one connection at a time
// (mosquitto's use_username_as_clientid makes the CN the client id).
func checkResendACL(t *testing.T, url string, tlsFor func(id string) *tls.Config, publishRequest func(topic string, payload []byte)) {
	sBTopic, sFTopic := uplink.Topic("", "sB", uplink.KindResend), uplink.Topic("", "sF", uplink.KindResend)
	req, err := summary.EncodeResendRequest(&summary.ResendRequest{Sensor: "sB", Missing: []summary.SeqRange{{First: 7, Last: 9}}})
	if err != nil {
		t.Fatal(err)
	}
	publishRequest(sBTopic, req)
	t.Cleanup(func() { publishRequest(sBTopic, nil) })

	sB, _, err := connect(t, url, "peerwatch-sB", tlsFor("sB"), "", "")
	if err != nil {
		t.Fatal(err)
	}
	var atB received
	if tok := sB.Subscribe(sBTopic, 1, atB.add); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("sB subscribing to its resend topic: %v", tok.Error())
	}
	waitFor(t, "sB's retained request", 5*time.Second, func() bool { return len(atB.all()) == 1 })

	spy, _, err := connect(t, url, "peerwatch-sS", tlsFor("sS"), "", "")
	if err != nil {
		t.Fatal(err)
	}
	var atSpy received
	tok := spy.Subscribe(sBTopic, 1, atSpy.add)
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("sS subscribing to sB's resend topic: %v", tok.Error())
	}
	granted := tok.(*mqtt.SubscribeToken).Result()[sBTopic]
	t.Logf("sS subscribing to sB's resend topic: granted %#x", granted)

	for _, topic := range []string{sFTopic, sBTopic} {
		forger, lost, err := connect(t, url, "peerwatch-sF", tlsFor("sF"), "", "")
		if err != nil {
			t.Fatal(err)
		}
		forged, _ := summary.EncodeResendRequest(&summary.ResendRequest{Sensor: "sB", Missing: []summary.SeqRange{{First: 1, Last: 1000}}})
		ptok := forger.Publish(topic, 1, true, forged)
		select { // mosquitto acknowledges and drops it; mochi disconnects
		case <-ptok.Done():
		case <-lost:
		case <-time.After(10 * time.Second):
			t.Fatalf("sF publishing on %s: neither PUBACK nor disconnect in 10s", topic)
		}
		forger.Disconnect(100)
	}
	// A fresh subscriber of sF's own resend topic would get a forged
	// retained request at once; sB's subscription would get the forgery.
	var own received
	sF, _, err := connect(t, url, "peerwatch-sF", tlsFor("sF"), "", "")
	if err != nil {
		t.Fatal(err)
	}
	if tok := sF.Subscribe(sFTopic, 1, own.add); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("sF subscribing to its own resend topic: %v", tok.Error())
	}
	publishRequest(sBTopic, req) // a marker: once sB has it again, the forgeries would be there too
	waitFor(t, "sB's second request", 5*time.Second, func() bool { return len(atB.all()) == 2 })
	if got := atB.all(); got[0] != string(req) || got[1] != string(req) {
		t.Errorf("sB got %q, want the collector's request twice and nothing else", got)
	}
	if got := atSpy.all(); len(got) > 0 {
		t.Errorf("sS read sB's resend topic: %q", got)
	}
	if got := own.all(); len(got) > 0 {
		t.Errorf("sF's own resend topic holds %q, want nothing (sF may not write it)", got)
	}
}

func TestEmbeddedBrokerResendACL(t *testing.T) {
	dir := t.TempDir()
	ca := testutil.NewCA(t, dir, "fleet")
	srv := ca.Server(t, "broker")
	addr := testutil.FreeAddr(t)
	d, _ := startDaemon(t, Config{EmbeddedBroker: addr, EmbeddedSecurity: EmbeddedSecurity{
		CertFile: srv.CertFile, KeyFile: srv.KeyFile, ClientCAFile: ca.CertFile}})
	tlsFor := func(id string) *tls.Config { return clientTLS(t, ca.CertFile, ca.Client(t, id)) }
	checkResendACL(t, "ssl://"+addr, tlsFor, func(topic string, payload []byte) {
		if err := d.broker.Load().Publish(topic, payload, true, 1); err != nil {
			t.Fatal(err)
		}
	})
	// sS's subscription to sB's topic and sF's two forged publishes.
	if got := d.BrokerRefusals(); got.PublishesDenied != 2 || got.SubscribesDenied < 1 {
		t.Errorf("broker refusals %+v, want 2 publishes and the subscription denied", got)
	}
}
