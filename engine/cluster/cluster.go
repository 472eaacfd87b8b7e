package cluster

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mqttlua/broker/codec"
	"github.com/mqttlua/broker/engine/broker"
	"github.com/mqttlua/broker/engine/transport"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/sirupsen/logrus"
)

// Config describes how this node joins its cluster: either it embeds a
// NATS server that routes to its peers (Name, Listen, Peers, DataDir), or
// it connects to an existing NATS cluster (URL).
type Config struct {
	// Node names this node; unique in the cluster (default: the host
	// name).
	Node string
	// Name is the cluster's name (embedded server).
	Name string
	// Listen is the embedded server's route listener, host:port.
	Listen string
	// Peers are the other nodes' route addresses, host:port.
	Peers []string
	// DataDir holds the embedded server's JetStream folder.
	DataDir string
	// URL, if set, is an existing NATS cluster to use instead of an
	// embedded server.
	URL string
	// Replicas is how many copies JetStream keeps of the message log, the
	// retained messages and the session registry (0: three when the
	// embedded server has two peers or more, else one per node up to
	// three; with URL, three, or one if that NATS is not clustered).
	Replicas int
	// HandoverTimeout bounds how long a CONNECT waits for the node that
	// had its session to hand it over (default 2 s).
	HandoverTimeout time.Duration
	// ReadyTimeout bounds the wait for JetStream at start (default 60 s):
	// a new cluster elects its leaders first.
	ReadyTimeout time.Duration
	Log          *logrus.Logger

	// token authenticates the broker to its embedded server.
	token string
}

// Subjects and streams. Everything of ours is under "mq.", which no NATS
// system subject uses.
const (
	msgPrefix    = "mq.m." // QoS 0 messages, core NATS, by topic
	sharePrefix  = "mq.s." // QoS 1 and 2 messages for shared subscriptions, core NATS
	logPrefix    = "mq.q." // QoS 1 and 2 messages, the MQ_MSGS stream
	retainPrefix = "mq.r." // retained messages, the MQ_RETAIN stream
	ctlPrefix    = "mq.ctl."

	logStream    = "MQ_MSGS"
	retainStream = "MQ_RETAIN"
	sessBucket   = "MQ_SESS"
	nodeBucket   = "MQ_NODES"

	// checkpointEvery is how often a node records how far its sessions
	// have taken the message log: what another node replays when this
	// one dies starts there.
	checkpointEvery = time.Second

	// logHorizon is how long the message log keeps a message: time
	// enough for every node to take it, and for a recovering node.
	logHorizon = 15 * time.Minute
	// A pull for messages lasts pullExpiry, and the server sends a
	// heartbeat every pullHeartbeat while it waits: a pull lost to a
	// leader change (a node stopped, the cluster starting) is noticed
	// after two missed heartbeats and made again. With the client's
	// defaults (30 s, 15 s) a node's consumer could stall for half a
	// minute after such a change, which the three-process test saw.
	pullExpiry = 4 * time.Second
	// replayTimeout bounds a replay for a session taken up from a dead
	// node: JetStream may need a leader election first.
	replayTimeout = 2 * time.Minute
	pullHeartbeat = time.Second
	// maxPayload is the largest message NATS carries between nodes.
	maxPayload = 8 << 20
)

