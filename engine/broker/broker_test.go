package broker_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/mqttlua/broker/codec"
	"github.com/mqttlua/broker/engine"
	"github.com/mqttlua/broker/engine/broker"
	"github.com/mqttlua/broker/engine/enginetest"
	"github.com/mqttlua/broker/engine/transport"
	"golang.org/x/crypto/bcrypt"
)

// startBroker runs the default scripts (copied, so edit can change them)
// with the kit.
func startBroker(t *testing.T, edit func(name, src string) string) (*engine.Server, *broker.Broker, string) {
	t.Helper()
	srv, addr, _ := enginetest.Start(t, engine.Config{Scripts: copyScripts(t, edit)})
	k := srv.Broker()
	return srv, k, addr
}

// copyScripts copies the default scripts to a temporary folder, passing
// each through edit (if not nil), and returns the folder.
func copyScripts(tb testing.TB, edit func(name, src string) string) string {
	return enginetest.CopyScripts(tb, edit)
}

// collector records messages received by a Paho client.
type collector struct {
	mu   sync.Mutex
	msgs []paho.Message
}

func (c *collector) handle(_ paho.Client, m paho.Message) {
	c.mu.Lock()
	c.msgs = append(c.msgs, m)
	c.mu.Unlock()
}

func (c *collector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.msgs)
}

func (c *collector) all() []paho.Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]paho.Message(nil), c.msgs...)
}

func pahoClient(t *testing.T, addr, id string, clean bool, col *collector) paho.Client {
	t.Helper()
	opts := paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).SetCleanSession(clean).
		SetAutoReconnect(false).SetConnectRetry(false).SetProtocolVersion(4).SetOrderMatters(true)
	if col != nil {
		opts.SetDefaultPublishHandler(col.handle)
	}
	c := paho.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect %s: %v", id, tok.Error())
	}
	t.Cleanup(func() {
		if c.IsConnected() {
			c.Disconnect(50)
		}
	})
	return c
}

func wait(t *testing.T, tok paho.Token) {
	t.Helper()
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("token: %v", tok.Error())
	}
}

// settle gives in-flight deliveries time to arrive before asserting that
// nothing more came.
func settle() { time.Sleep(100 * time.Millisecond) }

func TestQoSRoundTrips(t *testing.T) {
	_, _, addr := startBroker(t, nil)
	for subQoS := byte(0); subQoS < 3; subQoS++ {
		for pubQoS := byte(0); pubQoS < 3; pubQoS++ {
			t.Run(fmt.Sprintf("pub%d-sub%d", pubQoS, subQoS), func(t *testing.T) {
				col := &collector{}
				sub := pahoClient(t, addr, "sub", true, col)
				wait(t, sub.Subscribe("qos/t", subQoS, col.handle))
				pub := pahoClient(t, addr, "pub", true, nil)
				const n = 50
				for i := 0; i < n; i++ {
					wait(t, pub.Publish("qos/t", pubQoS, false, fmt.Sprint(i)))
				}
				enginetest.WaitFor(t, "all messages", func() bool { return col.count() >= n })
				settle()
				msgs := col.all()
				if len(msgs) != n {
					t.Fatalf("want %d messages, got %d", n, len(msgs))
				}
				want := min(pubQoS, subQoS)
				for i, m := range msgs {
					if string(m.Payload()) != fmt.Sprint(i) || m.Qos() != want || m.Duplicate() {
						t.Fatalf("message %d: payload %s qos %d dup %t, want qos %d", i, m.Payload(), m.Qos(), m.Duplicate(), want)
					}
				}
				sub.Disconnect(50)
				pub.Disconnect(50)
			})
		}
	}
}

