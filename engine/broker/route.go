package broker

import (
	"strings"
	"sync"
	"time"

	"github.com/mqttlua/broker/codec"
	"github.com/mqttlua/broker/engine/transport"
)

// target is one session a message goes to, at the highest QoS of its
// matching subscriptions ([MQTT-3.3.5-1]), with all their subscription
// identifiers (5.0 §3.3.4).
type target struct {
	s      *Session
	opts   subOpts
	subIDs []uint32
	share  *shareGroup
}

// routeScratch is reused across routings to keep the hot path free of
// per-message allocations.
type routeScratch struct {
	hook    DeliverHook
	targets []target
	index   map[*Session]int
	groups  []*shareGroup
	pkt     codec.Packet
	fanout  codec.Fanout
	// durable: a delivery went to a persistent session, whose store
	// write the publisher's acknowledgement must wait for.
	durable bool
}

var scratchPool = sync.Pool{New: func() any { return &routeScratch{index: map[*Session]int{}} }}

// route delivers m to every matching subscription and stores or clears it
// as the retained message of its topic. from is the publishing
// connection (nil for wills and scripts); batch defers writer wake-ups to
// the end of the publisher's read. It returns the number of sessions the
// message went to.
func (k *Broker) route(m *Message, from *Client, batch *transport.Batch) int {
	return k.routeVia(m, from, batch, nil)
}

// keepRetained stores m as its topic's retained message, or clears the
// topic.
func (k *Broker) keepRetained(m *Message) {
	if len(m.Payload) == 0 {
		// [MQTT-3.3.1-10] an empty retained message clears the topic.
		k.retained.Delete(m.Topic)
	} else {
		// [MQTT-3.3.1-5] store it, replacing the previous one.
		m.own()
		k.retained.Set(m.Topic, m)
	}
	if k.store != nil {
		k.persistRetained(m)
	}
}

// DeliverHook decides one delivery (a script's onMqDeliver): given the
// subscriber (its client id, and its connection or nil when offline),
// the message and the QoS it would get, it returns the message to send
// (m itself, or a changed copy), its QoS (at most qos), and false to
// drop this delivery. It runs on the routing caller's goroutine, with no
// lock of the broker held.
type DeliverHook func(clientID string, c *Client, m *Message, qos byte) (out *Message, outQoS byte, keep bool)

// applyHook runs hook on a delivery; it reports false when the hook
// dropped it, and whether it changed the message.
func (k *Broker) applyHook(hook DeliverHook, s *Session, d *delivery) (keep, changed bool) {
	out, q, keep := hook(s.clientID, s.conn.Load(), d.msg, d.qos)
	if !keep {
		k.Stats.DroppedByScript.Add(1)
		k.emit(EventDropped, s.clientID, d.msg, d.qos, "script")
		return false, false
	}
	if q < d.qos {
		d.qos = q // down only
	}
	if out != nil && out != d.msg {
		out.own()
		d.msg = out
		return true, true
	}
	return true, false
}

// routeVia is route with a delivery hook (nil: none).
func (k *Broker) routeVia(m *Message, from *Client, batch *transport.Batch, hook DeliverHook) int {
	if k.bridge != nil && !m.remote {
		m.stamp = k.bridge.BeginLocal()
		defer k.bridge.EndLocal(m.stamp)
	}
	return k.routeTo(m, from, batch, hook, nil)
}

