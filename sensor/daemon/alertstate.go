package daemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/peerwatch/peerwatch/sensor/watch"
)

// alertState is what survives a restart of the alert engine: its learned
// baselines and active alerts, and the recent alerts.
type alertState struct {
	Engine json.RawMessage `json:"engine"`
	Recent []watch.Alert   `json:"recent"`
}

const alertStateFile = "alerts.json"

// saveAlerts writes the engine's state to dir atomically (write, sync,
// rename), so that a crash leaves the old file or the new one.
func saveAlerts(dir string, eng *watch.Engine) error {
	engine, err := eng.MarshalState()
	if err != nil {
		return fmt.Errorf("save alert state: %w", err)
	}
	b, err := json.Marshal(alertState{Engine: engine, Recent: eng.Recent(100)})
	if err != nil {
		return fmt.Errorf("save alert state: %w", err)
	}
	path := filepath.Join(dir, alertStateFile)
	tmp, err := os.CreateTemp(dir, alertStateFile+".tmp-*")
	if err != nil {
		return fmt.Errorf("save alert state: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(b)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("save alert state %s: %w", path, err)
	}
	return nil
}

// loadAlerts restores the engine's state from dir. A missing file is a
// fresh start; a damaged one is moved aside and reported, never used.
func loadAlerts(dir string, eng *watch.Engine) (recent []watch.Alert, err error) {
	path := filepath.Join(dir, alertStateFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read alert state: %w", err)
	}
	var st alertState
	if err = json.Unmarshal(b, &st); err == nil {
		err = eng.RestoreState(st.Engine)
	}
	if err != nil {
		aside := path + ".damaged"
		if rerr := os.Rename(path, aside); rerr != nil {
			return nil, fmt.Errorf("alert state %s is damaged (%v) and cannot be moved aside: %w", path, err, rerr)
		}
		return nil, fmt.Errorf("alert state %s is damaged, moved to %s, baselines start anew: %w", path, aside, err)
	}
	return st.Recent, nil
}
