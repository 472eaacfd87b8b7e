package broker

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/mqttlua/broker/codec"
	"github.com/mqttlua/broker/engine/transport"
)

// Accept makes c's CONNECT a session: it resolves the client identifier,
// takes over a connection with the same one ([MQTT-3.1.4-2]), starts or
// resumes the session, sends CONNACK with session present (and, for 5.0,
// the properties describing the server, plus extra from the script), and
// re-sends what the session had in flight. It returns whether a session
// was present. A CONNECT it must refuse (a zero-length client id that
// cannot be assigned) is answered with the right CONNACK and an error.
func (k *Broker) Accept(c *Client, p *codec.Packet, extra *codec.Properties, batch *transport.Batch) (bool, error) {
	v5 := p.ProtocolLevel == codec.V5
	clientID := p.ClientID
	assigned := false
	if clientID == "" {
		// 3.1.1 [MQTT-3.1.3-6] [MQTT-3.1.3-7] [MQTT-3.1.3-8]: a zero-length
		// id gets one only with clean session; 3.1 never; 5.0 always
		// ([MQTT-3.1.3-6] in 5.0, with Assigned Client Identifier).
		if p.ProtocolLevel == codec.V31 || (!v5 && !p.CleanSession) {
			c.SendPacketVia(&codec.Packet{Type: codec.CONNACK, ReasonCode: codec.V3IdentifierRejected}, batch)
			return false, fmt.Errorf("zero-length client identifier without clean session")
		}
		clientID = fmt.Sprintf("%s%d-%d", k.autoPrefix, c.FD, k.nextAuto.Add(1))
		c.SetClientID(clientID)
		assigned = true
	}
	st := &connState{}
	if w := p.Will; w != nil {
		st.will = &Message{Topic: w.Topic, Payload: append([]byte(nil), w.Payload...), QoS: w.QoS, Retain: w.Retain, Owned: true}
		if v5 {
			p := copyProps(&w.Properties)
			st.will.Props = &p
		}
		if k.store != nil {
			k.storeWill(clientID, c.FD, st.will)
		}
	}
	persistent, expiry := !p.CleanSession, neverExpire
	if v5 {
		// 5.0: Clean Start only discards an old session; the Session
		// Expiry Interval decides how long this one lasts.
		expiry = capExpiry(k, p.Properties.SessionExpiry)
		persistent = expiry > 0
	}

	if p.UsernameFlag {
		// The script's data decides the user name: it may have set one
		// (from a client certificate, a token) other than the CONNECT's.
		if u, _ := c.Username(); u != p.Username {
			name := p.Username
			c.username.Store(&name)
		}
	}
	user, _ := c.Username()
	var handed []byte
	if k.bridge != nil {
		// One session per client id in the whole cluster: this node owns
		// it from here, and gets its state if another node had it.
		var will []byte
		if st.will != nil {
			// Kept by the cluster too: if this node dies, another publishes it.
			will = encodeMessage(st.will)
		}
		handedState, settled, err := k.bridge.Claim(clientID, will)
		handed = handedState
		if err == nil {
			defer settled()
		}
		if err != nil {
			code := codec.V3ServerUnavailable
			if v5 {
				code = codec.ServerUnavailable
			}
			c.SendPacketVia(&codec.Packet{Type: codec.CONNACK, ReasonCode: code}, batch)
			return false, fmt.Errorf("cluster: %v", err)
		}
	}
	k.mu.Lock()
	s := k.sessions[clientID]
	if s == nil && handed != nil && !p.CleanSession {
		adopted, err := k.adopt(clientID, handed)
		if err != nil {
			k.log.WithError(err).WithField("client_id", clientID).Error("cluster: the session handed over is lost")
		} else {
			s = adopted
			k.sessions[clientID] = s
			for f, o := range s.subs {
				k.addSub(f, s, o)
			}
		}
	}
	if s != nil && s.owner != "" && s.owner != user && !k.Settings().OpenSessions {
		// The session belongs to another user: refused before anything of
		// it is touched.
		k.mu.Unlock()
		k.Stats.SessionsRefused.Add(1)
		code := codec.V3IdentifierRejected
		if v5 {
			code = codec.ClientIdentifierNotValid
		}
		c.SendPacketVia(&codec.Packet{Type: codec.CONNACK, ReasonCode: code}, batch)
		return false, fmt.Errorf("client identifier %q belongs to another user's session", clientID)
	}
	var old *Client
	var discard *Session
	present := false
	if s != nil {
		old = s.conn.Load()
		if p.CleanSession || (!v5 && !s.persistent) {
			// [MQTT-3.1.2-6] / 5.0 [MQTT-3.1.2-4]: discard the old state.
			discard = s
			s = nil
		} else {
			present = true // [MQTT-3.2.2-2]
		}
	}
	if s == nil {
		s = newSession(clientID, persistent, expiry)
		s.owner = user
		k.sessions[clientID] = s
		if discard != nil {
			// The new session's stored deliveries must not reuse the
			// keys of the old one's, deleted after it.
			discard.mu.Lock()
			discard.replaced = true
			s.seq = discard.seq
			discard.mu.Unlock()
		}
	}
	st.sess = s
	c.state.Store(st)
	s.mu.Lock()
	if s.persistent && !persistent && k.store != nil {
		s.forgetLocked(k) // 5.0: resumed with no expiry: nothing to keep
	}
	s.persistent, s.expiry = persistent, expiry
	if k.bridge != nil && !persistent {
		k.bridge.Stored(clientID, nil) // nothing of it outlives this node
	}
	s.storeMetaLocked(k)
	s.gen++ // cancels a pending will and the expiry of the old connection
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	s.conn.Store(c)
	k.mu.Unlock()
	if old != nil && old != c {
		k.Stats.Takeovers.Add(1)
		old.Close(transport.CloseTakenOver)
	}
	ack := &codec.Packet{Type: codec.CONNACK, SessionPresent: present}
	if v5 {
		pr := &ack.Properties
		if extra != nil {
			*pr = copyProps(extra)
		}
		if assigned {
			pr.SetString(codec.PropAssignedClientID, clientID)
		}
		if ri := k.Settings().ResponseInformation; ri != "" && p.Properties.RequestResponseInfo == 1 && !pr.Has(codec.PropResponseInfo) {
			// 5.0 §3.1.2.11.7: a base for the client's response topics.
			pr.SetString(codec.PropResponseInfo, ri+clientID+"/")
		}
		if max := k.Settings().MaxQoS; max < 2 {
			pr.SetUint(codec.PropMaximumQoS, uint32(max))
		}
		if expiry != neverExpire && uint32(expiry/time.Second) != p.Properties.SessionExpiry {
			// 5.0 §3.2.2.3.2: the server's cap replaces the client's.
			pr.SetUint(codec.PropSessionExpiry, uint32(expiry/time.Second))
		}
	}
	// [MQTT-3.2.0-1] CONNACK first, then whatever the session holds.
	c.SendPacketVia(ack, batch)
	if present {
		s.resumeLocked(k, c, batch)
	}
	s.mu.Unlock()
	if discard != nil {
		discard.clear(k)
	}
	return present, nil
}