// routeTo is routeVia; with only set, the message goes to that shared
// subscription group alone (in a cluster, the group's copy of a message
// the cluster chose this node for: RouteShared).
func (k *Broker) routeTo(m *Message, from *Client, batch *transport.Batch, hook DeliverHook, only *shareGroup) int {
	k.Stats.Published.Add(1)
	if m.Props != nil && m.Props.Has(codec.PropMessageExpiry) && m.expireAt == 0 {
		m.expireAt = time.Now().Add(time.Duration(m.Props.MessageExpiry) * time.Second).UnixNano()
	}
	if m.Retain && !m.remote { // another node's: ApplyRetained keeps it
		k.keepRetained(m)
	}
	sc := scratchPool.Get().(*routeScratch)
	sc.hook = hook
	if only != nil {
		sc.groups = append(sc.groups, only)
	} else {
		k.matchSubs(m, sc)
	}
	for _, g := range sc.groups {
		if s, o, ok := g.pick(nil); ok {
			t := target{s: s, opts: o, share: g}
			if o.SubID != 0 {
				t.subIDs = []uint32{o.SubID}
			}
			sc.targets = append(sc.targets, t)
		}
	}
	if len(sc.targets) > 0 {
		sc.pkt = m.packet(m.QoS, false, false, 0)
		sc.fanout.Reset(&sc.pkt)
		k.fanOut(m, from, sc, batch)
	} else if !m.Retain {
		k.emit(EventDropped, "", m, m.QoS, "no_subscribers")
	}
	n := len(sc.targets)
	if sc.durable {
		m.durable = true // read by PublishVia, on this goroutine
		sc.durable = false
	}
	for i := range sc.targets {
		sc.targets[i] = target{}
	}
	for i := range sc.groups {
		sc.groups[i] = nil
	}
	sc.targets, sc.groups = sc.targets[:0], sc.groups[:0]
	clear(sc.index)
	sc.pkt = codec.Packet{}
	sc.fanout.Reset(nil)
	sc.hook = nil
	scratchPool.Put(sc)
	if k.bridge != nil && !m.remote && (from == nil || m.QoS == 0) {
		// To the other nodes; a client's QoS 1/2 PUBLISH is forwarded by
		// PublishVia, whose acknowledgement waits for the cluster.
		k.forward(m, nil)
	}
	return n
}

// matchSubs collects the sessions whose subscriptions match m, and the
// shared subscription groups that do: 5.0 §4.8.2, each group gets one
// copy, for one of its members. In a cluster a group spans the nodes and
// the cluster picks the node for each message (RouteShared), so local
// routing leaves the groups out.
func (k *Broker) matchSubs(m *Message, sc *routeScratch) {
	k.subs.Match(m.Topic, func(s *Session, o subOpts) {
		if i, ok := sc.index[s]; ok {
			t := &sc.targets[i]
			if o.QoS > t.opts.QoS {
				t.opts.QoS = o.QoS
			}
			t.opts.RetainAsPublished = t.opts.RetainAsPublished || o.RetainAsPublished
			t.opts.NoLocal = t.opts.NoLocal && o.NoLocal
			if o.SubID != 0 {
				t.subIDs = append(t.subIDs, o.SubID)
			}
			return
		}
		sc.index[s] = len(sc.targets)
		t := target{s: s, opts: o}
		if o.SubID != 0 {
			t.subIDs = []uint32{o.SubID}
		}
		sc.targets = append(sc.targets, t)
	})
	if k.bridge == nil {
		k.shareTree.Match(m.Topic, func(g *shareGroup, _ struct{}) { sc.groups = append(sc.groups, g) })
	}
}

