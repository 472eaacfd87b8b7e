package engine

import (
	"net"
	"sync/atomic"
	"time"

	"github.com/mqttlua/broker/codec"
	"github.com/mqttlua/broker/engine/transport"
	"github.com/sirupsen/logrus"
	lua "github.com/yuin/gopher-lua"
)

// Conn is one client connection as MQTT sees it: the protocol state of
// the connection over its transport.Conn. It is the connection's
// transport.Receiver.
type Conn struct {
	// FD identifies the connection; it is never reused while the server
	// runs.
	FD int
	// fdValue is FD as a Lua value, made once: boxing a number for the
	// handlers' fd argument allocates, and it is passed with every packet.
	fdValue lua.LValue
	srv     *Server
	t       *transport.Conn

	// Set by the reader when CONNECT arrives; read by anyone.
	version   atomic.Uint32
	clientID  atomic.Pointer[string]
	username  atomic.Pointer[string] // nil: CONNECT had no user name
	keepAlive atomic.Int64           // read timeout in ns, 0: none

	// MQTT 5 limits from the client's CONNECT, set when it arrives.
	maxPacketOut    atomic.Int64  // Maximum Packet Size, 0: protocol maximum
	topicAliasOut   atomic.Uint32 // Topic Alias Maximum for server-to-client aliases
	receiveMax      atomic.Uint32 // Receive Maximum, 0: none given (65535)
	noProblemInfo   atomic.Bool   // Request Problem Information 0
	serverKeepAlive uint16        // Server Keep Alive to announce, 0: none
	sessionExpiry   uint32        // Session Expiry Interval of CONNECT

	// Reader state.
	aliasIn map[uint16]string // client-to-server topic aliases
	// The Session Expiry Interval of the client's DISCONNECT, if it had one.
	disconnectExpiry    uint32
	disconnectHasExpiry bool
	connected           bool

	// Data is for Go modules (the broker kit keeps its session here). It
	// is set and read under the module's own locking.
	Data atomic.Value
}

// open is the transport's Config.Open: the MQTT state of a new
// connection.
func (s *Server) open(t *transport.Conn) transport.Receiver {
	c := &Conn{FD: t.FD, fdValue: lua.LNumber(t.FD), srv: s, t: t}
	c.clientID.Store(&noClientID)
	return c
}

// connOf returns the MQTT connection over a transport connection.
func connOf(t *transport.Conn) *Conn { return t.Receiver().(*Conn) }

// noClientID is every connection's client identifier until its CONNECT
// (shared: the pointer is replaced, never written through).
var noClientID = ""

// Batch is the write batch of a connection's reader (transport.Batch).
type Batch = transport.Batch

// Version returns the connection's protocol level (0 before CONNECT).
func (c *Conn) Version() byte { return byte(c.version.Load()) }

// ClientID returns the client identifier (set from CONNECT; the kit may
// replace it with an assigned one).
func (c *Conn) ClientID() string { return *c.clientID.Load() }

// Username returns the user name of the CONNECT and whether it had one.
func (c *Conn) Username() (string, bool) {
	if u := c.username.Load(); u != nil {
		return *u, true
	}
	return "", false
}

// SetClientID replaces the client identifier, e.g. with a server-assigned one.
func (c *Conn) SetClientID(id string) { c.clientID.Store(&id) }

// RemoteAddr returns the peer's address.
func (c *Conn) RemoteAddr() net.Addr { return c.t.RemoteAddr() }

// RemoteAddrString returns the peer's address as text, "host:port".
func (c *Conn) RemoteAddrString() string { return c.t.RemoteAddrString() }

// Transport returns the connection's transport.
func (c *Conn) Transport() *transport.Conn { return c.t }

// Server returns the server the connection belongs to.
func (c *Conn) Server() *Server { return c.srv }

// WorkerID returns the ID of the VM the connection is pinned to.
func (c *Conn) WorkerID() int { return c.FD % len(c.srv.VMs()) }

// SetKeepAlive sets the keep alive in seconds; the connection is closed
// when nothing arrives within 1.5 times it ([MQTT-3.1.2-24]).
func (c *Conn) SetKeepAlive(seconds int) {
	d := time.Duration(seconds) * 1500 * time.Millisecond
	c.keepAlive.Store(int64(d))
	c.t.SetReadTimeout(d)
}

// debug reports whether debug lines are logged; building a logrus entry
// costs allocations, so per-connection debug lines check first.
func (c *Conn) debug() bool { return c.srv.cfg.Log.IsLevelEnabled(logrus.DebugLevel) }

func (c *Conn) log() *logrus.Entry {
	return c.srv.cfg.Log.WithFields(logrus.Fields{"fd": c.FD, "client_id": c.ClientID()})
}