func copyProps(p *codec.Properties) codec.Properties {
	out := *p
	out.User = append([]codec.UserProperty(nil), p.User...)
	out.SubscriptionIDs = nil
	out.CorrelationData = append([]byte(nil), p.CorrelationData...)
	return out
}

// SubscribeResult is what Subscribe did with one filter.
type SubscribeResult struct {
	Filter string
	Code   codec.ReasonCode
}

// Subscribe adds c's subscriptions, answers with SUBACK, and then sends
// the retained messages matching each granted filter ([MQTT-3.3.1-6]).
// codes, if not nil, holds the script's decision per filter: a failure
// code refuses it, a QoS caps it.
func (k *Broker) Subscribe(c *Client, p *codec.Packet, codes []codec.ReasonCode, batch *transport.Batch) []codec.ReasonCode {
	return k.SubscribeVia(c, p, codes, batch, nil)
}

// SubscribeVia is Subscribe with a delivery hook for the retained
// messages the subscriptions match: it runs for each of them now, in the
// caller's handler, though they may be sent later, as the client reads.
func (k *Broker) SubscribeVia(c *Client, p *codec.Packet, codes []codec.ReasonCode, batch *transport.Batch, hook DeliverHook) []codec.ReasonCode {
	st := stateOf(c)
	out := make([]codec.ReasonCode, len(p.Subscriptions))
	maxQoS := k.Settings().MaxQoS
	type granted struct {
		filter string
		opts   subOpts
		isNew  bool
	}
	var grants []granted
	var subID uint32
	if len(p.Properties.SubscriptionIDs) > 0 {
		subID = p.Properties.SubscriptionIDs[0]
	}
	for i, sub := range p.Subscriptions {
		if k.tooDeep(sub.Topic) {
			out[i] = codec.TopicFilterInvalid
			continue
		}
		q := sub.QoS
		if q > maxQoS {
			q = maxQoS
		}
		if i < len(codes) {
			if codes[i].IsError() {
				out[i] = codes[i]
				continue
			}
			if byte(codes[i]) < q {
				q = byte(codes[i])
			}
		}
		if st == nil {
			out[i] = codec.UnspecifiedError
			continue
		}
		o := subOpts{QoS: q, NoLocal: sub.NoLocal, RetainAsPublished: sub.RetainAsPublished, RetainHandling: sub.RetainHandling, SubID: subID}
		st.sess.mu.Lock()
		if st.sess.ended {
			st.sess.mu.Unlock()
			out[i] = codec.UnspecifiedError
			continue
		}
		if st.sess.subs == nil {
			st.sess.subs = map[string]subOpts{}
		}
		st.sess.subs[sub.Topic] = o
		st.sess.storeMetaLocked(k)
		// [MQTT-3.8.4-3] a subscription to the same filter is replaced.
		// Added under the session lock so clear cannot miss it.
		isNew := k.addSub(sub.Topic, st.sess, o)
		st.sess.mu.Unlock()
		out[i] = codec.ReasonCode(q)
		grants = append(grants, granted{sub.Topic, o, isNew})
	}
	// [MQTT-3.8.4-1] [MQTT-3.8.4-5] one SUBACK, a code per filter in order;
	// 5.0 failure codes become 0x80 for older clients.
	wire := out
	if c.Version() != codec.V5 {
		wire = make([]codec.ReasonCode, len(out))
		for i, code := range out {
			wire[i] = codec.V311Code(codec.SUBACK, code)
		}
	}
	c.SendPacketVia(&codec.Packet{Type: codec.SUBACK, PacketID: p.PacketID, ReasonCodes: wire}, batch)
	var retained []delivery
	for _, g := range grants {
		if g.opts.RetainHandling == 2 || (g.opts.RetainHandling == 1 && !g.isNew) {
			continue // 5.0 §3.8.3.1 retain handling
		}
		if _, _, shared := splitShare(g.filter); shared {
			continue // 5.0 §4.8.2: no retained messages for shared subscriptions
		}
		var msgs []*Message
		k.retained.Match(g.filter, func(_ string, m *Message) { msgs = append(msgs, m) })
		sort.Slice(msgs, func(i, j int) bool { return msgs[i].Topic < msgs[j].Topic })
		for _, m := range msgs {
			d := delivery{msg: m, qos: min(m.QoS, g.opts.QoS), retain: true}
			if g.opts.SubID != 0 {
				d.subIDs = []uint32{g.opts.SubID}
			}
			if hook != nil {
				keep, changed := k.applyHook(hook, st.sess, &d)
				if !keep {
					continue
				}
				if changed {
					d.stored = m
				}
			}
			retained = append(retained, d)
		}
	}
	if len(retained) > 0 {
		k.streamRetained(st.sess, c, retained, batch)
	}
	return out
}