func TestRetainedSetReplaceClearAndWildcards(t *testing.T) {
	_, k, addr := startBroker(t, nil)
	pub := pahoClient(t, addr, "pub", true, nil)
	live := &collector{}
	liveSub := pahoClient(t, addr, "live", true, live)
	wait(t, liveSub.Subscribe("r/#", 1, live.handle))
	wait(t, pub.Publish("r/a", 1, true, "1"))
	wait(t, pub.Publish("r/a", 1, true, "2")) // replaces
	wait(t, pub.Publish("r/b/c", 0, true, "x"))
	enginetest.WaitFor(t, "live deliveries", func() bool { return live.count() == 3 })
	for _, m := range live.all() {
		// [MQTT-3.3.1-9] already-subscribed clients get RETAIN 0.
		if m.Retained() {
			t.Fatalf("live delivery of %s has the retain flag", m.Topic())
		}
	}
	if k.RetainedCount() != 2 {
		t.Fatalf("retained count %d", k.RetainedCount())
	}
	check := func(filter string, want map[string]string) {
		t.Helper()
		col := &collector{}
		c := pahoClient(t, addr, "late-"+strings.ReplaceAll(filter, "/", "_"), true, col)
		wait(t, c.Subscribe(filter, 1, col.handle))
		if len(want) > 0 {
			enginetest.WaitFor(t, "retained for "+filter, func() bool { return col.count() >= len(want) })
		}
		settle()
		got := map[string]string{}
		for _, m := range col.all() {
			if !m.Retained() {
				t.Fatalf("%s: retained delivery without the retain flag", filter)
			}
			got[m.Topic()] = string(m.Payload())
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%s: want %v, got %v", filter, want, got)
		}
		c.Disconnect(50)
	}
	check("r/#", map[string]string{"r/a": "2", "r/b/c": "x"})
	check("r/+", map[string]string{"r/a": "2"})
	check("r/+/c", map[string]string{"r/b/c": "x"})
	check("#", map[string]string{"r/a": "2", "r/b/c": "x"})
	// [MQTT-3.3.1-10] an empty retained message clears the topic.
	wait(t, pub.Publish("r/a", 0, true, ""))
	enginetest.WaitFor(t, "cleared", func() bool { return k.RetainedCount() == 1 })
	check("r/#", map[string]string{"r/b/c": "x"})
}

func TestWillOnAbnormalLossNotOnDisconnect(t *testing.T) {
	_, k, addr := startBroker(t, nil)
	col := &collector{}
	sub := pahoClient(t, addr, "watcher", true, col)
	wait(t, sub.Subscribe("wills/#", 1, col.handle))
	withWill := func(id string) *enginetest.Client {
		c := enginetest.Dial(t, addr, codec.V311)
		c.ConnectWith(&codec.Packet{Type: codec.CONNECT, ClientID: id, CleanSession: true, KeepAlive: 60,
			Will: &codec.Will{QoS: 1, Topic: "wills/" + id, Payload: []byte(id + " gone")}})
		return c
	}
	// Clean DISCONNECT: the will is discarded ([MQTT-3.14.4-3]).
	polite := withWill("polite")
	polite.Send(&codec.Packet{Type: codec.DISCONNECT})
	polite.ExpectClosed()
	// Network loss: the will is published ([MQTT-3.1.2-8]).
	rude := withWill("rude")
	rude.Conn.Close()
	enginetest.WaitFor(t, "the will", func() bool { return col.count() == 1 })
	settle()
	msgs := col.all()
	if len(msgs) != 1 || msgs[0].Topic() != "wills/rude" || string(msgs[0].Payload()) != "rude gone" {
		t.Fatalf("got %d messages: %v", len(msgs), msgs)
	}
	if k.Stats.WillsSent.Load() != 1 {
		t.Fatalf("wills sent %d", k.Stats.WillsSent.Load())
	}
}

func TestWillOnKeepAliveExpiry(t *testing.T) {
	srv, _, addr := startBroker(t, nil)
	col := &collector{}
	sub := pahoClient(t, addr, "watcher", true, col)
	wait(t, sub.Subscribe("wills/#", 0, col.handle))
	c := enginetest.Dial(t, addr, codec.V311)
	c.ConnectWith(&codec.Packet{Type: codec.CONNECT, ClientID: "sleepy", CleanSession: true, KeepAlive: 1,
		Will: &codec.Will{Topic: "wills/sleepy", Payload: []byte("timed out")}})
	// Silent for 1.5 x keep alive: closed, and the will goes out.
	c.ExpectClosed()
	enginetest.WaitFor(t, "the will", func() bool { return col.count() == 1 })
	if n := srv.Stats.Closes[transport.CloseKeepAliveTimeout].Load(); n != 1 {
		t.Fatalf("keep alive closes: %d", n)
	}
}

