// Package mqttlog routes the log lines of the paho MQTT client, which
// sensord's uplink and collectord's subscriber use, into slog.
package mqttlog

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// paho's loggers are package variables that paho's goroutines read
// without synchronisation, so they are set once, at init (before any
// client runs), to adapters that write to the logger given to Route last
// (nothing until then).
var pahoLog atomic.Pointer[slog.Logger]

func init() {
	mqtt.ERROR = pahoLogger{slog.LevelError}
	mqtt.CRITICAL = pahoLogger{slog.LevelError + 4}
	mqtt.WARN = pahoLogger{slog.LevelWarn}
	mqtt.DEBUG = pahoLogger{slog.LevelDebug}
}

// Route sends paho's log lines to log (with lib=paho), from now on: the
// newest caller's logger gets them.
func Route(log *slog.Logger) { pahoLog.Store(log.With("lib", "paho")) }

// pahoLogger adapts slog to paho's Logger.
type pahoLogger struct{ level slog.Level }

func (l pahoLogger) Println(v ...any) {
	if log := l.logger(); log != nil {
		log.Log(context.Background(), l.level, strings.TrimSuffix(fmt.Sprintln(v...), "\n"))
	}
}

func (l pahoLogger) Printf(format string, v ...any) {
	if log := l.logger(); log != nil {
		log.Log(context.Background(), l.level, fmt.Sprintf(format, v...))
	}
}

// logger returns the logger when it logs at l's level, or nil.
func (l pahoLogger) logger() *slog.Logger {
	log := pahoLog.Load()
	if log == nil || !log.Enabled(context.Background(), l.level) {
		return nil
	}
	return log
}
