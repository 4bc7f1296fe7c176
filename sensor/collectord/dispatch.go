package collectord

import (
	"hash/maphash"
	"runtime"
	"strings"
	"sync"
)

// dispatcher hands the messages of an external broker, which paho delivers
// one at a time from one goroutine, to a worker per CPU: a sensor's
// messages always go to the same worker, in the order received, and
// different sensors' are handled in parallel. Decoding a summary, half of
// collector.Handle, needs no lock; run inline in paho's router, it left a
// core idle while the other decoded.
type dispatcher struct {
	seed   maphash.Seed
	queues []chan message
	// done is closed by close: paho's router may still deliver after
	// Disconnect returns, and those messages are dropped unacknowledged
	// (the broker sends them again on the next connection).
	done chan struct{}
	wg   sync.WaitGroup
}

type message struct {
	topic   string
	payload []byte
	ack     func()
}

// dispatchQueue is how many messages wait for each worker at most; paho's
// router waits when a queue is full, so the broker holds the rest.
const dispatchQueue = 16

// newDispatcher starts the workers, which call handle (Daemon.handleAsync)
// for each message and ack it when handle says it was taken.
func newDispatcher(handle func(topic string, payload []byte, done func(error))) *dispatcher {
	p := &dispatcher{seed: maphash.MakeSeed(), queues: make([]chan message, runtime.GOMAXPROCS(0)), done: make(chan struct{})}
	for i := range p.queues {
		q := make(chan message, dispatchQueue)
		p.queues[i] = q
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			for {
				select {
				case m := <-q:
					handle(m.topic, m.payload, func(err error) {
						if err == nil {
							m.ack()
						}
					})
				case <-p.done:
					return
				}
			}
		}()
	}
	return p
}

// send queues m for the worker of its sensor: the topic up to its last
// level (<prefix>/<sensor-id>).
func (p *dispatcher) send(m message) {
	sensor := m.topic
	if i := strings.LastIndexByte(sensor, '/'); i >= 0 {
		sensor = sensor[:i]
	}
	select {
	case p.queues[maphash.String(p.seed, sensor)%uint64(len(p.queues))] <- m:
	case <-p.done:
	}
}

// close stops the workers and waits for the message each is handling;
// what is still queued, or sent later, is dropped unacknowledged.
func (p *dispatcher) close() {
	close(p.done)
	p.wg.Wait()
}
