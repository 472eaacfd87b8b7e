// Package kit is the broker kit: the Go side of a complete MQTT broker
// that scripts drive through the `broker` Lua module. It keeps everything
// shared across VMs (sessions, subscriptions, retained messages, QoS
// flows, wills) in Go, so that the default scripts only make decisions.
//
// # Locks
//
//   - Kit.mu guards the session map. Taken before Session.mu, never while
//     holding it.
//   - Session.mu guards a session's subscriptions, in-flight window, queue
//     and packet ids. Held while encoding into a connection's queue
//     (engine Conn.mu), never during network I/O.
//   - The subscription tree and the retained store have their own RW
//     locks; their callbacks take no other lock but Session.mu.
//
// Lock order: Kit.mu, Session.mu, Conn.mu.
package kit

import (
	"sync"
	"sync/atomic"

	"github.com/mqttlua/broker/codec"
	"github.com/mqttlua/broker/engine"
	"github.com/mqttlua/broker/engine/topic"
	"github.com/sirupsen/logrus"
)

// Settings are the kit's limits; scripts change them with
// broker.configure{...}.
type Settings struct {
	// MaxInflight is the outbound window of unacknowledged QoS 1 and 2
	// messages per client (5.0: also capped by the client's receive
	// maximum).
	MaxInflight int
	// MaxQueued bounds the messages held for a session beyond its window
	// or while it is offline.
	MaxQueued int
	// DropNewest drops the arriving message when the queue is full;
	// otherwise the oldest queued message is dropped.
	DropNewest bool
	// MaxQoS is the highest QoS granted to subscriptions.
	MaxQoS byte
}

// DefaultSettings are those of Mosquitto's defaults.
var DefaultSettings = Settings{MaxInflight: 20, MaxQueued: 1000, MaxQoS: 2}

// Stats are the kit's counters.
type Stats struct {
	Published atomic.Int64 // messages routed
	Delivered atomic.Int64 // deliveries queued to connections
	Dropped   atomic.Int64 // messages dropped from full session queues
	NoSession atomic.Int64 // QoS 0 deliveries to offline clients, not kept
	Takeovers atomic.Int64
	WillsSent atomic.Int64
}

// Kit is the broker kit. It implements engine.Module and
// engine.PacketInterceptor.
type Kit struct {
	log *logrus.Logger

	settings atomic.Pointer[Settings]

	mu       sync.Mutex
	sessions map[string]*Session

	subs     *topic.Tree[*Session, subOpts]
	retained *topic.Retained[*Message]
	nextAuto atomic.Int64

	// Stats are the kit's counters.
	Stats Stats
}

// New returns a kit with the default settings.
func New(log *logrus.Logger) *Kit {
	if log == nil {
		log = logrus.New()
	}
	k := &Kit{
		log:      log,
		sessions: map[string]*Session{},
		subs:     topic.NewTree[*Session, subOpts](),
		retained: topic.NewRetained[*Message](),
	}
	s := DefaultSettings
	k.settings.Store(&s)
	return k
}

// Settings returns the current settings.
func (k *Kit) Settings() Settings { return *k.settings.Load() }

// SetSettings replaces the settings.
func (k *Kit) SetSettings(s Settings) { k.settings.Store(&s) }

// Name is the module's Lua name.
func (k *Kit) Name() string { return "broker" }

// Message is a PUBLISH as the kit routes and stores it. A routed message
// is shared by its deliveries and never modified after routing.
type Message struct {
	Topic   string
	Payload []byte
	QoS     byte
	Retain  bool
	// Props are the MQTT 5 properties forwarded with the message.
	Props codec.Properties
	// owned is set once Payload no longer aliases a read buffer.
	owned bool
}

// own makes the message safe to keep past the handler that routed it.
func (m *Message) own() {
	if !m.owned {
		m.Payload = append([]byte(nil), m.Payload...)
		m.owned = true
	}
}

// packet returns the PUBLISH for one delivery.
func (m *Message) packet(qos byte, retain, dup bool, id uint16) codec.Packet {
	return codec.Packet{Type: codec.PUBLISH, Topic: m.Topic, Payload: m.Payload, QoS: qos, Retain: retain, Dup: dup, PacketID: id, Properties: m.Props}
}

// subOpts are one subscription's options, stored in the tree.
type subOpts struct {
	QoS               byte
	NoLocal           bool
	RetainAsPublished bool
	RetainHandling    byte
	SubID             uint32
}

// connState is what the kit keeps on an engine.Conn it accepted.
type connState struct {
	sess *Session
	will *Message
}

func stateOf(c *engine.Conn) *connState {
	st, _ := c.Data.Load().(*connState)
	return st
}

// ConnClosed publishes the will of an abnormally lost connection
// ([MQTT-3.1.2-8]) and ends or parks its session.
func (k *Kit) ConnClosed(c *engine.Conn, reason engine.CloseReason) {
	st := stateOf(c)
	if st == nil {
		return
	}
	if st.will != nil && reason.Abnormal() {
		k.Stats.WillsSent.Add(1)
		k.route(st.will, nil, nil)
	}
	s := st.sess
	k.mu.Lock()
	s.mu.Lock()
	if s.conn.Load() != c {
		// Taken over: the session lives on with its new connection.
		s.mu.Unlock()
		k.mu.Unlock()
		return
	}
	s.conn.Store(nil)
	ended := !s.persistent
	if ended && k.sessions[s.clientID] == s {
		delete(k.sessions, s.clientID)
	}
	s.mu.Unlock()
	k.mu.Unlock()
	if ended {
		// [MQTT-3.1.2-6] a clean session ends with the connection.
		s.clear(k)
	}
}
