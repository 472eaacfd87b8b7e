package broker

import (
	"crypto/rand"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mqttlua/broker/codec"
	"github.com/mqttlua/broker/engine/store"
	"github.com/mqttlua/broker/engine/topic"
	"github.com/mqttlua/broker/engine/transport"
	"github.com/sirupsen/logrus"
)

// Settings are the broker's limits; scripts change them with
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
	// MaxSessionExpiry caps the Session Expiry Interval MQTT 5 clients ask
	// for, in seconds (0: no cap).
	MaxSessionExpiry uint32
	// ResponseInformation, if not empty, is the prefix of the Response
	// Information given to 5.0 clients that request it; the client id is
	// appended ("responses/" -> "responses/dev-1/").
	ResponseInformation string
	// OpenSessions lets a client with another user name (or none) take
	// over a session its user created. By default a session created by an
	// authenticated user is bound to that user name: another user, or an
	// anonymous client, asking for its client id is refused (3.1.1:
	// CONNACK 0x02, 5.0: 0x85), so it can neither read the session's
	// queued messages nor take over its connection. Sessions created
	// without a user name are bound to nobody.
	OpenSessions bool
}

// DefaultSettings are those of Mosquitto's defaults.
var DefaultSettings = Settings{MaxInflight: 20, MaxQueued: 1000, MaxQoS: 2}

// Stats are the broker's counters.
type Stats struct {
	Published atomic.Int64 // messages routed
	Delivered atomic.Int64 // deliveries queued to connections
	Dropped   atomic.Int64 // messages dropped from full session queues
	// DroppedByScript counts deliveries a script's onMqDeliver dropped.
	DroppedByScript atomic.Int64
	// EventsDropped counts message events the scripts could not be told
	// of because their queue was full.
	EventsDropped atomic.Int64
	NoSession     atomic.Int64 // QoS 0 deliveries to offline clients, not kept
	Expired       atomic.Int64 // 5.0 messages past their expiry, not delivered
	Redistributed atomic.Int64 // shared-subscription messages moved to another member
	Takeovers     atomic.Int64
	WillsSent     atomic.Int64
	SessionsEnded atomic.Int64 // persistent sessions that expired
	// SessionsRefused counts CONNECTs refused because their client id's
	// session belongs to another user (Settings.OpenSessions).
	SessionsRefused atomic.Int64
	// StoreFailures counts QoS 1/2 PUBLISHes not acknowledged because
	// their writes failed (persist.go).
	StoreFailures atomic.Int64
	// ForwardFailures counts QoS 1/2 PUBLISHes not acknowledged because
	// the cluster did not take them (bridge.go).
	ForwardFailures atomic.Int64
}

// Config are the broker's protocol limits. Every field must be set; the
// engine applies the defaults.
type Config struct {
	// TopicAliasMaximum is the highest topic alias MQTT 5 clients may use
	// towards the server (0: no aliases).
	TopicAliasMaximum int
	// ReceiveMaximum is how many QoS 2 PUBLISHes an MQTT 5 client may have
	// unreleased at once; more is DISCONNECT 0x93.
	ReceiveMaximum int
	// MaxKeepAlive caps the keep alive of MQTT 5 clients, announced as
	// Server Keep Alive (0: no cap).
	MaxKeepAlive int
	// MaxPacketSize is the largest packet accepted, announced to MQTT 5
	// clients as Maximum Packet Size.
	MaxPacketSize int
	// MaxTopicLevels is the most levels a topic name or filter may have
	// (0: no limit). A deeper PUBLISH or will closes the connection
	// (5.0: 0x90 Topic Name invalid); a deeper filter is refused in SUBACK
	// (0x8F, 3.1.1: 0x80).
	MaxTopicLevels int
	// Log receives the broker's log lines.
	Log *logrus.Logger
}

// Broker is the broker layer.
type Broker struct {
	cfg   Config
	log   *logrus.Logger
	tr    *transport.Transport
	hooks Hooks

	settings atomic.Pointer[Settings]

	mu       sync.Mutex
	sessions map[string]*Session

	events eventQueue

	subs     *topic.Tree[*Session, subOpts]
	retained *topic.Retained[*Message]
	nextAuto atomic.Int64
	// autoPrefix starts the client ids the broker assigns: "auto-" and
	// a random word of this start, so that an id assigned now is not one
	// a session kept from an earlier start (in the store, or on another
	// node of a cluster) still holds.
	autoPrefix string

	// Shared subscriptions: groups by name and filter, and a tree of
	// their filters. shareMu guards shares and is taken before a
	// group's own lock.
	shareMu   sync.Mutex
	shares    map[string]*shareGroup
	shareTree *topic.Tree[*shareGroup, struct{}]

	// store, when set, is where what must survive a restart is written
	// (persist.go); nil: memory only.
	store *store.Committer
	// bridge, when set, links this node to a cluster (bridge.go); nil:
	// a single node.
	bridge Bridge
	// epoch tags deliveries into sessions for the cluster's checkpoints
	// (bridge.go, PendingEpoch).
	epoch atomic.Uint64

	// Stats are the broker's counters.
	Stats Stats
	// Logins checks passwords for scripts, with their limits.
	Logins *Logins
}

