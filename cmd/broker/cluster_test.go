package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/mqttlua/broker/codec"
	"github.com/mqttlua/broker/engine/enginetest"
)

// clusterNode is one broker process of a test cluster.
type clusterNode struct {
	bin  string
	args []string
	cmd  *exec.Cmd
	addr string // MQTT
	logs *strings.Builder
	mu   *sync.Mutex
}

func (n *clusterNode) log() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.logs.String()
}

// start runs the node's process and returns a channel that is closed
// once it listens for MQTT (after it joined the cluster), or gets an
// error if it ended first.
func (n *clusterNode) start(t *testing.T) <-chan error {
	t.Helper()
	cmd := exec.Command(n.bin, n.args...)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	n.cmd = cmd
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	ready := make(chan error, 1)
	go func() {
		re := regexp.MustCompile(`listening on mqtt://(127\.0\.0\.1:\d+)`)
		sc := bufio.NewScanner(stderr)
		found := false
		for sc.Scan() {
			n.mu.Lock()
			n.logs.WriteString(sc.Text() + "\n")
			n.mu.Unlock()
			if m := re.FindStringSubmatch(sc.Text()); m != nil && !found {
				found = true
				n.mu.Lock()
				n.addr = m[1]
				n.mu.Unlock()
				close(ready)
			}
		}
		if !found {
			ready <- fmt.Errorf("the node ended without listening:\n%s", n.log())
		}
	}()
	return ready
}

// waitNodes waits for nodes started together (each waits for the others
// to elect JetStream's leaders).
func waitNodes(t *testing.T, nodes []*clusterNode, ready []<-chan error) {
	t.Helper()
	timeout := time.After(90 * time.Second)
	for i, r := range ready {
		select {
		case err := <-r:
			if err != nil {
				t.Fatalf("node %d: %v", i, err)
			}
		case <-timeout:
			for j, n := range nodes {
				t.Logf("node %d:\n%s", j, n.log())
			}
			t.Fatal("the cluster did not start in 90 s")
		}
	}
}

// startClusterProcesses runs n broker processes, each embedding a NATS
// server routed to the others, and returns once all listen for MQTT
// (after the cluster elected its leaders).
func startClusterProcesses(t *testing.T, bin, scripts string, n int) []*clusterNode {
	t.Helper()
	routes := make([]string, n)
	for i := range routes {
		routes[i] = "127.0.0.1:" + strconv.Itoa(enginetest.FreePort(t))
	}
	nodes := make([]*clusterNode, n)
	ready := make([]<-chan error, n)
	for i := range n {
		var peers []string
		for j, r := range routes {
			if j != i {
				peers = append(peers, r)
			}
		}
		nodes[i] = &clusterNode{bin: bin, logs: &strings.Builder{}, mu: &sync.Mutex{},
			args: []string{"--scripts", scripts, "--listen", "127.0.0.1:0",
				"--data-dir", filepath.Join(t.TempDir(), "data"), "--sys-interval", "0",
				"--node-name", "n" + strconv.Itoa(i), "--cluster-name", "lb-test",
				"--cluster-listen", routes[i], "--cluster-peers", strings.Join(peers, ",")}}
		ready[i] = nodes[i].start(t)
	}
	waitNodes(t, nodes, ready)
	return nodes
}