func (k *Broker) fanOut(m *Message, from *Client, sc *routeScratch, batch *transport.Batch) {
	var fromSess *Session
	if from != nil {
		if st := stateOf(from); st != nil {
			fromSess = st.sess
		}
	}
	// Counted here and added once: an atomic add per delivery on a counter
	// every publisher shares was a tenth of a fan-out's time.
	var delivered, noSession int64
	for i := range sc.targets {
		t := &sc.targets[i]
		if t.opts.NoLocal && t.s == fromSess {
			continue // 5.0 [MQTT-3.8.3-3] not to the publisher's own subscription
		}
		d := delivery{msg: m, qos: min(m.QoS, t.opts.QoS), subIDs: t.subIDs, share: t.share}
		// [MQTT-3.8.4-6] the QoS is downgraded to the granted one above;
		// [MQTT-3.3.1-9] a message forwarded to existing subscriptions has
		// RETAIN 0, unless a 5.0 subscription asked for it as published.
		d.retain = m.Retain && t.opts.RetainAsPublished
		f := &sc.fanout
		if sc.hook != nil {
			// Before any session lock: the hook is Lua, which may call
			// the kit.
			keep, changed := k.applyHook(sc.hook, t.s, &d)
			if !keep {
				continue
			}
			if changed {
				f = nil // not the shared encoding's message any more
			}
		}
		if d.qos == 0 {
			c := t.s.conn.Load()
			if c == nil {
				noSession++
				continue
			}
			switch k.send(c, d, false, 0, f, batch) {
			case nil:
				delivered++
			case transport.ErrTooLarge:
				k.emit(EventDropped, t.s.clientID, d.msg, d.qos, "too_large")
			}
			continue
		}
		m.own()
		t.s.mu.Lock()
		// Noted per target, not on d.msg: a hook may have replaced the
		// message, and a session draining on another goroutine must
		// not write the routed Message while its publisher reads it.
		sc.durable = sc.durable || t.s.durable(k)
		if t.s.deliverLocked(k, d, f, batch) {
			delivered++
		}
		t.s.mu.Unlock()
	}
	if delivered > 0 {
		k.Stats.Delivered.Add(delivered)
	}
	if noSession > 0 {
		k.Stats.NoSession.Add(noSession)
	}
}

// send encodes one delivery into c's queue. Deliveries that carry nothing
// of their own (no subscription identifiers, expiry or topic alias) copy
// the fan-out's shared encoding; 5.0 deliveries that do are encoded one by
// one.
func (k *Broker) send(c *Client, d delivery, dup bool, id uint16, f *codec.Fanout, batch *transport.Batch) error {
	v := c.Version()
	m := d.msg
	aliasMax := uint16(0)
	if v == codec.V5 {
		aliasMax = c.topicAliasMaximum()
	}
	if v != codec.V5 || (len(d.subIDs) == 0 && m.expireAt == 0 && aliasMax == 0) {
		if f != nil && !dup {
			return c.appendVia(func(dst []byte) ([]byte, error) {
				return f.Append(dst, v, d.qos, d.retain, id)
			}, batch)
		}
		p := m.packet(d.qos, d.retain, dup, id)
		return c.SendPacketVia(&p, batch)
	}
	p := m.packet(d.qos, d.retain, dup, id)
	p.Properties.SubscriptionIDs = d.subIDs
	if m.expireAt != 0 {
		// 5.0 [MQTT-3.3.2-6]: forward the remaining lifetime.
		left := time.Until(time.Unix(0, m.expireAt))
		if left <= 0 {
			k.Stats.Expired.Add(1)
			return errExpired
		}
		p.Properties.SetUint(codec.PropMessageExpiry, uint32((left+time.Second-1)/time.Second))
	}
	st := stateOf(c)
	return c.appendVia(func(dst []byte) ([]byte, error) {
		// Runs under the connection's lock, which guards its aliases.
		assigned := false
		if aliasMax > 0 && st != nil {
			if a, ok := st.aliasOut[p.Topic]; ok {
				p.Properties.SetUint(codec.PropTopicAlias, uint32(a))
				p.Topic = ""
			} else if st.nextAlias < aliasMax {
				st.nextAlias++
				if st.aliasOut == nil {
					st.aliasOut = map[string]uint16{}
				}
				st.aliasOut[p.Topic] = st.nextAlias
				p.Properties.SetUint(codec.PropTopicAlias, uint32(st.nextAlias))
				assigned = true
			}
		}
		out, err := p.Append(dst, codec.V5)
		if assigned && (err != nil || (c.maxPacketOutNow() > 0 && len(out)-len(dst) > c.maxPacketOutNow())) {
			// The client never sees this packet, so it must not learn
			// the alias from it.
			delete(st.aliasOut, p.Topic)
			st.nextAlias--
		}
		return out, err
	}, batch)
}