// deliverRetained sends a retained message to a new subscription with
// RETAIN set ([MQTT-3.3.1-8]).
func (k *Broker) deliverRetained(s *Session, c *Client, d delivery, batch *transport.Batch) {
	if d.qos == 0 {
		if k.send(c, d, false, 0, nil, batch) == nil {
			k.Stats.Delivered.Add(1)
		}
		return
	}
	s.mu.Lock()
	if s.deliverLocked(k, d, nil, batch) {
		k.Stats.Delivered.Add(1)
	}
	s.mu.Unlock()
}

// streamRetained delivers the retained messages a subscription matched
// ([MQTT-3.3.1-6]) as the client takes them in: what fits under the
// high-water marks of its connection's queue and of its session's now,
// the rest from a goroutine that waits for the queues to drain. All at
// once, a wildcard subscription over many retained messages filled the
// connection's queue past its limit and cut a client off that was reading
// at full speed. A waiting stream ends with the connection; a client that
// stops reading is cut off by the queues' waits as any slow consumer.
func (k *Broker) streamRetained(s *Session, c *Client, ds []delivery, batch *transport.Batch) {
	n := k.sendRetained(s, c, ds, batch)
	if n == len(ds) {
		return
	}
	rest := ds[n:]
	go func() {
		for len(rest) > 0 && k.waitForRoom(s, c) {
			rest = rest[k.sendRetained(s, c, rest, nil):]
		}
	}()
}

