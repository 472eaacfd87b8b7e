package broker

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/mqttlua/broker/codec"
	"github.com/mqttlua/broker/engine/store"
	"github.com/mqttlua/broker/engine/transport"
)

// Persistence. With a store (SetStore), what the broker must not lose is
// written through a store.Committer:
//
//   - retained messages, under "r/" + topic: set and cleared as they are
//     routed, loaded at start (LoadRetained);
//
// and a QoS 1 or 2 PUBLISH that wrote something is acknowledged (PUBACK,
// PUBREC) only once the write is durable; so are PUBREL (once the
// delivery's released state is) and PUBCOMP (once the inbound packet id
// is forgotten). The acknowledgement then goes
// out from the committer's callback; while a client has acknowledgements
// waiting there, its later ones queue behind them, so they keep the order
// of its PUBLISHes ([MQTT-4.6.0-2], [MQTT-4.6.0-3]). A write that fails
// (a full disk) is not acknowledged: an MQTT 5 client gets its PUBACK or
// PUBREC with 0x80 (Unspecified error) and may send again; a 3.1.1
// client, which has no way to be refused, is disconnected and sends it
// again when it reconnects (as is any client whose PUBREL or PUBCOMP
// could not be made durable: the flow resumes on its next connection).

// SetStore makes the broker write through c (nil: memory only). It must
// be called before the transport serves.
func (k *Broker) SetStore(c *store.Committer) { k.store = c }

var retainedPrefix = []byte("r/")

func retainedKey(topic string) []byte {
	return append(append([]byte(nil), retainedPrefix...), topic...)
}

// persistRetained writes a retained message's change: m stored, or the
// topic cleared when m has no payload.
func (k *Broker) persistRetained(m *Message) {
	key := retainedKey(m.Topic)
	m.durable = true
	if len(m.Payload) == 0 {
		k.store.Submit(func(b *store.Batch) { b.Delete(key) }, nil)
		return
	}
	val := encodeMessage(m)
	k.store.Submit(func(b *store.Batch) { b.Put(key, val) }, nil)
	m.durable = true
}

// forgetRetained clears a topic's stored retained message.
func (k *Broker) forgetRetained(topic string) {
	if k.store != nil {
		key := retainedKey(topic)
		k.store.Submit(func(b *store.Batch) { b.Delete(key) }, nil)
	}
}

// LoadRetained reads the retained messages kv holds into the broker,
// dropping those that expired while it was down, and returns how many it
// kept. An entry it cannot read is an error naming its topic.
func (k *Broker) LoadRetained(kv store.KV) (int, error) {
	now := time.Now()
	n := 0
	var expired []string
	err := kv.Scan(retainedPrefix, func(key, val []byte) error {
		m, err := decodeMessage(val)
		if err != nil {
			return fmt.Errorf("retained message %q: %v", key[len(retainedPrefix):], err)
		}
		if m.expired(now) {
			expired = append(expired, m.Topic)
			return nil
		}
		k.retained.Set(m.Topic, m)
		n++
		return nil
	})
	if err != nil {
		return n, err
	}
	if len(expired) > 0 {
		var b store.Batch
		for _, t := range expired {
			b.Delete(retainedKey(t))
		}
		if err := kv.Apply(&b, false); err != nil {
			return n, err
		}
	}
	return n, nil
}

// durableAck sends ack once the writes submitted so far are durable, if
// the PUBLISH wrote something (wrote) or an earlier acknowledgement of
// the client still waits; otherwise it reports false and the caller sends
// it as usual.
func (k *Broker) durableAck(c *Client, ack codec.Packet, wrote bool) bool {
	if k.store == nil || (!wrote && c.pendingAcks.Load() == 0) {
		return false
	}
	c.pendingAcks.Add(1)
	k.store.Submit(nil, func(err error) {
		defer c.pendingAcks.Add(-1)
		if err == nil {
			c.SendPacketVia(&ack, nil)
			return
		}
		k.Stats.StoreFailures.Add(1)
		if c.Version() == codec.V5 && (ack.Type == codec.PUBACK || ack.Type == codec.PUBREC) {
			ack.ReasonCode = codec.UnspecifiedError
			c.SendPacketVia(&ack, nil)
			return
		}
		c.Close(transport.CloseStoreError)
	})
	return true
}

