package broker

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/mqttlua/broker/codec"
	"github.com/mqttlua/broker/engine/transport"
)

// Session is one client identifier's session: its durable state and the
// live state around it. A persistent session (3.1.1 clean session 0, 5.0
// session expiry > 0) outlives its connections.
type Session struct {
	// mu guards the session, durable and live state alike.
	mu sync.Mutex
	sessionState

	// Live state: what exists only while the broker runs.
	conn atomic.Pointer[Client]
	// ended is set when the session is discarded; a connection still
	// finishing a handler must not add to it.
	ended bool
	// timer ends the session when it expires, or sends a delayed will.
	timer *time.Timer
	// gen counts the session's connections, so a timer set for one
	// disconnection does nothing after a reconnection.
	gen uint64
	// drained wakes publishers waiting for the queue of a connected
	// session to fall to queueLowWater (see transport.Pressure).
	drained transport.Drained
	// acks counts the acknowledgements of its deliveries, for telling a
	// slow subscriber from a stuck one.
	acks uint64
}

// sessionState is the durable part of a session, what a store keeps
// across a restart: plain values, with no connection, timer, waiter or
// lock in it. Deliveries refer to their messages (shared by every
// session a message reached) and to the shared-subscription group they
// came through, by pointer; a store writes those by value and by the
// group's key.
type sessionState struct {
	clientID   string
	owner      string // the user name that created the session; "" for none
	persistent bool
	// expiry is how long a 5.0 session outlives its connection;
	// neverExpire for 3.1.1 persistent sessions.
	expiry time.Duration

	subs map[string]subOpts // filter -> options (shared: "$share/g/f")

	// Outbound: packet ids in use, in send order, and what waits beyond
	// the window.
	lastID   uint16
	inflight map[uint16]*outbound
	order    []uint16
	queue    []delivery

	// Inbound QoS 2: packet ids received and not yet released by PUBREL,
	// so a retransmitted PUBLISH is not delivered twice.
	inbound2 map[uint16]struct{}

	// seq numbers the deliveries written to the store (persist.go).
	seq uint64
	// replaced: a clean start took the client id for a new session, which
	// keeps the stored record; ending this one deletes only its own.
	replaced bool
	// left is what remained of a loaded session's expiry at start.
	left time.Duration
}

// Backpressure for connected sessions: past queueHighWater queued
// messages their publishers wait (stop reading their sockets) until the
// queue is down to queueLowWater. Nothing is dropped for a connected
// session below onlineQueueCap, which only a wait that timed out can reach.
const (
	queueHighWater = 256
	queueLowWater  = 64
	onlineQueueCap = 100000
)

const neverExpire = time.Duration(1<<63 - 1)

// delivery is one message on its way to one session.
type delivery struct {
	msg *Message
	// stored is the retained message a delivery hook changed into msg,
	// for sendRetained's check that it is still the stored one.
	stored *Message
	qos    byte
	retain bool
	subIDs []uint32    // 5.0 subscription identifiers of the matching subscriptions
	share  *shareGroup // the shared subscription it came through, if any
	seq    uint64      // its key in the store, 0: not stored (persist.go)
	// epoch is the cluster's checkpoint epoch the delivery entered its
	// session in (bridge.go, PendingEpoch).
	epoch uint64
}

// outbound is an unacknowledged QoS 1 or 2 delivery.
type outbound struct {
	delivery
	// released is set for QoS 2 once PUBREC arrived and PUBREL was sent.
	released bool
}

// newSession returns a session; its maps are made on first use, so an
// idle client costs little.
func newSession(clientID string, persistent bool, expiry time.Duration) *Session {
	return &Session{sessionState: sessionState{clientID: clientID, persistent: persistent, expiry: expiry}}
}

// ClientID returns the session's client identifier.
func (s *Session) ClientID() string { return s.clientID }

// clear ends the session: its subscriptions leave the trees, and shared
// deliveries it had not completed go to other members of their groups.
func (s *Session) clear(k *Broker) {
	s.mu.Lock()
	s.ended = true
	s.releaseWaitersLocked()
	if s.timer != nil {
		s.timer.Stop()
	}
	if s.persistent {
		s.forgetLocked(k)
	}
	subs := s.subs
	s.subs = nil
	orphans := s.sharedOrphansLocked(k, true)
	s.inflight = nil
	s.order = nil
	s.queue = nil
	s.inbound2 = nil
	s.mu.Unlock()
	for f := range subs {
		k.removeSub(f, s)
	}
	k.redistribute(orphans)
}

