package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/mqttlua/broker/engine/broker"
	"github.com/mqttlua/broker/engine/transport"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/sirupsen/logrus"
)

// The message log (MQ_MSGS) as this node reads it: its consumer, the
// retained stream, the checkpoints, and the replay of a dead node's
// sessions.

// consumeLog reads MQ_MSGS through this node's durable consumer and
// routes what other nodes published; this node's own messages were
// delivered here when they were published. A message is acknowledged
// once routed into the local sessions, so a node that stops first gets
// it again when it comes back.
func (c *Cluster) consumeLog() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cons, err := c.js.CreateOrUpdateConsumer(ctx, logStream, jetstream.ConsumerConfig{
		Durable: "node-" + consumerName(c.cfg.Node), DeliverPolicy: jetstream.DeliverNewPolicy,
		AckPolicy: jetstream.AckExplicitPolicy, AckWait: 30 * time.Second, MaxAckPending: 1 << 16,
	})
	if err != nil {
		return fmt.Errorf("cluster: the node's consumer of %s: %v", logStream, err)
	}
	in := make(chan jetstream.Msg, 4096)
	c.logCons, err = cons.Consume(func(m jetstream.Msg) {
		select {
		case in <- m:
		case <-c.done:
		}
	}, jetstream.PullMaxMessages(2048), jetstream.PullExpiry(pullExpiry), jetstream.PullHeartbeat(pullHeartbeat), jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		c.log.WithError(err).Warn("cluster: reading the message log")
	}))
	if err != nil {
		return err
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		batch := new(transport.Batch)
		var routed []jetstream.Msg
		for {
			var jm jetstream.Msg
			select {
			case jm = <-in:
			case <-c.done:
				return
			}
			origin, stamp, m, err := parseFrame(jm.Data())
			c.routeMu.Lock()
			switch {
			case err != nil:
				c.log.WithError(err).Warn("cluster: a logged message does not decode")
			case origin != c.origin && !strings.HasPrefix(origin, c.cfg.Node+"/"):
				c.Received.Add(1)
				c.k.RouteRemote(m, batch)
			default:
				c.ownMessage(m, stamp)
			}
			// This node's own messages reached its sessions when they were
			// published, before the log had them (ownMessage: but for
			// sessions set up since).
			if md, err := jm.Metadata(); err == nil {
				c.pos.Store(md.Sequence.Stream)
			}
			c.routeMu.Unlock()
			routed = append(routed, jm)
			if len(in) == 0 {
				// Delivered (queued to the sessions): acknowledged.
				batch.Settle()
				for _, r := range routed {
					r.Ack()
				}
				clear(routed)
				routed = routed[:0]
			}
		}
	}()
	return nil
}

// consumeRetained keeps this node's retained messages as MQ_RETAIN holds
// them: an ordered consumer reads the last message of every topic, then
// what follows. Start waits until it has read what the stream held.
func (c *Cluster) consumeRetained(deadline time.Time) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cons, err := c.js.OrderedConsumer(ctx, retainStream, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverLastPerSubjectPolicy,
	})
	if err != nil {
		return fmt.Errorf("cluster: reading %s: %v", retainStream, err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return err
	}
	caughtUp := make(chan struct{})
	var once sync.Once
	if info.NumPending == 0 {
		once.Do(func() { close(caughtUp) })
	}
	c.retainCons, err = cons.Consume(func(jm jetstream.Msg) {
		if _, _, m, err := parseFrame(jm.Data()); err != nil {
			c.log.WithError(err).Warn("cluster: a retained message does not decode")
		} else {
			c.k.ApplyRetained(m)
		}
		if md, err := jm.Metadata(); err == nil && md.NumPending == 0 {
			once.Do(func() { close(caughtUp) })
		}
	}, jetstream.PullExpiry(pullExpiry), jetstream.PullHeartbeat(pullHeartbeat), jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		c.log.WithError(err).Warn("cluster: reading the retained messages")
	}))
	if err != nil {
		return err
	}
	select {
	case <-caughtUp:
		return nil
	case <-time.After(time.Until(deadline)):
		return errors.New("cluster: the retained messages did not arrive in time")
	}
}

// consumerName makes a node name fit a JetStream consumer name.
func consumerName(node string) string {
	return strings.Map(func(r rune) rune {
		if r == '.' || r == '*' || r == '>' || r <= ' ' || r == '/' || r == '\\' {
			return '_'
		}
		return r
	}, node)
}

// Sessions. The registry MQ_SESS maps "s.<base64url(client id)>" to the
// owner node's name. Ownership is decided by the compare-and-set write,
// not by the read before it, which a follower may answer stale.

type nodeRecord struct {
	Node       string `json:"node"`
	Checkpoint uint64 `json:"checkpoint"`
	At         int64  `json:"at"` // Unix seconds
}

// checkpoints records, every checkpointEvery, the log position up to
// which every message this node routed has been acknowledged by its
// persistent sessions' clients (broker.PendingEpoch).
func (c *Cluster) checkpoints() {
	defer c.wg.Done()
	type candidate struct{ epoch, pos uint64 }
	var cands []candidate
	var written uint64
	tick := time.NewTicker(checkpointEvery)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
		case <-c.done:
			return
		}
		// pos first: every message up to it was routed, so tagged with
		// an epoch up to the one that ends now.
		cands = append(cands, candidate{pos: c.pos.Load(), epoch: c.k.AdvanceEpoch()})
		oldest, waiting := c.k.PendingEpoch()
		ck, keep := written, cands[:0]
		for _, cd := range cands {
			if !waiting || cd.epoch < oldest {
				ck = max(ck, cd.pos)
			} else {
				keep = append(keep, cd)
			}
		}
		cands = keep
		// Written every time: it is the node's heartbeat too (watchNodes).
		val, _ := json.Marshal(nodeRecord{Node: c.cfg.Node, Checkpoint: ck, At: time.Now().Unix()})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := c.nodes.Put(ctx, "n."+c.token, val)
		cancel()
		if err == nil {
			written = ck
			c.log.WithField("checkpoint", ck).Trace("cluster: checkpoint")
		} else {
			c.log.WithError(err).Debug("cluster: writing the checkpoint")
		}
	}
}

