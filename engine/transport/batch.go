package transport

import (
	"sync"
	"time"
)

// Batch defers waking connection writers until Flush. A reader handles
// every packet of one read before flushing, so a burst of packets that
// fan out to a subscriber is written to it in one syscall instead of one
// per packet (as nats-server's read loop does with its pending clients).
// A Batch belongs to one reader.
type Batch struct {
	owner *Conn // the connection whose reader owns the batch
	conns []*Conn
	seen  map[*Conn]struct{} // only for large fan-outs
	// Backpressure: receivers whose queues passed their high-water mark.
	// The owner's reader waits for them before reading more, so a slow
	// subscriber slows its publishers down instead of losing messages.
	pressure []Pressure
}

// Pressure is a receiver (a connection's outbound queue, a session's
// queue) that its senders should wait for.
type Pressure interface {
	// WaitDrained returns when the queue is back under its low-water
	// mark, the receiver is gone, or the timeout passed.
	WaitDrained(timeout time.Duration)
	// Progress is a count that grows as the receiver takes in what is
	// queued for it (bytes written, acknowledgements).
	Progress() int64
	// Backlogged reports whether the receiver is still there with its
	// queue over its high-water mark.
	Backlogged() bool
	// CutOff closes the receiver's connection as a slow consumer.
	CutOff()
	// SameClient reports whether the receiver belongs to connection c: a
	// reader never waits for its own client, which cannot drain while
	// the reader waits.
	SameClient(c *Conn) bool
}

// Wait waits for a receiver under pressure, PressureWait at most. A
// receiver still backlogged when the wait ends, that took in nothing
// during it, is stuck (its peer stopped reading or acknowledging): it is
// cut off as a slow consumer, so that its senders wait for it no longer.
// A receiver that reads slowly slows its senders down; one that stopped
// holds them for one wait at most.
func Wait(p Pressure) {
	before := p.Progress()
	p.WaitDrained(PressureWait)
	if p.Progress() == before && p.Backlogged() {
		p.CutOff()
	}
}

// Drained lets senders under backpressure wait, holding no lock, until a
// queue guarded by a mutex is short enough again. The queue's owner calls
// Signal (with the mutex held) when it drains or goes away. The zero value
// is ready; the channel exists only while someone waits.
type Drained struct{ ch chan struct{} }

// Wait returns when done() (called with mu held) is true, or timeout
// passes.
func (d *Drained) Wait(mu sync.Locker, done func() bool, timeout time.Duration) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		mu.Lock()
		if done() {
			mu.Unlock()
			return
		}
		if d.ch == nil {
			d.ch = make(chan struct{})
		}
		ch := d.ch
		mu.Unlock()
		select {
		case <-ch:
		case <-deadline.C:
			return
		}
	}
}

// Signal wakes every waiter, which then checks its condition again. The
// caller holds the mutex given to Wait.
func (d *Drained) Signal() {
	if d.ch != nil {
		close(d.ch)
		d.ch = nil
	}
}

// PressureWait bounds one wait for a slow receiver. Past it the reader
// goes on and the receiver's hard limits apply; it also ends waits in a
// cycle (two clients that each wait for the other to read).
const PressureWait = 2 * time.Second

// AddPressure records a receiver to wait for at the end of the read.
func (b *Batch) AddPressure(p Pressure) {
	if b.owner != nil && p.SameClient(b.owner) {
		return
	}
	for _, q := range b.pressure {
		if q == p {
			return
		}
	}
	b.pressure = append(b.pressure, p)
}

// add records that c has queued output to write.
func (b *Batch) add(c *Conn) {
	if len(b.conns) < 16 {
		// Most reads reach a few connections: a scan beats a map, and
		// an idle connection keeps no map.
		for _, x := range b.conns {
			if x == c {
				return
			}
		}
		b.conns = append(b.conns, c)
		return
	}
	if b.seen == nil {
		b.seen = map[*Conn]struct{}{}
	}
	if len(b.seen) == 0 {
		for _, x := range b.conns {
			b.seen[x] = struct{}{}
		}
	}
	if _, ok := b.seen[c]; !ok {
		b.seen[c] = struct{}{}
		b.conns = append(b.conns, c)
	}
}

// flushOthers is Flush for every connection but the owner, which its
// reader writes itself.
func (b *Batch) flushOthers() {
	for i, c := range b.conns {
		if c == b.owner {
			b.conns[i] = b.conns[len(b.conns)-1]
			b.conns = b.conns[:len(b.conns)-1]
			break
		}
	}
	b.Flush()
}

// Flush wakes the writer of every connection added since the last Flush.
func (b *Batch) Flush() {
	for i, c := range b.conns {
		c.signal()
		b.conns[i] = nil
	}
	if cap(b.conns) > 64 {
		b.conns = nil // do not keep a big fan-out's slice
	} else {
		b.conns = b.conns[:0]
	}
	b.seen = nil
}

// Settle is the end of a read for a reader that is not a connection's
// (a cluster link bringing messages from other nodes, made with
// new(Batch)): it wakes the writers, then waits for the receivers under
// pressure, as a connection's reader does before reading more.
func (b *Batch) Settle() {
	b.Flush()
	for _, p := range b.takePressure() {
		Wait(p)
	}
}

// flushAndWait flushes, then waits for the receivers under pressure. Only
// the owner's reader calls it, holding no lock, before reading more.
func (b *Batch) flushAndWait() {
	b.flushOwn()
	for _, p := range b.takePressure() {
		Wait(p)
	}
}

// flushOwn flushes the batch, then writes the owner's own output (CONNACK,
// PUBACK, PINGRESP, ...) right here when no writer goroutine is running:
// no goroutine to start and no hand-off for the common request/reply
// case, as nats-server's read loop flushes its own client inline.
func (b *Batch) flushOwn() {
	b.flushOthers() // first: the owner's write may block
	b.owner.writeOwn()
}

// takePressure returns the receivers to wait for, and forgets them; nil
// (no allocation) when there are none, as almost always.
func (b *Batch) takePressure() []Pressure {
	if len(b.pressure) == 0 {
		return nil
	}
	wait := append([]Pressure(nil), b.pressure...)
	clear(b.pressure)
	b.pressure = b.pressure[:0]
	return wait
}
