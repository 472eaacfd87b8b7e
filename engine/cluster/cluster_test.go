package cluster_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mqttlua/broker/codec"
	"github.com/mqttlua/broker/engine"
	"github.com/mqttlua/broker/engine/cluster"
	"github.com/mqttlua/broker/engine/enginetest"
	"github.com/sirupsen/logrus"
)

// One three-node cluster for the package: JetStream elects its leaders
// in seconds, too long to pay per test. Tests use topics and client ids
// of their own so they do not see each other's traffic.
var nodes []*node

type node struct {
	srv  *engine.Server
	addr string
	logs *enginetest.LogBuffer
}

func freePort() int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startCluster starts n nodes on loopback, each embedding a NATS server
// routed to the others, their data under dir.
func startCluster(dir string, n int) ([]*node, error) {
	routes := make([]string, n)
	for i := range routes {
		routes[i] = "127.0.0.1:" + strconv.Itoa(freePort())
	}
	out := make([]*node, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			logs := &enginetest.LogBuffer{}
			log := logrus.New()
			log.SetOutput(logs)
			log.SetLevel(logrus.DebugLevel)
			var peers []string
			for j, r := range routes {
				if j != i {
					peers = append(peers, r)
				}
			}
			srv, err := engine.New(engine.Config{
				Scripts: filepath.Join(enginetest.RepoDir(), "scripts"), Listen: []string{"127.0.0.1:0"},
				Workers: 2, SysInterval: -1, Log: log, DataDir: filepath.Join(dir, "n"+strconv.Itoa(i)), HTTPAddr: "127.0.0.1:0",
				Cluster: &cluster.Config{Node: "n" + strconv.Itoa(i), Name: "test", Listen: routes[i], Peers: peers},
			})
			if err != nil {
				errs[i] = err
				return
			}
			if err := srv.Listen(); err != nil {
				errs[i] = err
				return
			}
			go srv.Serve()
			out[i] = &node{srv: srv, addr: srv.Addrs()[0].String(), logs: logs}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			stopCluster(out)
			return nil, err
		}
	}
	return out, nil
}

func stopCluster(ns []*node) {
	for _, n := range ns {
		if n != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			n.srv.Shutdown(ctx)
			cancel()
		}
	}
}

var (
	clusterOnce sync.Once
	clusterDir  string
	clusterErr  error
)

// threeNodes starts the package's cluster on first use.
func threeNodes(t *testing.T) []*node {
	t.Helper()
	clusterOnce.Do(func() {
		if clusterDir, clusterErr = os.MkdirTemp("", "cluster-test-"); clusterErr == nil {
			nodes, clusterErr = startCluster(clusterDir, 3)
		}
	})
	if clusterErr != nil {
		t.Fatal("starting the cluster:", clusterErr)
	}
	return nodes
}

func TestMain(m *testing.M) {
	code := m.Run()
	stopCluster(nodes)
	if clusterDir != "" {
		os.RemoveAll(clusterDir)
	}
	os.Exit(code)
}

// connect opens a clean 3.1.1 session on node i.
func connect(t *testing.T, i int, id string) *enginetest.Client {
	t.Helper()
	c := enginetest.Dial(t, threeNodes(t)[i].addr, codec.V311)
	c.Connect(id)
	return c
}

func subscribe(t *testing.T, c *enginetest.Client, filter string, qos byte) {
	t.Helper()
	c.Send(&codec.Packet{Type: codec.SUBSCRIBE, PacketID: 1, Subscriptions: []codec.Subscription{{Topic: filter, QoS: qos}}})
	if ack := c.Expect(codec.SUBACK); ack.ReasonCodes[0] != codec.ReasonCode(qos) {
		t.Fatalf("SUBACK %v", ack.ReasonCodes)
	}
}

// publish sends a PUBLISH and, for QoS 1 and 2, completes its flow.
func publish(t *testing.T, c *enginetest.Client, topic, payload string, qos byte, id uint16) {
	t.Helper()
	c.Send(&codec.Packet{Type: codec.PUBLISH, Topic: topic, Payload: []byte(payload), QoS: qos, PacketID: id})
	switch qos {
	case 1:
		if ack := c.Expect(codec.PUBACK); ack.PacketID != id {
			t.Fatalf("PUBACK for %d, want %d", ack.PacketID, id)
		}
	case 2:
		c.Expect(codec.PUBREC)
		c.Send(&codec.Packet{Type: codec.PUBREL, PacketID: id})
		c.Expect(codec.PUBCOMP)
	}
}