func TestOfflineQueueDeliveredOnReconnect(t *testing.T) {
	_, k, addr := startBroker(t, nil)
	col := &collector{}
	sub := pahoClient(t, addr, "durable", false, col)
	wait(t, sub.Subscribe("q/#", 1, col.handle))
	sub.Disconnect(50)
	enginetest.WaitFor(t, "the session offline", func() bool {
		ci, ok := k.Info("durable")
		return ok && !ci.Connected
	})
	pub := pahoClient(t, addr, "pub", true, nil)
	for i := 0; i < 10; i++ {
		wait(t, pub.Publish("q/x", 1, false, fmt.Sprint(i)))
	}
	wait(t, pub.Publish("q/x", 0, false, "qos0 not kept"))
	enginetest.WaitFor(t, "the QoS 0 message skipped", func() bool { return k.Stats.NoSession.Load() == 1 })
	// Reconnect with clean session 0: session present, queue delivered in
	// order, QoS 0 not kept for offline clients.
	c := enginetest.Dial(t, addr, codec.V311)
	ack := c.ConnectWith(&codec.Packet{Type: codec.CONNECT, ClientID: "durable", CleanSession: false, KeepAlive: 60})
	if !ack.SessionPresent {
		t.Fatal("session present not set")
	}
	for i := 0; i < 10; i++ {
		p := c.Expect(codec.PUBLISH)
		if string(p.Payload) != fmt.Sprint(i) || p.QoS != 1 {
			t.Fatalf("queued message %d: %v %q", i, p, p.Payload)
		}
		c.Send(&codec.Packet{Type: codec.PUBACK, PacketID: p.PacketID})
	}
	c.ExpectNothing(150 * time.Millisecond)
}

func TestRedeliveryWithDupAfterReconnect(t *testing.T) {
	_, _, addr := startBroker(t, nil)
	connect := func() (*enginetest.Client, *codec.Packet) {
		c := enginetest.Dial(t, addr, codec.V311)
		ack := c.ConnectWith(&codec.Packet{Type: codec.CONNECT, ClientID: "flaky", CleanSession: false, KeepAlive: 60})
		return c, ack
	}
	c, _ := connect()
	c.Send(&codec.Packet{Type: codec.SUBSCRIBE, PacketID: 1, Subscriptions: []codec.Subscription{{Topic: "d/1", QoS: 1}, {Topic: "d/2", QoS: 2}}})
	c.Expect(codec.SUBACK)
	pub := pahoClient(t, addr, "pub", true, nil)
	wait(t, pub.Publish("d/1", 1, false, "one"))
	wait(t, pub.Publish("d/2", 2, false, "two"))
	p1 := c.Expect(codec.PUBLISH)
	p2 := c.Expect(codec.PUBLISH)
	// Acknowledge neither; for QoS 2 get as far as PUBREL for a second round.
	c.Conn.Close()

	c, ack := connect()
	if !ack.SessionPresent {
		t.Fatal("session not present")
	}
	r1 := c.Expect(codec.PUBLISH)
	r2 := c.Expect(codec.PUBLISH)
	// [MQTT-4.4.0-1] re-sent with DUP and the same packet ids, in order.
	if !r1.Dup || r1.PacketID != p1.PacketID || string(r1.Payload) != "one" ||
		!r2.Dup || r2.PacketID != p2.PacketID || string(r2.Payload) != "two" || r2.QoS != 2 {
		t.Fatalf("redelivery: %v %v", r1, r2)
	}
	c.Send(&codec.Packet{Type: codec.PUBACK, PacketID: r1.PacketID})
	c.Send(&codec.Packet{Type: codec.PUBREC, PacketID: r2.PacketID})
	if rel := c.Expect(codec.PUBREL); rel.PacketID != r2.PacketID {
		t.Fatalf("PUBREL for %d", rel.PacketID)
	}
	c.Conn.Close()

	c, _ = connect()
	// Only the PUBREL is outstanding now.
	if rel := c.Expect(codec.PUBREL); rel.PacketID != r2.PacketID {
		t.Fatalf("PUBREL again for %d", rel.PacketID)
	}
	c.Send(&codec.Packet{Type: codec.PUBCOMP, PacketID: r2.PacketID})
	c.ExpectNothing(150 * time.Millisecond)
}

func TestClientIDTakeover(t *testing.T) {
	srv, k, addr := startBroker(t, nil)
	first := enginetest.Dial(t, addr, codec.V5)
	first.Connect("same")
	second := enginetest.Dial(t, addr, codec.V311)
	second.Connect("same")
	// [MQTT-3.1.4-2] the existing connection is closed; 5.0 says why.
	if d := first.Expect(codec.DISCONNECT); d.ReasonCode != codec.SessionTakenOver {
		t.Fatalf("want 0x8E, got %#x", byte(d.ReasonCode))
	}
	first.ExpectClosed()
	second.Send(&codec.Packet{Type: codec.PINGREQ})
	second.Expect(codec.PINGRESP)
	enginetest.WaitFor(t, "takeover counted", func() bool {
		return srv.Stats.Closes[transport.CloseTakenOver].Load() == 1 && k.Stats.Takeovers.Load() == 1
	})
	if ci, ok := k.Info("same"); !ok || !ci.Connected {
		t.Fatalf("session after takeover: %+v", ci)
	}
}

