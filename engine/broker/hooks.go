package broker

import (
	"github.com/mqttlua/broker/codec"
	"github.com/mqttlua/broker/engine/transport"
)

// Hooks are the decisions the broker asks of the scripts: the script
// layer implements them. The broker calls them on the connection's
// reader, one packet at a time.
type Hooks interface {
	// Open is called for each new connection, before its first packet.
	Open(c *Client) ClientHooks
	// SessionEnded is told that a session which had outlived its
	// connection expired (on a timer's goroutine, no connection's).
	SessionEnded(clientID string)
	// EventsWanted returns the EventKind bits the scripts handle; it is
	// asked on the message path, so it must be an atomic read.
	EventsWanted() EventKind
	// MessageEvent handles one event (events.go), on the broker's event
	// goroutine, in order.
	MessageEvent(ev MessageEvent)
}

// ClientHooks serve one connection.
type ClientHooks interface {
	// Packet runs the script's handler for p. It reports whether one
	// is defined, and what it returned. A handler that fails has closed
	// the connection itself (ran, VerdictNone).
	Packet(p *codec.Packet) (ran bool, v Verdict)
	// Closed runs when a connection that sent CONNECT has ended, before
	// its session is told. session says what becomes of the session:
	// SessionOffline, SessionGone, SessionTakenOver, or "" (none: a raw
	// connection).
	Closed(reason transport.CloseReason, session string)
}

// Verdict is what a handler returned, for the packets whose handlers
// decide something by their return value (Simps' contract).
type Verdict int8

// The verdicts.
const (
	VerdictNone  Verdict = iota // nil, or anything but a boolean
	VerdictTrue                 // true
	VerdictFalse                // false
)

// dispatch runs the script's handler for p, or the protocol default when
// the scripts define none. The session's acknowledgement flow (PUBACK,
// PUBREC, PUBREL, PUBCOMP) is handled before the script sees the packet.
func (c *Client) dispatch(p *codec.Packet) {
	intercepted := false
	switch p.Type {
	case codec.PUBACK, codec.PUBREC, codec.PUBREL, codec.PUBCOMP:
		intercepted = c.b.intercept(c, p, c.t.Batch())
	}
	ran, v := c.hooks.Packet(p)
	if !ran {
		if !intercepted {
			c.defaultAction(p)
		}
		return
	}
	switch p.Type {
	case codec.CONNECT:
		if v == VerdictFalse {
			c.CloseWithCode(transport.CloseScript, 0, "")
		}
	case codec.PINGREQ:
		if v == VerdictTrue {
			c.SendPacketVia(&codec.Packet{Type: codec.PINGRESP}, c.t.Batch())
		}
	case codec.DISCONNECT:
		if v == VerdictTrue {
			c.CloseWithCode(transport.CloseClientDisconnect, 0, "")
		}
	}
}

// defaultAction is what happens to a packet whose handler the scripts do
// not define: the protocol-correct minimum.
func (c *Client) defaultAction(p *codec.Packet) {
	v5 := c.Version() == codec.V5
	switch p.Type {
	case codec.CONNECT:
		c.SendPacketVia(&codec.Packet{Type: codec.CONNACK}, c.t.Batch())
	case codec.PINGREQ:
		// [MQTT-3.12.4-1]
		c.SendPacketVia(&codec.Packet{Type: codec.PINGRESP}, c.t.Batch())
	case codec.DISCONNECT:
		c.CloseWithCode(transport.CloseClientDisconnect, 0, "")
	case codec.PUBLISH:
		// Nothing routes the message without a handler, but the sender's
		// QoS flow must still complete.
		switch p.QoS {
		case 1:
			c.SendPacketVia(&codec.Packet{Type: codec.PUBACK, PacketID: p.PacketID}, c.t.Batch())
		case 2:
			c.SendPacketVia(&codec.Packet{Type: codec.PUBREC, PacketID: p.PacketID}, c.t.Batch())
		}
	case codec.PUBREL:
		// [MQTT-4.3.3-11] PUBREL is answered with PUBCOMP.
		c.SendPacketVia(&codec.Packet{Type: codec.PUBCOMP, PacketID: p.PacketID}, c.t.Batch())
	case codec.PUBREC:
		c.SendPacketVia(&codec.Packet{Type: codec.PUBREL, PacketID: p.PacketID}, c.t.Batch())
	case codec.SUBSCRIBE:
		// [MQTT-3.8.4-1] SUBSCRIBE is always answered; with no handler
		// nothing would be delivered, so every filter is refused.
		codes := make([]codec.ReasonCode, len(p.Subscriptions))
		for i := range codes {
			codes[i] = codec.V3SubackFailure
			if v5 {
				codes[i] = codec.ImplementationSpecificError
			}
		}
		c.SendPacketVia(&codec.Packet{Type: codec.SUBACK, PacketID: p.PacketID, ReasonCodes: codes}, c.t.Batch())
	case codec.UNSUBSCRIBE:
		// [MQTT-3.10.4-4]
		ack := &codec.Packet{Type: codec.UNSUBACK, PacketID: p.PacketID}
		if v5 {
			ack.ReasonCodes = make([]codec.ReasonCode, len(p.Topics))
			for i := range ack.ReasonCodes {
				ack.ReasonCodes[i] = codec.NoSubscriptionExisted
			}
		}
		c.SendPacketVia(ack, c.t.Batch())
	case codec.AUTH:
		c.CloseWithCode(transport.CloseProtocolError, codec.BadAuthenticationMethod, "no onMqAuth handler")
	}
}

// What becomes of a session when its connection closes (ClientHooks.Closed).
const (
	SessionOffline   = "offline"    // kept: the client may come back to it
	SessionGone      = "gone"       // ended with the connection
	SessionTakenOver = "taken_over" // another connection has it now
)
