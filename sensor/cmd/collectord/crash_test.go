package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/peerwatch/peerwatch/internal/testutil"
	"github.com/peerwatch/peerwatch/sensor/collector"
	"github.com/peerwatch/peerwatch/sensor/collectord"
	"github.com/peerwatch/peerwatch/sensor/store"
	"github.com/peerwatch/peerwatch/sensor/summary"
	"github.com/peerwatch/peerwatch/sensor/traffic"
	"github.com/peerwatch/peerwatch/sensor/uplink"
)

// childEnv makes the test binary run collectord (run with its arguments)
// instead of the tests: the crash test kills that process with SIGKILL.
const childEnv = "PEERWATCH_TEST_COLLECTORD_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		err := run(ctx, os.Args[1:])
		stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, "collectord:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// child is one collectord process.
type child struct {
	cmd    *exec.Cmd
	out    *testutil.SyncBuffer
	exited chan struct{}
}

func startChild(t *testing.T, args []string, logs *[]*testutil.SyncBuffer) *child {
	t.Helper()
	c := &child{cmd: exec.Command(os.Args[0], args...), out: new(testutil.SyncBuffer), exited: make(chan struct{})}
	c.cmd.Env = append(os.Environ(), childEnv+"=1")
	c.cmd.Stdout, c.cmd.Stderr = c.out, c.out
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	*logs = append(*logs, c.out)
	go func() { _ = c.cmd.Wait(); close(c.exited) }()
	t.Cleanup(func() { c.stop(syscall.SIGKILL) })
	return c
}

// stop sends sig and waits for the process to end.
func (c *child) stop(sig syscall.Signal) {
	select {
	case <-c.exited:
		return
	default:
	}
	_ = c.cmd.Process.Signal(sig)
	<-c.exited
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var client = &http.Client{Timeout: 2 * time.Second}

// get decodes the API's answer at path; false while collectord is down.
func get(api, path string, v any) bool {
	resp, err := client.Get("http://" + api + "/api/v1" + path)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	return resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(v) == nil
}

func sensors(api string) map[string]collector.SensorState {
	var resp struct{ Sensors []collector.SensorState }
	if !get(api, "/sensors", &resp) {
		return nil
	}
	out := map[string]collector.SensorState{}
	for _, s := range resp.Sensors {
		out[s.ID] = s
	}
	return out
}

// testSummary is a consistent summary of 200 prefixes for (id, seq).
func testSummary(id string, seq uint64, end time.Time) *summary.Summary {
	s := &summary.Summary{Schema: summary.SchemaVersion, Sensor: id, Seq: seq, Start: end.Add(-time.Minute), End: end}
	byCountry := map[string]traffic.Counters{}
	for i := range 200 {
		k := uint64(i%13) + seq + uint64(len(id))
		c := traffic.Counters{Packets: [2]uint64{k, 3 * k}, Bytes: [2]uint64{90 * k, 400 * k}}
		c.Class[traffic.UDP] = 4 * k
		cc := []string{"KP", "NZ", "AU"}[i%3]
		s.Prefixes = append(s.Prefixes, summary.PrefixCount{Prefix: netipPrefix(i), Country: cc, ASN: 64500, Counters: c})
		s.Remote.Add(c)
		x := byCountry[cc]
		x.Add(c)
		byCountry[cc] = x
	}
	for cc, c := range byCountry {
		s.Countries = append(s.Countries, summary.CountryCount{Country: cc, Counters: c})
	}
	s.ASes = []summary.ASCount{{ASN: 64500, Counters: s.Remote}}
	s.Globals = traffic.Globals{Malformed: seq, Seen: s.Remote.Total() + seq}
	s.Sort()
	return s
}

var replayedRE = regexp.MustCompile(`msg="store loaded".* journal_replayed=(\d+) journal_skipped=(\d+)`)

// TestCrashRecovery runs collectord as a process, with the embedded broker
// or with mosquitto, while three sensors (uplinks from real sensor stores)
// publish; it kills collectord with SIGKILL at several points and restarts
// it. At the end the collector holds every (sensor, seq) exactly once and
// the fleet totals equal the totals sent.
func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		// It re-executes the test binary as collectord, which under
		// make test-arm64 is an arm64 binary qemu runs only for the parent.
		t.Skip("starts collectord processes and brokers: not in -short")
	}
	for _, mode := range []string{"embedded", "mosquitto"} {
		t.Run(mode, func(t *testing.T) { crashRecovery(t, mode) })
	}
}