// nodeRecords reads every node's heartbeat record.
func (c *Cluster) nodeRecords(ctx context.Context) ([]nodeRecord, error) {
	keys, err := c.nodes.ListKeys(ctx)
	if err != nil {
		return nil, err
	}
	var out []nodeRecord
	for key := range keys.Keys() {
		e, err := c.nodes.Get(ctx, key)
		if err != nil {
			continue
		}
		var rec nodeRecord
		if json.Unmarshal(e.Value(), &rec) == nil {
			out = append(out, rec)
		}
	}
	return out, nil
}

// checkpointOf reads a node's last checkpoint (0: none recorded).
func (c *Cluster) checkpointOf(node string) uint64 {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	e, err := c.nodes.Get(ctx, "n."+string(appendLevel(nil, node)))
	if err != nil {
		return 0
	}
	var rec nodeRecord
	json.Unmarshal(e.Value(), &rec)
	return rec.Checkpoint
}

// replay delivers to one session the log's messages after from, up to
// and including to: those its dead node may have held undelivered. It
// reads them one by one by sequence, each read bounded (a consumer's
// pull, tried first, could wait for ever on a server that had lost the
// stream with the crash that made the replay necessary), and keeps
// trying while JetStream elects new leaders, for replayTimeout at most.
func (c *Cluster) replay(clientID string, from, to uint64) {
	if to <= from {
		return
	}
	deadline := time.Now().Add(replayTimeout)
	next, n := from+1, 0
	defer func() {
		c.Replayed.Add(int64(n))
		f := c.log.WithFields(logrus.Fields{"client_id": clientID, "replayed": n, "through": next - 1})
		if next <= to {
			f.Error("cluster: a session's replay ended before the log position it had to reach; messages may be missing")
		} else {
			f.Info("cluster: a session's messages replayed")
		}
	}()
	var stream jetstream.Stream
	for next <= to && time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		var err error
		if stream == nil {
			stream, err = c.js.Stream(ctx, logStream)
		}
		var raw *jetstream.RawStreamMsg
		if err == nil {
			raw, err = stream.GetMsg(ctx, next)
		}
		cancel()
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
			next++ // past the log's horizon, or deleted
		case err != nil:
			c.log.WithError(err).WithFields(logrus.Fields{"client_id": clientID, "seq": next}).Warn("cluster: replay: the log does not answer yet")
			stream = nil
			time.Sleep(250 * time.Millisecond)
		default:
			if _, _, m, err := parseFrame(raw.Data); err == nil && c.k.Replay(clientID, m) {
				n++
			}
			next++
		}
	}
}

// BeginLocal implements broker.Bridge: it counts the routing under the
// current stamp's parity (checking the stamp did not move meanwhile).
func (c *Cluster) BeginLocal() uint64 {
	for {
		st := c.stamp.Load()
		c.routing[st&1].Add(1)
		if c.stamp.Load() == st {
			return st
		}
		c.routing[st&1].Add(-1)
	}
}

// EndLocal implements broker.Bridge.
func (c *Cluster) EndLocal(stamp uint64) { c.routing[stamp&1].Add(-1) }

// recoverSession is called once a session taken up from a dead node is
// in place here. Messages this node published before that may have
// missed it: they are stamped lower than the stamp started here, and
// given to the session when they come back from the log (ownMessage).
// It returns once every routing begun under an older stamp has ended,
// so that the log position read next covers them.
func (c *Cluster) recoverSession(clientID string) {
	c.recMu.Lock()
	defer c.recMu.Unlock()
	st := c.stamp.Add(1)
	now := time.Now()
	keep := c.recovered[:0]
	for _, r := range c.recovered {
		if now.Before(r.until) {
			keep = append(keep, r)
		}
	}
	c.recovered = append(keep, recoveredSession{clientID: clientID, stamp: st, until: now.Add(recoveredFor)})
	// The previous parity only drains: new routings take the new one
	// (and recoverSession calls are serialised, so it is not reused
	// before it drained).
	for deadline := now.Add(5 * time.Second); c.routing[(st-1)&1].Load() > 0 && time.Now().Before(deadline); {
		time.Sleep(100 * time.Microsecond)
	}
}

// recoveredFor is how long a message published on this node may take to
// come back from the log and still reach a session set up meanwhile:
// past a publish's timeout.
const recoveredFor = 2 * time.Minute

// ownMessage is a message this node published, back from the log: it
// reached the sessions of this node when it was routed, except those
// taken up from dead nodes since, which get it now.
func (c *Cluster) ownMessage(m *broker.Message, stamp uint64) {
	c.recMu.Lock()
	var ids []string
	// Newest last: only the sessions set up after the message's routing
	// began, almost always none, are looked at.
	for i := len(c.recovered) - 1; i >= 0 && c.recovered[i].stamp > stamp; i-- {
		ids = append(ids, c.recovered[i].clientID)
	}
	c.recMu.Unlock()
	for _, id := range ids {
		c.k.Replay(id, m)
	}
}