// startHAProxy puts a round-robin TCP balancer in front of addrs and
// returns its address: consecutive connections land on different nodes.
func startHAProxy(t *testing.T, addrs []string) string {
	t.Helper()
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("haproxy not installed in CI (see .ci/run)")
		}
		t.Skip("haproxy not installed (apt-get install haproxy)")
	}
	front := "127.0.0.1:" + strconv.Itoa(enginetest.FreePort(t))
	var conf strings.Builder
	fmt.Fprintf(&conf, "global\n  maxconn 4096\ndefaults\n  mode tcp\n  timeout connect 2s\n  timeout client 120s\n  timeout server 120s\n")
	// Health checks every 300 ms: a killed node leaves the rotation.
	fmt.Fprintf(&conf, "frontend mqtt\n  bind %s\n  default_backend nodes\nbackend nodes\n  balance roundrobin\n  option redispatch\n  retries 3\n", front)
	for i, a := range addrs {
		fmt.Fprintf(&conf, "  server n%d %s check inter 300ms fall 1 rise 2\n", i, a)
	}
	cfg := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(cfg, []byte(conf.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-f", cfg, "-db") // -db: in the foreground, stopped with the test
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.Dial("tcp", front); err == nil {
			c.Close()
			return front
		}
		if time.Now().After(deadline) {
			t.Fatalf("haproxy did not listen on %s: %s", front, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestClusterBehindLoadBalancer runs three broker processes as one
// cluster behind HAProxy (round robin, so consecutive connections land on
// different nodes) and drives it with real clients: paho (QoS 0-2 between
// nodes, a persistent session that reconnects to another node and finds
// its queued messages, a retained message), mosquitto_pub/sub, and the
// MQTT.js interoperability script.
func TestClusterBehindLoadBalancer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three broker processes and HAProxy")
	}
	bin := filepath.Join(t.TempDir(), "broker")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	nodes := startClusterProcesses(t, bin, "../../scripts", 3)
	addrs := make([]string, len(nodes))
	for i, n := range nodes {
		addrs[i] = n.addr
	}
	lb := startHAProxy(t, addrs)
	defer func() {
		if t.Failed() {
			for i, n := range nodes {
				t.Logf("node %d:\n%s", i, n.log())
			}
		}
	}()

	t.Run("paho", func(t *testing.T) { pahoThroughBalancer(t, lb) })
	defer t.Run("quorum", func(t *testing.T) { quorumLoss(t, nodes) })
	t.Run("mosquitto", func(t *testing.T) { mosquittoThroughBalancer(t, lb) })
	t.Run("mqttjs", func(t *testing.T) {
		node, dir := enginetest.MQTTjs(t)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		script, _ := filepath.Abs(filepath.Join("..", "..", "engine", "broker", "testdata", "mqttjs", "interop.js"))
		cmd := exec.CommandContext(ctx, node, script, "mqtt://"+lb)
		cmd.Env = append(os.Environ(), "NODE_PATH="+dir)
		out, err := cmd.CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "ok" {
			t.Fatalf("MQTT.js through the balancer: %v\n%s", err, out)
		}
	})
}

type pahoInbox struct {
	mu  sync.Mutex
	got []string
}

func (b *pahoInbox) add(_ paho.Client, m paho.Message) {
	b.mu.Lock()
	b.got = append(b.got, fmt.Sprintf("%s %s q%d r%v", m.Topic(), m.Payload(), m.Qos(), m.Retained()))
	b.mu.Unlock()
}

func (b *pahoInbox) wait(t *testing.T, n int) []string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b.mu.Lock()
		got := append([]string(nil), b.got...)
		b.mu.Unlock()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("want %d messages, got %d: %q", n, len(got), got)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func pahoConnect(t *testing.T, addr, id string, clean bool, inbox *pahoInbox) (paho.Client, bool) {
	t.Helper()
	opts := paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).SetCleanSession(clean).
		SetAutoReconnect(false).SetConnectRetry(false).SetOrderMatters(true)
	if inbox != nil {
		opts.SetDefaultPublishHandler(inbox.add)
	}
	c := paho.NewClient(opts)
	tok := c.Connect()
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect %s: %v", id, tok.Error())
	}
	return c, tok.(*paho.ConnectToken).SessionPresent()
}

func pahoWait(t *testing.T, tok paho.Token) {
	t.Helper()
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("paho: %v", tok.Error())
	}
}