// Cluster is this node's link to the others; it implements
// broker.Bridge.
//
// Data flow. Forward sends a message routed here to the other nodes:
// QoS 0 on core NATS, to subject mq.m.<topic>, which only nodes with a
// matching subscription receive; QoS 1 and 2 into the replicated stream
// MQ_MSGS, whose acknowledgement lets the publisher's PUBACK go; a
// retained message also into MQ_RETAIN (one per topic). Each node reads
// MQ_MSGS through its own durable consumer (all of it: no per-subscriber
// consumers) and MQ_RETAIN through an ordered consumer that keeps its
// retained messages as the stream orders them; core messages arrive on
// the subscriptions Subscribed made. All arrive in broker.RouteRemote or
// broker.ApplyRetained. Sessions: the key-value bucket MQ_SESS names each
// client id's owner node; Claim takes it with compare-and-set and asks
// the old owner (mq.ctl.<node>.handover) for the session.
type Cluster struct {
	cfg Config
	log *logrus.Entry
	k   *broker.Broker
	ns  *server.Server // nil with an external NATS
	nc  *nats.Conn
	// shareNC carries the shared subscriptions' queue subscriptions: a
	// connection of its own, without NoEcho, so that NATS may choose this
	// node's members for a message this node published on nc.
	shareNC *nats.Conn
	js      jetstream.JetStream
	sess    jetstream.KeyValue
	origin  string // this node's name and start, in every frame it sends
	token   string // the node's name as a subject token

	seq atomic.Uint64 // numbers this node's core messages, for dedupe

	subMu  sync.Mutex
	subs   map[string]*interest // subject -> this node's subscription
	shares map[string]*interest // "$share/..." filter -> its queue subscriptions
	core   chan *nats.Msg       // every core subscription delivers here
	shared chan sharedMsg       // every queue subscription delivers here

	pendMu  sync.Mutex
	pending map[*nats.Msg]*forwardWait

	revMu sync.Mutex
	revs  map[string]uint64 // client id -> registry revision this node wrote

	claimMu  sync.Mutex
	claiming map[string]chan struct{} // client ids this node is claiming

	nodes jetstream.KeyValue // MQ_NODES: each node's checkpoint
	// pos is the last log sequence this node's consumer routed; every
	// message up to it has reached this node's sessions. routeMu is held
	// while a message is routed, so that a session taken up from a dead
	// node starts exactly after pos.
	pos     atomic.Uint64
	routeMu sync.Mutex

	// Sessions taken up from dead nodes, and the routings of this
	// node's messages they wait for (BeginLocal): see ownMessage.
	stamp     atomic.Uint64
	routing   [2]atomic.Int64 // routings under way, by their stamp's parity
	recMu     sync.Mutex      // serialises recoverSession
	recovered []recoveredSession

	dirtyMu sync.Mutex
	records map[string]*localRecord // client id -> what the registry should hold
	dirty   map[string]bool         // client ids whose record changed
	wake    chan struct{}

	logCons    jetstream.ConsumeContext
	retainCons jetstream.ConsumeContext
	ctlSub     *nats.Subscription
	done       chan struct{}
	wg         sync.WaitGroup

	// Stats
	Forwarded, Received, Duplicates, Handovers, Replayed, WillsPublished atomic.Int64
}

// recoveredSession is a session this node took up from a dead node.
type recoveredSession struct {
	clientID string
	stamp    uint64 // messages published here with a lower stamp missed it
	until    time.Time
}

type interest struct {
	n    int
	sub  *nats.Subscription
	more []*nats.Subscription // a shared filter's other subjects
}

// sharedMsg is a message NATS chose this node for, for one shared
// subscription group.
type sharedMsg struct {
	name, filter string
	data         []byte
}

// forwardWait is a forwarded QoS 1/2 message's publisher, waiting for
// the streams' acknowledgements (two for a retained message).
type forwardWait struct {
	left int
	err  error
	done func(error)
}