type kitError string

func (e kitError) Error() string { return string(e) }

const errExpired = kitError("message expired")

// shareGroup is a shared subscription $share/{name}/{filter}: each message
// goes to one member, chosen round-robin among the connected ones.
type shareGroup struct {
	key     string
	filter  string
	mu      sync.Mutex
	members []shareMember
	next    int
}

type shareMember struct {
	s    *Session
	opts subOpts
}

// pick chooses the member for the next message, preferring connected
// members and skipping except.
func (g *shareGroup) pick(except *Session) (*Session, subOpts, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := len(g.members)
	var fallback *shareMember
	for i := 0; i < n; i++ {
		m := &g.members[(g.next+i)%n]
		if m.s == except {
			continue
		}
		if m.s.conn.Load() != nil {
			g.next = (g.next + i + 1) % n
			return m.s, m.opts, true
		}
		if fallback == nil {
			fallback = m
		}
	}
	if fallback != nil {
		g.next = (g.next + 1) % n
		return fallback.s, fallback.opts, true
	}
	return nil, subOpts{}, false
}

// splitShare parses "$share/{name}/{filter}".
func splitShare(f string) (name, filter string, ok bool) {
	rest, ok := strings.CutPrefix(f, "$share/")
	if !ok {
		return "", "", false
	}
	name, filter, ok = strings.Cut(rest, "/")
	return name, filter, ok && name != "" && filter != ""
}

