package broker

import (
	"net"
	"sync/atomic"
	"time"

	"github.com/mqttlua/broker/codec"
	"github.com/mqttlua/broker/engine/transport"
	"github.com/sirupsen/logrus"
)

// Client is one client connection as MQTT sees it: the protocol state of
// the connection over its transport.Conn (it is the connection's
// transport.Receiver) and, once a script accepted it as a session, the
// session it is attached to.
type Client struct {
	// FD identifies the connection; it is never reused while the broker
	// runs.
	FD    int
	b     *Broker
	t     *transport.Conn
	hooks ClientHooks

	// pendingAcks counts the client's acknowledgements waiting for the
	// store (persist.go): while any wait, later ones queue behind them.
	pendingAcks atomic.Int32
	// acks orders the client's acknowledgements while some wait for the
	// cluster (bridge.go).
	acks ackQueue

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
	announced           atomic.Bool  // the "client connected" line was logged
	connectedAt         atomic.Int64 // UnixNano of the CONNECT

	// The session, set by Accept.
	state atomic.Pointer[connState]
}

// Open is the transport's Config.Open: the MQTT state of a new
// connection, and the script hooks that serve it.
func (k *Broker) Open(t *transport.Conn) transport.Receiver {
	c := &Client{FD: t.FD, b: k, t: t}
	c.clientID.Store(&noClientID)
	c.hooks = k.hooks.Open(c)
	return c
}

// clientOf returns the MQTT client over a transport connection.
func clientOf(t *transport.Conn) *Client { return t.Receiver().(*Client) }

// Client returns the live connection with this fd, or nil.
func (k *Broker) Client(fd int) *Client {
	if t := k.tr.Conn(fd); t != nil {
		return clientOf(t)
	}
	return nil
}

// Range calls f for each live connection until f returns false.
func (k *Broker) Range(f func(*Client) bool) {
	k.tr.Range(func(t *transport.Conn) bool { return f(clientOf(t)) })
}

// noClientID is every connection's client identifier until its CONNECT
// (shared: the pointer is replaced, never written through).
var noClientID = ""

// Version returns the connection's protocol level (0 before CONNECT).
func (c *Client) Version() byte { return byte(c.version.Load()) }

// ClientID returns the client identifier (set from CONNECT; Accept may
// replace it with an assigned one).
func (c *Client) ClientID() string { return *c.clientID.Load() }

// Username returns the user name of the CONNECT and whether it had one.
func (c *Client) Username() (string, bool) {
	if u := c.username.Load(); u != nil {
		return *u, true
	}
	return "", false
}

// HasSession reports whether the client was accepted as a session
// (Broker.Accept).
func (c *Client) HasSession() bool { return c.state.Load() != nil }

// Connected reports whether the client has sent its CONNECT.
func (c *Client) Connected() bool { return c.Version() != 0 }

// KeepAlive returns the keep alive in effect, in seconds (0: none).
func (c *Client) KeepAlive() int {
	return int(time.Duration(c.keepAlive.Load()) / (1500 * time.Millisecond))
}

// SetClientID replaces the client identifier, e.g. with a server-assigned one.
func (c *Client) SetClientID(id string) { c.clientID.Store(&id) }

// RemoteAddr returns the peer's address.
func (c *Client) RemoteAddr() net.Addr { return c.t.RemoteAddr() }

// RemoteAddrString returns the peer's address as text, "host:port".
func (c *Client) RemoteAddrString() string { return c.t.RemoteAddrString() }

// Listener returns the URL of the listener the client connected through.
func (c *Client) Listener() string { return c.t.Listener() }

// PeerCert returns the client's verified TLS certificate, or nil.
func (c *Client) PeerCert() *transport.PeerCert { return c.t.PeerCert() }

// Batch is the write batch of the connection's reader, for output
// queued while one of its packets is handled.
func (c *Client) Batch() *transport.Batch { return c.t.Batch() }

// setKeepAlive sets the keep alive in seconds; the connection is closed
// when nothing arrives within 1.5 times it ([MQTT-3.1.2-24]).
func (c *Client) setKeepAlive(seconds int) {
	d := time.Duration(seconds) * 1500 * time.Millisecond
	c.keepAlive.Store(int64(d))
	c.t.SetReadTimeout(d)
}