// ErrClosed is returned when queuing to a connection that is closing.
var ErrClosed = transport.ErrClosed

// ErrTooLarge is returned when a packet exceeds the client's Maximum
// Packet Size; it is dropped, counted, and the connection stays open.
var ErrTooLarge = transport.ErrTooLarge

// Send queues raw bytes for the connection. A CONNACK with a failure code
// closes the connection once it is written ([MQTT-3.2.2-5]).
func (c *Conn) Send(b []byte) error { return c.SendVia(b, nil) }

// SendVia is Send with the writer's wake-up deferred to batch (nil: now).
func (c *Conn) SendVia(b []byte, batch *Batch) error {
	// Raw bytes may hold several packets: no per-packet size check.
	err := c.t.Write(b, batch)
	if err == nil && len(b) >= 4 && b[0] == byte(codec.CONNACK)<<4 {
		var p codec.Packet
		if _, err := codec.Decode(b, c.Version(), &p); err == nil && p.ReasonCode != 0 {
			c.Close(CloseConnectRefused)
		}
	}
	return err
}

// SendPacket encodes p for the connection's protocol level straight into
// its outbound queue.
func (c *Conn) SendPacket(p *codec.Packet) error { return c.SendPacketVia(p, nil) }

// SendPacketVia is SendPacket with the writer's wake-up deferred to batch
// (nil: now).
func (c *Conn) SendPacketVia(p *codec.Packet, batch *Batch) error {
	v := c.Version()
	if v == 0 {
		v = codec.V311
	}
	if p.Type == codec.CONNACK && v == codec.V5 && p.ReasonCode == 0 {
		p = c.decorateConnack(p)
	}
	noProblemInfo := c.noProblemInfo.Load()
	err := c.t.Append(func(dst []byte) ([]byte, error) {
		if noProblemInfo && p.Type != codec.PUBLISH && p.Type != codec.CONNACK && p.Type != codec.DISCONNECT &&
			(p.Properties.Has(codec.PropReasonString) || p.Properties.Has(codec.PropUserProperty)) {
			// 5.0 [MQTT-3.1.2-29]: the client asked for no Reason String or
			// User Properties outside PUBLISH, CONNACK and DISCONNECT.
			q := *p
			q.Properties.Clear(codec.PropReasonString)
			q.Properties.User = nil
			return q.Append(dst, v)
		}
		return p.Append(dst, v)
	}, batch)
	if err == nil && p.Type == codec.CONNACK && p.ReasonCode != 0 {
		c.Close(CloseConnectRefused)
	}
	return err
}

// decorateConnack adds to a successful 5.0 CONNACK the limits the engine
// enforces, unless the sender set them: Receive Maximum, Topic Alias
// Maximum, Maximum Packet Size and Server Keep Alive.
func (c *Conn) decorateConnack(p *codec.Packet) *codec.Packet {
	d := *p
	pr := &d.Properties
	cfg := &c.srv.cfg
	if !pr.Has(codec.PropReceiveMaximum) && cfg.ReceiveMaximum < 65535 {
		pr.SetUint(codec.PropReceiveMaximum, uint32(cfg.ReceiveMaximum))
	}
	if !pr.Has(codec.PropTopicAliasMaximum) && cfg.TopicAliasMaximum > 0 {
		pr.SetUint(codec.PropTopicAliasMaximum, uint32(cfg.TopicAliasMaximum))
	}
	if !pr.Has(codec.PropMaximumPacketSize) && cfg.MaxPacketSize < codec.MaxPacketSize {
		pr.SetUint(codec.PropMaximumPacketSize, uint32(cfg.MaxPacketSize))
	}
	if !pr.Has(codec.PropServerKeepAlive) && c.serverKeepAlive > 0 {
		pr.SetUint(codec.PropServerKeepAlive, uint32(c.serverKeepAlive))
	}
	return &d
}

// AppendVia lets enc append encoded packets to the connection's outbound
// queue, under its lock, so that fan-out encodes straight into the queue
// with no intermediate buffer. enc must not block. On error, past the
// client's Maximum Packet Size ([MQTT-3.1.2-25]) or past the queue's
// limit nothing is queued.
func (c *Conn) AppendVia(enc func(dst []byte) ([]byte, error), batch *Batch) error {
	return c.t.Append(enc, batch)
}

// Close closes the connection for reason. For MQTT 5 clients a DISCONNECT
// with the reason's code is written first.
func (c *Conn) Close(reason CloseReason) {
	c.CloseWithCode(reason, disconnectCode(reason), "")
}