// New returns a broker with the default settings. SetHooks and
// SetTransport must be called before the transport serves.
func New(cfg Config) *Broker {
	if cfg.Log == nil {
		cfg.Log = logrus.New()
	}
	k := &Broker{
		cfg:        cfg,
		log:        cfg.Log,
		sessions:   map[string]*Session{},
		subs:       topic.NewTree[*Session, subOpts](),
		retained:   topic.NewRetained[*Message](),
		shares:     map[string]*shareGroup{},
		shareTree:  topic.NewTree[*shareGroup, struct{}](),
		Logins:     newLogins(cfg.Log),
		autoPrefix: "auto-" + strings.ToLower(rand.Text()[:8]) + "-",
	}
	s := DefaultSettings
	k.settings.Store(&s)
	return k
}

// Settings returns the current settings.
func (k *Broker) Settings() Settings { return *k.settings.Load() }

// SetSettings replaces the settings.
func (k *Broker) SetSettings(s Settings) { k.settings.Store(&s) }

// tooDeep reports whether a topic name or filter has more levels than
// Config.MaxTopicLevels.
func (k *Broker) tooDeep(topic string) bool {
	max := k.cfg.MaxTopicLevels
	return max > 0 && len(topic) >= max && strings.Count(topic, "/") >= max
}

// SetHooks sets the script layer's hooks.
func (k *Broker) SetHooks(h Hooks) { k.hooks = h }

// SetTransport sets the transport whose connections the broker serves
// (its Config.Open is Broker.Open).
func (k *Broker) SetTransport(t *transport.Transport) { k.tr = t }

// Message is a PUBLISH as the broker routes and stores it. A routed message
// is shared by its deliveries and never modified after routing.
type Message struct {
	Topic   string
	Payload []byte
	QoS     byte
	Retain  bool
	// Owned says Payload aliases no read buffer: the broker keeps it as
	// it is rather than copying it.
	Owned bool
	// durable is set by routing, on the publisher's goroutine, when a
	// copy of the message (retained, or a delivery to a persistent
	// session) was written to the store: its acknowledgement waits for
	// the disk (persist.go).
	durable bool
	// remote: the message came from another node (RouteRemote), and
	// is not sent back to the cluster.
	remote bool
	// Props are the MQTT 5 properties forwarded with the message, nil for
	// none. A pointer: a Message is allocated per routed PUBLISH, most
	// carry no properties, and codec.Properties is ~270 bytes.
	Props *codec.Properties
	// expireAt is when a 5.0 message with a Message Expiry Interval
	// expires (UnixNano), 0 for never.
	expireAt int64
	// stamp is the bridge's, for a message published on this node
	// (Bridge.BeginLocal).
	stamp uint64
	// The flags sit together after QoS: 72 bytes, the 80-byte size
	// class a Message had before the cluster's two fields.
}

// expired reports whether the message's lifetime has passed
// ([MQTT-3.3.2-5]: it is then not delivered).
func (m *Message) expired(now time.Time) bool {
	return m.expireAt != 0 && now.UnixNano() >= m.expireAt
}

// own makes the message safe to keep past the handler that routed it.
func (m *Message) own() {
	if !m.Owned {
		m.Payload = append([]byte(nil), m.Payload...)
		m.Owned = true
	}
}

// packet returns the PUBLISH for one delivery.
func (m *Message) packet(qos byte, retain, dup bool, id uint16) codec.Packet {
	p := codec.Packet{Type: codec.PUBLISH, Topic: m.Topic, Payload: m.Payload, QoS: qos, Retain: retain, Dup: dup, PacketID: id}
	if m.Props != nil {
		p.Properties = *m.Props
	}
	return p
}

// willDelay is a will's 5.0 Will Delay Interval, 0 if none.
func (m *Message) willDelay() time.Duration {
	if m.Props == nil || !m.Props.Has(codec.PropWillDelay) {
		return 0
	}
	return time.Duration(m.Props.WillDelay) * time.Second
}

// subOpts are one subscription's options, stored in the tree.
type subOpts struct {
	QoS               byte
	NoLocal           bool
	RetainAsPublished bool
	RetainHandling    byte
	SubID             uint32
}

// connState is what the broker keeps for a Client it accepted as a session.
type connState struct {
	sess *Session
	will *Message
	// Server-to-client topic aliases, guarded by the connection's lock
	// (only touched inside Client.AppendVia).
	aliasOut  map[string]uint16
	nextAlias uint16
}

func stateOf(c *Client) *connState { return c.state.Load() }