// debug reports whether debug lines are logged; building a logrus entry
// costs allocations, so per-connection debug lines check first.
func (c *Client) debug() bool { return c.b.cfg.Log.IsLevelEnabled(logrus.DebugLevel) }

func (c *Client) log() *logrus.Entry {
	return c.b.cfg.Log.WithFields(logrus.Fields{"fd": c.FD, "client_id": c.ClientID()})
}

// SendVia queues raw bytes for the connection, waking its writer through
// batch (nil: now). A CONNACK with a failure code closes the connection
// once it is written ([MQTT-3.2.2-5]).
func (c *Client) SendVia(b []byte, batch *transport.Batch) error {
	// Raw bytes may hold several packets: no per-packet size check.
	err := c.t.Write(b, batch)
	if err == nil && len(b) >= 4 && b[0] == byte(codec.CONNACK)<<4 {
		var p codec.Packet
		if _, err := codec.Decode(b, c.Version(), &p); err == nil && p.ReasonCode != 0 {
			c.Close(transport.CloseConnectRefused)
		} else if err == nil {
			c.announce()
		}
	}
	return err
}

// announce logs, once, that the client is connected: as Mosquitto's "New
// client connected" line, at info, with who and how.
func (c *Client) announce() {
	if !c.b.cfg.Log.IsLevelEnabled(logrus.InfoLevel) || c.announced.Swap(true) {
		return
	}
	f := logrus.Fields{"remote": c.RemoteAddrString(), "protocol": protocolName(c.Version()), "keep_alive": c.KeepAlive()}
	if l := c.Listener(); l != "" {
		f["listener"] = l
	}
	if u, ok := c.Username(); ok {
		f["user_name"] = u
	}
	c.log().WithFields(f).Info("client connected")
}

func protocolName(v byte) string {
	switch v {
	case codec.V31:
		return "3.1"
	case codec.V311:
		return "3.1.1"
	case codec.V5:
		return "5.0"
	}
	return "unknown"
}

// SendPacketVia encodes p for the connection's protocol level straight
// into its outbound queue, waking its writer through batch (nil: now).
func (c *Client) SendPacketVia(p *codec.Packet, batch *transport.Batch) error {
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
	if err == nil {
		// Deliveries (PUBLISH through Broker.send) are counted as
		// Delivered, in bulk; everything else one by one here.
		if tr := c.b.tr; tr != nil {
			tr.Stats.PacketsOut[p.Type&15].Add(1)
		}
	}
	if err == nil && p.Type == codec.CONNACK {
		if p.ReasonCode != 0 {
			c.Close(transport.CloseConnectRefused)
		} else {
			c.announce()
		}
	}
	return err
}