// The stored form of a message: a version byte, the QoS it was
// published with, the expiry (UnixNano, 0 for none), then the message as
// an MQTT 5 PUBLISH with QoS 1 and packet id 1 (topic, payload,
// properties and retain flag, in the codec's own encoding).
const messageFormat = 1

func encodeMessage(m *Message) []byte {
	out, _ := appendMessage(make([]byte, 0, 10+len(m.Topic)+len(m.Payload)+16), m)
	return out
}

func appendMessage(dst []byte, m *Message) ([]byte, error) {
	p := m.packet(1, m.Retain, false, 1)
	dst = append(dst, messageFormat, m.QoS)
	dst = binary.BigEndian.AppendUint64(dst, uint64(m.expireAt))
	return p.Append(dst, codec.V5)
}

func decodeMessage(b []byte) (*Message, error) {
	if len(b) < 11 || b[0] != messageFormat || b[1] > 2 {
		return nil, errors.New("not a stored message of this format")
	}
	expireAt := int64(binary.BigEndian.Uint64(b[2:10]))
	r := codec.NewReader(bytes.NewReader(b[10:]), 0)
	r.Version = codec.V5
	var p codec.Packet
	if err := r.ReadPacket(&p); err != nil || p.Type != codec.PUBLISH {
		return nil, fmt.Errorf("a damaged stored message: %v", err)
	}
	m := &Message{Topic: p.Topic, Payload: append([]byte(nil), p.Payload...), QoS: b[1], Retain: p.Retain, Owned: true, expireAt: expireAt}
	if !p.Properties.Empty() {
		props := p.Properties
		m.Props = &props
	}
	return m, nil
}

// Sessions. A persistent session (3.1.1 clean session 0, 5.0 session
// expiry > 0) is kept as:
//
//   - "s/" + client id: its record (owner, expiry, subscriptions), written
//     when it is created or resumed and when its subscriptions change;
//   - "q/" + client id + NUL + seq: each QoS 1/2 delivery to it, queued or
//     in flight (with its packet id, and whether PUBREL was sent), written
//     when routed and again when sent, deleted when acknowledged;
//   - "i/" + client id + NUL + packet id: each inbound QoS 2 packet id
//     awaiting PUBREL.
//
// All of them go through the committer with the session's lock held, so
// they reach the disk in the order they happened. A PUBLISH whose routing
// reached a persistent session (Message.durable, set by routing) is
// acknowledged once durable.

var (
	sessionPrefix  = []byte("s/")
	deliveryPrefix = []byte("q/")
	inboundPrefix  = []byte("i/")
)

// durable reports whether the session is kept in the store.
func (s *Session) durable(k *Broker) bool { return k.store != nil && s.persistent }

type sessionRecord struct {
	Owner  string      `json:"owner,omitempty"`
	Expiry int64       `json:"expiry"` // seconds; -1: never (3.1.1)
	Subs   []subRecord `json:"subs,omitempty"`
	// Offline is when the session's connection ended (Unix seconds), 0
	// while connected: its expiry counts from then, across a restart.
	Offline int64 `json:"offline,omitempty"`
}

type subRecord struct {
	Filter  string `json:"f"`
	QoS     byte   `json:"q"`
	NoLocal bool   `json:"nl,omitempty"`
	RAP     bool   `json:"rap,omitempty"`
	RH      byte   `json:"rh,omitempty"`
	SubID   uint32 `json:"id,omitempty"`
}

func sessionKey(id string) []byte { return append(append([]byte(nil), sessionPrefix...), id...) }

func seqKey(prefix []byte, id string, n uint64, width int) []byte {
	k := make([]byte, 0, len(prefix)+len(id)+1+width)
	k = append(append(append(k, prefix...), id...), 0)
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], n)
	return append(k, b[8-width:]...)
}

// storeMetaLocked writes the session's record. mu is held.
func (s *Session) storeMetaLocked(k *Broker) {
	if k.bridge != nil && s.persistent {
		k.bridge.Stored(s.clientID, s.recordLocked())
	}
	if !s.durable(k) {
		return
	}
	val := s.recordLocked()
	key := sessionKey(s.clientID)
	k.store.Submit(func(b *store.Batch) { b.Put(key, val) }, nil)
}