// receive reads PUBLISHes until n arrived (acknowledging QoS 1 and 2),
// and returns their payloads in order.
func receive(t *testing.T, c *enginetest.Client, n int) []string {
	t.Helper()
	var out []string
	for len(out) < n {
		p, err := c.Next(10 * time.Second)
		if err != nil {
			t.Fatalf("after %d of %d messages: %v", len(out), n, err)
		}
		if p.Type == codec.PUBREL {
			c.Send(&codec.Packet{Type: codec.PUBCOMP, PacketID: p.PacketID})
			continue
		}
		if p.Type != codec.PUBLISH {
			continue
		}
		switch p.QoS {
		case 1:
			c.Send(&codec.Packet{Type: codec.PUBACK, PacketID: p.PacketID})
		case 2:
			c.Send(&codec.Packet{Type: codec.PUBREC, PacketID: p.PacketID})
		}
		if string(p.Payload) != "probe" { // awaitInterest's
			out = append(out, p.Topic+" "+string(p.Payload))
		}
	}
	return out
}

// noMore fails if a PUBLISH arrives within d (completing QoS 2 flows
// meanwhile).
func noMore(t *testing.T, c *enginetest.Client, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		p, err := c.Next(time.Until(deadline))
		if err != nil {
			return
		}
		switch p.Type {
		case codec.PUBREL:
			c.Send(&codec.Packet{Type: codec.PUBCOMP, PacketID: p.PacketID})
		case codec.PUBLISH:
			t.Fatalf("a message more: %v", p)
		}
	}
}

// awaitInterest publishes QoS 0 probes from pub until sub gets one: core
// NATS spreads a new subscription's interest to the other nodes
// asynchronously, after SUBACK.
func awaitInterest(t *testing.T, pub, sub *enginetest.Client, topic string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		publish(t, pub, topic, "probe", 0, 0)
		p, err := sub.Next(100 * time.Millisecond)
		if err == nil && p.Type == codec.PUBLISH && string(p.Payload) == "probe" {
			// Drain the probes still on their way.
			for {
				if _, err := sub.Next(200 * time.Millisecond); err != nil {
					return
				}
			}
		}
	}
	t.Fatalf("no message on %s crossed the cluster in 10 s", topic)
}

// TestCrossNodeFanOut: messages published on one node reach the
// subscribers of every node, each exactly once, in the publisher's
// order, at each QoS.
func TestCrossNodeFanOut(t *testing.T) {
	for _, qos := range []byte{0, 1, 2} {
		t.Run("qos"+strconv.Itoa(int(qos)), func(t *testing.T) {
			prefix := fmt.Sprintf("fan%d", qos)
			pub := connect(t, 0, prefix+"-pub")
			subs := make([]*enginetest.Client, 3)
			for i := range subs {
				subs[i] = connect(t, i, fmt.Sprintf("%s-sub%d", prefix, i))
				subscribe(t, subs[i], prefix+"/#", 2)
			}
			for i := 1; i < 3; i++ {
				awaitInterest(t, pub, subs[i], prefix+"/probe")
			}
			const n = 200
			want := make([]string, n)
			for i := range n {
				payload := strconv.Itoa(i)
				publish(t, pub, prefix+"/data", payload, qos, uint16(i+1))
				want[i] = prefix + "/data " + payload
			}
			for i, s := range subs {
				got := receive(t, s, n)
				for j := range want {
					if got[j] != want[j] {
						t.Fatalf("node %d: message %d is %q, want %q", i, j, got[j], want[j])
					}
				}
				noMore(t, s, 300*time.Millisecond)
			}
		})
	}
}