// addSub adds a subscription, shared or not, and reports whether it is new.
func (k *Broker) addSub(f string, s *Session, o subOpts) (added bool) {
	if k.bridge != nil {
		// The cluster draws the filter's topics to this node.
		defer func() {
			if added {
				k.bridge.Subscribed(f)
			}
		}()
	}
	name, filter, shared := splitShare(f)
	if !shared {
		return k.subs.Add(f, s, o)
	}
	k.shareMu.Lock()
	defer k.shareMu.Unlock()
	key := name + "\x00" + filter
	g := k.shares[key]
	if g == nil {
		g = &shareGroup{key: key, filter: filter}
		k.shares[key] = g
		k.shareTree.Add(filter, g, struct{}{})
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for i := range g.members {
		if g.members[i].s == s {
			g.members[i].opts = o
			return false
		}
	}
	g.members = append(g.members, shareMember{s, o})
	return true
}

// removeSub removes a subscription and reports whether it existed.
func (k *Broker) removeSub(f string, s *Session) (removed bool) {
	name, filter, shared := splitShare(f)
	if k.bridge != nil {
		defer func() {
			if removed {
				k.bridge.Unsubscribed(f)
			}
		}()
	}
	if !shared {
		return k.subs.Remove(f, s)
	}
	k.shareMu.Lock()
	defer k.shareMu.Unlock()
	key := name + "\x00" + filter
	g := k.shares[key]
	if g == nil {
		return false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for i := range g.members {
		if g.members[i].s == s {
			g.members = append(g.members[:i], g.members[i+1:]...)
			if len(g.members) == 0 {
				delete(k.shares, key)
				k.shareTree.Remove(filter, g)
			} else {
				g.next %= len(g.members)
			}
			return true
		}
	}
	return false
}

// redistribute gives shared-subscription deliveries a member lost to
// another member of the same group (5.0 §4.8.2).
func (k *Broker) redistribute(ds []delivery) {
	for _, d := range ds {
		s, _, ok := d.share.pick(nil)
		if !ok || s.conn.Load() == nil {
			k.Stats.Dropped.Add(1)
			continue
		}
		k.Stats.Redistributed.Add(1)
		s.mu.Lock()
		if s.deliverLocked(k, d, nil, nil) {
			k.Stats.Delivered.Add(1)
		}
		s.mu.Unlock()
	}
}

// Intercept runs the QoS acknowledgement flows of sessions the broker
// manages.
func (k *Broker) intercept(c *Client, p *codec.Packet, batch *transport.Batch) bool {
	st := stateOf(c)
	if st == nil {
		return false
	}
	s := st.sess
	s.mu.Lock()
	defer s.mu.Unlock()
	switch p.Type {
	case codec.PUBACK:
		s.ackLocked(k, p.PacketID, batch)
	case codec.PUBREC:
		o, ok := s.inflight[p.PacketID]
		switch {
		case !ok:
			// 5.0 §3.6.2.1: PUBREL with "Packet Identifier not found".
			c.SendPacketVia(&codec.Packet{Type: codec.PUBREL, PacketID: p.PacketID, ReasonCode: codec.PacketIdentifierNotFound}, batch)
		case p.ReasonCode.IsError():
			// 5.0 §4.3.3: a failed PUBREC ends the flow.
			s.ackLocked(k, p.PacketID, batch)
		default:
			// [MQTT-4.3.3-3] answer PUBREC with PUBREL: once the
			// released state is durable, so that a restart sends PUBREL
			// again, never the PUBLISH the client has released.
			o.released = true
			s.acks++
			rel := codec.Packet{Type: codec.PUBREL, PacketID: p.PacketID}
			if !s.storeDeliveryLocked(k, &o.delivery, p.PacketID, true) || !k.durableAck(c, rel, true) {
				c.SendPacketVia(&rel, batch)
			}
		}
	case codec.PUBCOMP:
		s.ackLocked(k, p.PacketID, batch)
	case codec.PUBREL:
		// [MQTT-4.3.3-11] PUBCOMP releases the packet id for reuse.
		ack := &codec.Packet{Type: codec.PUBCOMP, PacketID: p.PacketID}
		forgot := false
		if _, ok := s.inbound2[p.PacketID]; ok {
			delete(s.inbound2, p.PacketID)
			forgot = s.forgetInboundLocked(k, p.PacketID)
		} else {
			ack.ReasonCode = codec.PacketIdentifierNotFound
		}
		// Once the id is forgotten on disk: a restart must not keep it,
		// or the client's next PUBLISH with that id would be taken for
		// a duplicate and lost.
		if !k.durableAck(c, *ack, forgot) {
			c.SendPacketVia(ack, batch)
		}
	default:
		return false
	}
	return true
}

// Publish routes a PUBLISH received from c, after the script's decision,
// and acknowledges it: PUBACK for QoS 1, PUBREC for QoS 2, delivering a
// QoS 2 message only the first time its packet id is seen before PUBREL
// ([MQTT-4.3.3-2]). It returns the number of sessions reached.
func (k *Broker) Publish(c *Client, m *Message, id uint16, batch *transport.Batch) int {
	return k.PublishVia(c, m, id, batch, nil)
}

// PublishVia is Publish with a delivery hook.
func (k *Broker) PublishVia(c *Client, m *Message, id uint16, batch *transport.Batch, hook DeliverHook) int {
	n := 0
	switch m.QoS {
	case 0:
		n = k.routeVia(m, c, batch, hook)
	case 1:
		n = k.routeVia(m, c, batch, hook)
		// [MQTT-4.3.2-2] PUBACK after taking ownership (and, with a
		// store, once what it wrote is durable; in a cluster, once the
		// cluster holds it).
		k.ackPublish(c, codec.PUBACK, id, n, m.durable, batch, m)
	case 2:
		first, wrote := true, false
		if st := stateOf(c); st != nil {
			st.sess.mu.Lock()
			_, dup := st.sess.inbound2[id]
			if !dup && c.Version() == codec.V5 && len(st.sess.inbound2) >= c.b.cfg.ReceiveMaximum {
				st.sess.mu.Unlock()
				// 5.0 [MQTT-3.3.4-9]: more unacknowledged QoS 2 messages
				// than the Receive Maximum the server announced.
				c.CloseWithCode(transport.CloseProtocolError, codec.ReceiveMaximumExceeded, "")
				return 0
			}
			if !dup {
				st.sess.markInbound2(id)
				// Exactly once across a restart: the id is durable
				// before PUBREC.
				wrote = st.sess.storeInboundLocked(k, id)
			}
			st.sess.mu.Unlock()
			first = !dup
		}
		if first {
			n = k.routeVia(m, c, batch, hook)
		}
		var fwd *Message
		if first {
			fwd = m
		}
		k.ackPublish(c, codec.PUBREC, id, n, wrote || (first && m.durable), batch, fwd)
	}
	return n
}

// ackPublish sends PUBACK or PUBREC; 5.0 clients learn when nobody
// subscribed (0x10 No matching subscribers). wrote says the PUBLISH wrote
// to the store: the acknowledgement then waits for it (persist.go). In a
// cluster, fwd (nil for a QoS 2 duplicate) is forwarded to the other
// nodes, and the acknowledgement waits for the cluster to hold it.
func (k *Broker) ackPublish(c *Client, t codec.Type, id uint16, n int, wrote bool, batch *transport.Batch, fwd *Message) {
	ack := codec.Packet{Type: t, PacketID: id}
	if k.bridge != nil {
		// Subscribers on other nodes are not counted in n: no 0x10.
		k.clusterAck(c, ack, wrote && k.store != nil, fwd, batch)
		return
	}
	if n == 0 && c.Version() == codec.V5 {
		ack.ReasonCode = codec.NoMatchingSubscribers
	}
	if k.store != nil && k.durableAck(c, ack, wrote) {
		return
	}
	c.SendPacketVia(&ack, batch)
}

// clusterAck sends ack once fwd is held by the cluster and, if
// storeWait, the store's writes are durable, in the order of the
// client's PUBLISHes.
func (k *Broker) clusterAck(c *Client, ack codec.Packet, storeWait bool, fwd *Message, batch *transport.Batch) {
	waits := 0
	if fwd != nil {
		waits++
	}
	if storeWait {
		waits++
	}
	p := k.deferAck(c, ack, waits)
	if p == nil {
		c.SendPacketVia(&ack, batch)
		return
	}
	if storeWait {
		k.store.Submit(nil, func(err error) { k.ackAnswered(c, p, err) })
	}
	if fwd != nil {
		k.forward(fwd, func(err error) { k.ackAnswered(c, p, err) })
	}
}

// Ack acknowledges a PUBLISH that is not routed (an ACL denial): 3.1.1 has
// no way to refuse one, so it is acknowledged and dropped. For 5.0 the code
// (e.g. 0x87 not authorized) goes in the PUBACK / PUBREC.
func (k *Broker) Ack(c *Client, qos byte, id uint16, code codec.ReasonCode, batch *transport.Batch) {
	var ack codec.Packet
	switch qos {
	case 1:
		ack = codec.Packet{Type: codec.PUBACK, PacketID: id}
	case 2:
		ack = codec.Packet{Type: codec.PUBREC, PacketID: id}
		if st := stateOf(c); st != nil && !code.IsError() {
			st.sess.mu.Lock()
			st.sess.markInbound2(id)
			st.sess.storeInboundLocked(k, id)
			st.sess.mu.Unlock()
		}
	default:
		return
	}
	if c.Version() == codec.V5 {
		ack.ReasonCode = code
	}
	if k.bridge != nil {
		k.clusterAck(c, ack, false, nil, nil)
		return
	}
	if k.store != nil && k.durableAck(c, ack, false) {
		return // behind acknowledgements that wait for the store
	}
	c.SendPacketVia(&ack, batch)
}

// Inject publishes a message from a script or Go code, as if a client had
// sent it.
func (k *Broker) Inject(m *Message, batch *transport.Batch) int { return k.InjectVia(m, batch, nil) }

// InjectVia is Inject with a delivery hook.
func (k *Broker) InjectVia(m *Message, batch *transport.Batch, hook DeliverHook) int {
	m.own()
	return k.routeVia(m, nil, batch, hook)
}
