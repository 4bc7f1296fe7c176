package daemon

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/peerwatch/peerwatch/sensor/summary"
	"github.com/peerwatch/peerwatch/sensor/traffic"
	"github.com/peerwatch/peerwatch/sensor/watch"
)

func kpEngine() *watch.Engine {
	return watch.New([]watch.List{{Name: "kp", Countries: []string{"KP"}}}, []watch.Rule{{List: "kp", Any: true}}, nil)
}

func kpSummary(start time.Time, packets uint64) *summary.Summary {
	c := traffic.Counters{Packets: [2]uint64{packets, 0}, Bytes: [2]uint64{packets * 60, 0}, Class: [traffic.NumClasses]uint64{traffic.UDP: packets}}
	return &summary.Summary{
		Schema: summary.SchemaVersion, Start: start, End: start.Add(10 * time.Second),
		Globals: traffic.Globals{Seen: packets}, Remote: c,
		Countries: []summary.CountryCount{{Country: "KP", Counters: c}},
		ASes:      []summary.ASCount{{ASN: 131279, Counters: c}},
		Watch:     []summary.WatchCount{{List: "kp", Counters: c}},
	}
}

func TestAlertStateSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	t0 := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	eng := kpEngine()
	eng.Observe(kpSummary(t0, 5))
	if len(eng.Active()) != 1 {
		t.Fatalf("active alerts %v, want the kp alert", eng.Active())
	}
	if err := saveAlerts(dir, eng); err != nil {
		t.Fatal(err)
	}

	restarted := kpEngine()
	if _, err := loadAlerts(dir, restarted); err != nil {
		t.Fatal(err)
	}
	if got := restarted.Active(); len(got) != 1 || got[0].ID != eng.Active()[0].ID || got[0].Packets != 5 {
		t.Fatalf("after restart: active %+v", got)
	}
	restarted.Observe(kpSummary(t0.Add(10*time.Second), 7))
	if got := restarted.Active(); len(got) != 1 || got[0].Packets != 12 {
		t.Errorf("the restored alert did not go on: %+v", got)
	}
}

func TestAlertStateDamaged(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, alertStateFile), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := loadAlerts(dir, kpEngine())
	if err == nil || !strings.Contains(err.Error(), "moved to") {
		t.Fatalf("damaged state: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, alertStateFile+".damaged")); err != nil {
		t.Errorf("damaged state not kept aside: %v", err)
	}
	if _, err := loadAlerts(dir, kpEngine()); err != nil {
		t.Errorf("after moving aside, a fresh start: %v", err)
	}
}
