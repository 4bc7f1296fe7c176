package daemon_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/peerwatch/peerwatch/internal/testutil"
	"github.com/peerwatch/peerwatch/sensor/summary"
)

// received collects what the broker saw on the sensor's topics.
type received struct {
	mu        sync.Mutex
	seqs      map[uint64]bool
	packets   uint64
	status    string
	rejected  []error
	summaries int
	first     map[uint64][]byte   // the payload of each seq as first received
	again     map[uint64][][]byte // payloads received again
	lost      []string            // lost reports (gap repair)
}

func (r *received) add(topic string, payload []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case strings.HasSuffix(topic, "/summary"):
		s, err := summary.Decode(payload, summary.Limits{})
		if err != nil {
			r.rejected = append(r.rejected, err)
			return
		}
		r.summaries++
		if r.seqs[s.Seq] { // a QoS 1 redelivery or a resend: the collector drops it
			r.again[s.Seq] = append(r.again[s.Seq], append([]byte(nil), payload...))
			return
		}
		r.seqs[s.Seq] = true
		r.first[s.Seq] = append([]byte(nil), payload...)
		r.packets += s.Remote.Total()
	case strings.HasSuffix(topic, "/status"):
		r.status = string(payload)
	case strings.HasSuffix(topic, "/lost"):
		r.lost = append(r.lost, string(payload))
	}
}

func (r *received) snapshot() (uint64, int, string, []error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.packets, len(r.seqs), r.status, append([]error(nil), r.rejected...)
}

// TestNetnsSensordUplink runs sensord with an MQTT broker in its namespace
// (the embedded mochi broker, as collectord will run it): every summary
// arrives, decodes strictly, and the remote packets they carry add up to
// what was sent. Then a retained resend request (gap repair) for three of
// its summaries and a seq it never made: sensord sends the three again from
// its store, byte for byte as the first time, and reports the other lost.
func TestNetnsSensordUplink(t *testing.T) {
	testutil.RequireBPF(t)
	dir := t.TempDir()
	sensord := testutil.Build(t, dir, "sensor/cmd/sensord")
	peer, sensor := testutil.NewNamespace(t), testutil.NewNamespace(t)
	testutil.Veth(t, peer, "pw-peer", sensor, "pw-sensor")
	from := testutil.NewSender(t, peer, "pw-peer")

	// The broker listens inside the sensor's namespace.
	var ln net.Listener
	if err := sensor.Do(func() (err error) { ln, err = net.Listen("tcp", "127.0.0.1:0"); return err }); err != nil {
		t.Fatal(err)
	}
	got := &received{seqs: map[uint64]bool{}, first: map[uint64][]byte{}, again: map[uint64][][]byte{}}
	broker := mochi.New(&mochi.Options{InlineClient: true, Logger: slog.New(slog.DiscardHandler)})
	if err := broker.AddHook(new(auth.AllowHook), nil); err != nil {
		t.Fatal(err)
	}
	if err := broker.AddListener(listeners.NewNet("ns", ln)); err != nil {
		t.Fatal(err)
	}
	if err := broker.Subscribe("peerwatch/#", 1, func(_ *mochi.Client, _ packets.Subscription, pk packets.Packet) {
		got.add(pk.TopicName, pk.Payload)
	}); err != nil {
		t.Fatal(err)
	}
	if err := broker.Serve(); err != nil {
		t.Fatal(err)
	}
	defer broker.Close()

	cfg := filepath.Join(dir, "sensord.yaml")
	err := os.WriteFile(cfg, []byte(fmt.Sprintf(`
sensor: {id: up-1}
data_dir: %[1]s
bpffs_dir: %[2]s
interfaces: [{name: pw-sensor}]
local_prefixes: ["192.0.2.0/24"]
tables:
  - {name: country, format: ip-location-country, files: [%[3]s/geo-whois-asn-country-ipv4.csv.gz]}
drain: {interval: 1s}
http: {listen: "127.0.0.1:19102"}
uplink: {broker: "tcp://%[4]s"}
`, dir, testutil.PinDir(t), ipdb, ln.Addr())), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	startSensord(t, sensor, sensord, cfg, dir)

	// Wait until sensord is online at the broker.
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, _, status, _ := got.snapshot(); strings.Contains(status, `"online"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("sensord did not come online at the broker within 60 s")
		}
		time.Sleep(200 * time.Millisecond)
	}

	var frames [][]byte
	for i := range 300 {
		src := netip.AddrFrom4([4]byte{175, 45, 176, byte(i % 4)}) // KP
		if i%3 == 0 {
			src = netip.MustParseAddr("202.36.5.5") // NZ
		}
		frames = append(frames, testutil.Frame{Src: src, Dst: netip.MustParseAddr("192.0.2.1")}.Bytes(t))
	}
	if err := from.SendPaced(frames, 64); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(30 * time.Second)
	for {
		packets, seqs, _, rejected := got.snapshot()
		if len(rejected) > 0 {
			t.Fatalf("the broker got summaries that do not decode: %v", rejected)
		}
		if packets == uint64(len(frames)) {
			t.Logf("%d summaries carried the %d packets sent", seqs, packets)
			break
		}
		if packets > uint64(len(frames)) || time.Now().After(deadline) {
			t.Fatalf("summaries at the broker carry %d remote packets, %d were sent", packets, len(frames))
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Gap repair: ask for the three lowest seqs and one never made.
	deadline = time.Now().Add(30 * time.Second)
	for _, seqs, _, _ := got.snapshot(); seqs < 3; _, seqs, _, _ = got.snapshot() {
		if time.Now().After(deadline) {
			t.Fatalf("%d summaries after 30 s, want 3", seqs)
		}
		time.Sleep(100 * time.Millisecond) // sensord drains every second
	}
	got.mu.Lock()
	var asked []uint64
	for seq := range got.first {
		asked = append(asked, seq)
	}
	got.mu.Unlock()
	slices.Sort(asked)
	if len(asked) < 3 {
		t.Fatalf("%d summaries, want at least 3", len(asked))
	}
	asked = asked[:3]
	const never = 1_000_000
	var ranges []summary.SeqRange
	for _, seq := range asked {
		if n := len(ranges); n > 0 && ranges[n-1].Last+1 == seq {
			ranges[n-1].Last = seq
		} else {
			ranges = append(ranges, summary.SeqRange{First: seq, Last: seq})
		}
	}
	ranges = append(ranges, summary.SeqRange{First: never, Last: never})
	req, err := summary.EncodeResendRequest(&summary.ResendRequest{Sensor: "up-1", Missing: ranges})
	if err != nil {
		t.Fatal(err)
	}
	if err := broker.Publish("peerwatch/up-1/resend", req, true, 1); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(30 * time.Second)
	for {
		got.mu.Lock()
		done := len(got.lost) == 1
		for _, seq := range asked {
			done = done && len(got.again[seq]) > 0
		}
		got.mu.Unlock()
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no answer to the resend request %s within 30 s", req)
		}
		time.Sleep(100 * time.Millisecond)
	}
	got.mu.Lock()
	defer got.mu.Unlock()
	for _, seq := range asked {
		for _, p := range got.again[seq] {
			if !bytes.Equal(p, got.first[seq]) {
				t.Errorf("seq %d sent again as %d bytes that differ from the %d first sent", seq, len(p), len(got.first[seq]))
			}
		}
	}
	if want := `{"sensor":"up-1","lost":[{"first":1000000,"last":1000000}]}`; got.lost[0] != want {
		t.Errorf("lost report %s, want %s", got.lost[0], want)
	}
	t.Logf("resent seqs %v byte for byte; lost report %s", asked, got.lost[0])
}
