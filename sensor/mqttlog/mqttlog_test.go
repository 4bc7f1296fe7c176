package mqttlog

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

func TestRoute(t *testing.T) {
	var buf bytes.Buffer
	Route(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})))
	mqtt.ERROR.Println("[client]", "connection lost")
	mqtt.WARN.Printf("[store] %d messages", 3)
	mqtt.DEBUG.Println("[net] below the level")
	got := buf.String()
	for _, want := range []string{
		`level=ERROR msg="[client] connection lost" lib=paho`,
		`level=WARN msg="[store] 3 messages" lib=paho`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("log lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "below the level") {
		t.Errorf("a debug line was logged at level info:\n%s", got)
	}
}