// TestOverlappingFilters: a session whose filters overlap gets each
// message from another node once, as from its own node ([MQTT-3.3.5-1]).
func TestOverlappingFilters(t *testing.T) {
	pub := connect(t, 0, "ov-pub")
	sub := connect(t, 1, "ov-sub")
	sub.Send(&codec.Packet{Type: codec.SUBSCRIBE, PacketID: 1, Subscriptions: []codec.Subscription{
		{Topic: "ov/#", QoS: 1}, {Topic: "ov/+", QoS: 1}, {Topic: "ov/x", QoS: 0}}})
	sub.Expect(codec.SUBACK)
	awaitInterest(t, pub, sub, "ov/probe")
	const n = 50
	for i := range n {
		publish(t, pub, "ov/x", strconv.Itoa(i), byte(i%2), uint16(i+1))
	}
	// Each once; in order per QoS ([MQTT-4.6.0-6] orders messages of one
	// topic and QoS): QoS 0 and 1 take different paths between nodes.
	got := receive(t, sub, n)
	last := [2]int{-2, -1}
	for _, g := range got {
		i, err := strconv.Atoi(strings.TrimPrefix(g, "ov/x "))
		if err != nil || i != last[i%2]+2 {
			t.Fatalf("got %q after %v: %q", g, last, got)
		}
		last[i%2] = i
	}
	noMore(t, sub, 300*time.Millisecond)
}

// TestRetainedAcrossNodes: a retained message set on one node is what a
// subscription on any node gets; cleared on another node, it is gone
// everywhere.
func TestRetainedAcrossNodes(t *testing.T) {
	ns := threeNodes(t)
	pub := connect(t, 0, "rt-pub")
	pub.Send(&codec.Packet{Type: codec.PUBLISH, Topic: "rt/a", Payload: []byte("v1"), QoS: 1, PacketID: 1, Retain: true})
	pub.Expect(codec.PUBACK)
	for i, n := range ns {
		enginetest.WaitFor(t, fmt.Sprintf("the retained message on node %d", i), func() bool {
			m, ok := n.srv.Broker().Retained("rt/a")
			return ok && string(m.Payload) == "v1"
		})
		sub := connect(t, i, fmt.Sprintf("rt-sub%d", i))
		subscribe(t, sub, "rt/#", 1)
		p := sub.Expect(codec.PUBLISH)
		if !p.Retain || string(p.Payload) != "v1" {
			t.Fatalf("node %d: %v", i, p)
		}
		sub.Send(&codec.Packet{Type: codec.PUBACK, PacketID: p.PacketID})
	}
	// Cleared from node 2 ([MQTT-3.3.1-10]).
	clr := connect(t, 2, "rt-clr")
	clr.Send(&codec.Packet{Type: codec.PUBLISH, Topic: "rt/a", QoS: 1, PacketID: 1, Retain: true})
	clr.Expect(codec.PUBACK)
	for i, n := range ns {
		enginetest.WaitFor(t, fmt.Sprintf("the clear on node %d", i), func() bool {
			_, ok := n.srv.Broker().Retained("rt/a")
			return !ok
		})
		sub := connect(t, i, fmt.Sprintf("rt-late%d", i))
		subscribe(t, sub, "rt/#", 1)
		noMore(t, sub, 200*time.Millisecond)
	}
}

// TestSessionMoves: a persistent session left on one node, with messages
// queued for it, is found by its client on another node: session present,
// the queued messages in order, and its subscriptions serving it there.
func TestSessionMoves(t *testing.T) {
	ns := threeNodes(t)
	c := enginetest.Dial(t, ns[0].addr, codec.V311)
	c.ConnectWith(&codec.Packet{Type: codec.CONNECT, ClientID: "mv", KeepAlive: 60})
	subscribe(t, c, "mv/t", 1)
	c.Send(&codec.Packet{Type: codec.DISCONNECT})
	c.ExpectClosed()
	pub := connect(t, 1, "mv-pub")
	for i := range 5 {
		publish(t, pub, "mv/t", strconv.Itoa(i), 1, uint16(i+1))
	}
	enginetest.WaitFor(t, "5 messages queued on node 0", func() bool {
		ci, ok := ns[0].srv.Broker().Info("mv")
		return ok && ci.Queued == 5
	})
	c2 := enginetest.Dial(t, ns[2].addr, codec.V311)
	ack := c2.ConnectWith(&codec.Packet{Type: codec.CONNECT, ClientID: "mv", KeepAlive: 60})
	if !ack.SessionPresent {
		t.Fatal("session present 0 on the other node") // [MQTT-3.2.2-2]
	}
	got := receive(t, c2, 5)
	for i, g := range got {
		if g != "mv/t "+strconv.Itoa(i) {
			t.Fatalf("message %d is %q", i, g)
		}
	}
	if _, ok := ns[0].srv.Broker().Info("mv"); ok {
		t.Fatal("node 0 kept the session")
	}
	// Its subscription serves it on node 2 now, for messages of node 0.
	pub0 := connect(t, 0, "mv-pub0")
	publish(t, pub0, "mv/t", "after", 1, 1)
	if got := receive(t, c2, 1); got[0] != "mv/t after" {
		t.Fatalf("got %q", got[0])
	}
	noMore(t, c2, 300*time.Millisecond)
}