func TestZeroLengthClientID(t *testing.T) {
	_, k, addr := startBroker(t, nil)
	c := enginetest.Dial(t, addr, codec.V311)
	c.Connect("") // [MQTT-3.1.3-6] assigned one with clean session
	if len(k.Clients()) != 1 || !strings.HasPrefix(k.Clients()[0].ClientID, "auto-") {
		t.Fatalf("clients: %+v", k.Clients())
	}
	d := enginetest.Dial(t, addr, codec.V311)
	d.Send(&codec.Packet{Type: codec.CONNECT, ProtocolLevel: codec.V311, CleanSession: false})
	// [MQTT-3.1.3-8] identifier rejected.
	if a := d.Expect(codec.CONNACK); a.ReasonCode != codec.V3IdentifierRejected {
		t.Fatalf("want 0x02, got %#x", byte(a.ReasonCode))
	}
	d.ExpectClosed()
}

func TestOverlappingSubscriptionsDeliverOnceAtHighestQoS(t *testing.T) {
	_, _, addr := startBroker(t, nil)
	c := enginetest.Dial(t, addr, codec.V311)
	c.Connect("overlap")
	c.Send(&codec.Packet{Type: codec.SUBSCRIBE, PacketID: 1, Subscriptions: []codec.Subscription{{Topic: "o/+", QoS: 1}, {Topic: "o/#", QoS: 2}, {Topic: "o/x", QoS: 0}}})
	if a := c.Expect(codec.SUBACK); fmt.Sprint(a.ReasonCodes) != "[Granted QoS 1 Granted QoS 2 Success]" {
		t.Fatalf("SUBACK %v", a.ReasonCodes)
	}
	pub := pahoClient(t, addr, "pub", true, nil)
	wait(t, pub.Publish("o/x", 2, false, "once"))
	p := c.Expect(codec.PUBLISH)
	if p.QoS != 2 || string(p.Payload) != "once" {
		t.Fatalf("got %v", p)
	}
	c.Send(&codec.Packet{Type: codec.PUBREC, PacketID: p.PacketID})
	c.Expect(codec.PUBREL)
	c.Send(&codec.Packet{Type: codec.PUBCOMP, PacketID: p.PacketID})
	c.ExpectNothing(150 * time.Millisecond)
}

func TestDollarTopicsAndUnsubscribe(t *testing.T) {
	// The default scripts deny client publishes to $ topics; routing is
	// what this test is about, so the rule is taken out.
	_, _, addr := startBroker(t, func(name, src string) string {
		if name != "main.lua" {
			return src
		}
		out := strings.Replace(src, `if topic >= "$" and topic < "%" then`, "if false then", 1)
		if out == src {
			t.Fatal("main.lua no longer has the $ topic rule")
		}
		return out
	})
	all := &collector{}
	allSub := pahoClient(t, addr, "all", true, all)
	wait(t, allSub.Subscribe("#", 0, all.handle))
	plus := &collector{}
	plusSub := pahoClient(t, addr, "plus", true, plus)
	wait(t, plusSub.Subscribe("+/info", 0, plus.handle))
	sys := &collector{}
	sysSub := pahoClient(t, addr, "sys", true, sys)
	wait(t, sysSub.Subscribe("$SYS/#", 0, sys.handle))
	pub := pahoClient(t, addr, "pub", true, nil)
	wait(t, pub.Publish("$SYS/info", 1, false, "sys"))
	wait(t, pub.Publish("app/info", 1, false, "app"))
	enginetest.WaitFor(t, "deliveries", func() bool { return all.count() == 1 && plus.count() == 1 && sys.count() == 1 })
	// [MQTT-4.7.2-1] wildcards at the first level skip $ topics.
	if string(all.all()[0].Payload()) != "app" || string(plus.all()[0].Payload()) != "app" || string(sys.all()[0].Payload()) != "sys" {
		t.Fatal("$ topic routing is wrong")
	}
	wait(t, allSub.Unsubscribe("#"))
	wait(t, pub.Publish("app/info", 1, false, "after"))
	enginetest.WaitFor(t, "plus gets it", func() bool { return plus.count() == 2 })
	settle()
	if all.count() != 1 {
		t.Fatalf("unsubscribed client got %d messages", all.count())
	}
}

