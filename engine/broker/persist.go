package broker

import (
	"bytes"
	"encoding/binary"
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
// PUBREC) only once the write is durable. The acknowledgement then goes
// out from the committer's callback; while a client has acknowledgements
// waiting there, its later ones queue behind them, so they keep the order
// of its PUBLISHes ([MQTT-4.6.0-2], [MQTT-4.6.0-3]). A write that fails
// (a full disk) is not acknowledged: an MQTT 5 client gets its PUBACK or
// PUBREC with 0x80 (Unspecified error) and may send again; a 3.1.1
// client, which has no way to be refused, is disconnected and sends it
// again when it reconnects.

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
	if len(m.Payload) == 0 {
		k.store.Submit(func(b *store.Batch) { b.Delete(key) }, nil)
		return
	}
	val := encodeMessage(m)
	k.store.Submit(func(b *store.Batch) { b.Put(key, val) }, nil)
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
		if c.Version() == codec.V5 {
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
	p := m.packet(1, m.Retain, false, 1)
	out := make([]byte, 10, 10+len(m.Topic)+len(m.Payload)+16)
	out[0], out[1] = messageFormat, m.QoS
	binary.BigEndian.PutUint64(out[2:10], uint64(m.expireAt))
	out, _ = p.Append(out, codec.V5)
	return out
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