// ConnClosed handles the end of a connection: the will of an abnormally
// lost connection is published ([MQTT-3.1.2-8]), at once or after its 5.0
// Will Delay Interval; the session ends, or is kept until it expires.
// sessionFate tells what connClosed will do with c's session, for the
// script's onClose, which runs first.
func (k *Broker) sessionFate(c *Client) string {
	st := stateOf(c)
	if st == nil {
		return ""
	}
	s := st.sess
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn.Load() != c {
		return SessionTakenOver
	}
	if _, ended := s.closingExpiryLocked(k, c); ended {
		return SessionGone
	}
	return SessionOffline
}

// closingExpiryLocked is how long the session outlives c, its closing
// connection, and whether it ends with it. s.mu is held.
func (s *Session) closingExpiryLocked(k *Broker, c *Client) (expiry time.Duration, ended bool) {
	expiry = s.expiry
	if c.Version() == codec.V5 {
		// The client's DISCONNECT may have changed it (5.0 §3.14.2.2.2).
		expiry = capExpiry(k, c.expiryAtClose())
	}
	return expiry, !s.persistent || expiry == 0
}

func (k *Broker) connClosed(c *Client, reason transport.CloseReason) {
	st := stateOf(c)
	if st == nil {
		return
	}
	s := st.sess
	if st.will != nil && k.store != nil {
		k.forgetWill(s.clientID, c.FD) // handled in memory from here
	}
	if st.will != nil && k.bridge != nil {
		k.bridge.Will(s.clientID, nil) // this node sends it, or not
	}
	k.mu.Lock()
	s.mu.Lock()
	if s.conn.Load() != c {
		// Taken over: the session lives on with its new connection.
		s.mu.Unlock()
		k.mu.Unlock()
		if st.will != nil && abnormalClose(reason) {
			k.sendWill(st.will)
		}
		return
	}
	s.conn.Store(nil)
	s.releaseWaitersLocked()
	expiry, ended := s.closingExpiryLocked(k, c)
	s.expiry = expiry
	released := ended && k.sessions[s.clientID] == s
	if released {
		delete(k.sessions, s.clientID)
	}
	var will *Message
	var delay time.Duration
	if st.will != nil && abnormalClose(reason) {
		will = st.will
		delay = will.willDelay()
	}
	gen := s.gen
	var orphans []delivery
	if !ended {
		s.storeMetaLocked(k) // its expiry may have changed
		// Queued shared-subscription messages go to a connected member.
		orphans = s.sharedOrphansLocked(k, false)
		if delay > 0 || expiry != neverExpire {
			// 5.0 §3.1.3.2.2: the will goes when its delay passes or the
			// session ends, whichever is first.
			wait := expiry
			if will != nil && delay < wait {
				wait = delay
			}
			pending := will
			s.timer = time.AfterFunc(wait, func() { k.sessionTimer(s, gen, pending) })
			will = nil
		}
	}
	s.mu.Unlock()
	k.mu.Unlock()
	if will != nil {
		k.sendWill(will)
	}
	if ended {
		// [MQTT-3.1.2-6] a clean session ends with the connection.
		s.clear(k)
		if k.bridge != nil && released {
			k.bridge.Released(s.clientID)
		}
	}
	k.redistribute(orphans)
}

// sessionTimer fires for a disconnected session: it sends the pending
// will, and ends the session once it has expired.
func (k *Broker) sessionTimer(s *Session, gen uint64, will *Message) {
	k.mu.Lock()
	s.mu.Lock()
	if s.gen != gen || s.ended {
		// The client came back (5.0: its will is not sent) or it ended.
		s.mu.Unlock()
		k.mu.Unlock()
		return
	}
	delay := time.Duration(0)
	if will != nil {
		delay = will.willDelay()
	}
	expired := will == nil || s.expiry <= delay
	released := expired && k.sessions[s.clientID] == s
	if released {
		delete(k.sessions, s.clientID)
	}
	if !expired && s.expiry != neverExpire {
		// The will was due first; the session lives until its expiry.
		gen := s.gen
		s.timer = time.AfterFunc(s.expiry-delay, func() { k.sessionTimer(s, gen, nil) })
	}
	s.mu.Unlock()
	k.mu.Unlock()
	if will != nil {
		k.sendWill(will)
	}
	if expired {
		k.Stats.SessionsEnded.Add(1)
		s.clear(k)
		if k.bridge != nil && released {
			k.bridge.Released(s.clientID)
		}
		if k.hooks != nil {
			k.hooks.SessionEnded(s.clientID)
		}
	}
}

func (k *Broker) sendWill(w *Message) {
	k.Stats.WillsSent.Add(1)
	m := *w
	if w.Props != nil {
		p := *w.Props
		p.Clear(codec.PropWillDelay) // not a PUBLISH property
		m.Props = &p
	}
	k.route(&m, nil, nil)
}

// capExpiry converts a 5.0 Session Expiry Interval to a duration, capped
// by the settings; 0xFFFFFFFF means never.
func capExpiry(k *Broker, sec uint32) time.Duration {
	if max := k.Settings().MaxSessionExpiry; max > 0 && sec > max {
		sec = max
	}
	if sec == 0xFFFFFFFF {
		return neverExpire
	}
	return time.Duration(sec) * time.Second
}