func pahoThroughBalancer(t *testing.T, lb string) {
	inbox := &pahoInbox{}
	sub, _ := pahoConnect(t, lb, "lb-sub", false, inbox)
	pahoWait(t, sub.Subscribe("lb/#", 2, nil))
	pub, _ := pahoConnect(t, lb, "lb-pub", true, nil) // the next node
	// QoS 1 and 2 cross through the message log, which needs no interest
	// to spread first; QoS 0 follows interest that core NATS spreads
	// right after SUBACK.
	for _, q := range []byte{1, 2} {
		pahoWait(t, pub.Publish("lb/q"+strconv.Itoa(int(q)), q, false, "m"))
	}
	got := inbox.wait(t, 2)
	if got[0] != "lb/q1 m q1 rfalse" || got[1] != "lb/q2 m q2 rfalse" {
		t.Fatalf("got %q", got)
	}
	// The subscriber leaves; 10 messages wait for its session.
	sub.Disconnect(100)
	for i := range 10 {
		pahoWait(t, pub.Publish("lb/queued", 1, false, strconv.Itoa(i)))
	}
	// It comes back through the balancer: to another node.
	inbox2 := &pahoInbox{}
	sub2, present := pahoConnect(t, lb, "lb-sub", false, inbox2)
	defer sub2.Disconnect(100)
	if !present {
		t.Fatal("session present 0 after reconnecting through the balancer")
	}
	got = inbox2.wait(t, 10)
	for i, g := range got {
		if g != fmt.Sprintf("lb/queued %d q1 rfalse", i) {
			t.Fatalf("queued message %d: %q (all: %q)", i, g, got)
		}
	}
	// A retained message set through one node is what a new subscriber on
	// another gets.
	pahoWait(t, pub.Publish("lb/state", 1, true, "on"))
	inbox3 := &pahoInbox{}
	late, _ := pahoConnect(t, lb, "lb-late", true, inbox3)
	defer late.Disconnect(100)
	deadline := time.Now().Add(5 * time.Second)
	for {
		pahoWait(t, late.Subscribe("lb/state", 1, nil))
		inbox3.mu.Lock()
		n := len(inbox3.got)
		inbox3.mu.Unlock()
		if n > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond) // the node's retained copy is on its way
		pahoWait(t, late.Unsubscribe("lb/state"))
	}
	if got := inbox3.wait(t, 1); got[0] != "lb/state on q1 rtrue" {
		t.Fatalf("retained: %q", got)
	}
	pahoWait(t, pub.Publish("lb/state", 1, true, ""))
	pub.Disconnect(100)
}

func mosquittoThroughBalancer(t *testing.T, lb string) {
	subBin, err := exec.LookPath("mosquitto_sub")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("mosquitto_sub not installed in CI")
		}
		t.Skip("mosquitto-clients not installed")
	}
	pubBin, _ := exec.LookPath("mosquitto_pub")
	host, port, _ := net.SplitHostPort(lb)
	// Three subscribers, one per node; each gets the five messages
	// published through the next connections, whichever node they hit.
	var outs []*strings.Builder
	var cmds []*exec.Cmd
	for i := range 3 {
		out := &strings.Builder{}
		cmd := exec.Command(subBin, "-h", host, "-p", port, "-i", "mq-sub"+strconv.Itoa(i), "-t", "mq/#", "-q", "1", "-C", "5", "-W", "20")
		cmd.Stdout = out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		outs, cmds = append(outs, out), append(cmds, cmd)
		time.Sleep(300 * time.Millisecond) // connected and subscribed before the next
	}
	for i := range 5 {
		if out, err := exec.Command(pubBin, "-h", host, "-p", port, "-t", "mq/t", "-q", "1", "-m", "p"+strconv.Itoa(i)).CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_pub: %v %s", err, out)
		}
	}
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("subscriber %d: %v, got %q", i, err, outs[i].String())
		}
		// Five publishers, one message each: MQTT orders one
		// publisher's messages, not theirs between them (a message
		// published on the subscriber's own node may overtake one that
		// comes through the log).
		got := strings.Fields(outs[i].String())
		sort.Strings(got)
		if strings.Join(got, " ") != "p0 p1 p2 p3 p4" {
			t.Fatalf("subscriber %d got %q", i, got)
		}
	}
}