// sendRetained delivers ds in order until a queue of the client passes
// its high-water mark, and returns how many it took. A message that is no
// longer the topic's retained message by the time it is sent (replaced,
// cleared, expired) is skipped: the subscription gets its successor as a
// live message, and must not see the older one after it.
func (k *Broker) sendRetained(s *Session, c *Client, ds []delivery, batch *transport.Batch) int {
	now := time.Now()
	for i, d := range ds {
		if c.t.Closing() {
			return len(ds)
		}
		if c.t.Pressed() || s.Backlogged() {
			return i
		}
		stored := d.msg
		if d.stored != nil {
			stored = d.stored
		}
		if cur, ok := k.retained.Get(stored.Topic); !ok || cur != stored {
			continue
		}
		if stored.expired(now) {
			k.retained.Delete(stored.Topic)
			k.forgetRetained(stored.Topic)
			continue
		}
		k.deliverRetained(s, c, d, batch)
	}
	return len(ds)
}

// waitForRoom waits until both queues of the client are under their
// high-water marks, and reports false when the connection is gone.
func (k *Broker) waitForRoom(s *Session, c *Client) bool {
	for {
		switch {
		case c.t.Closing() || s.conn.Load() != c:
			return false
		case c.t.Pressed():
			transport.Wait(c.t)
		case s.Backlogged():
			transport.Wait(s)
		default:
			return true
		}
	}
}

// Unsubscribe removes c's subscriptions and answers with UNSUBACK
// ([MQTT-3.10.4-4]); 5.0 clients get a code per filter.
func (k *Broker) Unsubscribe(c *Client, p *codec.Packet, batch *transport.Batch) {
	ack := &codec.Packet{Type: codec.UNSUBACK, PacketID: p.PacketID, ReasonCodes: make([]codec.ReasonCode, len(p.Topics))}
	st := stateOf(c)
	for i, f := range p.Topics {
		existed := false
		if st != nil {
			st.sess.mu.Lock()
			_, existed = st.sess.subs[f]
			delete(st.sess.subs, f)
			if existed {
				st.sess.storeMetaLocked(k)
			}
			st.sess.mu.Unlock()
			k.removeSub(f, st.sess)
		}
		if !existed {
			ack.ReasonCodes[i] = codec.NoSubscriptionExisted
		}
	}
	c.SendPacketVia(ack, batch)
}

// ClientInfo describes a session, for scripts and the admin API.
type ClientInfo struct {
	ClientID      string          `json:"client_id"`
	FD            int             `json:"fd,omitempty"` // 0 when offline
	Connected     bool            `json:"connected"`
	Persistent    bool            `json:"persistent"`
	Subscriptions map[string]byte `json:"subscriptions"` // filter -> QoS
	Inflight      int             `json:"inflight"`
	Queued        int             `json:"queued"`
	// Of the connection, when connected:
	Remote      string    `json:"remote,omitempty"`
	Listener    string    `json:"listener,omitempty"`
	Protocol    string    `json:"protocol,omitempty"`
	UserName    string    `json:"user_name,omitempty"`
	ConnectedAt time.Time `json:"connected_at,omitzero"`
}

// Clients lists every session, sorted by client identifier.
func (k *Broker) Clients() []ClientInfo {
	out, _ := k.ClientsPage("", "", 0, nil)
	return out
}

// ClientsPage lists, in client id order, the sessions whose client ids
// start with prefix and sort after after, and that keep accepts (nil:
// all): at most limit of them (0: no limit), and the id to pass as after
// for the next page ("" at the end). Only the sessions it looks at are
// described, so a script or the admin API walks many sessions a page at
// a time.
func (k *Broker) ClientsPage(prefix, after string, limit int, keep func(ClientInfo) bool) ([]ClientInfo, string) {
	k.mu.Lock()
	ids := make([]string, 0, len(k.sessions))
	for id := range k.sessions {
		if strings.HasPrefix(id, prefix) && id > after {
			ids = append(ids, id)
		}
	}
	k.mu.Unlock()
	sort.Strings(ids)
	var out []ClientInfo
	for _, id := range ids {
		ci, ok := k.Info(id)
		if !ok || (keep != nil && !keep(ci)) {
			continue
		}
		if limit > 0 && len(out) == limit {
			return out, out[limit-1].ClientID // one more exists
		}
		out = append(out, ci)
	}
	return out, ""
}