func crashRecovery(t *testing.T, mode string) {
	dir, api := t.TempDir(), testutil.FreeAddr(t)
	args := []string{"--listen", api, "--data-dir", dir, "--flush-interval", "200ms", "--sync", "always"}
	var broker string
	if mode == "embedded" {
		broker = testutil.FreeAddr(t)
		args = append(args, "--embedded-broker", broker)
	} else {
		broker = testutil.Mosquitto(t, "max_queued_messages 10000\n")
		args = append(args, "--broker", "tcp://"+broker, "--client-id", "crash-test")
	}
	var logs []*testutil.SyncBuffer
	defer func() {
		if t.Failed() {
			for i, l := range logs {
				t.Logf("collectord run %d:\n%s", i+1, l.String())
			}
		}
	}()
	c := startChild(t, args, &logs)
	// Ready when a probe's status message arrives: the subscription (or
	// the broker) is in place, so nothing the sensors publish is missed.
	probe := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tcp://" + broker).SetClientID("probe").SetConnectRetry(true).SetConnectRetryInterval(50 * time.Millisecond))
	if tok := probe.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("probe connect: %v", tok.Error())
	}
	waitFor(t, "collectord ready", 15*time.Second, func() bool {
		probe.Publish("peerwatch/probe/status", 1, false, `{"state":"online"}`).WaitTimeout(time.Second)
		_, ok := sensors(api)["probe"]
		return ok
	})
	probe.Disconnect(50)

	ids := []string{"s1", "s2", "s3"}
	outbox := map[string]*store.Store{}
	for _, id := range ids {
		st, err := store.Open(filepath.Join(t.TempDir(), "sensor.db"), store.Options{Sync: store.SyncNever}, nil)
		if err != nil {
			t.Fatal(err)
		}
		outbox[id] = st
		up := uplink.New(uplink.Config{Broker: "tcp://" + broker, SensorID: id, Poll: 20 * time.Millisecond,
			MaxBackoff: 200 * time.Millisecond, PublishTimeout: time.Second}, st, nil)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { _ = up.Run(ctx); close(done) }()
		t.Cleanup(func() { cancel(); <-done; st.Close() })
	}

	const rounds, perRound = 6, 8
	total := uint64(rounds * perRound)
	now := time.Now().UTC()
	var want summary.Summary
	received := func() uint64 {
		var n uint64
		for _, id := range ids {
			n += sensors(api)[id].Summaries
		}
		return n
	}
	// Where each round kills: after a part of its summaries arrived
	// (journal records pending), right after the restart (during or just
	// after the replay), after a flush, while the sensors publish.
	kills := []func(sent uint64){
		func(sent uint64) {
			waitFor(t, "some summaries", 20*time.Second, func() bool { return received() > sent-perRound*3/2 })
		},
		func(sent uint64) {
			waitFor(t, "the round's summaries", 20*time.Second, func() bool { return received() >= sent })
		},
		func(uint64) {},
		func(sent uint64) {
			waitFor(t, "the round's summaries", 20*time.Second, func() bool { return received() >= sent })
			time.Sleep(300 * time.Millisecond) // a flush interval and more: the journal is empty
		},
		func(sent uint64) {
			waitFor(t, "one summary", 20*time.Second, func() bool { return received() > sent-perRound*3 })
		},
		func(sent uint64) { time.Sleep(30 * time.Millisecond) },
	}
	var seq uint64
	for r := range rounds {
		for range perRound {
			seq++
			for _, id := range ids {
				s := testSummary(id, seq, now.Add(-time.Duration(total+1-seq)*time.Minute))
				want.Merge(s)
				p, err := summary.Encode(s, summary.EncodeOptions{})
				if err != nil {
					t.Fatal(err)
				}
				if err := outbox[id].Enqueue(uplink.Topic("", id, uplink.KindSummary), p, seq); err != nil {
					t.Fatal(err)
				}
			}
		}
		kills[r](seq * uint64(len(ids)))
		got := received()
		c.stop(syscall.SIGKILL)
		t.Logf("round %d: SIGKILL with about %d of the %d summaries sent so far received", r+1, got, seq*uint64(len(ids)))
		c = startChild(t, args, &logs)
		waitFor(t, "the API", 15*time.Second, func() bool { return sensors(api) != nil })
	}

	defer func() {
		if t.Failed() {
			for id, s := range sensors(api) {
				t.Logf("sensor %s: %d summaries, last seq %d, gaps %v, duplicates %d", id, s.Summaries, s.LastSeq, s.Gaps, s.Duplicates)
			}
		}
	}()
	waitFor(t, "every summary", 30*time.Second, func() bool {
		s := sensors(api)
		for _, id := range ids {
			if s[id].Summaries != total {
				return false
			}
		}
		return true
	})
	check := func(when string) {
		t.Helper()
		for _, id := range ids {
			s := sensors(api)[id]
			if s.Summaries != total || s.LastSeq != total || len(s.Gaps) != 0 {
				t.Errorf("%s: sensor %s: %d summaries, last seq %d, gaps %v; want %d, %d, none", when, id, s.Summaries, s.LastSeq, s.Gaps, total, total)
			}
		}
		var top collectord.TopResponse
		if !get(api, "/top?by=prefix&window=1h", &top) {
			t.Fatalf("%s: no answer from /top", when)
		}
		if top.Remote != want.Remote || top.Globals != want.Globals {
			t.Errorf("%s: totals %+v %+v, want %+v %+v", when, top.Remote, top.Globals, want.Remote, want.Globals)
		}
	}
	check("after the crashes")
	var dupes uint64
	for _, id := range ids {
		dupes += sensors(api)[id].Duplicates
	}

	// Stop gracefully, start again: the same.
	c.stop(syscall.SIGTERM)
	if code := c.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("collectord exited with %d after SIGTERM", code)
	}
	startChild(t, args, &logs)
	waitFor(t, "the API", 15*time.Second, func() bool { return sensors(api) != nil })
	check("after a graceful restart")

	replayed, skipped := 0, 0
	var each []string
	for i, l := range logs {
		if strings.Contains(l.String(), "store file damaged") {
			t.Errorf("run %d found the store damaged after a SIGKILL: a kill must leave at most an unfinished write at the end", i+1)
		}
		if m := replayedRE.FindStringSubmatch(l.String()); m != nil {
			a, _ := strconv.Atoi(m[1])
			b, _ := strconv.Atoi(m[2])
			replayed += a
			skipped += b
			each = append(each, m[1]+"/"+m[2])
		}
	}
	t.Logf("journal records replayed/skipped at each start: %s", strings.Join(each, " "))
	if len(each) != rounds+1 || each[len(each)-1] != "0/0" {
		t.Errorf("%d starts logged, the last replayed %q: want %d (all but the first), and nothing left to replay after SIGTERM", len(each), each[len(each)-1], rounds+1)
	}
	t.Logf("%d summaries from 3 sensors, %d restarts after SIGKILL: %d journal records replayed, %d skipped as already counted, %d duplicates dropped",
		total*3, rounds, replayed, skipped, dupes)
	if replayed == 0 {
		t.Errorf("no kill left journal records to replay: the test did not exercise the journal")
	}
}

func netipPrefix(i int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{175, 45, byte(i >> 8), byte(i)}), 32)
}
