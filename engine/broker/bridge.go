package broker

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/mqttlua/broker/codec"
	"github.com/mqttlua/broker/engine/topic"
	"github.com/mqttlua/broker/engine/transport"
)

// Bridge links the broker to the other nodes of a cluster (engine/cluster
// implements it). Without one (nil, the default) the broker is a single
// node and nothing below is on its path.
//
// Data flow: a message routed on this node (a client's PUBLISH, a will,
// a script's publish) is delivered to local subscribers and handed to
// Forward; the bridge brings messages from other nodes back through
// RouteRemote (delivery) and ApplyRetained (retained state). A CONNECT
// asks Claim for the client id's session before CONNACK; the node that
// owned it gives it up through HandOver.
type Bridge interface {
	// Forward sends a message routed on this node to the other nodes.
	// For QoS 1 and 2 from a client, done is called once, on any
	// goroutine, with nil when the cluster holds the message durably, or
	// the error that stopped it; done is nil when nobody waits.
	Forward(m *Message, done func(error))
	// Subscribed and Unsubscribed tell the bridge of each subscription
	// added to or removed from a session of this node (the filter as
	// subscribed, "$share/..." included), so that it draws from the other
	// nodes only the topics this node has subscribers for. They run
	// under the session's lock and must not block.
	Subscribed(filter string)
	Unsubscribed(filter string)
	// Claim makes this node the owner of the session of clientID,
	// cluster-wide, before the CONNECT is answered. If another node held
	// the session, it is taken from there (its connection closed) and
	// its state returned, as HandOver encoded it (nil: no session
	// elsewhere, or its node did not answer). settled must be called
	// once the session is in place here (or the CONNECT failed): until
	// then a node taking the session from this one waits, so that it
	// cannot miss the connection being set up. An error means the
	// cluster cannot decide now: the CONNECT is refused as server
	// unavailable. will is the new connection's will (MarshalBinary's
	// encoding, nil for none), recorded with the claim, so that another
	// node publishes it if this one dies from here on.
	Claim(clientID string, will []byte) (state []byte, settled func(), err error)
	// Released says the session of clientID ended on this node.
	Released(clientID string)
	// Stored gives the record of a persistent session of this node
	// (its subscriptions, owner and expiry, as a store keeps it) each
	// time it changes, so that another node can take the session up if
	// this one dies; nil for a session that is not persistent. It runs
	// under the session's lock and must not block.
	Stored(clientID string, record []byte)
	// BeginLocal and EndLocal bracket the routing of a message
	// published on this node (a client's, a will, a script's), so that
	// the cluster knows when every routing begun before a given moment
	// has ended. BeginLocal's stamp is kept in the message
	// (Message.Stamp) and given back to EndLocal. They are on the
	// message path: a few atomics, no lock (routings may nest: a
	// delivery hook may publish).
	BeginLocal() (stamp uint64)
	EndLocal(stamp uint64)
	// Will says this node has dealt with the will of clientID's
	// connection (the connection ended: the will was sent, or not): the
	// registry no longer keeps it (Claim recorded it). It must not block.
	Will(clientID string, will []byte)
}

// SetBridge links the broker to a cluster. Call before serving.
func (k *Broker) SetBridge(b Bridge) { k.bridge = b }

// forward hands a locally routed message to the bridge, if any. Messages
// that came from another node are never sent back.
func (k *Broker) forward(m *Message, done func(error)) {
	if k.bridge == nil || m.remote || strings.HasPrefix(m.Topic, "$SYS/") {
		// $SYS is each node's own (observe publishes it per node).
		if done != nil {
			done(nil)
		}
		return
	}
	m.own() // the bridge may encode it after the handler returned
	k.bridge.Forward(m, done)
}

// Stamp is the bridge's stamp of a message published on this node
// (Bridge.BeginLocal), 0 for others.
func (m *Message) Stamp() uint64 { return m.stamp }

