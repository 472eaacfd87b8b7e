package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"time"

	"github.com/mqttlua/broker/engine/broker"
	"github.com/mqttlua/broker/engine/transport"
	"github.com/nats-io/nats.go"
)

// Messages between nodes: what Forward sends (frames on core NATS
// subjects and into the streams), and what the core and queue
// subscriptions bring back to the broker.

// Frames. Every message between nodes is: a version byte, the sending
// node's origin (length byte, then "name/start id"), 8 bytes (on core
// subjects the origin's sequence number, for dedupe; in the streams the
// message's stamp, for ownMessage), then the message as
// broker.Message.MarshalBinary encodes it.
const frameVersion = 1

func (c *Cluster) frame(m *broker.Message, seq uint64) ([]byte, error) {
	out := make([]byte, 0, 2+len(c.origin)+8+len(m.Topic)+len(m.Payload)+32)
	out = append(out, frameVersion, byte(len(c.origin)))
	out = append(out, c.origin...)
	out = binary.BigEndian.AppendUint64(out, seq)
	out, err := m.AppendBinary(out)
	if err == nil && len(out) > maxPayload {
		err = fmt.Errorf("message of %d bytes: more than the cluster carries (%d)", len(out), maxPayload)
	}
	return out, err
}

var errFrame = errors.New("cluster: not a frame of this version")

func parseFrame(b []byte) (origin string, seq uint64, m *broker.Message, err error) {
	if len(b) < 2 || b[0] != frameVersion || len(b) < 2+int(b[1])+8 {
		return "", 0, nil, errFrame
	}
	n := int(b[1])
	origin = string(b[2 : 2+n])
	seq = binary.BigEndian.Uint64(b[2+n:])
	m, err = broker.UnmarshalMessage(b[2+n+8:])
	return origin, seq, m, err
}

// Forward implements broker.Bridge.
func (c *Cluster) Forward(m *broker.Message, done func(error)) {
	// The topic is escaped and the frame encoded once, whichever subjects
	// the message goes to.
	esc, err := escapeTopic(m.Topic)
	var f []byte
	if err == nil {
		if m.QoS == 0 {
			f, err = c.frame(m, c.seq.Add(1))
		} else {
			// In the streams the sequence field carries the message's
			// stamp (BeginLocal), for this node's consumer (ownMessage).
			f, err = c.frame(m, m.Stamp())
		}
	}
	if err != nil {
		c.log.WithError(err).WithField("topic", m.Topic).Warn("cluster: a message cannot go to the other nodes")
		if done != nil {
			done(err)
		}
		return
	}
	if m.QoS == 0 {
		c.publishCore(msgPrefix+esc, f)
		if m.Retain {
			c.forwardStream(retainPrefix+esc, f, nil)
		}
		if done != nil {
			done(nil)
		}
		return
	}
	if done == nil {
		// A will or a script's message: no client sends it again if
		// JetStream refuses it (a leader being elected), so this node
		// does.
		done = c.retryForward(m.Topic, esc, f, m.Retain, 1)
	}
	c.forwardLogged(esc, f, m.Retain, done)
	// Shared subscriptions take it from core NATS: one queue member in
	// the cluster. At most once, unlike the log (docs/cluster.md).
	c.publishCore(sharePrefix+esc, f)
}

// forwardLogged puts a frame into the log (and, retained, into
// MQ_RETAIN); done gets JetStream's answer.
func (c *Cluster) forwardLogged(esc string, f []byte, retain bool, done func(error)) {
	w := &forwardWait{left: 1, done: done}
	if retain {
		w.left = 2
	}
	c.forwardStream(logPrefix+esc, f, w)
	if retain {
		c.forwardStream(retainPrefix+esc, f, w)
	}
}

// retryForward is the answer handler of a QoS 1/2 message nobody would
// send again: on an error it is put into the log again, every half
// second, up to forwardAttempts times (a retained one may then be in the
// log twice, which the subscribers see as a duplicate).
func (c *Cluster) retryForward(topic, esc string, f []byte, retain bool, attempt int) func(error) {
	return func(err error) {
		switch {
		case err == nil:
		case attempt >= forwardAttempts:
			c.log.WithError(err).WithField("topic", topic).Error("cluster: a will or script message was not taken by the cluster; given up")
		default:
			time.AfterFunc(500*time.Millisecond, func() {
				c.forwardLogged(esc, f, retain, c.retryForward(topic, esc, f, retain, attempt+1))
			})
		}
	}
}

// forwardAttempts bounds retryForward: 30 s of leader elections.
const forwardAttempts = 60

// publishCore publishes a frame on core NATS (at most once).
func (c *Cluster) publishCore(subject string, f []byte) {
	c.Forwarded.Add(1)
	if err := c.nc.Publish(subject, f); err != nil {
		c.log.WithError(err).WithField("subject", subject).Warn("cluster: a message did not go to the other nodes")
	}
}

// forwardStream publishes a frame into a stream; w, if not nil, is
// answered when JetStream acknowledges it (answered).
func (c *Cluster) forwardStream(subject string, f []byte, w *forwardWait) {
	msg := &nats.Msg{Subject: subject, Data: f}
	if w != nil {
		c.pendMu.Lock()
		c.pending[msg] = w
		c.pendMu.Unlock()
	}
	c.Forwarded.Add(1)
	_, err := c.js.PublishMsgAsync(msg)
	if err == nil {
		return
	}
	c.log.WithError(err).WithField("subject", subject).Warn("cluster: a message was not taken by the cluster")
	if w != nil {
		c.pendMu.Lock()
		delete(c.pending, msg)
		c.pendMu.Unlock()
		c.settle(w, err)
	}
}