// CloseWithCode closes the connection, first sending an MQTT 5 client a
// DISCONNECT with code and, if not empty, a reason string. code 0 sends
// no DISCONNECT.
func (c *Conn) CloseWithCode(reason CloseReason, code codec.ReasonCode, reasonString string) {
	if code == 0 || c.Version() != codec.V5 {
		c.t.Close(reason)
		return
	}
	c.t.CloseWith(reason, func(dst []byte) ([]byte, error) {
		// [MQTT-4.13.2-1] a DISCONNECT with a reason code before closing.
		d := codec.Packet{Type: codec.DISCONNECT, ReasonCode: code}
		if reasonString != "" {
			d.Properties.SetString(codec.PropReasonString, reasonString)
		}
		return d.Append(dst, codec.V5)
	})
}

// Closing reports whether the connection is closing or closed.
func (c *Conn) Closing() bool { return c.t.Closing() }

// Reason returns why the connection closed (CloseNone while it is open).
func (c *Conn) Reason() CloseReason { return c.t.Reason() }

// Malformed answers what the codec refused, with the reason code the
// protocol has for it, and closes.
func (c *Conn) Malformed(ce *codec.Error, p *codec.Packet) {
	if c.debug() {
		c.log().WithError(ce).Debug("rejected packet")
	}
	if !c.connected {
		c.rejectConnect(ce, p)
		return
	}
	reason := CloseMalformed
	switch ce.Code {
	case codec.PacketTooLarge:
		reason = ClosePacketTooLarge
	case codec.MalformedPacket:
	default:
		reason = CloseProtocolError
	}
	code := ce.Code
	if !code.ValidFor(codec.DISCONNECT) {
		code = codec.ProtocolError
	}
	c.CloseWithCode(reason, code, "")
}

// TimedOut closes a connection that sent nothing in time: no CONNECT
// within the connect timeout, or nothing within 1.5 x keep alive.
func (c *Conn) TimedOut() {
	if c.connected {
		c.Close(CloseKeepAliveTimeout)
	} else {
		c.Close(CloseConnectTimeout)
	}
}

// rejectConnect answers a CONNECT the codec rejected. [MQTT-3.1.2-2] an
// unsupported protocol level gets CONNACK 0x01 (0x84 for 5.0); a 5.0
// client gets a CONNACK with the codec's reason code; a 3.1.1 client with a
// malformed CONNECT is just closed ([MQTT-3.1.4-1]).
func (c *Conn) rejectConnect(ce *codec.Error, p *codec.Packet) {
	reason := CloseMalformed
	if p.Type != codec.CONNECT {
		reason = CloseNotConnect
	} else if ce.Code == codec.UnsupportedProtocolVersion {
		ack := codec.Packet{Type: codec.CONNACK, ReasonCode: codec.V3UnacceptableProtocolVersion}
		level := codec.V311
		if p.ProtocolLevel == codec.V5 {
			ack.ReasonCode, level = codec.UnsupportedProtocolVersion, codec.V5
		}
		c.queue(&ack, level)
		reason = CloseProtocolError
	} else if p.ProtocolLevel == codec.V5 && ce.Code.ValidFor(codec.CONNACK) {
		c.queue(&codec.Packet{Type: codec.CONNACK, ReasonCode: ce.Code}, codec.V5)
	}
	c.t.Close(reason)
}

// queue encodes p at a given level into the queue, for the replies sent
// before the connection's level is known.
func (c *Conn) queue(p *codec.Packet, level byte) {
	c.t.AppendUnchecked(func(dst []byte) ([]byte, error) { return p.Append(dst, level) }, nil)
}

