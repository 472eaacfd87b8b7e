package kit

import (
	"sync"
	"sync/atomic"

	"github.com/mqttlua/broker/codec"
	"github.com/mqttlua/broker/engine"
)

// Session is the state of one client identifier: its subscriptions, its
// QoS 1 and 2 flows and the messages waiting for it. A persistent session
// (clean session 0) outlives its connections.
type Session struct {
	clientID   string
	conn       atomic.Pointer[engine.Conn]
	mu         sync.Mutex
	persistent bool
	// ended is set when the session is discarded; a connection still
	// finishing a handler must not add to it.
	ended bool

	subs map[string]subOpts // filter -> options

	// Outbound: packet ids in use, in send order, and what waits beyond
	// the window.
	lastID   uint16
	inflight map[uint16]*outbound
	order    []uint16
	queue    []queued

	// Inbound QoS 2: packet ids received and not yet released by PUBREL,
	// so a retransmitted PUBLISH is not delivered twice.
	inbound2 map[uint16]struct{}
}

// outbound is an unacknowledged QoS 1 or 2 delivery.
type outbound struct {
	msg    *Message
	qos    byte
	retain bool
	// released is set for QoS 2 once PUBREC arrived and PUBREL was sent.
	released bool
}

type queued struct {
	msg    *Message
	qos    byte
	retain bool
}

func newSession(clientID string, persistent bool) *Session {
	return &Session{clientID: clientID, persistent: persistent, subs: map[string]subOpts{},
		inflight: map[uint16]*outbound{}, inbound2: map[uint16]struct{}{}}
}

// ClientID returns the session's client identifier.
func (s *Session) ClientID() string { return s.clientID }

// clear removes the session's subscriptions from the tree.
func (s *Session) clear(k *Kit) {
	s.mu.Lock()
	s.ended = true
	subs := s.subs
	s.subs = map[string]subOpts{}
	s.inflight = map[uint16]*outbound{}
	s.order = nil
	s.queue = nil
	s.inbound2 = map[uint16]struct{}{}
	s.mu.Unlock()
	for f := range subs {
		k.subs.Remove(f, s)
	}
}

// nextIDLocked returns a packet id not in flight ([MQTT-2.3.1-2]).
func (s *Session) nextIDLocked() uint16 {
	for {
		s.lastID++
		if s.lastID == 0 {
			s.lastID = 1
		}
		if _, used := s.inflight[s.lastID]; !used {
			return s.lastID
		}
	}
}

// window returns how many QoS 1/2 messages may be in flight to c.
func (s *Session) window(k *Kit, c *engine.Conn) int {
	w := k.Settings().MaxInflight
	if w <= 0 {
		w = 1
	}
	return w
}

// deliverLocked sends or queues one QoS 1/2 delivery. mu must be held.
func (s *Session) deliverLocked(k *Kit, m *Message, qos byte, retain bool, batch *engine.Batch) {
	if s.ended {
		return
	}
	c := s.conn.Load()
	if c == nil || len(s.queue) > 0 || len(s.inflight) >= s.window(k, c) {
		// Keep per-topic order: nothing overtakes what already waits.
		s.enqueueLocked(k, queued{m, qos, retain})
		return
	}
	s.sendLocked(k, c, m, qos, retain, batch)
}

// sendLocked assigns a packet id, records the delivery in flight and
// encodes it into the connection's queue.
func (s *Session) sendLocked(k *Kit, c *engine.Conn, m *Message, qos byte, retain bool, batch *engine.Batch) {
	id := s.nextIDLocked()
	s.inflight[id] = &outbound{msg: m, qos: qos, retain: retain}
	s.order = append(s.order, id)
	p := m.packet(qos, retain, false, id)
	if err := c.SendPacketVia(&p, batch); err == nil {
		k.Stats.Delivered.Add(1)
	}
	// On error the connection is closing; the message stays in flight
	// and is sent again, with DUP, when the session resumes.
}

func (s *Session) enqueueLocked(k *Kit, q queued) {
	max := k.Settings().MaxQueued
	if max <= 0 {
		k.Stats.Dropped.Add(1)
		return
	}
	if len(s.queue) >= max {
		k.Stats.Dropped.Add(1)
		if k.Settings().DropNewest {
			return
		}
		copy(s.queue, s.queue[1:])
		s.queue = s.queue[:len(s.queue)-1]
	}
	s.queue = append(s.queue, q)
}

// drainLocked moves queued messages into the window.
func (s *Session) drainLocked(k *Kit, batch *engine.Batch) {
	c := s.conn.Load()
	if c == nil {
		return
	}
	w := s.window(k, c)
	n := 0
	for n < len(s.queue) && len(s.inflight) < w {
		q := s.queue[n]
		s.queue[n] = queued{}
		s.sendLocked(k, c, q.msg, q.qos, q.retain, batch)
		n++
	}
	if n > 0 {
		s.queue = append(s.queue[:0], s.queue[n:]...)
	}
}

// resumeLocked re-sends, in their original order, the messages in flight
// when the previous connection ended: PUBLISH with DUP set, or PUBREL for
// QoS 2 messages already received ([MQTT-4.4.0-1]); then the queue.
func (s *Session) resumeLocked(k *Kit, c *engine.Conn, batch *engine.Batch) {
	order := s.order[:0]
	for _, id := range s.order {
		o, ok := s.inflight[id]
		if !ok {
			continue
		}
		order = append(order, id)
		if o.released {
			c.SendPacketVia(&codec.Packet{Type: codec.PUBREL, PacketID: id}, batch)
			continue
		}
		p := o.msg.packet(o.qos, o.retain, true, id)
		c.SendPacketVia(&p, batch)
	}
	s.order = order
	s.drainLocked(k, batch)
}

// ackLocked completes an outbound flow and refills the window.
func (s *Session) ackLocked(k *Kit, id uint16, batch *engine.Batch) bool {
	if _, ok := s.inflight[id]; !ok {
		return false
	}
	delete(s.inflight, id)
	for i, x := range s.order {
		if x == id {
			s.order = append(s.order[:i], s.order[i+1:]...)
			break
		}
	}
	s.drainLocked(k, batch)
	return true
}