// sharedOrphansLocked takes out of the session the shared-subscription
// deliveries that another member should get instead: those queued, and,
// when the session ends, those in flight too.
func (s *Session) sharedOrphansLocked(k *Broker, inflightToo bool) []delivery {
	var out []delivery
	kept := s.queue[:0]
	for _, d := range s.queue {
		if d.share != nil {
			s.forgetDeliveryLocked(k, d.seq)
			d.seq = 0 // another session's now
			out = append(out, d)
		} else {
			kept = append(kept, d)
		}
	}
	for i := len(kept); i < len(s.queue); i++ {
		s.queue[i] = delivery{}
	}
	s.queue = kept
	if inflightToo {
		for _, id := range s.order {
			if o, ok := s.inflight[id]; ok && o.share != nil && !o.released {
				s.forgetDeliveryLocked(k, o.seq)
				o.seq = 0
				out = append(out, o.delivery)
				delete(s.inflight, id)
			}
		}
	}
	return out
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

// window returns how many QoS 1/2 messages may be in flight to c: the
// broker's limit, and for 5.0 the client's Receive Maximum ([MQTT-3.3.4-7]).
func (s *Session) window(k *Broker, c *Client) int {
	w := k.Settings().MaxInflight
	if rm := c.receiveMaximum(); rm < w {
		w = rm
	}
	if w <= 0 {
		w = 1
	}
	return w
}

// deliverLocked sends or queues one QoS 1/2 delivery. f, if not nil, is
// the routing's shared encoding of the message. mu must be held.
// It reports whether the delivery went to the connection now (for the
// Delivered count; a queued one counts when it is sent).
func (s *Session) deliverLocked(k *Broker, d delivery, f *codec.Fanout, batch *transport.Batch) bool {
	if s.ended {
		return false
	}
	if k.bridge != nil {
		d.epoch = k.epoch.Load()
	}
	c := s.conn.Load()
	if c == nil || len(s.queue) > 0 || len(s.inflight) >= s.window(k, c) {
		// Keep per-topic order: nothing overtakes what already waits.
		s.enqueueLocked(k, d)
		if c != nil && batch != nil && len(s.queue) > queueHighWater {
			batch.AddPressure(s)
		}
		return false
	}
	return s.sendLocked(k, c, d, f, batch)
}

// WaitDrained implements transport.Pressure: it returns when the session's
// queue is down to its low-water mark, the session is offline or ended,
// or the timeout passed.
func (s *Session) WaitDrained(timeout time.Duration) {
	s.drained.Wait(&s.mu, func() bool { return s.ended || s.conn.Load() == nil || len(s.queue) <= queueLowWater }, timeout)
}

// Progress implements transport.Pressure: the acknowledgements of the
// session's deliveries so far.
func (s *Session) Progress() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return int64(s.acks)
}

// Backlogged implements transport.Pressure: the session is connected and
// its queue is over its high-water mark.
func (s *Session) Backlogged() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.ended && s.conn.Load() != nil && len(s.queue) > queueHighWater
}

// CutOff implements transport.Pressure: the session's connection is
// closed as a slow consumer; a persistent session keeps its QoS 1/2
// backlog offline, within max_queued.
func (s *Session) CutOff() {
	if c := s.conn.Load(); c != nil {
		c.t.CutOff()
	}
}

// SameClient implements transport.Pressure.
func (s *Session) SameClient(c *transport.Conn) bool {
	own := s.conn.Load()
	return own != nil && own.t == c
}

// releaseWaitersLocked wakes publishers waiting for the queue.
func (s *Session) releaseWaitersLocked() {
	s.drained.Signal()
}

// sendLocked assigns a packet id, records the delivery in flight and
// encodes it into the connection's queue.
// It reports whether the delivery was queued to the connection.
func (s *Session) sendLocked(k *Broker, c *Client, d delivery, f *codec.Fanout, batch *transport.Batch) bool {
	if d.msg.expired(time.Now()) {
		k.Stats.Expired.Add(1)
		k.emit(EventDropped, s.clientID, d.msg, d.qos, "expired")
		s.forgetDeliveryLocked(k, d.seq)
		return false
	}
	id := s.nextIDLocked()
	if s.inflight == nil {
		s.inflight = map[uint16]*outbound{}
	}
	o := &outbound{delivery: d}
	s.inflight[id] = o
	s.order = append(s.order, id)
	if s.storeDeliveryLocked(k, &o.delivery, id, false) && d.qos == 2 {
		s.sendDurableLocked(k, c, o, id)
		return true
	}
	switch err := k.send(c, d, false, id, f, batch); err {
	case nil:
		return true
	case transport.ErrTooLarge:
		// Over the client's Maximum Packet Size: dropped, never sent.
		k.emit(EventDropped, s.clientID, d.msg, d.qos, "too_large")
		s.forgetDeliveryLocked(k, o.seq)
		delete(s.inflight, id)
		s.order = s.order[:len(s.order)-1]
	default:
		// The connection is closing; the message stays in flight and is
		// sent again, with DUP, when the session resumes.
	}
	return false
}