// RouteRemote delivers a message another node routed to this node's
// subscribers. It neither forwards it again nor changes the retained
// messages (ApplyRetained does, in the cluster's order). batch, if not
// nil, collects the writers to wake and the queues to wait for, as a
// connection's reader does.
func (k *Broker) RouteRemote(m *Message, batch *transport.Batch) int {
	m.remote = true
	return k.routeVia(m, nil, batch, nil)
}

// PublishWill publishes the will of a client whose node died (the
// cluster decided which node does, once): to this node's subscribers
// and the cluster's, as a will is ([MQTT-3.1.2-8]).
func (k *Broker) PublishWill(m *Message) {
	m.Owned = true
	k.sendWill(m)
}

// SplitShare parses a shared subscription's filter,
// "$share/{name}/{filter}" (5.0 §4.8.2).
func SplitShare(f string) (name, filter string, ok bool) { return splitShare(f) }

// RouteShared delivers a message to one member of the shared
// subscription group "$share/name/filter" on this node: in a cluster the
// cluster picks, per message, the node whose members get it (one in the
// whole cluster, 5.0 §4.8.2). It reports whether a member took it.
func (k *Broker) RouteShared(m *Message, name, filter string, batch *transport.Batch) bool {
	k.shareMu.Lock()
	g := k.shares[name+"\x00"+filter]
	k.shareMu.Unlock()
	if g == nil {
		return false
	}
	m.remote = true
	return k.routeTo(m, nil, batch, nil, g) > 0
}

// ApplyRetained sets (or, with an empty payload, clears) the retained
// message of m's topic as the cluster ordered it, without delivering it.
func (k *Broker) ApplyRetained(m *Message) {
	m.remote = true
	k.keepRetained(m)
}

// MarshalBinary encodes the message (topic, payload, QoS, retain flag,
// 5.0 properties and absolute expiry) for another node or a store.
func (m *Message) MarshalBinary() ([]byte, error) { return encodeMessage(m), nil }

// AppendBinary appends MarshalBinary's encoding to b (the cluster puts
// its frame header first, with no second copy).
func (m *Message) AppendBinary(b []byte) ([]byte, error) { return appendMessage(b, m) }

// UnmarshalMessage decodes what MarshalBinary encoded.
func UnmarshalMessage(b []byte) (*Message, error) { return decodeMessage(b) }

// handoverState is a session as it moves between nodes: what a store
// keeps of it (persist.go's records), plus the packet ids of its inbound
// QoS 2 flows.
type handoverState struct {
	Persistent bool     `json:"persistent"`
	Record     []byte   `json:"record"`
	Deliveries [][]byte `json:"deliveries,omitempty"` // in flight (in order), then queued
	Inbound2   []uint16 `json:"inbound2,omitempty"`
}

// HandOver gives up the session of clientID to another node: its
// connection, if any, is closed as taken over (5.0: DISCONNECT 0x8E), the
// session leaves this node, and its state is returned for the new owner
// (nil when this node has no session of that id). A clean session's
// state is nil too: nothing of it survives its connection.
func (k *Broker) HandOver(clientID string) []byte {
	k.mu.Lock()
	s := k.sessions[clientID]
	if s == nil {
		k.mu.Unlock()
		return nil
	}
	delete(k.sessions, clientID)
	s.mu.Lock()
	old := s.conn.Load()
	s.conn.Store(nil) // so the closing connection leaves the session alone
	s.gen++
	var state []byte
	if s.persistent {
		h := handoverState{Persistent: true, Record: s.recordLocked()}
		for _, id := range s.order {
			if o, ok := s.inflight[id]; ok {
				h.Deliveries = append(h.Deliveries, encodeDelivery(&o.delivery, id, o.released))
			}
		}
		for i := range s.queue {
			h.Deliveries = append(h.Deliveries, encodeDelivery(&s.queue[i], 0, false))
		}
		for id := range s.inbound2 {
			h.Inbound2 = append(h.Inbound2, id)
		}
		state, _ = json.Marshal(h)
	}
	s.mu.Unlock()
	k.mu.Unlock()
	if old != nil {
		k.Stats.Takeovers.Add(1)
		old.Close(transport.CloseTakenOver)
	}
	s.clear(k)
	return state
}

