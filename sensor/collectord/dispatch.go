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
	wg     sync.WaitGroup
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
	p := &dispatcher{seed: maphash.MakeSeed(), queues: make([]chan message, runtime.GOMAXPROCS(0))}
	for i := range p.queues {
		q := make(chan message, dispatchQueue)
		p.queues[i] = q
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			for m := range q {
				handle(m.topic, m.payload, func(err error) {
					if err == nil {
						m.ack()
					}
				})
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
	p.queues[maphash.String(p.seed, sensor)%uint64(len(p.queues))] <- m
}

// close waits for the workers to handle what was queued; send must not be
// called any more.
func (p *dispatcher) close() {
	for _, q := range p.queues {
		close(q)
	}
	p.wg.Wait()
}