// TestTakeoverAcrossNodes: a 5.0 client connected on one node is told
// DISCONNECT 0x8E when its client id connects on another ([MQTT-3.1.4-2]).
func TestTakeoverAcrossNodes(t *testing.T) {
	ns := threeNodes(t)
	old := enginetest.Dial(t, ns[0].addr, codec.V5)
	old.Connect("tk")
	neu := enginetest.Dial(t, ns[1].addr, codec.V5)
	neu.Connect("tk")
	p := old.Expect(codec.DISCONNECT)
	if p.ReasonCode != codec.SessionTakenOver {
		t.Fatalf("DISCONNECT %#x, want 0x8E", byte(p.ReasonCode))
	}
	old.ExpectClosed()
	neu.Send(&codec.Packet{Type: codec.PINGREQ})
	neu.Expect(codec.PINGRESP)
}

// TestConcurrentConnects: three CONNECTs with one client id on three
// nodes at once leave exactly one connection standing.
func TestConcurrentConnects(t *testing.T) {
	ns := threeNodes(t)
	for round := range 20 {
		id := fmt.Sprintf("cc-%d", round)
		clients := make([]*enginetest.Client, 3)
		var wg sync.WaitGroup
		for i := range clients {
			clients[i] = enginetest.Dial(t, ns[i].addr, codec.V5)
			wg.Add(1)
			go func() {
				defer wg.Done()
				clients[i].Send(&codec.Packet{Type: codec.CONNECT, ProtocolLevel: codec.V5, ClientID: id, CleanSession: true, KeepAlive: 60})
			}()
		}
		wg.Wait()
		time.Sleep(500 * time.Millisecond)
		alive := 0
		for _, c := range clients {
			c.Send(&codec.Packet{Type: codec.PINGREQ})
			for {
				p, err := c.Next(2 * time.Second)
				if err != nil {
					break // closed
				}
				if p.Type == codec.PINGRESP {
					alive++
					break
				}
			}
		}
		if alive != 1 {
			t.Fatalf("round %d: %d connections of one client id alive", round, alive)
		}
	}
}

// TestReplay: a session gets, in order, the log's messages of its
// subscriptions between two positions (what a node that took it up from
// a dead node replays).
func TestReplay(t *testing.T) {
	ns := threeNodes(t)
	pub := connect(t, 0, "rp-pub")
	start := ns[1].srv.Cluster().Position()
	for i := range 20 {
		publish(t, pub, "rp/"+strconv.Itoa(i%2), strconv.Itoa(i), 1, uint16(i+1))
	}
	enginetest.WaitFor(t, "node 1 to read the log", func() bool { return ns[1].srv.Cluster().Position() >= start+20 })
	end := ns[1].srv.Cluster().Position()
	c := enginetest.Dial(t, ns[1].addr, codec.V311)
	c.ConnectWith(&codec.Packet{Type: codec.CONNECT, ClientID: "rp-sub", KeepAlive: 60})
	subscribe(t, c, "rp/1", 1)
	done := make(chan struct{})
	began := time.Now()
	go func() { ns[1].srv.Cluster().Replay("rp-sub", start, end); close(done) }()
	got := receive(t, c, 10)
	<-done
	t.Logf("replayed %d..%d in %s", start+1, end, time.Since(began))
	for i, g := range got {
		if want := fmt.Sprintf("rp/1 %d", 2*i+1); g != want {
			t.Fatalf("replayed %d: %q, want %q", i, g, want)
		}
	}
	noMore(t, c, 300*time.Millisecond)
}

