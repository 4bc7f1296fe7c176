package uplink

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
)

// paho's loggers are package variables that paho's goroutines read
// without synchronisation, so they are set once, at init (before any
// client runs), to adapters that write to the logger of the newest Uplink
// (nothing until there is one).
var pahoLog atomic.Pointer[slog.Logger]

func init() {
	mqtt.ERROR = pahoLogger{slog.LevelError}
	mqtt.CRITICAL = pahoLogger{slog.LevelError + 4}
	mqtt.WARN = pahoLogger{slog.LevelWarn}
	mqtt.DEBUG = pahoLogger{slog.LevelDebug}
}

func routePahoLogs(log *slog.Logger) { pahoLog.Store(log.With("lib", "paho")) }

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

// publishStore is paho's memory store without the outbound PUBLISH
// packets. The outbox is the source of truth: after a reconnect the uplink
// publishes the oldest unacknowledged item again itself, so paho must not
// resend its own copy too (that would add duplicates, and paho's resend
// path races with the old connection's writer).
type publishStore struct{ mqtt.Store }

func newPublishStore() publishStore { return publishStore{mqtt.NewMemoryStore()} }

func (s publishStore) Put(key string, m packets.ControlPacket) {
	if _, ok := m.(*packets.PublishPacket); ok && strings.HasPrefix(key, "o.") {
		return
	}
	s.Store.Put(key, m)
}