// adopt builds a session from the state another node handed over.
func (k *Broker) adopt(clientID string, state []byte) (*Session, error) {
	var h handoverState
	if err := json.Unmarshal(state, &h); err != nil {
		return nil, fmt.Errorf("session state from another node: %v", err)
	}
	var rec sessionRecord
	if err := json.Unmarshal(h.Record, &rec); err != nil {
		return nil, fmt.Errorf("session record from another node: %v", err)
	}
	expiry := neverExpire
	if rec.Expiry >= 0 {
		expiry = time.Duration(rec.Expiry) * time.Second
	}
	s := newSession(clientID, true, expiry)
	s.restoreLocked(&rec)
	for _, b := range h.Deliveries {
		d, pid, released, share, err := decodeDelivery(b)
		if err != nil {
			return nil, fmt.Errorf("a delivery from another node: %v", err)
		}
		s.restoreDeliveryLocked(k, d, pid, released, share)
	}
	for _, id := range h.Inbound2 {
		s.markInbound2(id)
	}
	return s, nil
}

// recordLocked is the session's record as the store keeps it. mu is
// held.
func (s *Session) recordLocked() []byte {
	rec := sessionRecord{Owner: s.owner, Expiry: -1}
	if s.conn.Load() == nil {
		rec.Offline = time.Now().Unix()
	}
	if s.expiry != neverExpire {
		rec.Expiry = int64(s.expiry / time.Second)
	}
	for f, o := range s.subs {
		rec.Subs = append(rec.Subs, subRecord{Filter: f, QoS: o.QoS, NoLocal: o.NoLocal, RAP: o.RetainAsPublished, RH: o.RetainHandling, SubID: o.SubID})
	}
	val, _ := json.Marshal(rec)
	return val
}

// errNotForwarded is what a QoS 1/2 PUBLISH gets when the cluster did not
// take it.
var errNotForwarded = errors.New("the cluster did not take the message")

// ackQueue holds a client's acknowledgements while some wait for the
// cluster, so that they leave in the order their PUBLISHes came
// ([MQTT-4.6.0-2], [MQTT-4.6.0-3]): an acknowledgement that waits for
// nothing still queues behind those that wait.
type ackQueue struct {
	mu      sync.Mutex
	pending []*pendingAck
}

type pendingAck struct {
	pkt   codec.Packet
	waits int  // answers still to come (cluster, store)
	err   bool // one of them failed
}

// deferAck queues ack behind the client's waiting acknowledgements,
// waiting for waits answers of its own; it returns nil, queuing nothing,
// when nothing waits at all (the caller sends it as usual).
func (k *Broker) deferAck(c *Client, ack codec.Packet, waits int) *pendingAck {
	q := &c.acks
	q.mu.Lock()
	if waits == 0 && len(q.pending) == 0 {
		q.mu.Unlock()
		return nil
	}
	p := &pendingAck{pkt: ack, waits: waits}
	q.pending = append(q.pending, p)
	q.mu.Unlock()
	if waits == 0 {
		k.flushAcks(c)
	}
	return p
}

// ackAnswered records one answer for p and sends what is ready.
func (k *Broker) ackAnswered(c *Client, p *pendingAck, err error) {
	c.acks.mu.Lock()
	p.waits--
	p.err = p.err || err != nil
	c.acks.mu.Unlock()
	k.flushAcks(c)
}