// Start joins the cluster and links k to it (k.SetBridge). It returns
// once JetStream answers, the streams exist and this node holds every
// retained message the cluster had.
func Start(cfg Config, k *broker.Broker) (*Cluster, error) {
	if cfg.Log == nil {
		cfg.Log = logrus.New()
	}
	if cfg.HandoverTimeout == 0 {
		cfg.HandoverTimeout = 2 * time.Second
	}
	if cfg.ReadyTimeout == 0 {
		cfg.ReadyTimeout = 60 * time.Second
	}
	if cfg.Node == "" {
		return nil, errors.New("cluster: the node needs a name (--node-name)")
	}
	c := &Cluster{cfg: cfg, log: cfg.Log.WithField("node", cfg.Node), k: k,
		origin: cfg.Node + "/" + nuid.Next(), token: string(appendLevel(nil, cfg.Node)),
		subs: map[string]*interest{}, shares: map[string]*interest{}, core: make(chan *nats.Msg, 1<<16),
		shared:  make(chan sharedMsg, 1<<14),
		pending: map[*nats.Msg]*forwardWait{}, revs: map[string]uint64{}, claiming: map[string]chan struct{}{},
		records: map[string]*localRecord{}, dirty: map[string]bool{}, wake: make(chan struct{}, 1), done: make(chan struct{})}
	var err error
	if cfg.URL == "" {
		c.cfg.token = rand.Text()
		if c.ns, err = startServer(&c.cfg); err != nil {
			return nil, err
		}
	}
	if c.nc, err = connect(&c.cfg, c.ns, true); err == nil {
		c.shareNC, err = connect(&c.cfg, c.ns, false)
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	c.js, err = jetstream.New(c.nc,
		jetstream.WithPublishAsyncAckHandler(func(_ jetstream.JetStream, m *nats.Msg, _ *jetstream.PubAck) { c.answered(m, nil) }),
		jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, m *nats.Msg, err error) { c.answered(m, err) }),
		jetstream.WithPublishAsyncMaxPending(16384),
		jetstream.WithPublishAsyncTimeout(10*time.Second))
	if err == nil {
		err = c.setup()
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	k.SetBridge(c)
	c.wg.Add(5)
	go c.watchNodes()
	go c.receiveCore()
	go c.receiveShared()
	go c.writeRecords()
	go c.checkpoints()
	return c, nil
}

// setup creates (or finds) the streams and the bucket, retrying while the
// cluster elects its leaders, then starts the consumers.
func (c *Cluster) setup() error {
	deadline := time.Now().Add(c.cfg.ReadyTimeout)
	replicas := c.cfg.Replicas
	if replicas == 0 {
		replicas = 3
		if c.ns != nil && len(c.cfg.Peers)+1 < 3 {
			replicas = len(c.cfg.Peers) + 1
		}
	}
	var lastErr error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		lastErr = c.createStreams(ctx, replicas)
		cancel()
		if lastErr == nil {
			break
		}
		if c.cfg.Replicas == 0 && replicas > 1 && strings.Contains(lastErr.Error(), "replicas > 1 not supported in non-clustered mode") {
			c.log.Warn("cluster: the NATS server is not clustered: one copy of each stream (a NATS crash loses what it held)")
			replicas = 1
			continue
		}
		c.log.WithError(lastErr).Debug("cluster: JetStream not ready yet")
		time.Sleep(250 * time.Millisecond)
	}
	if lastErr != nil {
		return fmt.Errorf("cluster: JetStream not ready after %s: %v", c.cfg.ReadyTimeout, lastErr)
	}
	var err error
	// Each request on its own goroutine: one may wait for a claim.
	handover := func(msg *nats.Msg) { go c.handover(msg) }
	if c.ctlSub, err = c.nc.Subscribe(ctlPrefix+c.token+".handover", handover); err != nil {
		return err
	}
	if err = c.consumeLog(); err != nil {
		return err
	}
	return c.consumeRetained(deadline)
}

func (c *Cluster) createStreams(ctx context.Context, replicas int) error {
	_, err := c.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: logStream, Subjects: []string{logPrefix + ">"}, Storage: jetstream.FileStorage,
		Replicas: replicas, Retention: jetstream.LimitsPolicy, MaxAge: logHorizon, Discard: jetstream.DiscardOld,
	})
	if err != nil {
		return err
	}
	_, err = c.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: retainStream, Subjects: []string{retainPrefix + ">"}, Storage: jetstream.FileStorage,
		Replicas: replicas, MaxMsgsPerSubject: 1, AllowDirect: true,
	})
	if err != nil {
		return err
	}
	c.sess, err = c.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: sessBucket, History: 1, Replicas: replicas, Storage: jetstream.FileStorage,
	})
	if err != nil {
		return err
	}
	c.nodes, err = c.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: nodeBucket, History: 1, Replicas: replicas, Storage: jetstream.FileStorage,
	})
	return err
}