// answered is JetStream's answer to an asynchronous publish.
func (c *Cluster) answered(msg *nats.Msg, err error) {
	c.pendMu.Lock()
	w := c.pending[msg]
	delete(c.pending, msg)
	c.pendMu.Unlock()
	if w != nil {
		c.settle(w, err)
	}
}

func (c *Cluster) settle(w *forwardWait, err error) {
	c.pendMu.Lock()
	w.left--
	if err != nil && w.err == nil {
		w.err = err
	}
	last := w.left == 0
	c.pendMu.Unlock()
	if last {
		w.done(w.err)
	}
}

// Subscribed implements broker.Bridge: the first local subscription to a
// subject subscribes this node to it on NATS.
func (c *Cluster) Subscribed(filter string) {
	if name, f, ok := broker.SplitShare(filter); ok {
		c.subscribedShare(filter, name, f)
		return
	}
	subjects, err := filterSubjects(msgPrefix, filter)
	if err != nil {
		c.log.WithError(err).WithField("filter", filter).Warn("cluster: this filter gets no messages from other nodes")
		return
	}
	c.subMu.Lock()
	defer c.subMu.Unlock()
	for _, s := range subjects {
		in := c.subs[s]
		if in == nil {
			sub, err := c.nc.ChanSubscribe(s, c.core)
			if err != nil {
				c.log.WithError(err).WithField("filter", filter).Warn("cluster: cannot subscribe on NATS")
				continue
			}
			// Unbounded here: the channel is the bound.
			sub.SetPendingLimits(-1, -1)
			in = &interest{sub: sub}
			c.subs[s] = in
		}
		in.n++
	}
}

// Unsubscribed implements broker.Bridge.
func (c *Cluster) Unsubscribed(filter string) {
	c.subMu.Lock()
	defer c.subMu.Unlock()
	if _, _, ok := broker.SplitShare(filter); ok {
		if in := c.shares[filter]; in != nil {
			if in.n--; in.n == 0 {
				for _, sub := range in.more {
					sub.Unsubscribe()
				}
				delete(c.shares, filter)
			}
		}
		return
	}
	subjects, err := filterSubjects(msgPrefix, filter)
	if err != nil {
		return
	}
	for _, s := range subjects {
		in := c.subs[s]
		if in == nil {
			continue
		}
		if in.n--; in.n == 0 {
			in.sub.Unsubscribe()
			delete(c.subs, s)
		}
	}
}

// subscribedShare makes this node a member of a shared subscription
// group in the cluster: a NATS queue subscription, named after the
// group and its filter, on the filter's subjects for QoS 0 messages and
// for QoS 1/2 ones. NATS gives each message to one member of the queue:
// one node, whose broker gives it to one of its members.
func (c *Cluster) subscribedShare(key, name, filter string) {
	c.subMu.Lock()
	defer c.subMu.Unlock()
	if in := c.shares[key]; in != nil {
		in.n++
		return
	}
	h := fnv.New64a()
	h.Write([]byte(key))
	queue := fmt.Sprintf("share-%x", h.Sum64())
	in := &interest{n: 1}
	for _, prefix := range []string{msgPrefix, sharePrefix} {
		subjects, err := filterSubjects(prefix, filter)
		if err != nil {
			c.log.WithError(err).WithField("filter", key).Warn("cluster: this shared subscription gets no messages from other nodes")
			return
		}
		for _, s := range subjects {
			sub, err := c.shareNC.QueueSubscribe(s, queue, func(msg *nats.Msg) {
				select {
				case c.shared <- sharedMsg{name: name, filter: filter, data: msg.Data}:
				case <-c.done:
				}
			})
			if err != nil {
				c.log.WithError(err).WithField("filter", key).Warn("cluster: cannot subscribe on NATS")
				continue
			}
			sub.SetPendingLimits(-1, -1)
			in.more = append(in.more, sub)
		}
	}
	c.shares[key] = in
}

// receiveShared delivers what NATS chose this node for to one member of
// the group.
func (c *Cluster) receiveShared() {
	defer c.wg.Done()
	batch := new(transport.Batch)
	for {
		var sm sharedMsg
		select {
		case sm = <-c.shared:
		case <-c.done:
			return
		}
		if _, _, m, err := parseFrame(sm.data); err != nil {
			c.log.WithError(err).Warn("cluster: a shared subscription's message does not decode")
		} else if !c.k.RouteShared(m, sm.name, sm.filter, batch) {
			c.log.WithField("filter", "$share/"+sm.name+"/"+sm.filter).Debug("cluster: a shared message found no member here")
		}
		if len(c.shared) == 0 {
			batch.Settle()
		}
	}
}

// receiveCore routes the QoS 0 messages of other nodes. A message that
// matches several of this node's subjects (overlapping filters) arrives
// once per subject, one after the other; only the first is routed (each
// origin's sequence numbers only grow, and NATS keeps one origin's order).
func (c *Cluster) receiveCore() {
	defer c.wg.Done()
	last := map[string]uint64{}
	batch := new(transport.Batch)
	for {
		var msg *nats.Msg
		select {
		case msg = <-c.core:
		case <-c.done:
			return
		}
		origin, seq, m, err := parseFrame(msg.Data)
		switch {
		case err != nil:
			c.log.WithError(err).WithField("subject", msg.Subject).Warn("cluster: a message from another node does not decode")
		case seq <= last[origin]:
			c.Duplicates.Add(1)
		default:
			last[origin] = seq
			c.Received.Add(1)
			c.k.RouteRemote(m, batch)
		}
		if len(c.core) == 0 {
			batch.Settle()
		}
	}
}
