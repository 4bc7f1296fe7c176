package collectord

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// The benchmark's load generator speaks MQTT 3.1.1 itself: paho copies
// each 74 KB payload into a packet buffer and runs a token per message,
// which cost about 0.8 ms of CPU per summary on the cores collectord
// shares with it. This writes each PUBLISH with one writev from the
// load's memory, so that what BenchmarkIngest measures is the collector.
// It is a client of the real brokers (mochi, mosquitto): nothing of the
// collector's side is replaced.

// rawWindow is how many PUBLISHes a connection has unacknowledged at most.
const rawWindow = 32

// rawConnect opens an MQTT 3.1.1 connection with a clean session and
// waits for the broker's CONNACK.
func rawConnect(addr, clientID string) (net.Conn, *bufio.Reader, error) {
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, nil, err
	}
	// Variable header: protocol name, level 4, flags (clean session),
	// keepalive 300 s (the publisher sends no PINGREQ); payload: the id.
	body := []byte{0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0x01, 0x2c}
	body = binary.BigEndian.AppendUint16(body, uint16(len(clientID)))
	body = append(body, clientID...)
	pkt := appendRemaining([]byte{0x10}, len(body))
	if _, err := conn.Write(append(pkt, body...)); err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("send CONNECT: %w", err)
	}
	r := bufio.NewReader(conn)
	var ack [4]byte
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(r, ack[:]); err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("read CONNACK: %w", err)
	}
	_ = conn.SetReadDeadline(time.Time{})
	if ack[0] != 0x20 || ack[1] != 2 || ack[3] != 0 {
		conn.Close()
		return nil, nil, fmt.Errorf("CONNACK % x: refused", ack)
	}
	return conn, r, nil
}

// appendRemaining appends the MQTT remaining length n (a varint of 7-bit
// groups) to b.
func appendRemaining(b []byte, n int) []byte {
	for {
		d := byte(n % 128)
		n /= 128
		if n > 0 {
			d |= 0x80
		}
		b = append(b, d)
		if n == 0 {
			return b
		}
	}
}

// rawPublish sends the messages at idx over one connection at QoS 1 and
// returns when each has its PUBACK, in order.
func (l *ingestLoad) rawPublish(addr, clientID string, idx []int) error {
	conn, r, err := rawConnect(addr, clientID)
	if err != nil {
		return err
	}
	defer conn.Close()

	slots := make(chan uint16, rawWindow) // packet ids sent, in order
	acked := make(chan error, 1)
	go func() {
		var ack [4]byte
		for range idx {
			if _, err := io.ReadFull(r, ack[:]); err != nil {
				acked <- fmt.Errorf("read PUBACK: %w", err)
				return
			}
			want := <-slots
			if ack[0] != 0x40 || ack[1] != 2 || binary.BigEndian.Uint16(ack[2:]) != want {
				acked <- fmt.Errorf("PUBACK % x, want one for packet id %d", ack, want)
				return
			}
		}
		acked <- nil
	}()

	head := make([]byte, 0, 64)
	for n, i := range idx {
		id := uint16(n%65535 + 1)
		topic, payload := l.topics[i], l.payloads[i]
		head = appendRemaining(append(head[:0], 0x32), 2+len(topic)+2+len(payload))
		head = binary.BigEndian.AppendUint16(head, uint16(len(topic)))
		head = append(head, topic...)
		head = binary.BigEndian.AppendUint16(head, id)
		select {
		case slots <- id:
		case err := <-acked:
			return cmpErr(err, "the broker stopped acknowledging")
		}
		bufs := net.Buffers{head, payload}
		if _, err := bufs.WriteTo(conn); err != nil {
			return fmt.Errorf("send PUBLISH %d: %w", n, err)
		}
	}
	if err := <-acked; err != nil {
		return err
	}
	_, _ = conn.Write([]byte{0xe0, 0}) // DISCONNECT
	return nil
}

// cmpErr is err, or an error saying what when err is nil.
func cmpErr(err error, what string) error {
	if err == nil {
		return errors.New(what)
	}
	return err
}