// storeDeliveryLocked writes a QoS 1/2 delivery of a persistent session,
// giving it its sequence number the first time; pid is its packet id
// once sent. It reports whether it wrote. mu is held.
func (s *Session) storeDeliveryLocked(k *Broker, d *delivery, pid uint16, released bool) bool {
	if !s.durable(k) || d.qos == 0 {
		return false
	}
	if d.seq == 0 {
		s.seq++
		d.seq = s.seq
	}
	val := encodeDelivery(d, pid, released)
	key := seqKey(deliveryPrefix, s.clientID, d.seq, 8)
	k.store.Submit(func(b *store.Batch) { b.Put(key, val) }, nil)
	return true
}

// forgetDeliveryLocked deletes a stored delivery. mu is held.
func (s *Session) forgetDeliveryLocked(k *Broker, seq uint64) {
	if seq == 0 || k.store == nil {
		return
	}
	key := seqKey(deliveryPrefix, s.clientID, seq, 8)
	k.store.Submit(func(b *store.Batch) { b.Delete(key) }, nil)
}

// storeInboundLocked records an inbound QoS 2 packet id; it reports
// whether it wrote. mu is held.
func (s *Session) storeInboundLocked(k *Broker, id uint16) bool {
	if !s.durable(k) {
		return false
	}
	key := seqKey(inboundPrefix, s.clientID, uint64(id), 2)
	k.store.Submit(func(b *store.Batch) { b.Put(key, nil) }, nil)
	return true
}

// forgetInboundLocked deletes a stored inbound QoS 2 packet id; it
// reports whether it wrote. mu is held.
func (s *Session) forgetInboundLocked(k *Broker, id uint16) bool {
	if !s.durable(k) {
		return false
	}
	key := seqKey(inboundPrefix, s.clientID, uint64(id), 2)
	k.store.Submit(func(b *store.Batch) { b.Delete(key) }, nil)
	return true
}

// forgetLocked deletes everything stored of the session. mu is held.
func (s *Session) forgetLocked(k *Broker) {
	if k.store == nil {
		return
	}
	var keys [][]byte
	if !s.replaced {
		keys = append(keys, sessionKey(s.clientID))
	}
	for _, d := range s.queue {
		if d.seq != 0 {
			keys = append(keys, seqKey(deliveryPrefix, s.clientID, d.seq, 8))
		}
	}
	for _, o := range s.inflight {
		if o.seq != 0 {
			keys = append(keys, seqKey(deliveryPrefix, s.clientID, o.seq, 8))
		}
	}
	for id := range s.inbound2 {
		keys = append(keys, seqKey(inboundPrefix, s.clientID, uint64(id), 2))
	}
	k.store.Submit(func(b *store.Batch) {
		for _, key := range keys {
			b.Delete(key)
		}
	}, nil)
}

// The stored form of a delivery: a version byte, its QoS, flags (1:
// retain, 2: PUBREL sent), its packet id (0: queued), its subscription
// identifiers, its shared subscription's key, then the message.
const deliveryFormat = 1

func encodeDelivery(d *delivery, pid uint16, released bool) []byte {
	out := []byte{deliveryFormat, d.qos, 0, byte(pid >> 8), byte(pid)}
	if d.retain {
		out[2] |= 1
	}
	if released {
		out[2] |= 2
	}
	out = binary.AppendUvarint(out, uint64(len(d.subIDs)))
	for _, id := range d.subIDs {
		out = binary.AppendUvarint(out, uint64(id))
	}
	share := ""
	if d.share != nil {
		share = d.share.key
	}
	out = binary.AppendUvarint(out, uint64(len(share)))
	out = append(out, share...)
	return append(out, encodeMessage(d.msg)...)
}