// Info describes the session of a client identifier.
func (k *Broker) Info(clientID string) (ClientInfo, bool) {
	k.mu.Lock()
	s := k.sessions[clientID]
	k.mu.Unlock()
	if s == nil {
		return ClientInfo{}, false
	}
	return s.info(), true
}

func (s *Session) info() ClientInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	ci := ClientInfo{ClientID: s.clientID, Persistent: s.persistent, Subscriptions: map[string]byte{},
		Inflight: len(s.inflight), Queued: len(s.queue)}
	if c := s.conn.Load(); c != nil {
		ci.FD, ci.Connected = c.FD, true
		ci.Remote, ci.Listener, ci.Protocol = c.RemoteAddrString(), c.Listener(), protocolName(c.Version())
		ci.UserName, _ = c.Username()
		if at := c.connectedAt.Load(); at != 0 {
			ci.ConnectedAt = time.Unix(0, at)
		}
	}
	for f, o := range s.subs {
		ci.Subscriptions[f] = o.QoS
	}
	return ci
}

// Kick disconnects the client with this identifier (5.0: DISCONNECT with
// code) and reports whether it was connected.
func (k *Broker) Kick(clientID string, code codec.ReasonCode, reason string) bool {
	k.mu.Lock()
	s := k.sessions[clientID]
	k.mu.Unlock()
	if s == nil {
		return false
	}
	c := s.conn.Load()
	if c == nil {
		return false
	}
	c.CloseWithCode(transport.CloseScript, code, reason)
	return true
}

// TransportStats returns the counters of the transport the broker serves.
func (k *Broker) TransportStats() *transport.Stats { return k.tr.Stats }

// RetainedCount returns the number of retained messages.
func (k *Broker) RetainedCount() int { return k.retained.Len() }

// SubscriptionCount returns the number of subscriptions.
func (k *Broker) SubscriptionCount() int { return k.subs.Len() }

// SessionCounts are the sessions and what waits in them, for metrics.
type SessionCounts struct {
	Online, Offline int // sessions with and without a connection
	Persistent      int // sessions that outlive their connection
	Inflight        int // QoS 1/2 deliveries sent and not yet acknowledged
	Queued          int // deliveries waiting beyond the in-flight window or for a connection
}

// Sessions counts the sessions. It visits each under its lock: for a
// scrape every few seconds, not the message path.
func (k *Broker) Sessions() SessionCounts {
	k.mu.Lock()
	sessions := make([]*Session, 0, len(k.sessions))
	for _, s := range k.sessions {
		sessions = append(sessions, s)
	}
	k.mu.Unlock()
	var n SessionCounts
	for _, s := range sessions {
		s.mu.Lock()
		if s.conn.Load() != nil {
			n.Online++
		} else {
			n.Offline++
		}
		if s.persistent {
			n.Persistent++
		}
		n.Inflight += len(s.inflight)
		n.Queued += len(s.queue)
		s.mu.Unlock()
	}
	return n
}

// Retained returns the retained message of a topic (not an expired one).
func (k *Broker) Retained(topic string) (*Message, bool) {
	m, ok := k.retained.Get(topic)
	if !ok || m.expired(time.Now()) {
		return nil, false
	}
	return m, true
}

// RetainedMatch returns the retained messages whose topics match filter
// (at most limit of them, sorted by topic; 0: all).
func (k *Broker) RetainedMatch(filter string, limit int) []*Message {
	now := time.Now()
	var out []*Message
	k.retained.Match(filter, func(_ string, m *Message) {
		if !m.expired(now) {
			out = append(out, m)
		}
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Topic < out[j].Topic })
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out
}

// DeleteRetained removes a topic's retained message and reports whether
// there was one.
func (k *Broker) DeleteRetained(topic string) bool {
	k.forgetRetained(topic)
	return k.retained.Delete(topic)
}
