package uplink

import (
	"strings"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
)

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