func decodeDelivery(b []byte) (d delivery, pid uint16, released bool, share string, err error) {
	bad := errors.New("not a stored delivery of this format")
	if len(b) < 5 || b[0] != deliveryFormat || b[1] > 2 {
		return d, 0, false, "", bad
	}
	d.qos, d.retain, released = b[1], b[2]&1 != 0, b[2]&2 != 0
	pid = uint16(b[3])<<8 | uint16(b[4])
	rest := b[5:]
	n, w := binary.Uvarint(rest)
	if w <= 0 || n > 64 {
		return d, 0, false, "", bad
	}
	rest = rest[w:]
	for range n {
		id, w := binary.Uvarint(rest)
		if w <= 0 {
			return d, 0, false, "", bad
		}
		d.subIDs = append(d.subIDs, uint32(id))
		rest = rest[w:]
	}
	l, w := binary.Uvarint(rest)
	if w <= 0 || uint64(len(rest)-w) < l {
		return d, 0, false, "", bad
	}
	share = string(rest[w : w+int(l)])
	d.msg, err = decodeMessage(rest[w+int(l):])
	return d, pid, released, share, err
}

// restoreLocked sets a session's owner and subscriptions from its
// record (a store's, or another node's). The subscriptions are not in the
// trees yet: the caller adds them. mu is held or the session unshared.
func (s *Session) restoreLocked(rec *sessionRecord) {
	s.owner = rec.Owner
	for _, sub := range rec.Subs {
		if s.subs == nil {
			s.subs = map[string]subOpts{}
		}
		s.subs[sub.Filter] = subOpts{QoS: sub.QoS, NoLocal: sub.NoLocal, RetainAsPublished: sub.RAP, RetainHandling: sub.RH, SubID: sub.SubID}
	}
}

// restoreDeliveryLocked puts a stored delivery back: queued (pid 0), or
// in flight with its packet id, in the order given. share is its shared
// subscription group's key, if any. mu is held or the session unshared.
func (s *Session) restoreDeliveryLocked(k *Broker, d delivery, pid uint16, released bool, share string) {
	if share != "" {
		k.shareMu.Lock()
		d.share = k.shares[share]
		k.shareMu.Unlock()
	}
	if pid == 0 {
		s.queue = append(s.queue, d)
		return
	}
	if s.inflight == nil {
		s.inflight = map[uint16]*outbound{}
	}
	s.inflight[pid] = &outbound{delivery: d, released: released}
	s.order = append(s.order, pid)
	s.lastID = pid
}

// LoadSessions reads the persistent sessions kv holds into the broker:
// offline, with their subscriptions, their deliveries (in flight ones are
// sent again, with DUP, when the client resumes) and their inbound QoS 2
// packet ids. A session expires its expiry after its connection ended
// (after the start, for one that was connected when the broker stopped);
// one that expired while the broker was down is deleted. It returns how
// many sessions and deliveries it loaded.
func (k *Broker) LoadSessions(kv store.KV) (sessions, deliveries int, err error) {
	var expiredIDs []string
	err = kv.Scan(sessionPrefix, func(key, val []byte) error {
		id := string(key[len(sessionPrefix):])
		var rec sessionRecord
		if err := json.Unmarshal(val, &rec); err != nil {
			return fmt.Errorf("session %q: %v", id, err)
		}
		expiry := neverExpire
		left := neverExpire
		if rec.Expiry >= 0 {
			expiry = time.Duration(rec.Expiry) * time.Second
			left = expiry
			if rec.Offline > 0 {
				left -= time.Since(time.Unix(rec.Offline, 0))
			}
			if left <= 0 {
				expiredIDs = append(expiredIDs, id)
				return nil
			}
		}
		s := newSession(id, true, expiry)
		s.left = left
		s.restoreLocked(&rec)
		for f, o := range s.subs {
			k.addSub(f, s, o)
		}
		k.sessions[id] = s
		sessions++
		return nil
	})
	if err != nil {
		return
	}
	var orphans [][]byte
	err = kv.Scan(deliveryPrefix, func(key, val []byte) error {
		rest := key[len(deliveryPrefix):]
		i := bytes.IndexByte(rest, 0)
		if i < 0 || len(rest)-i-1 != 8 {
			return fmt.Errorf("delivery key %q: not of this format", key)
		}
		s := k.sessions[string(rest[:i])]
		if s == nil { // its session expired, or is gone
			orphans = append(orphans, append([]byte(nil), key...))
			return nil
		}
		d, pid, released, share, err := decodeDelivery(val)
		if err != nil {
			return fmt.Errorf("a delivery to %q: %v", s.clientID, err)
		}
		d.seq = binary.BigEndian.Uint64(rest[i+1:])
		s.seq = max(s.seq, d.seq)
		s.restoreDeliveryLocked(k, d, pid, released, share)
		deliveries++
		return nil
	})
	if err != nil {
		return
	}
	err = kv.Scan(inboundPrefix, func(key, val []byte) error {
		rest := key[len(inboundPrefix):]
		i := bytes.IndexByte(rest, 0)
		if i < 0 || len(rest)-i-1 != 2 {
			return fmt.Errorf("inbound key %q: not of this format", key)
		}
		if s := k.sessions[string(rest[:i])]; s != nil {
			s.markInbound2(uint16(rest[i+1])<<8 | uint16(rest[i+2]))
		} else {
			orphans = append(orphans, append([]byte(nil), key...))
		}
		return nil
	})
	if err != nil {
		return
	}
	if len(orphans) > 0 || len(expiredIDs) > 0 {
		var b store.Batch
		for _, key := range orphans {
			b.Delete(key)
		}
		for _, id := range expiredIDs {
			b.Delete(sessionKey(id))
		}
		err = kv.Apply(&b, false)
	}
	for _, s := range k.sessions {
		if s.expiry != neverExpire {
			gen := s.gen
			s.timer = time.AfterFunc(s.left, func() { k.sessionTimer(s, gen, nil) })
		}
	}
	return
}