// handle applies the engine's protocol rules to a packet and runs its
// handler.
func (c *Conn) Packet(p *codec.Packet) {
	switch {
	case !c.connected && p.Type != codec.CONNECT:
		// [MQTT-3.1.0-1] the first packet is CONNECT.
		if c.debug() {
			c.log().WithField("type", p.Type.String()).Debug("first packet is not CONNECT")
		}
		c.CloseWithCode(CloseNotConnect, 0, "")
		return
	case c.connected && p.Type == codec.CONNECT:
		// [MQTT-3.1.0-2] a second CONNECT is a protocol violation.
		c.Close(CloseSecondConnect)
		return
	}
	switch p.Type {
	case codec.CONNACK, codec.SUBACK, codec.UNSUBACK, codec.PINGRESP:
		// Only a server sends these.
		c.CloseWithCode(CloseProtocolError, codec.ProtocolError, p.Type.String()+" from a client")
		return
	case codec.CONNECT:
		c.connected = true
		c.SetClientID(p.ClientID)
		if p.UsernameFlag {
			u := p.Username
			c.username.Store(&u)
		}
		ka := int(p.KeepAlive)
		if p.ProtocolLevel == codec.V5 {
			pr := &p.Properties
			c.maxPacketOut.Store(int64(pr.MaximumPacketSize))
			// 5.0 [MQTT-3.1.2-25]: never send more than the client accepts.
			c.t.SetMaxPacketOut(int(pr.MaximumPacketSize))
			c.topicAliasOut.Store(uint32(pr.TopicAliasMaximum))
			c.receiveMax.Store(uint32(pr.ReceiveMaximum))
			c.sessionExpiry = pr.SessionExpiry
			c.noProblemInfo.Store(pr.Has(codec.PropRequestProblemInfo) && pr.RequestProblemInfo == 0)
			if max := c.srv.cfg.MaxKeepAlive; max > 0 && (ka == 0 || ka > max) {
				// 5.0 §3.2.2.3.14: the server's keep alive replaces the
				// client's and is announced in CONNACK.
				ka = max
				c.serverKeepAlive = uint16(max)
			}
		}
		c.version.Store(uint32(p.ProtocolLevel))
		c.SetKeepAlive(ka)
	case codec.PUBLISH:
		if c.Version() == codec.V5 && !c.resolveAlias(p) {
			return
		}
	case codec.DISCONNECT:
		if c.Version() == codec.V5 && p.Properties.Has(codec.PropSessionExpiry) && c.sessionExpiry == 0 && p.Properties.SessionExpiry != 0 {
			// 5.0 §3.14.2.2.2: a session that was to end at disconnect
			// cannot be extended by DISCONNECT.
			c.CloseWithCode(CloseProtocolError, codec.ProtocolError, "session expiry interval was 0 in CONNECT")
			return
		}
		if p.Properties.Has(codec.PropSessionExpiry) {
			c.disconnectExpiry, c.disconnectHasExpiry = p.Properties.SessionExpiry, true
		}
		// [MQTT-3.14.4-3] the will is discarded, unless a 5.0 client asks
		// for it with 0x04.
		if p.ReasonCode == codec.DisconnectWithWillMessage {
			c.t.ExpectClose(CloseClientDisconnectWithWill)
		} else {
			c.t.ExpectClose(CloseClientDisconnect)
		}
	}
	c.srv.dispatch(c, p)
}

// resolveAlias applies a 5.0 topic alias (5.0 §3.3.2.3.4): a topic with an
// alias sets it, an empty topic uses it. The alias property is removed, so
// scripts and subscribers see the full topic. It closes the connection and
// returns false for an alias out of range or not set.
func (c *Conn) resolveAlias(p *codec.Packet) bool {
	if !p.Properties.Has(codec.PropTopicAlias) {
		return true
	}
	a := p.Properties.TopicAlias
	if int(a) > c.srv.cfg.TopicAliasMaximum {
		// [MQTT-3.3.2-9] / 5.0 §3.3.2.3.4: greater than the maximum.
		c.CloseWithCode(CloseProtocolError, codec.TopicAliasInvalid, "topic alias above the maximum")
		return false
	}
	if p.Topic != "" {
		if c.aliasIn == nil {
			c.aliasIn = map[uint16]string{}
		}
		c.aliasIn[a] = p.Topic
	} else if t, ok := c.aliasIn[a]; ok {
		p.Topic = t
	} else {
		c.CloseWithCode(CloseProtocolError, codec.ProtocolError, "topic alias not set")
		return false
	}
	p.Properties.Clear(codec.PropTopicAlias)
	return true
}

// MaxPacketOutLocked returns the client's Maximum Packet Size (0: no limit
// beyond the protocol's), for code running inside AppendVia's encoder.
func (c *Conn) MaxPacketOutLocked() int { return int(c.maxPacketOut.Load()) }

// TopicAliasMaximum returns the highest topic alias the server may use
// towards the client (0: none).
func (c *Conn) TopicAliasMaximum() uint16 { return uint16(c.topicAliasOut.Load()) }

// ReceiveMaximum returns the client's Receive Maximum (65535 when not given).
func (c *Conn) ReceiveMaximum() int {
	if n := c.receiveMax.Load(); n != 0 {
		return int(n)
	}
	return 65535
}

// SessionExpiry returns the Session Expiry Interval of the CONNECT, or of
// the client's DISCONNECT when it changed it. For the connection's own
// reader and ConnClosed.
func (c *Conn) SessionExpiry() uint32 {
	if c.disconnectHasExpiry {
		return c.disconnectExpiry
	}
	return c.sessionExpiry
}

// DroppedTooLarge returns how many packets were not sent because they
// exceeded the client's Maximum Packet Size.
func (c *Conn) DroppedTooLarge() int64 { return c.t.DroppedTooLarge() }

// Closed tells the script and the modules that the connection ended.
func (c *Conn) Closed(reason CloseReason) {
	if c.debug() {
		c.log().WithField("reason", reason.String()).Debug("connection closed")
	}
	if c.connected {
		c.srv.onClose(c, reason)
	}
	for _, m := range c.srv.cfg.Modules {
		m.ConnClosed(c, reason)
	}
}
