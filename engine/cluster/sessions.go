package cluster

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/mqttlua/broker/codec"
	"github.com/mqttlua/broker/engine/broker"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/sirupsen/logrus"
)

// Sessions across nodes: the registry (MQ_SESS), claims and handovers,
// the records a dead node leaves, and its connections' wills.

type ownerRecord struct {
	Node string `json:"node"`
	// Session is a persistent session's record (broker.Bridge.Stored):
	// what another node takes up if this one dies.
	Session json.RawMessage `json:"session,omitempty"`
	// Will is the will of the session's connection, if it has one and
	// it is connected (broker.Bridge.Will): published by another node if
	// this one dies (watchNodes).
	Will []byte `json:"will,omitempty"`
}

func sessionKey(clientID string) string {
	return "s." + base64.RawURLEncoding.EncodeToString([]byte(clientID))
}

// claimAttempts bounds the compare-and-set retries of one CONNECT:
// each failure means another node wrote the record in between.
const claimAttempts = 8

// Claim implements broker.Bridge.
func (c *Cluster) Claim(clientID string, will []byte) ([]byte, func(), error) {
	settled := c.startClaim(clientID)
	prev, err := c.claim(clientID, will)
	if err != nil {
		settled()
		return nil, nil, err
	}
	if prev.Node == "" || prev.Node == c.cfg.Node {
		return nil, settled, nil // new, or this node's: the broker has it
	}
	state, from, err := c.takeFrom(prev.Node, clientID)
	switch {
	case err == nil && state == nil && prev.Session != nil:
		// The node answered but does not have the session: restarted
		// since, it lost what it held in memory. The registry still has
		// the subscriptions.
		return broker.Recovered(prev.Session), settled, nil
	case err == nil && state == nil:
		return nil, settled, nil // a clean session: nothing to carry
	case err == nil:
		// Handed over with what the old node had routed to it, up to its
		// log position from: the rest comes from the log (catchUp).
		return state, c.catchUp(clientID, prev.Node, from, settled), nil
	case !errors.Is(err, nats.ErrNoResponders):
		// Alive but not answering in time (busy, or cut off from us):
		// taking the session now could leave it live on two nodes.
		settled()
		return nil, nil, fmt.Errorf("node %s did not hand the session over: %v", prev.Node, err)
	case prev.Session == nil:
		if prev.Will != nil {
			c.publishWill(clientID, prev.Will, true)
		}
		return nil, settled, nil // a clean session: nothing of it survives its node
	}
	// The old node is gone (nothing listens for it): take the session up
	// from its record, and replay what the log holds past that node's
	// checkpoint.
	if prev.Will != nil {
		// The client is back before any node published its will: this
		// node's claim took the will out of the record, so this node
		// publishes it, as the lost connection's ([MQTT-3.1.2-8]).
		c.publishWill(clientID, prev.Will, true)
	}
	c.log.WithFields(logrus.Fields{"client_id": clientID, "from": prev.Node}).Warn("cluster: taking up the session of a node that is gone")
	return broker.Recovered(prev.Session), c.catchUp(clientID, prev.Node, c.checkpointOf(prev.Node), settled), nil
}

// catchUp returns the settled function of a session that came from
// another node, which had routed the log to it up to position from (its
// position at the handover, or its checkpoint if it died). Once the
// session is in place here, the log is replayed to it from there up to
// where this node's routing stands: what follows comes by routing, what
// precedes by the replay, so nothing falls between. Messages this node
// published before the session was in place come back from the log to
// it too (recoverSession, ownMessage). A message may come twice (the
// old node had it in the state it handed over, and this node's routing
// was behind), or out of order: counted as duplicates and order breaks
// by the fault test. The replay runs on its own goroutine: it waits for
// JetStream, which may be electing new leaders after a crash, and must
// hold neither the script handler that accepted the CONNECT nor this
// node's routing.
func (c *Cluster) catchUp(clientID, node string, from uint64, settled func()) func() {
	return func() {
		c.recoverSession(clientID)
		c.routeMu.Lock()
		to := c.pos.Load()
		c.routeMu.Unlock()
		settled()
		if to > from {
			c.log.WithFields(logrus.Fields{"client_id": clientID, "from": node, "replay": fmt.Sprintf("%d..%d", from+1, to)}).
				Debug("cluster: catching a session up with the log")
			go c.replay(clientID, from, to)
		}
	}
}