// flushAcks sends the acknowledgements at the head of the queue whose
// answers have all come. The queue's lock is held while sending, so two
// goroutines flushing cannot reorder them.
func (k *Broker) flushAcks(c *Client) {
	q := &c.acks
	q.mu.Lock()
	defer q.mu.Unlock()
	n := 0
	for _, p := range q.pending {
		if p.waits > 0 {
			break
		}
		n++
		if !p.err {
			c.SendPacketVia(&p.pkt, nil)
			continue
		}
		k.Stats.ForwardFailures.Add(1)
		if c.Version() == codec.V5 {
			// 5.0: the publisher learns it, and may send it again.
			p.pkt.ReasonCode = codec.UnspecifiedError
			c.SendPacketVia(&p.pkt, nil)
			continue
		}
		// 3.1.1 has no negative acknowledgement: closing makes the
		// client send it again on its next connection.
		c.Close(transport.CloseStoreError)
	}
	clear(q.pending[:n])
	q.pending = q.pending[n:]
}

// Checkpoints. A node that dies loses the QoS 1/2 messages queued or in
// flight in its sessions; the cluster's log still has them. To know from
// where another node must replay them, each delivery into a session is
// tagged with the epoch current then. The cluster notes its log position
// P and calls AdvanceEpoch (every delivery of a message at or before P is
// tagged with an epoch up to the one returned); once PendingEpoch says
// no delivery of that epoch or earlier waits in a session, every
// message up to P has been acknowledged by its subscribers, and P is the
// node's checkpoint.

// AdvanceEpoch starts a new epoch and returns the one that ended.
func (k *Broker) AdvanceEpoch() uint64 { return k.epoch.Add(1) - 1 }

// PendingEpoch returns the oldest epoch of the QoS 1/2 deliveries
// waiting in this node's persistent sessions (queued or in flight), and
// false when none waits. It visits every persistent session: for a
// checkpoint every second or so, not the message path.
func (k *Broker) PendingEpoch() (uint64, bool) {
	k.mu.Lock()
	sessions := make([]*Session, 0, len(k.sessions))
	for _, s := range k.sessions {
		sessions = append(sessions, s)
	}
	k.mu.Unlock()
	oldest, any := uint64(0), false
	note := func(e uint64) {
		if !any || e < oldest {
			oldest, any = e, true
		}
	}
	for _, s := range sessions {
		s.mu.Lock()
		if s.persistent {
			for _, d := range s.queue {
				note(d.epoch)
			}
			for _, o := range s.inflight {
				note(o.epoch)
			}
		}
		s.mu.Unlock()
	}
	return oldest, any
}

// Recovered builds the state of a session whose node died from its last
// record (Bridge.Stored), for Claim to return: its subscriptions, with
// nothing queued (the cluster replays that with Replay).
func Recovered(record []byte) []byte {
	state, _ := json.Marshal(handoverState{Persistent: true, Record: record})
	return state
}

// Replay delivers a message from the cluster's log to the session of
// clientID alone, as routing would have (the highest QoS of its matching
// subscriptions, their identifiers), after its node died with the
// message undelivered. It reports whether the session took it.
func (k *Broker) Replay(clientID string, m *Message) bool {
	k.mu.Lock()
	s := k.sessions[clientID]
	k.mu.Unlock()
	if s == nil {
		return false
	}
	m.remote = true
	m.own()
	s.mu.Lock()
	defer s.mu.Unlock()
	d := delivery{msg: m}
	matched := false
	for f, o := range s.subs {
		if _, _, shared := splitShare(f); shared || !topic.MatchFilter(f, m.Topic) {
			continue
		}
		if !matched || o.QoS > d.qos {
			d.qos = o.QoS
		}
		matched = true
		if o.SubID != 0 {
			d.subIDs = append(d.subIDs, o.SubID)
		}
	}
	if !matched {
		return false
	}
	d.qos = min(d.qos, m.QoS)
	if d.qos == 0 {
		c := s.conn.Load()
		return c != nil && k.send(c, d, false, 0, nil, nil) == nil
	}
	s.deliverLocked(k, d, nil, nil)
	return true
}