// Wills. A connected client's will is kept under "w/" + client id + NUL +
// the connection's fd while the connection lasts (deleted when it ends,
// whatever becomes of the will then): a will found at start belongs to a
// client the crash disconnected, and is published, after its delay,
// unless the client has reconnected by then.

var willPrefix = []byte("w/")

func willKey(clientID string, fd int) []byte {
	return seqKey(willPrefix, clientID, uint64(fd), 8)
}

// storeWill keeps a connection's will.
func (k *Broker) storeWill(clientID string, fd int, w *Message) {
	m := *w
	delay := w.willDelay()
	if w.Props != nil {
		p := *w.Props
		p.Clear(codec.PropWillDelay) // not a PUBLISH property
		m.Props = &p
	}
	val := binary.BigEndian.AppendUint64(nil, uint64(delay))
	val = append(val, encodeMessage(&m)...)
	key := willKey(clientID, fd)
	k.store.Submit(func(b *store.Batch) { b.Put(key, val) }, nil)
}

// forgetWill deletes a connection's stored will.
func (k *Broker) forgetWill(clientID string, fd int) {
	key := willKey(clientID, fd)
	k.store.Submit(func(b *store.Batch) { b.Delete(key) }, nil)
}

// LoadWills schedules the wills of the clients a crash disconnected, and
// deletes them from kv (a crash during a will's delay loses it). It
// returns how many it scheduled.
func (k *Broker) LoadWills(kv store.KV) (int, error) {
	var keys [][]byte
	n := 0
	err := kv.Scan(willPrefix, func(key, val []byte) error {
		rest := key[len(willPrefix):]
		i := bytes.IndexByte(rest, 0)
		if i < 0 || len(val) < 8 {
			return fmt.Errorf("will key %q: not of this format", key)
		}
		id := string(rest[:i])
		delay := time.Duration(binary.BigEndian.Uint64(val[:8]))
		w, err := decodeMessage(val[8:])
		if err != nil {
			return fmt.Errorf("the will of %q: %v", id, err)
		}
		keys = append(keys, append([]byte(nil), key...))
		s := k.sessions[id]
		var gen uint64
		if s != nil {
			gen = s.gen
		}
		time.AfterFunc(delay, func() {
			if s != nil {
				s.mu.Lock()
				back := s.gen != gen
				s.mu.Unlock()
				if back {
					return // the client reconnected within the delay
				}
			}
			k.sendWill(w)
		})
		n++
		return nil
	})
	if err != nil || len(keys) == 0 {
		return n, err
	}
	var b store.Batch
	for _, key := range keys {
		b.Delete(key)
	}
	return n, kv.Apply(&b, false)
}