// quorumLoss: with two of three nodes down, the last one refuses new
// CONNECTs (3.1.1: 0x03 server unavailable) and QoS 1 publishes (5.0:
// PUBACK 0x80) rather than risk two owners of a session or an
// acknowledged message on one node only; when the two come back it
// accepts again, by itself.
func quorumLoss(t *testing.T, nodes []*clusterNode) {
	pub := dialV5(t, nodes[0].addr, "quorum-pub")
	for _, n := range nodes[1:] {
		n.cmd.Process.Kill()
		n.cmd.Wait()
	}
	start := time.Now()
	pub.send(&codec.Packet{Type: codec.PUBLISH, Topic: "quorum/t", Payload: []byte("x"), QoS: 1, PacketID: 7})
	p, err := pub.next(30 * time.Second)
	switch {
	case err != nil:
		t.Fatalf("QoS 1 publish without quorum: %v", err)
	case p.Type != codec.PUBACK || p.ReasonCode != codec.UnspecifiedError:
		t.Fatalf("QoS 1 publish without quorum: %v, want PUBACK 0x80", p)
	}
	t.Logf("QoS 1 PUBLISH without quorum: PUBACK 0x80 after %s", time.Since(start).Round(time.Millisecond))
	start = time.Now()
	// The registry's read and write wait 5 s each before the refusal.
	late := dialNoAck(t, nodes[0].addr, "quorum-late", codec.V311)
	if p, err := late.next(30 * time.Second); err != nil || p.Type != codec.CONNACK || p.ReasonCode != codec.V3ServerUnavailable {
		t.Fatalf("CONNECT without quorum: %v %v, want CONNACK 0x03", p, err)
	}
	t.Logf("CONNECT without quorum: CONNACK 0x03 after %s", time.Since(start).Round(time.Millisecond))
	// Back: the two restart on their data folders and rejoin.
	var ready []<-chan error
	for _, n := range nodes[1:] {
		ready = append(ready, n.start(t))
	}
	waitNodes(t, nodes[1:], ready)
	deadline := time.Now().Add(30 * time.Second)
	for {
		m, _, err := dialMQTT(nodes[0].addr, "quorum-back", true)
		if err == nil {
			m.c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("CONNECT after the nodes came back: %v", err)
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Logf("the cluster accepted CONNECTs again %s after the nodes restarted", time.Since(start).Round(time.Millisecond))
}

// bareConn is a bare connection (5.0 unless level says otherwise).
type bareConn struct {
	c     net.Conn
	r     *codec.Reader
	level byte
}

// dialV5 connects a clean 5.0 client and waits for its CONNACK 0.
func dialV5(t *testing.T, addr, id string) *bareConn {
	t.Helper()
	m := dialNoAck(t, addr, id, codec.V5)
	if p, err := m.next(10 * time.Second); err != nil || p.Type != codec.CONNACK || p.ReasonCode != 0 {
		t.Fatalf("CONNACK: %v %v", p, err)
	}
	return m
}

// dialNoAck sends a clean CONNECT and returns before its answer.
func dialNoAck(t *testing.T, addr, id string, level byte) *bareConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	m := &bareConn{c: c, r: codec.NewReader(c, 0), level: level}
	m.r.Version = level
	m.send(&codec.Packet{Type: codec.CONNECT, ProtocolLevel: level, ClientID: id, CleanSession: true, KeepAlive: 60})
	return m
}

func (m *bareConn) send(p *codec.Packet) {
	b, _ := codec.Encode(p, m.level)
	m.c.Write(b)
}

func (m *bareConn) next(d time.Duration) (*codec.Packet, error) {
	m.c.SetReadDeadline(time.Now().Add(d))
	p := &codec.Packet{}
	err := m.r.ReadPacket(p)
	return p, err
}