// Close leaves the cluster: consumers stop, the connection drains, the
// embedded server shuts down.
func (c *Cluster) Close() {
	select {
	case <-c.done:
		return
	default:
		close(c.done)
	}
	if c.logCons != nil {
		c.logCons.Stop()
	}
	if c.retainCons != nil {
		c.retainCons.Stop()
	}
	if c.nc != nil {
		c.nc.Close()
	}
	if c.shareNC != nil {
		c.shareNC.Close()
	}
	c.wg.Wait()
	if c.ns != nil {
		c.ns.Shutdown()
		c.ns.WaitForShutdown()
	}
}

// Frames. Every message between nodes is: a version byte, the sending
// node's origin (length byte, then "name/start id"), its sequence number
// (8 bytes; core messages only, 0 in streams), then the message as
// broker.Message.MarshalBinary encodes it.
const frameVersion = 1

func (c *Cluster) frame(m *broker.Message, seq uint64) ([]byte, error) {
	body, err := m.MarshalBinary()
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, 2+len(c.origin)+8+len(body))
	out = append(out, frameVersion, byte(len(c.origin)))
	out = append(out, c.origin...)
	out = binary.BigEndian.AppendUint64(out, seq)
	out = append(out, body...)
	if len(out) > maxPayload {
		return nil, fmt.Errorf("message of %d bytes: more than the cluster carries (%d)", len(out), maxPayload)
	}
	return out, nil
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
	if m.QoS == 0 {
		if err := c.forwardCore(msgPrefix, m); err != nil {
			c.log.WithError(err).WithField("topic", m.Topic).Warn("cluster: a QoS 0 message did not go to the other nodes")
		}
		if m.Retain {
			c.forwardStream(retainPrefix, m, nil)
		}
		if done != nil {
			done(nil)
		}
		return
	}
	var w *forwardWait
	if done != nil {
		w = &forwardWait{left: 1, done: done}
		if m.Retain {
			w.left = 2
		}
	}
	c.forwardStream(logPrefix, m, w)
	if m.Retain {
		c.forwardStream(retainPrefix, m, w)
	}
	// Shared subscriptions take it from core NATS: one queue member in
	// the cluster. At most once, unlike the log (docs/cluster.md).
	if err := c.forwardCore(sharePrefix, m); err != nil {
		c.log.WithError(err).WithField("topic", m.Topic).Warn("cluster: a message did not go to the shared subscriptions")
	}
}

func (c *Cluster) forwardCore(prefix string, m *broker.Message) error {
	subj, err := topicSubject(prefix, m.Topic)
	if err != nil {
		return err
	}
	b, err := c.frame(m, c.seq.Add(1))
	if err != nil {
		return err
	}
	c.Forwarded.Add(1)
	return c.nc.Publish(subj, b)
}

