package kit

import (
	"sync"

	"github.com/mqttlua/broker/codec"
	"github.com/mqttlua/broker/engine"
)

// target is one session a message goes to, at the highest QoS of its
// matching subscriptions ([MQTT-3.3.5-1]).
type target struct {
	s    *Session
	opts subOpts
}

// routeScratch is reused across routings to keep the hot path free of
// per-message allocations.
type routeScratch struct {
	targets []target
	index   map[*Session]int
	pkt     codec.Packet
	fanout  codec.Fanout
}

var scratchPool = sync.Pool{New: func() any { return &routeScratch{index: map[*Session]int{}} }}

// route delivers m to every matching subscription and stores or clears it
// as the retained message of its topic. from is the publishing
// connection (nil for wills and scripts); batch defers writer wake-ups to
// the end of the publisher's read. It returns the number of sessions the
// message went to.
func (k *Kit) route(m *Message, from *engine.Conn, batch *engine.Batch) int {
	k.Stats.Published.Add(1)
	if m.Retain {
		if len(m.Payload) == 0 {
			// [MQTT-3.3.1-10] an empty retained message clears the topic.
			k.retained.Delete(m.Topic)
		} else {
			// [MQTT-3.3.1-5] store it, replacing the previous one.
			m.own()
			k.retained.Set(m.Topic, m)
		}
	}
	sc := scratchPool.Get().(*routeScratch)
	k.subs.Match(m.Topic, func(s *Session, o subOpts) {
		if i, ok := sc.index[s]; ok {
			t := &sc.targets[i]
			if o.QoS > t.opts.QoS {
				t.opts.QoS = o.QoS
			}
			t.opts.RetainAsPublished = t.opts.RetainAsPublished || o.RetainAsPublished
			return
		}
		sc.index[s] = len(sc.targets)
		sc.targets = append(sc.targets, target{s, o})
	})
	if len(sc.targets) > 0 {
		sc.pkt = m.packet(m.QoS, false, false, 0)
		sc.fanout.Reset(&sc.pkt)
		k.fanOut(m, from, sc, batch)
	}
	n := len(sc.targets)
	for i := range sc.targets {
		sc.targets[i] = target{}
	}
	sc.targets = sc.targets[:0]
	clear(sc.index)
	sc.pkt = codec.Packet{}
	sc.fanout.Reset(nil)
	scratchPool.Put(sc)
	return n
}

func (k *Kit) fanOut(m *Message, from *engine.Conn, sc *routeScratch, batch *engine.Batch) {
	var fromSess *Session
	if from != nil {
		if st := stateOf(from); st != nil {
			fromSess = st.sess
		}
	}
	for _, t := range sc.targets {
		if t.opts.NoLocal && t.s == fromSess {
			continue // 5.0 [MQTT-3.8.3-3] not to the publisher's own subscription
		}
		qos := m.QoS
		if t.opts.QoS < qos {
			qos = t.opts.QoS // [MQTT-3.8.4-6] downgrade to the granted QoS
		}
		// [MQTT-3.3.1-9] a message forwarded to existing subscriptions
		// has RETAIN 0, unless a 5.0 subscription asked otherwise.
		retain := m.Retain && t.opts.RetainAsPublished
		if qos == 0 {
			c := t.s.conn.Load()
			if c == nil {
				k.Stats.NoSession.Add(1)
				continue
			}
			v := c.Version()
			err := c.AppendVia(func(dst []byte) ([]byte, error) {
				return sc.fanout.Append(dst, v, 0, retain, 0)
			}, batch)
			if err == nil {
				k.Stats.Delivered.Add(1)
			}
			continue
		}
		m.own()
		t.s.mu.Lock()
		t.s.deliverLocked(k, m, qos, retain, batch)
		t.s.mu.Unlock()
	}
}

// Intercept runs the QoS acknowledgement flows of sessions the kit
// manages.
func (k *Kit) Intercept(c *engine.Conn, p *codec.Packet, batch *engine.Batch) bool {
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
			// [MQTT-4.3.3-3] answer PUBREC with PUBREL.
			o.released = true
			c.SendPacketVia(&codec.Packet{Type: codec.PUBREL, PacketID: p.PacketID}, batch)
		}
	case codec.PUBCOMP:
		s.ackLocked(k, p.PacketID, batch)
	case codec.PUBREL:
		// [MQTT-4.3.3-11] PUBCOMP releases the packet id for reuse.
		ack := &codec.Packet{Type: codec.PUBCOMP, PacketID: p.PacketID}
		if _, ok := s.inbound2[p.PacketID]; ok {
			delete(s.inbound2, p.PacketID)
		} else {
			ack.ReasonCode = codec.PacketIdentifierNotFound
		}
		c.SendPacketVia(ack, batch)
	default:
		return false
	}
	return true
}

// Publish routes a PUBLISH received from c, after the script's decision,
// and acknowledges it: PUBACK for QoS 1, PUBREC for QoS 2, delivering a
// QoS 2 message only the first time its packet id is seen before PUBREL
// ([MQTT-4.3.3-2]). It returns the number of sessions reached.
func (k *Kit) Publish(c *engine.Conn, m *Message, id uint16, batch *engine.Batch) int {
	n := 0
	switch m.QoS {
	case 0:
		n = k.route(m, c, batch)
	case 1:
		n = k.route(m, c, batch)
		// [MQTT-4.3.2-2] PUBACK after taking ownership.
		c.SendPacketVia(&codec.Packet{Type: codec.PUBACK, PacketID: id}, batch)
	case 2:
		first := true
		if st := stateOf(c); st != nil {
			st.sess.mu.Lock()
			_, dup := st.sess.inbound2[id]
			if !dup {
				st.sess.inbound2[id] = struct{}{}
			}
			st.sess.mu.Unlock()
			first = !dup
		}
		if first {
			n = k.route(m, c, batch)
		}
		c.SendPacketVia(&codec.Packet{Type: codec.PUBREC, PacketID: id}, batch)
	}
	return n
}

// Ack acknowledges a PUBLISH that is not routed (an ACL denial): 3.1.1 has
// no way to refuse one, so it is acknowledged and dropped. For 5.0 the code
// (e.g. 0x87 not authorized) goes in the PUBACK / PUBREC.
func (k *Kit) Ack(c *engine.Conn, qos byte, id uint16, code codec.ReasonCode, batch *engine.Batch) {
	var ack codec.Packet
	switch qos {
	case 1:
		ack = codec.Packet{Type: codec.PUBACK, PacketID: id}
	case 2:
		ack = codec.Packet{Type: codec.PUBREC, PacketID: id}
		if st := stateOf(c); st != nil && !code.IsError() {
			st.sess.mu.Lock()
			st.sess.inbound2[id] = struct{}{}
			st.sess.mu.Unlock()
		}
	default:
		return
	}
	if c.Version() == codec.V5 {
		ack.ReasonCode = code
	}
	c.SendPacketVia(&ack, batch)
}

// Inject publishes a message from a script or Go code, as if a client had
// sent it.
func (k *Kit) Inject(m *Message, batch *engine.Batch) int {
	m.own()
	return k.route(m, nil, batch)
}