// TestSharedAcrossNodes: a shared subscription group with members on two
// nodes gets each message once in the whole cluster (5.0 §4.8.2), QoS 0
// and QoS 1, published on a third node and on a member's own node;
// a plain subscriber still gets every message.
func TestSharedAcrossNodes(t *testing.T) {
	ns := threeNodes(t)
	members := make([]*enginetest.Client, 2)
	for i := range members {
		members[i] = enginetest.Dial(t, ns[i+1].addr, codec.V5)
		members[i].Connect(fmt.Sprintf("sh-m%d", i))
		subscribe(t, members[i], "$share/g/sh/#", 1)
	}
	plain := connect(t, 2, "sh-plain")
	subscribe(t, plain, "sh/#", 1)
	pubs := []*enginetest.Client{connect(t, 0, "sh-pub0"), connect(t, 1, "sh-pub1")}
	// Until the group's interest reached node 0.
	deadline := time.Now().Add(10 * time.Second)
	for reached := false; !reached; {
		if time.Now().After(deadline) {
			t.Fatal("the shared subscription's interest did not reach node 0")
		}
		publish(t, pubs[0], "sh/probe", "probe", 0, 0)
		for _, m := range members {
			if p, err := m.Next(100 * time.Millisecond); err == nil && p.Type == codec.PUBLISH {
				reached = true
			}
		}
	}
	for _, c := range append(members, plain) {
		for {
			if _, err := c.Next(300 * time.Millisecond); err != nil {
				break
			}
		}
	}
	const n = 100
	for i := range n {
		publish(t, pubs[i%2], "sh/t", strconv.Itoa(i), byte(i%3%2), uint16(i+1))
	}
	counts := map[string]int{}
	var perMember [2]int
	var mu sync.Mutex
	var wg sync.WaitGroup
	for j, m := range members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				p, err := m.Next(time.Second)
				if err != nil {
					return
				}
				if p.Type != codec.PUBLISH || string(p.Payload) == "probe" {
					continue
				}
				if p.QoS == 1 {
					m.Send(&codec.Packet{Type: codec.PUBACK, PacketID: p.PacketID})
				}
				mu.Lock()
				counts[string(p.Payload)]++
				perMember[j]++
				mu.Unlock()
			}
		}()
	}
	if got := receive(t, plain, n); len(got) != n {
		t.Fatalf("the plain subscriber got %d", len(got))
	}
	wg.Wait()
	for i := range n {
		if c := counts[strconv.Itoa(i)]; c != 1 {
			t.Fatalf("message %d reached the group %d times (per member %v)", i, c, perMember)
		}
	}
	t.Logf("members got %v of %d", perMember, n)
}

// TestOperatorsSeeTheCluster: a node's metrics carry its name and the
// cluster's counters; GET /api/cluster lists the three members, alive.
func TestOperatorsSeeTheCluster(t *testing.T) {
	ns := threeNodes(t)
	get := func(path string) string {
		resp, err := http.Get("http://" + ns[0].srv.HTTPAddr() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, b)
		}
		return string(b)
	}
	metrics := get("/metrics")
	for _, want := range []string{`mqttlua_cluster_messages_total{direction="forwarded",node="n0"}`, `mqttlua_connections_total{node="n0"}`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics has no %s", want)
		}
	}
	var view struct {
		Node    string
		Members []cluster.Member
	}
	enginetest.WaitFor(t, "three live members", func() bool {
		if err := json.Unmarshal([]byte(get("/api/cluster")), &view); err != nil {
			t.Fatal(err)
		}
		alive := 0
		for _, m := range view.Members {
			if m.Alive {
				alive++
			}
		}
		return alive == 3
	})
	if view.Node != "n0" || view.Members[0].Node != "n0" || view.Members[2].Node != "n2" {
		t.Fatalf("%+v", view)
	}
}
