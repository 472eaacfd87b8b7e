package cluster_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
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
				Workers: 2, SysInterval: -1, Log: log, DataDir: filepath.Join(dir, "n"+strconv.Itoa(i)),
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

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "cluster-test-")
	if err != nil {
		panic(err)
	}
	nodes, err = startCluster(dir, 3)
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting the cluster:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	stopCluster(nodes)
	os.RemoveAll(dir)
	os.Exit(code)
}

// connect opens a clean 3.1.1 session on node i.
func connect(t *testing.T, i int, id string) *enginetest.Client {
	t.Helper()
	c := enginetest.Dial(t, nodes[i].addr, codec.V311)
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