// startClaim marks clientID as being claimed by this node, after any
// claim of it already under way here; the function returned ends the
// mark. A handover request that arrives meanwhile waits for it: the
// registry may already name this node while the broker has not yet set
// the session up, and a handover then would find nothing to close.
func (c *Cluster) startClaim(clientID string) func() {
	ch := make(chan struct{})
	for {
		c.claimMu.Lock()
		prev := c.claiming[clientID]
		if prev == nil {
			c.claiming[clientID] = ch
			c.claimMu.Unlock()
			break
		}
		c.claimMu.Unlock()
		<-prev
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			c.claimMu.Lock()
			delete(c.claiming, clientID)
			c.claimMu.Unlock()
			close(ch)
		})
	}
}

// claim writes this node as the session's owner, and returns the record
// it replaced.
func (c *Cluster) claim(clientID string, will []byte) (ownerRecord, error) {
	key := sessionKey(clientID)
	for range claimAttempts {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		prev, rev, err := c.owner(ctx, key)
		if err == nil {
			// The session's record stays until this node writes its own.
			val, _ := json.Marshal(ownerRecord{Node: c.cfg.Node, Session: prev.Session, Will: will})
			if rev == 0 {
				rev, err = c.sess.Create(ctx, key, val)
			} else {
				rev, err = c.sess.Update(ctx, key, val, rev)
			}
		}
		cancel()
		if errors.Is(err, jetstream.ErrKeyExists) || isWrongRevision(err) {
			continue // another node's CONNECT came between: read again
		}
		if err != nil {
			return ownerRecord{}, err
		}
		c.revMu.Lock()
		c.revs[clientID] = rev
		c.revMu.Unlock()
		// Later writes of the record keep what this one wrote.
		c.dirtyMu.Lock()
		c.records[clientID] = &localRecord{session: prev.Session, will: will}
		c.dirtyMu.Unlock()
		return prev, nil
	}
	return ownerRecord{}, fmt.Errorf("client id %q: claimed by other nodes %d times in a row", clientID, claimAttempts)
}

// owner reads a session's record and its revision (0: none).
func (c *Cluster) owner(ctx context.Context, key string) (ownerRecord, uint64, error) {
	var rec ownerRecord
	e, err := c.sess.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return rec, 0, nil
	}
	if err != nil {
		return rec, 0, err
	}
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		return ownerRecord{}, e.Revision(), nil // unreadable: taken over as if none
	}
	return rec, e.Revision(), nil
}

// isWrongRevision reports a compare-and-set that lost: another write to
// the key came first (10071, or 10164 from replicated streams).
func isWrongRevision(err error) bool {
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return true
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// takeFrom asks the session's previous owner for it; an error means the
// node did not answer (stopped, cut off). The answer is the old node's
// log position when it let the session go (8 bytes), then the session's
// state (nothing for a clean session).
func (c *Cluster) takeFrom(node, clientID string) ([]byte, uint64, error) {
	reply, err := c.nc.Request(ctlPrefix+string(appendLevel(nil, node))+".handover", []byte(clientID), c.cfg.HandoverTimeout)
	if err != nil {
		c.log.WithError(err).WithFields(logrus.Fields{"client_id": clientID, "from": node}).
			Warn("cluster: the session's previous node did not hand it over")
		return nil, 0, err
	}
	if len(reply.Data) < 8 {
		return nil, 0, fmt.Errorf("node %s: a handover of %d bytes", node, len(reply.Data))
	}
	c.Handovers.Add(1)
	pos := binary.BigEndian.Uint64(reply.Data)
	if len(reply.Data) == 8 {
		return nil, pos, nil
	}
	return reply.Data[8:], pos, nil
}

// handover answers another node's takeover of a session this node had,
// once a claim of it under way here has settled (startClaim). Routing
// from the log waits meanwhile, so that the position sent with the state
// says exactly which messages the state took in.
func (c *Cluster) handover(msg *nats.Msg) {
	clientID := string(msg.Data)
	c.claimMu.Lock()
	pending := c.claiming[clientID]
	c.claimMu.Unlock()
	defer c.forget(clientID)
	if pending != nil {
		// Less than the requester waits, so that it hears an answer.
		select {
		case <-pending:
		case <-time.After(c.cfg.HandoverTimeout / 2):
		}
	}
	c.routeMu.Lock()
	pos := c.pos.Load()
	state := c.k.HandOver(clientID)
	c.routeMu.Unlock()
	reply := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(state)), pos)
	if err := msg.Respond(append(reply, state...)); err != nil {
		c.log.WithError(err).WithField("client_id", clientID).Warn("cluster: handing a session over")
	}
}