// decorateConnack adds to a successful 5.0 CONNACK the limits the engine
// enforces, unless the sender set them: Receive Maximum, Topic Alias
// Maximum, Maximum Packet Size and Server Keep Alive.
func (c *Client) decorateConnack(p *codec.Packet) *codec.Packet {
	d := *p
	pr := &d.Properties
	cfg := &c.b.cfg
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

// appendVia lets enc append encoded packets to the connection's outbound
// queue, under its lock, so that fan-out encodes straight into the queue
// with no intermediate buffer. enc must not block. On error, past the
// client's Maximum Packet Size ([MQTT-3.1.2-25]) or past the queue's
// limit nothing is queued.
func (c *Client) appendVia(enc func(dst []byte) ([]byte, error), batch *transport.Batch) error {
	return c.t.Append(enc, batch)
}

// Close closes the connection for reason. For MQTT 5 clients a DISCONNECT
// with the reason's code is written first.
func (c *Client) Close(reason transport.CloseReason) {
	c.CloseWithCode(reason, disconnectCode(reason), "")
}

// CloseWithCode closes the connection, first sending an MQTT 5 client a
// DISCONNECT with code and, if not empty, a reason string. code 0 sends
// no DISCONNECT.
func (c *Client) CloseWithCode(reason transport.CloseReason, code codec.ReasonCode, reasonString string) {
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
func (c *Client) Closing() bool { return c.t.Closing() }

// Reason returns why the connection closed (transport.CloseNone while it is open).
func (c *Client) Reason() transport.CloseReason { return c.t.Reason() }

// Malformed answers what the codec refused, with the reason code the
// protocol has for it, and closes.
func (c *Client) Malformed(ce *codec.Error, p *codec.Packet) {
	if c.debug() {
		c.log().WithError(ce).Debug("rejected packet")
	}
	if !c.connected {
		c.rejectConnect(ce, p)
		return
	}
	reason := transport.CloseMalformed
	switch ce.Code {
	case codec.PacketTooLarge:
		reason = transport.ClosePacketTooLarge
	case codec.MalformedPacket:
	default:
		reason = transport.CloseProtocolError
	}
	code := ce.Code
	if !code.ValidFor(codec.DISCONNECT) {
		code = codec.ProtocolError
	}
	c.CloseWithCode(reason, code, "")
}

// TimedOut closes a connection that sent nothing in time: no CONNECT
// within the connect timeout, or nothing within 1.5 x keep alive.
func (c *Client) TimedOut() {
	if c.connected {
		c.Close(transport.CloseKeepAliveTimeout)
	} else {
		c.Close(transport.CloseConnectTimeout)
	}
}

// rejectConnect answers a CONNECT the codec rejected. [MQTT-3.1.2-2] an
// unsupported protocol level gets CONNACK 0x01 (0x84 for 5.0); a 5.0
// client gets a CONNACK with the codec's reason code; a 3.1.1 client with a
// malformed CONNECT is just closed ([MQTT-3.1.4-1]).
func (c *Client) rejectConnect(ce *codec.Error, p *codec.Packet) {
	reason := transport.CloseMalformed
	if p.Type != codec.CONNECT {
		reason = transport.CloseNotConnect
	} else if ce.Code == codec.UnsupportedProtocolVersion {
		ack := codec.Packet{Type: codec.CONNACK, ReasonCode: codec.V3UnacceptableProtocolVersion}
		level := codec.V311
		if p.ProtocolLevel == codec.V5 {
			ack.ReasonCode, level = codec.UnsupportedProtocolVersion, codec.V5
		}
		c.queue(&ack, level)
		reason = transport.CloseProtocolError
	} else if p.ProtocolLevel == codec.V5 && ce.Code.ValidFor(codec.CONNACK) {
		c.queue(&codec.Packet{Type: codec.CONNACK, ReasonCode: ce.Code}, codec.V5)
	}
	c.t.Close(reason)
}

// queue encodes p at a given level into the queue, for the replies sent
// before the connection's level is known.
func (c *Client) queue(p *codec.Packet, level byte) {
	c.t.AppendUnchecked(func(dst []byte) ([]byte, error) { return p.Append(dst, level) }, nil)
}

// handle applies the engine's protocol rules to a packet and runs its
// handler.
func (c *Client) Packet(p *codec.Packet) {
	switch {
	case !c.connected && p.Type != codec.CONNECT:
		// [MQTT-3.1.0-1] the first packet is CONNECT.
		if c.debug() {
			c.log().WithField("type", p.Type.String()).Debug("first packet is not CONNECT")
		}
		c.CloseWithCode(transport.CloseNotConnect, 0, "")
		return
	case c.connected && p.Type == codec.CONNECT:
		// [MQTT-3.1.0-2] a second CONNECT is a protocol violation.
		c.Close(transport.CloseSecondConnect)
		return
	}
	switch p.Type {
	case codec.CONNACK, codec.SUBACK, codec.UNSUBACK, codec.PINGRESP:
		// Only a server sends these.
		c.CloseWithCode(transport.CloseProtocolError, codec.ProtocolError, p.Type.String()+" from a client")
		return
	case codec.CONNECT:
		if p.Will != nil && c.b.tooDeep(p.Will.Topic) {
			// The will would be routed one day: refused now (5.0: CONNACK
			// 0x90 Topic Name invalid; 3.1.1 has no code for it).
			if p.ProtocolLevel == codec.V5 {
				c.queue(&codec.Packet{Type: codec.CONNACK, ReasonCode: codec.TopicNameInvalid}, codec.V5)
			}
			c.t.Close(transport.CloseProtocolError)
			return
		}
		c.connected = true
		c.connectedAt.Store(time.Now().UnixNano())
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
			if max := c.b.cfg.MaxKeepAlive; max > 0 && (ka == 0 || ka > max) {
				// 5.0 §3.2.2.3.14: the server's keep alive replaces the
				// client's and is announced in CONNACK.
				ka = max
				c.serverKeepAlive = uint16(max)
			}
		}
		c.version.Store(uint32(p.ProtocolLevel))
		c.setKeepAlive(ka)
	case codec.PUBLISH:
		if c.Version() == codec.V5 && !c.resolveAlias(p) {
			return
		}
		if c.b.tooDeep(p.Topic) {
			c.CloseWithCode(transport.CloseProtocolError, codec.TopicNameInvalid, "topic has too many levels")
			return
		}
	case codec.DISCONNECT:
		if c.Version() == codec.V5 && p.Properties.Has(codec.PropSessionExpiry) && c.sessionExpiry == 0 && p.Properties.SessionExpiry != 0 {
			// 5.0 §3.14.2.2.2: a session that was to end at disconnect
			// cannot be extended by DISCONNECT.
			c.CloseWithCode(transport.CloseProtocolError, codec.ProtocolError, "session expiry interval was 0 in CONNECT")
			return
		}
		if p.Properties.Has(codec.PropSessionExpiry) {
			c.disconnectExpiry, c.disconnectHasExpiry = p.Properties.SessionExpiry, true
		}
		// [MQTT-3.14.4-3] the will is discarded, unless a 5.0 client asks
		// for it with 0x04.
		if p.ReasonCode == codec.DisconnectWithWillMessage {
			c.t.ExpectClose(transport.CloseClientDisconnectWithWill)
		} else {
			c.t.ExpectClose(transport.CloseClientDisconnect)
		}
	}
	c.dispatch(p)
}

// resolveAlias applies a 5.0 topic alias (5.0 §3.3.2.3.4): a topic with an
// alias sets it, an empty topic uses it. The alias property is removed, so
// scripts and subscribers see the full topic. It closes the connection and
// returns false for an alias out of range or not set.
func (c *Client) resolveAlias(p *codec.Packet) bool {
	if !p.Properties.Has(codec.PropTopicAlias) {
		return true
	}
	a := p.Properties.TopicAlias
	if int(a) > c.b.cfg.TopicAliasMaximum {
		// [MQTT-3.3.2-9] / 5.0 §3.3.2.3.4: greater than the maximum.
		c.CloseWithCode(transport.CloseProtocolError, codec.TopicAliasInvalid, "topic alias above the maximum")
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
		c.CloseWithCode(transport.CloseProtocolError, codec.ProtocolError, "topic alias not set")
		return false
	}
	p.Properties.Clear(codec.PropTopicAlias)
	return true
}

// maxPacketOutNow returns the client's Maximum Packet Size (0: no limit
// beyond the protocol's), for code running inside appendVia's encoder.
func (c *Client) maxPacketOutNow() int { return int(c.maxPacketOut.Load()) }

// topicAliasMaximum returns the highest topic alias the server may use
// towards the client (0: none).
func (c *Client) topicAliasMaximum() uint16 { return uint16(c.topicAliasOut.Load()) }

// receiveMaximum returns the client's Receive Maximum (65535 when not given).
func (c *Client) receiveMaximum() int {
	if n := c.receiveMax.Load(); n != 0 {
		return int(n)
	}
	return 65535
}

// expiryAtClose returns the Session Expiry Interval of the CONNECT, or of
// the client's DISCONNECT when it changed it. For the connection's own
// reader and ConnClosed.
func (c *Client) expiryAtClose() uint32 {
	if c.disconnectHasExpiry {
		return c.disconnectExpiry
	}
	return c.sessionExpiry
}

// Closed tells the script, then the session, that the connection ended.
// Every end is logged at info with its reason, as Mosquitto logs
// disconnections: the client's DISCONNECT, a slow consumer cut off, a
// protocol error, a timeout, a script's close.
func (c *Client) Closed(reason transport.CloseReason) {
	if reason != transport.CloseNone && c.b.cfg.Log.IsLevelEnabled(logrus.InfoLevel) {
		c.log().WithFields(logrus.Fields{"reason": reason.String(), "remote": c.RemoteAddrString()}).Info("connection closed")
	}
	if c.connected {
		c.hooks.Closed(reason, c.b.sessionFate(c))
	}
	c.b.connClosed(c, reason)
}

// Blocking is called by the hooks, on the connection's reader, before a
// handler waits for I/O: see transport.Conn.Blocking.
func (c *Client) Blocking() { c.t.Blocking() }
