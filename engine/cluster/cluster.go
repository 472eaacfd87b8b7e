package cluster

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mqttlua/broker/engine/broker"
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
	// Alive, for watchNodes on the other nodes.
	if _, err = c.nc.Subscribe(ctlPrefix+c.token+".ping", func(msg *nats.Msg) { msg.Respond(nil) }); err != nil {
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

// Node returns this node's name.
func (c *Cluster) Node() string { return c.cfg.Node }

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