func TestInboundQoS2ExactlyOnce(t *testing.T) {
	_, _, addr := startBroker(t, nil)
	col := &collector{}
	sub := pahoClient(t, addr, "sub", true, col)
	wait(t, sub.Subscribe("x2", 2, col.handle))
	c := enginetest.Dial(t, addr, codec.V311)
	c.Connect("sender")
	pub := &codec.Packet{Type: codec.PUBLISH, QoS: 2, PacketID: 5, Topic: "x2", Payload: []byte("once")}
	c.Send(pub)
	c.Expect(codec.PUBREC)
	pub.Dup = true // retransmitted before PUBREL
	c.Send(pub)
	c.Expect(codec.PUBREC)
	c.Send(&codec.Packet{Type: codec.PUBREL, PacketID: 5})
	c.Expect(codec.PUBCOMP)
	enginetest.WaitFor(t, "delivery", func() bool { return col.count() >= 1 })
	settle()
	if col.count() != 1 {
		t.Fatalf("delivered %d times", col.count())
	}
}

func TestACLDenial(t *testing.T) {
	_, _, addr := startBroker(t, func(name, src string) string {
		if name == "acl.lua" {
			return strings.Replace(src, "acl.rules = {", `acl.rules = {
  { action = "deny", topic = "secret/#", access = "write" },
  { action = "deny", topic = "private/#", access = "read" },
  { action = "allow", topic = "own/%c/#" },
  { action = "deny", topic = "own/#" },`, 1)
		}
		return src
	})
	col := &collector{}
	sub := pahoClient(t, addr, "reader", true, col)
	tok := sub.SubscribeMultiple(map[string]byte{"#": 1, "private/x": 1, "own/reader/#": 1, "own/other/#": 1}, col.handle)
	wait(t, tok)
	res := tok.(*paho.SubscribeToken).Result()
	want := map[string]byte{"#": 1, "private/x": 0x80, "own/reader/#": 1, "own/other/#": 0x80}
	if fmt.Sprint(res) != fmt.Sprint(want) {
		t.Fatalf("SUBACK: want %v, got %v", want, res)
	}
	pub := pahoClient(t, addr, "writer", true, nil)
	// Denied publishes are acknowledged (the tokens complete) and dropped.
	wait(t, pub.Publish("secret/plans", 1, false, "no"))
	wait(t, pub.Publish("secret/plans", 2, false, "no"))
	wait(t, pub.Publish("own/reader/inbox", 1, false, "no: not the writer's own"))
	wait(t, pub.Publish("own/writer/outbox", 1, false, "yes 1"))
	wait(t, pub.Publish("public/x", 0, false, "yes 2"))
	enginetest.WaitFor(t, "allowed messages", func() bool { return col.count() >= 2 })
	settle()
	msgs := col.all()
	if len(msgs) != 2 || string(msgs[0].Payload()) != "yes 1" || string(msgs[1].Payload()) != "yes 2" {
		t.Fatalf("got %d messages", len(msgs))
	}
}

func TestAuthFailures(t *testing.T) {
	hash, _ := bcrypt.GenerateFromPassword([]byte("right"), bcrypt.MinCost)
	_, _, addr := startBroker(t, func(name, src string) string {
		if name == "auth.lua" {
			src = strings.Replace(src, "auth.users = {", "auth.users = {\n  alice = \""+string(hash)+"\",", 1)
			return strings.Replace(src, `auth.anonymous = "loopback"`, `auth.anonymous = "deny"`, 1)
		}
		return src
	})
	try := func(user, pass string) codec.ReasonCode {
		c := enginetest.Dial(t, addr, codec.V311)
		p := &codec.Packet{Type: codec.CONNECT, ProtocolLevel: codec.V311, ClientID: "a" + user, CleanSession: true}
		if user != "" {
			p.Username, p.UsernameFlag = user, true
			p.Password, p.PasswordFlag = []byte(pass), true
		}
		c.Send(p)
		a := c.Expect(codec.CONNACK)
		if a.ReasonCode != 0 {
			c.ExpectClosed()
		}
		return a.ReasonCode
	}
	if code := try("alice", "right"); code != 0 {
		t.Fatalf("good password refused: %#x", byte(code))
	}
	if code := try("alice", "wrong"); code != codec.V3BadUserNameOrPassword {
		t.Fatalf("wrong password: want 0x04, got %#x", byte(code))
	}
	if code := try("mallory", "x"); code != codec.V3BadUserNameOrPassword {
		t.Fatalf("unknown user: want 0x04, got %#x", byte(code))
	}
	if code := try("", ""); code != codec.V3NotAuthorized {
		t.Fatalf("anonymous: want 0x05, got %#x", byte(code))
	}
}