// forwardStream publishes m into a stream; w, if not nil, is answered
// when JetStream acknowledges it (answered).
func (c *Cluster) forwardStream(prefix string, m *broker.Message, w *forwardWait) {
	subj, err := topicSubject(prefix, m.Topic)
	var b []byte
	if err == nil {
		// In a stream the sequence field carries the message's stamp
		// (BeginLocal), for this node's consumer (ownMessage).
		b, err = c.frame(m, m.Stamp())
	}
	if err == nil {
		msg := &nats.Msg{Subject: subj, Data: b}
		if w != nil {
			c.pendMu.Lock()
			c.pending[msg] = w
			c.pendMu.Unlock()
		}
		c.Forwarded.Add(1)
		if _, err = c.js.PublishMsgAsync(msg); err != nil && w != nil {
			c.pendMu.Lock()
			delete(c.pending, msg)
			c.pendMu.Unlock()
		} else if err == nil {
			return
		}
	}
	c.log.WithError(err).WithField("topic", m.Topic).Warn("cluster: a message was not taken by the cluster")
	if w != nil {
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
func (c *Cluster) Claim(clientID string) ([]byte, func(), error) {
	settled := c.startClaim(clientID)
	prev, err := c.claim(clientID)
	if err != nil {
		settled()
		return nil, nil, err
	}
	if prev.Node == "" || prev.Node == c.cfg.Node {
		return nil, settled, nil // new, or this node's: the broker has it
	}
	state, err := c.takeFrom(prev.Node, clientID)
	switch {
	case err == nil && state == nil && prev.Session != nil:
		// The node answered but does not have the session: restarted
		// since, it lost what it held in memory. The registry still has
		// the subscriptions.
		return broker.Recovered(prev.Session), settled, nil
	case err == nil:
		return state, settled, nil
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
	// checkpoint. The replay reaches up to where this node's routing from
	// the log stands once the session's subscriptions are in place (the
	// broker calls settled then): what follows comes by routing, what
	// precedes by the replay, so nothing falls between (a message may
	// come both ways, or out of order: counted as duplicates and order
	// breaks by the fault test). The replay runs on its own goroutine: it
	// waits for JetStream, which may be electing new leaders after the
	// same crash, and must hold neither the script handler that accepted
	// the CONNECT nor this node's routing.
	from := c.checkpointOf(prev.Node)
	if prev.Will != nil {
		// The client is back before any node published its will: this
		// node's claim took the will out of the record, so this node
		// publishes it, as the lost connection's ([MQTT-3.1.2-8]).
		c.publishWill(clientID, prev.Will, true)
	}
	return broker.Recovered(prev.Session), func() {
		c.recoverSession(clientID)
		c.routeMu.Lock()
		to := c.pos.Load()
		c.routeMu.Unlock()
		settled()
		c.log.WithFields(logrus.Fields{"client_id": clientID, "from": prev.Node, "replay": fmt.Sprintf("%d..%d", from+1, to)}).
			Warn("cluster: taking up the session of a node that is gone")
		go c.replay(clientID, from, to)
	}, nil
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
func (c *Cluster) claim(clientID string) (ownerRecord, error) {
	key := sessionKey(clientID)
	for range claimAttempts {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		prev, rev, err := c.owner(ctx, key)
		if err == nil {
			// The session's record stays until this node writes its own.
			val, _ := json.Marshal(ownerRecord{Node: c.cfg.Node, Session: prev.Session})
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
// node did not answer (stopped, cut off).
func (c *Cluster) takeFrom(node, clientID string) ([]byte, error) {
	reply, err := c.nc.Request(ctlPrefix+string(appendLevel(nil, node))+".handover", []byte(clientID), c.cfg.HandoverTimeout)
	if err != nil {
		c.log.WithError(err).WithFields(logrus.Fields{"client_id": clientID, "from": node}).
			Warn("cluster: the session's previous node did not hand it over")
		return nil, err
	}
	c.Handovers.Add(1)
	if len(reply.Data) == 0 {
		return nil, nil
	}
	return reply.Data, nil
}

// handover answers another node's takeover of a session this node had,
// once a claim of it under way here has settled (startClaim).
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
	state := c.k.HandOver(clientID)
	if err := msg.Respond(state); err != nil {
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

// Node returns this node's name.
func (c *Cluster) Node() string { return c.cfg.Node }

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

// Will implements broker.Bridge.
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
// keeps trying while JetStream elects new leaders after the crash that
// made it necessary (an empty answer then is not the end of the log),
// for replayTimeout at most.
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
	for next <= to && time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		cons, err := c.js.OrderedConsumer(ctx, logStream, jetstream.OrderedConsumerConfig{
			DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: next,
		})
		cancel()
		if err != nil {
			c.log.WithError(err).WithField("client_id", clientID).Warn("cluster: replay: the log does not answer yet")
			time.Sleep(250 * time.Millisecond)
			continue
		}
		idleSince := time.Now()
		for next <= to && time.Now().Before(deadline) {
			if time.Since(idleSince) > time.Second {
				// Nothing for a second though the log holds more: the
				// consumer sat on a server that lost the stream (its
				// leader died). A new one, from next.
				c.log.WithField("client_id", clientID).Warn("cluster: replay: the log's reader stalled; starting another")
				break
			}
			// Bounded: a pull whose consumer's server died is never
			// answered (FetchNoWait's would wait for ever).
			batch, err := cons.Fetch(512, jetstream.FetchMaxWait(300*time.Millisecond))
			if err != nil {
				c.log.WithError(err).WithField("client_id", clientID).Warn("cluster: replay: reading the log")
				break // a new consumer, from next
			}
			got := false
			for jm := range batch.Messages() {
				got = true
				md, err := jm.Metadata()
				if err != nil {
					continue
				}
				seq := md.Sequence.Stream
				if seq > to {
					next = to + 1
					break
				}
				if _, _, m, err := parseFrame(jm.Data()); err == nil && c.k.Replay(clientID, m) {
					n++
				}
				// Messages before next that the log no longer holds
				// (past its horizon) are skipped by the consumer.
				next = seq + 1
			}
			if !got {
				time.Sleep(50 * time.Millisecond) // nothing yet: a leader is being elected
			} else {
				idleSince = time.Now()
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
		time.AfterFunc(delay, func() { c.k.PublishWill(m) })
	default:
		f.Info("cluster: publishing the will of a connection on a node that died")
		c.k.PublishWill(m)
	}
	c.WillsPublished.Add(1)
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
	handled := map[string]int64{} // node -> the heartbeat it was handled at
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
			if rec.Node != c.cfg.Node && time.Since(time.Unix(rec.At, 0)) > nodeDeadAfter && handled[rec.Node] != rec.At {
				handled[rec.Node] = rec.At
				dead = append(dead, rec.Node)
			}
		}
		for _, node := range dead {
			c.willsOf(node)
		}
	}
}

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
	c.log.WithFields(logrus.Fields{"dead": node, "wills": n}).Warn("cluster: a node stopped answering; published the wills its connections left")
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
	for _, r := range c.recovered {
		if stamp < r.stamp {
			ids = append(ids, r.clientID)
		}
	}
	c.recMu.Unlock()
	for _, id := range ids {
		c.k.Replay(id, m)
	}
}

// Member is one node as the cluster's heartbeats show it.
type Member struct {
	Node string `json:"node"`
	// Alive: its heartbeat is less than nodeDeadAfter old.
	Alive    bool      `json:"alive"`
	LastSeen time.Time `json:"last_seen"`
	// Checkpoint is the log position its sessions' clients have
	// acknowledged everything up to.
	Checkpoint uint64 `json:"checkpoint"`
}

// Members lists the nodes that ever wrote a heartbeat, by name.
func (c *Cluster) Members(ctx context.Context) ([]Member, error) {
	records, err := c.nodeRecords(ctx)
	if err != nil {
		return nil, err
	}
	var out []Member
	for _, rec := range records {
		seen := time.Unix(rec.At, 0)
		out = append(out, Member{Node: rec.Node, Alive: time.Since(seen) <= nodeDeadAfter, LastSeen: seen, Checkpoint: rec.Checkpoint})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Node < out[j].Node })
	return out, nil
}

// Counters are the node's cluster counters, by metric name.
func (c *Cluster) Counters() map[string]int64 {
	return map[string]int64{
		"forwarded":       c.Forwarded.Load(),
		"received":        c.Received.Load(),
		"duplicates":      c.Duplicates.Load(),
		"handovers":       c.Handovers.Load(),
		"replayed":        c.Replayed.Load(),
		"wills_published": c.WillsPublished.Load(),
	}
}