// Released implements broker.Bridge: the session's record goes, unless
// another node wrote it since.
func (c *Cluster) Released(clientID string) {
	c.revMu.Lock()
	rev, ok := c.revs[clientID]
	c.revMu.Unlock()
	c.forget(clientID)
	if !ok {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err := c.sess.Delete(ctx, sessionKey(clientID), jetstream.LastRevision(rev))
		if err != nil && !isWrongRevision(err) {
			c.log.WithError(err).WithField("client_id", clientID).Debug("cluster: removing a session's record")
		}
	}()
}

// localRecord is what this node last learnt of one of its sessions.
type localRecord struct {
	session []byte // persistent sessions' record (Stored)
	will    []byte // the connection's will (Will), nil: none
}

// Stored implements broker.Bridge: the record is written to the registry
// by writeRecords, off the session's lock.
func (c *Cluster) Stored(clientID string, record []byte) {
	c.update(clientID, func(r *localRecord) { r.session = record })
}

// Will implements broker.Bridge: the record is written without the will.
func (c *Cluster) Will(clientID string, will []byte) {
	c.update(clientID, func(r *localRecord) { r.will = will })
}

func (c *Cluster) update(clientID string, f func(*localRecord)) {
	c.dirtyMu.Lock()
	r := c.records[clientID]
	if r == nil {
		r = &localRecord{}
		c.records[clientID] = r
	}
	f(r)
	c.dirty[clientID] = true
	c.dirtyMu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// forget drops what this node keeps of a session it no longer owns.
func (c *Cluster) forget(clientID string) {
	c.revMu.Lock()
	delete(c.revs, clientID)
	c.revMu.Unlock()
	c.dirtyMu.Lock()
	delete(c.records, clientID)
	delete(c.dirty, clientID)
	c.dirtyMu.Unlock()
}

// writeRecords writes the sessions' records (subscriptions of persistent
// sessions, wills of connections) to the registry, the latest of each,
// with compare-and-set on the revision this node wrote: a record another
// node has written since is that node's now.
func (c *Cluster) writeRecords() {
	defer c.wg.Done()
	for {
		select {
		case <-c.wake:
		case <-c.done:
			return
		}
		c.dirtyMu.Lock()
		batch := map[string]ownerRecord{}
		for id := range c.dirty {
			if r := c.records[id]; r != nil {
				batch[id] = ownerRecord{Node: c.cfg.Node, Session: r.session, Will: r.will}
			}
		}
		clear(c.dirty)
		c.dirtyMu.Unlock()
		for id, rec := range batch {
			c.revMu.Lock()
			rev, ok := c.revs[id]
			c.revMu.Unlock()
			if !ok {
				continue // not this node's any more
			}
			val, _ := json.Marshal(rec)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			rev2, err := c.sess.Update(ctx, sessionKey(id), val, rev)
			cancel()
			c.revMu.Lock()
			if cur, ok := c.revs[id]; ok && cur == rev {
				if err == nil {
					c.revs[id] = rev2
				} else if isWrongRevision(err) {
					delete(c.revs, id)
				}
			}
			c.revMu.Unlock()
			if err != nil && !isWrongRevision(err) {
				c.log.WithError(err).WithField("client_id", id).Warn("cluster: writing a session's record")
			}
		}
	}
}

// publishWill publishes the will of a connection whose node died. back:
// its client has reconnected, so a 5.0 will with a delay is not sent
// (5.0 §3.1.3.2.2); otherwise the delay is waited first.
func (c *Cluster) publishWill(clientID string, b []byte, back bool) {
	m, err := broker.UnmarshalMessage(b)
	if err != nil {
		c.log.WithError(err).WithField("client_id", clientID).Error("cluster: a will in the registry does not decode")
		return
	}
	var delay time.Duration
	if m.Props != nil && m.Props.Has(codec.PropWillDelay) {
		delay = time.Duration(m.Props.WillDelay) * time.Second
	}
	f := c.log.WithFields(logrus.Fields{"client_id": clientID, "topic": m.Topic})
	switch {
	case delay > 0 && back:
		f.Info("cluster: the will of a connection on a node that died is not sent: its client is back within the will delay")
	case delay > 0:
		f.WithField("delay", delay).Info("cluster: publishing the will of a connection on a node that died, after its delay")
		time.AfterFunc(delay, func() {
			c.k.PublishWill(m)
			c.WillsPublished.Add(1)
		})
	default:
		f.Info("cluster: publishing the will of a connection on a node that died")
		c.k.PublishWill(m)
		c.WillsPublished.Add(1)
	}
}

// nodeDeadAfter is how long a node's heartbeat may be silent before the
// others take it for dead and publish its connections' wills.
const nodeDeadAfter = 6 * time.Second

// watchNodes looks, every two seconds, for nodes whose heartbeat
// (checkpoints) stopped, and publishes the wills their connections left
// in the registry: each will once, by the node whose compare-and-set
// takes it out of its record first.
func (c *Cluster) watchNodes() {
	defer c.wg.Done()
	// node -> the heartbeat it was found dead at, and the passes over
	// its wills made since: a few, because a read of the registry may
	// come from a replica still behind after the crash (a will it does
	// not show yet is taken on a later pass; the compare-and-set keeps
	// each will to one publication).
	type deadNode struct {
		at     int64
		passes int
	}
	handled := map[string]*deadNode{}
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
		case <-c.done:
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		records, err := c.nodeRecords(ctx)
		cancel()
		if err != nil {
			continue
		}
		var dead []string
		for _, rec := range records {
			if rec.Node == c.cfg.Node || time.Since(time.Unix(rec.At, 0)) <= nodeDeadAfter {
				continue
			}
			if h := handled[rec.Node]; h != nil && h.at == rec.At {
				if h.passes < willPasses {
					h.passes++
					dead = append(dead, rec.Node)
				}
				continue
			}
			// A heartbeat can stop while the node lives: its writes to
			// JetStream wait for a leader election. Dead is also not
			// answering on core NATS, as Claim decides.
			if _, err := c.nc.Request(ctlPrefix+string(appendLevel(nil, rec.Node))+".ping", nil, time.Second); !errors.Is(err, nats.ErrNoResponders) {
				continue
			}
			handled[rec.Node] = &deadNode{at: rec.At, passes: 1}
			dead = append(dead, rec.Node)
		}
		for _, node := range dead {
			c.willsOf(node)
		}
	}
}

// willPasses is how many times, two seconds apart, the wills of a dead
// node are looked for.
const willPasses = 5

// willsOf publishes the wills a dead node's connections left.
func (c *Cluster) willsOf(node string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	keys, err := c.sess.ListKeys(ctx)
	if err != nil {
		c.log.WithError(err).Warn("cluster: listing the sessions of a dead node")
		return
	}
	n := 0
	for key := range keys.Keys() {
		e, err := c.sess.Get(ctx, key)
		if err != nil {
			continue
		}
		var rec ownerRecord
		if json.Unmarshal(e.Value(), &rec) != nil || rec.Node != node || rec.Will == nil {
			continue
		}
		will := rec.Will
		rec.Will = nil // the session stays the dead node's, for its client to take up
		val, _ := json.Marshal(rec)
		if _, err := c.sess.Update(ctx, key, val, e.Revision()); err != nil {
			continue // another node took it first, or the client came back
		}
		id, _ := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(key, "s."))
		c.publishWill(string(id), will, false)
		n++
	}
	if n > 0 {
		c.log.WithFields(logrus.Fields{"dead": node, "wills": n}).Warn("cluster: a node stopped answering; published the wills its connections left")
	}
}