func TestOfflineQueueBoundAndDropPolicy(t *testing.T) {
	for _, policy := range []string{"oldest", "newest"} {
		t.Run(policy, func(t *testing.T) {
			_, k, addr := startBroker(t, func(name, src string) string {
				if name == "main.lua" {
					return strings.Replace(src, `max_queued = 1000, queue_drop = "oldest"`, `max_queued = 3, queue_drop = "`+policy+`"`, 1)
				}
				return src
			})
			c := enginetest.Dial(t, addr, codec.V311)
			c.ConnectWith(&codec.Packet{Type: codec.CONNECT, ClientID: "q", KeepAlive: 60})
			c.Send(&codec.Packet{Type: codec.SUBSCRIBE, PacketID: 1, Subscriptions: []codec.Subscription{{Topic: "b", QoS: 1}}})
			c.Expect(codec.SUBACK)
			c.Send(&codec.Packet{Type: codec.DISCONNECT})
			c.ExpectClosed()
			enginetest.WaitFor(t, "offline", func() bool { ci, _ := k.Info("q"); return !ci.Connected })
			pub := pahoClient(t, addr, "pub", true, nil)
			for i := 0; i < 5; i++ {
				wait(t, pub.Publish("b", 1, false, fmt.Sprint(i)))
			}
			if k.Stats.Dropped.Load() != 2 {
				t.Fatalf("dropped %d", k.Stats.Dropped.Load())
			}
			c = enginetest.Dial(t, addr, codec.V311)
			c.ConnectWith(&codec.Packet{Type: codec.CONNECT, ClientID: "q", KeepAlive: 60})
			want := []string{"2", "3", "4"}
			if policy == "newest" {
				want = []string{"0", "1", "2"}
			}
			for _, w := range want {
				p := c.Expect(codec.PUBLISH)
				if string(p.Payload) != w {
					t.Fatalf("want %s, got %s", w, p.Payload)
				}
				c.Send(&codec.Packet{Type: codec.PUBACK, PacketID: p.PacketID})
			}
			c.ExpectNothing(100 * time.Millisecond)
		})
	}
}

// TestInflightWindow: no more than max_inflight unacknowledged messages
// are outstanding; the rest follow as acknowledgements arrive, in order.
func TestInflightWindow(t *testing.T) {
	_, _, addr := startBroker(t, func(name, src string) string {
		if name == "main.lua" {
			return strings.Replace(src, "max_inflight = 20", "max_inflight = 2", 1)
		}
		return src
	})
	c := enginetest.Dial(t, addr, codec.V311)
	c.Connect("w")
	c.Send(&codec.Packet{Type: codec.SUBSCRIBE, PacketID: 1, Subscriptions: []codec.Subscription{{Topic: "w", QoS: 1}}})
	c.Expect(codec.SUBACK)
	pub := pahoClient(t, addr, "pub", true, nil)
	for i := 0; i < 5; i++ {
		wait(t, pub.Publish("w", 1, false, fmt.Sprint(i)))
	}
	var got []string
	a := c.Expect(codec.PUBLISH)
	b := c.Expect(codec.PUBLISH)
	c.ExpectNothing(100 * time.Millisecond) // window full
	got = append(got, string(a.Payload), string(b.Payload))
	ids := map[uint16]bool{a.PacketID: true, b.PacketID: true}
	c.Send(&codec.Packet{Type: codec.PUBACK, PacketID: a.PacketID})
	last := b
	for i := 2; i < 5; i++ {
		p := c.Expect(codec.PUBLISH)
		if ids[p.PacketID] && p.PacketID != a.PacketID {
			t.Fatalf("packet id %d reused while in flight", p.PacketID)
		}
		got = append(got, string(p.Payload))
		c.Send(&codec.Packet{Type: codec.PUBACK, PacketID: last.PacketID})
		last = p
	}
	if strings.Join(got, ",") != "0,1,2,3,4" {
		t.Fatalf("order %v", got)
	}
}