// sendDurableLocked sends a QoS 2 delivery to a persistent session once
// its packet id is on disk. The client keeps a QoS 2 packet id until
// PUBREL: had the broker sent the PUBLISH and then lost, in a crash, that
// it had, it would give that id to another message after the restart,
// which the client would take for the first one sent again, and drop.
// QoS 1 has no such state and goes at once.
func (s *Session) sendDurableLocked(k *Broker, c *Client, o *outbound, id uint16) {
	k.store.Submit(nil, func(err error) {
		if err != nil {
			// Not on disk: the connection ends, and the delivery, still
			// in flight in memory, goes again when the client resumes.
			c.Close(transport.CloseStoreError)
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.inflight[id] != o || s.conn.Load() != c {
			return // a resumed session sends it itself, with DUP
		}
		if k.send(c, o.delivery, false, id, nil, nil) == transport.ErrTooLarge {
			k.emit(EventDropped, s.clientID, o.msg, o.qos, "too_large")
			s.endInflightLocked(k, id, o)
		}
	})
}

func (s *Session) enqueueLocked(k *Broker, d delivery) {
	max := k.Settings().MaxQueued
	if s.conn.Load() != nil && max < onlineQueueCap {
		// Connected: publishers are held back instead (see above).
		max = onlineQueueCap
	}
	if max <= 0 {
		k.Stats.Dropped.Add(1)
		k.emit(EventDropped, s.clientID, d.msg, d.qos, "queue_full")
		return
	}
	if len(s.queue) >= max {
		k.Stats.Dropped.Add(1)
		if k.Settings().DropNewest {
			k.emit(EventDropped, s.clientID, d.msg, d.qos, "queue_full")
			return
		}
		k.emit(EventDropped, s.clientID, s.queue[0].msg, s.queue[0].qos, "queue_full")
		s.forgetDeliveryLocked(k, s.queue[0].seq)
		copy(s.queue, s.queue[1:])
		s.queue = s.queue[:len(s.queue)-1]
	}
	s.storeDeliveryLocked(k, &d, 0, false)
	s.queue = append(s.queue, d)
	if s.conn.Load() == nil {
		k.emit(EventQueued, s.clientID, d.msg, d.qos, "")
	}
}

// drainLocked moves queued messages into the window.
func (s *Session) drainLocked(k *Broker, batch *transport.Batch) {
	c := s.conn.Load()
	if c == nil {
		return
	}
	w := s.window(k, c)
	n := 0
	for n < len(s.queue) && len(s.inflight) < w {
		d := s.queue[n]
		s.queue[n] = delivery{}
		if s.sendLocked(k, c, d, nil, batch) {
			k.Stats.Delivered.Add(1)
		}
		n++
	}
	if n > 0 {
		s.queue = append(s.queue[:0], s.queue[n:]...)
	}
	if len(s.queue) <= queueLowWater {
		s.releaseWaitersLocked()
	}
}

// resumeLocked re-sends, in their original order, the messages in flight
// when the previous connection ended: PUBLISH with DUP set, or PUBREL for
// QoS 2 messages already received ([MQTT-4.4.0-1]); then the queue.
func (s *Session) resumeLocked(k *Broker, c *Client, batch *transport.Batch) {
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
		k.send(c, o.delivery, true, id, nil, batch)
	}
	s.order = order
	s.drainLocked(k, batch)
}

// ackLocked completes an outbound flow and refills the window.
func (s *Session) ackLocked(k *Broker, id uint16, batch *transport.Batch) bool {
	o, ok := s.inflight[id]
	if !ok {
		return false
	}
	k.emit(EventAcked, s.clientID, o.msg, o.qos, "")
	s.acks++
	s.endInflightLocked(k, id, o)
	s.drainLocked(k, batch)
	return true
}

// endInflightLocked ends the outbound flow id (acknowledged, or dropped
// as too large): its stored copy goes, and it leaves the window.
func (s *Session) endInflightLocked(k *Broker, id uint16, o *outbound) {
	s.forgetDeliveryLocked(k, o.seq)
	delete(s.inflight, id)
	for i, x := range s.order {
		if x == id {
			s.order = append(s.order[:i], s.order[i+1:]...)
			break
		}
	}
}

// markInbound2 records an inbound QoS 2 packet id until its PUBREL. mu
// must be held.
func (s *Session) markInbound2(id uint16) {
	if s.inbound2 == nil {
		s.inbound2 = map[uint16]struct{}{}
	}
	s.inbound2[id] = struct{}{}
}
