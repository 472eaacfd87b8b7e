package broker_test

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	paho5 "github.com/eclipse/paho.golang/paho"
	"github.com/mqttlua/broker/codec"
	"github.com/mqttlua/broker/engine"
	"github.com/mqttlua/broker/engine/broker"
	"github.com/mqttlua/broker/engine/enginetest"
)

// connect5 connects a raw 5.0 client with the given CONNECT properties.
func connect5(t *testing.T, addr, id string, clean bool, set func(p *codec.Packet)) (*enginetest.Client, *codec.Packet) {
	t.Helper()
	c := enginetest.Dial(t, addr, codec.V5)
	p := &codec.Packet{Type: codec.CONNECT, ProtocolLevel: codec.V5, ClientID: id, CleanSession: clean, KeepAlive: 60}
	if set != nil {
		set(p)
	}
	return c, c.ConnectWith(p)
}

func subscribe5(t *testing.T, c *enginetest.Client, id uint16, subs ...codec.Subscription) *codec.Packet {
	t.Helper()
	c.Send(&codec.Packet{Type: codec.SUBSCRIBE, PacketID: id, Subscriptions: subs})
	return c.Expect(codec.SUBACK)
}

func withExpiry(sec uint32) func(*codec.Packet) {
	return func(p *codec.Packet) { p.Properties.SetUint(codec.PropSessionExpiry, sec) }
}

func TestV5ConnackProperties(t *testing.T) {
	dir := filepath.Join(enginetest.RepoDir(), "scripts")
	_, addr, _ := enginetest.Start(t, engine.Config{Scripts: dir, MaxKeepAlive: 30, MaxPacketSize: 65536})
	// An empty client id is assigned one and told it ([MQTT-3.2.2-16]);
	// the keep alive above the cap is replaced and announced.
	_, ack := connect5(t, addr, "", false, func(p *codec.Packet) { p.KeepAlive = 600 })
	pr := &ack.Properties
	if !strings.HasPrefix(pr.AssignedClientID, "auto-") || pr.ServerKeepAlive != 30 || !pr.Has(codec.PropServerKeepAlive) ||
		pr.ReceiveMaximum != 1024 || pr.TopicAliasMaximum != 10 || pr.MaximumPacketSize != 65536 {
		t.Fatalf("CONNACK properties: %+v", codec.PropertiesToMap(pr, codec.CONNACK))
	}
	if pr.Has(codec.PropMaximumQoS) || pr.Has(codec.PropRetainAvailable) {
		t.Fatal("features that are available are announced by leaving them out")
	}
}

func TestV5SessionExpiry(t *testing.T) {
	_, k, addr := startBroker(t, nil)
	c, ack := connect5(t, addr, "exp", false, withExpiry(1))
	if ack.SessionPresent {
		t.Fatal("new session present")
	}
	subscribe5(t, c, 1, codec.Subscription{Topic: "e", QoS: 1})
	c.Send(&codec.Packet{Type: codec.DISCONNECT})
	c.ExpectClosed()
	enginetest.WaitFor(t, "offline", func() bool { ci, _ := k.Info("exp"); return !ci.Connected })
	k.Inject(&broker.Message{Topic: "e", Payload: []byte("kept"), QoS: 1}, nil)
	// Back within the interval: the session and its message are there.
	c, ack = connect5(t, addr, "exp", false, withExpiry(1))
	if !ack.SessionPresent {
		t.Fatal("session not present within its expiry")
	}
	if p := c.Expect(codec.PUBLISH); string(p.Payload) != "kept" {
		t.Fatalf("got %v", p)
	} else {
		c.Send(&codec.Packet{Type: codec.PUBACK, PacketID: p.PacketID})
	}
	c.Conn.Close()
	// Past the interval the session is gone.
	enginetest.WaitFor(t, "session expiry", func() bool { return k.Stats.SessionsEnded.Load() == 1 })
	_, ack = connect5(t, addr, "exp", false, withExpiry(1))
	if ack.SessionPresent {
		t.Fatal("session present after it expired")
	}
	// DISCONNECT may shorten the interval: 0 ends the session at once.
	s, _ := connect5(t, addr, "short", false, withExpiry(60))
	d0 := &codec.Packet{Type: codec.DISCONNECT}
	d0.Properties.SetUint(codec.PropSessionExpiry, 0)
	s.Send(d0)
	s.ExpectClosed()
	enginetest.WaitFor(t, "offline", func() bool { ci, _ := k.Info("short"); return !ci.Connected })
	if _, ack = connect5(t, addr, "short", false, withExpiry(60)); ack.SessionPresent {
		t.Fatal("session present after DISCONNECT set its expiry to 0")
	}
	// Expiry 0: the session ends with the connection, even if a
	// DISCONNECT tries to extend it (protocol error).
	z, _ := connect5(t, addr, "zero", false, nil)
	d := &codec.Packet{Type: codec.DISCONNECT}
	d.Properties.SetUint(codec.PropSessionExpiry, 100)
	z.Send(d)
	if got := z.Expect(codec.DISCONNECT); got.ReasonCode != codec.ProtocolError {
		t.Fatalf("want 0x82, got %#x", byte(got.ReasonCode))
	}
}

func TestV5ReceiveMaximumBothWays(t *testing.T) {
	dir := filepath.Join(enginetest.RepoDir(), "scripts")
	srv, addr, _ := enginetest.Start(t, engine.Config{Scripts: dir, ReceiveMaximum: 2})
	k := srv.Broker()
	// Outbound: never more unacknowledged messages than the client allows.
	c, _ := connect5(t, addr, "slow", true, func(p *codec.Packet) { p.Properties.SetUint(codec.PropReceiveMaximum, 2) })
	subscribe5(t, c, 1, codec.Subscription{Topic: "rm", QoS: 1})
	for i := 0; i < 4; i++ {
		k.Inject(&broker.Message{Topic: "rm", Payload: []byte{byte('0' + i)}, QoS: 1}, nil)
	}
	a := c.Expect(codec.PUBLISH)
	c.Expect(codec.PUBLISH)
	c.ExpectNothing(100 * time.Millisecond)
	c.Send(&codec.Packet{Type: codec.PUBACK, PacketID: a.PacketID})
	if p := c.Expect(codec.PUBLISH); string(p.Payload) != "2" {
		t.Fatalf("third message: %q", p.Payload)
	}
	// Inbound: a third unreleased QoS 2 message exceeds the 2 announced.
	w, _ := connect5(t, addr, "greedy", true, nil)
	for id := uint16(1); id <= 3; id++ {
		w.Send(&codec.Packet{Type: codec.PUBLISH, QoS: 2, PacketID: id, Topic: "x", Payload: []byte("x")})
	}
	w.Expect(codec.PUBREC)
	w.Expect(codec.PUBREC)
	if d := w.Expect(codec.DISCONNECT); d.ReasonCode != codec.ReceiveMaximumExceeded {
		t.Fatalf("want 0x93, got %#x", byte(d.ReasonCode))
	}
}

func TestV5MaximumPacketSize(t *testing.T) {
	srv, k, addr := startBroker(t, nil)
	c, _ := connect5(t, addr, "small", true, func(p *codec.Packet) { p.Properties.SetUint(codec.PropMaximumPacketSize, 64) })
	subscribe5(t, c, 1, codec.Subscription{Topic: "big/#", QoS: 1})
	k.Inject(&broker.Message{Topic: "big/1", Payload: make([]byte, 100), QoS: 1}, nil)
	k.Inject(&broker.Message{Topic: "big/2", Payload: []byte("fits"), QoS: 1}, nil)
	p := c.Expect(codec.PUBLISH)
	if p.Topic != "big/2" {
		t.Fatalf("got %v", p)
	}
	if srv.Stats.DroppedTooLarge.Load() != 1 {
		t.Fatalf("dropped %d", srv.Stats.DroppedTooLarge.Load())
	}
	c.Send(&codec.Packet{Type: codec.PUBACK, PacketID: p.PacketID})
	enginetest.WaitFor(t, "nothing left in flight", func() bool { ci, _ := k.Info("small"); return ci.Inflight == 0 })
}

func TestV5TopicAliasesInbound(t *testing.T) {
	_, _, addr := startBroker(t, nil)
	sub, _ := connect5(t, addr, "sub", true, nil)
	subscribe5(t, sub, 1, codec.Subscription{Topic: "alias/#"})
	pub, _ := connect5(t, addr, "pub", true, nil)
	first := &codec.Packet{Type: codec.PUBLISH, Topic: "alias/long/topic", Payload: []byte("1")}
	first.Properties.SetUint(codec.PropTopicAlias, 3)
	pub.Send(first)
	second := &codec.Packet{Type: codec.PUBLISH, Payload: []byte("2")}
	second.Properties.SetUint(codec.PropTopicAlias, 3)
	pub.Send(second)
	for _, want := range []string{"1", "2"} {
		p := sub.Expect(codec.PUBLISH)
		if p.Topic != "alias/long/topic" || string(p.Payload) != want || p.Properties.Has(codec.PropTopicAlias) {
			t.Fatalf("got %v %+v", p, p.Properties)
		}
	}
	// Above the Topic Alias Maximum of 10: 0x94.
	bad := &codec.Packet{Type: codec.PUBLISH, Topic: "alias/x"}
	bad.Properties.SetUint(codec.PropTopicAlias, 11)
	pub.Send(bad)
	if d := pub.Expect(codec.DISCONNECT); d.ReasonCode != codec.TopicAliasInvalid {
		t.Fatalf("want 0x94, got %#x", byte(d.ReasonCode))
	}
	// An alias never set: protocol error.
	p2, _ := connect5(t, addr, "pub2", true, nil)
	unset := &codec.Packet{Type: codec.PUBLISH}
	unset.Properties.SetUint(codec.PropTopicAlias, 5)
	p2.Send(unset)
	if d := p2.Expect(codec.DISCONNECT); d.ReasonCode != codec.ProtocolError {
		t.Fatalf("want 0x82, got %#x", byte(d.ReasonCode))
	}
}

func TestV5TopicAliasesOutbound(t *testing.T) {
	_, k, addr := startBroker(t, nil)
	c, _ := connect5(t, addr, "aliased", true, func(p *codec.Packet) { p.Properties.SetUint(codec.PropTopicAliasMaximum, 1) })
	subscribe5(t, c, 1, codec.Subscription{Topic: "o/#"})
	for _, topic := range []string{"o/a", "o/a", "o/b", "o/a"} {
		k.Inject(&broker.Message{Topic: topic, Payload: []byte(topic)}, nil)
	}
	type got struct {
		topic string
		alias uint32
	}
	var seen []got
	for i := 0; i < 4; i++ {
		p := c.Expect(codec.PUBLISH)
		a, _ := p.Properties.Uint(codec.PropTopicAlias)
		seen = append(seen, got{p.Topic, a})
	}
	// First use sets alias 1, the next reuses it with an empty topic; the
	// maximum of 1 leaves o/b with its full topic.
	want := []got{{"o/a", 1}, {"", 1}, {"o/b", 0}, {"", 1}}
	if fmt.Sprint(seen) != fmt.Sprint(want) {
		t.Fatalf("want %v, got %v", want, seen)
	}
}

func TestV5MessageExpiry(t *testing.T) {
	_, k, addr := startBroker(t, nil)
	c, _ := connect5(t, addr, "late", false, withExpiry(60))
	subscribe5(t, c, 1, codec.Subscription{Topic: "x/#", QoS: 1})
	c.Send(&codec.Packet{Type: codec.DISCONNECT})
	c.ExpectClosed()
	enginetest.WaitFor(t, "offline", func() bool { ci, _ := k.Info("late"); return !ci.Connected })
	short := &broker.Message{Topic: "x/short", Payload: []byte("gone"), QoS: 1, Props: &codec.Properties{}}
	short.Props.SetUint(codec.PropMessageExpiry, 1)
	k.Inject(short, nil)
	long := &broker.Message{Topic: "x/long", Payload: []byte("kept"), QoS: 1, Props: &codec.Properties{}}
	long.Props.SetUint(codec.PropMessageExpiry, 100)
	k.Inject(long, nil)
	time.Sleep(1100 * time.Millisecond)
	c, _ = connect5(t, addr, "late", false, withExpiry(60))
	p := c.Expect(codec.PUBLISH)
	left, _ := p.Properties.Uint(codec.PropMessageExpiry)
	if p.Topic != "x/long" || left > 99 || left < 90 {
		t.Fatalf("got %s with %d s left", p.Topic, left)
	}
	c.Send(&codec.Packet{Type: codec.PUBACK, PacketID: p.PacketID})
	c.ExpectNothing(100 * time.Millisecond)
	if k.Stats.Expired.Load() != 1 {
		t.Fatalf("expired %d", k.Stats.Expired.Load())
	}
}

// TestV5PropertiesWithPaho: a paho.golang publisher's properties reach a
// paho.golang subscriber intact, user properties in order.
func TestV5PropertiesWithPaho(t *testing.T) {
	_, _, addr := startBroker(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got := make(chan *paho5.Publish, 1)
	client := func(id string) *paho5.Client {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c := paho5.NewClient(paho5.ClientConfig{Conn: conn, ClientID: id,
			OnPublishReceived: []func(paho5.PublishReceived) (bool, error){func(pr paho5.PublishReceived) (bool, error) {
				got <- pr.Packet
				return true, nil
			}}})
		if _, err := c.Connect(ctx, &paho5.Connect{ClientID: id, CleanStart: true, KeepAlive: 30}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Disconnect(&paho5.Disconnect{}) })
		return c
	}
	sub := client("psub")
	if _, err := sub.Subscribe(ctx, &paho5.Subscribe{Subscriptions: []paho5.SubscribeOptions{{Topic: "req/#", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	pub := client("ppub")
	pf := byte(1)
	_, err := pub.Publish(ctx, &paho5.Publish{Topic: "req/1", QoS: 1, Payload: []byte(`{"q":1}`), Properties: &paho5.PublishProperties{
		PayloadFormat: &pf, ContentType: "application/json", ResponseTopic: "resp/1", CorrelationData: []byte("c-1"),
		User: paho5.UserProperties{{Key: "k", Value: "2"}, {Key: "k", Value: "1"}, {Key: "a", Value: "3"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-got:
		pr := p.Properties
		if *pr.PayloadFormat != 1 || pr.ContentType != "application/json" || pr.ResponseTopic != "resp/1" || string(pr.CorrelationData) != "c-1" ||
			fmt.Sprint(pr.User) != "[{k 2} {k 1} {a 3}]" {
			t.Fatalf("properties: %+v", pr)
		}
	case <-ctx.Done():
		t.Fatal("no message")
	}
}

func TestV5SubscriptionOptions(t *testing.T) {
	_, k, addr := startBroker(t, nil)
	c, _ := connect5(t, addr, "opts", true, nil)
	// No local: its own messages do not come back on that subscription.
	subscribe5(t, c, 1, codec.Subscription{Topic: "nl", QoS: 0, NoLocal: true})
	c.Send(&codec.Packet{Type: codec.PUBLISH, Topic: "nl", Payload: []byte("self")})
	c.ExpectNothing(100 * time.Millisecond)
	// Retain as published keeps the flag on live deliveries.
	subscribe5(t, c, 2, codec.Subscription{Topic: "rap", RetainAsPublished: true}, codec.Subscription{Topic: "plain"})
	k.Inject(&broker.Message{Topic: "rap", Payload: []byte("r"), Retain: true}, nil)
	k.Inject(&broker.Message{Topic: "plain", Payload: []byte("r"), Retain: true}, nil)
	if p := c.Expect(codec.PUBLISH); !p.Retain || p.Topic != "rap" {
		t.Fatalf("retain as published: %v", p)
	}
	if p := c.Expect(codec.PUBLISH); p.Retain || p.Topic != "plain" {
		t.Fatalf("plain: %v", p)
	}
	// Retain handling: 1 sends retained messages only for a new
	// subscription, 2 never.
	subscribe5(t, c, 3, codec.Subscription{Topic: "rap", RetainHandling: 1})
	c.ExpectNothing(100 * time.Millisecond) // not new
	subscribe5(t, c, 4, codec.Subscription{Topic: "plain", RetainHandling: 2})
	c.ExpectNothing(100 * time.Millisecond)
	d, _ := connect5(t, addr, "fresh", true, nil)
	subscribe5(t, d, 1, codec.Subscription{Topic: "rap", RetainHandling: 1})
	if p := d.Expect(codec.PUBLISH); !p.Retain {
		t.Fatalf("new subscription with retain handling 1: %v", p)
	}
	// Subscription identifiers: one copy at the highest QoS carrying
	// every matching subscription's identifier.
	s := &codec.Packet{Type: codec.SUBSCRIBE, PacketID: 5, Subscriptions: []codec.Subscription{{Topic: "ids/+", QoS: 1}}}
	s.Properties.SetUint(codec.PropSubscriptionID, 7)
	d.Send(s)
	d.Expect(codec.SUBACK)
	s = &codec.Packet{Type: codec.SUBSCRIBE, PacketID: 6, Subscriptions: []codec.Subscription{{Topic: "ids/#", QoS: 0}}}
	s.Properties.SetUint(codec.PropSubscriptionID, 9)
	d.Send(s)
	d.Expect(codec.SUBACK)
	k.Inject(&broker.Message{Topic: "ids/x", Payload: []byte("i"), QoS: 1}, nil)
	p := d.Expect(codec.PUBLISH)
	ids := append([]uint32(nil), p.Properties.SubscriptionIDs...)
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	if p.QoS != 1 || fmt.Sprint(ids) != "[7 9]" {
		t.Fatalf("got qos %d ids %v", p.QoS, ids)
	}
	d.Send(&codec.Packet{Type: codec.PUBACK, PacketID: p.PacketID})
	d.ExpectNothing(100 * time.Millisecond)
}

func TestV5SharedSubscriptions(t *testing.T) {
	_, k, addr := startBroker(t, nil)
	var members []*enginetest.Client
	for i := 0; i < 3; i++ {
		c, _ := connect5(t, addr, fmt.Sprintf("worker%d", i), true, nil)
		if a := subscribe5(t, c, 1, codec.Subscription{Topic: "$share/pool/jobs/#", QoS: 1}); a.ReasonCodes[0] != 1 {
			t.Fatalf("SUBACK %v", a.ReasonCodes)
		}
		members = append(members, c)
	}
	const n = 30
	for i := 0; i < n; i++ {
		k.Inject(&broker.Message{Topic: "jobs/x", Payload: []byte(fmt.Sprint(i)), QoS: 1}, nil)
	}
	// Round-robin: each message to exactly one member, ten each.
	seen := map[string]bool{}
	for _, c := range members {
		for j := 0; j < n/3; j++ {
			p := c.Expect(codec.PUBLISH)
			if seen[string(p.Payload)] {
				t.Fatalf("message %s delivered twice", p.Payload)
			}
			seen[string(p.Payload)] = true
			c.Send(&codec.Packet{Type: codec.PUBACK, PacketID: p.PacketID})
		}
		c.ExpectNothing(50 * time.Millisecond)
	}
	// A member that goes away with messages unacknowledged: they go to the
	// others.
	for i := 0; i < 3; i++ {
		k.Inject(&broker.Message{Topic: "jobs/y", Payload: []byte(fmt.Sprint("again", i)), QoS: 1}, nil)
	}
	got := members[0].Expect(codec.PUBLISH)
	members[0].Conn.Close()
	enginetest.WaitFor(t, "redistribution", func() bool { return k.Stats.Redistributed.Load() == 1 })
	var rest []string
	for _, c := range members[1:] {
		for {
			p, err := c.Next(200 * time.Millisecond)
			if err != nil {
				break
			}
			rest = append(rest, string(p.Payload))
			c.Send(&codec.Packet{Type: codec.PUBACK, PacketID: p.PacketID})
		}
	}
	sort.Strings(rest)
	// The lost member's message went to another member: every message
	// delivered to a connected member exactly once.
	if fmt.Sprint(rest) != "[again0 again1 again2]" {
		t.Fatalf("after the member left (it had %s): %v", got.Payload, rest)
	}
}

func TestV5WillDelay(t *testing.T) {
	_, k, addr := startBroker(t, nil)
	watcher, _ := connect5(t, addr, "watcher", true, nil)
	subscribe5(t, watcher, 1, codec.Subscription{Topic: "w/#"})
	willer := func(id string, delay uint32) *enginetest.Client {
		c, _ := connect5(t, addr, id, false, func(p *codec.Packet) {
			p.Properties.SetUint(codec.PropSessionExpiry, 60)
			p.Will = &codec.Will{Topic: "w/" + id, Payload: []byte(id)}
			p.Will.Properties.SetUint(codec.PropWillDelay, delay)
			p.Will.Properties.User = []codec.UserProperty{{Key: "why", Value: "test"}}
		})
		return c
	}
	// Lost, back within the delay: no will.
	back := willer("back", 1)
	back.Conn.Close()
	enginetest.WaitFor(t, "offline", func() bool { ci, _ := k.Info("back"); return !ci.Connected })
	connect5(t, addr, "back", false, withExpiry(60))
	// Lost for good: the will after its delay, with its properties.
	gone := willer("gone", 1)
	start := time.Now()
	gone.Conn.Close()
	p := watcher.Expect(codec.PUBLISH)
	if p.Topic != "w/gone" || time.Since(start) < 900*time.Millisecond || fmt.Sprint(p.Properties.User) != "[{why test}]" || p.Properties.Has(codec.PropWillDelay) {
		t.Fatalf("will %v after %v, %+v", p, time.Since(start), p.Properties)
	}
	watcher.ExpectNothing(1200 * time.Millisecond) // and nothing from "back"
	// DISCONNECT 0x04 asks for the will at once.
	asks := willer("asks", 0)
	asks.Send(&codec.Packet{Type: codec.DISCONNECT, ReasonCode: codec.DisconnectWithWillMessage})
	if p := watcher.Expect(codec.PUBLISH); p.Topic != "w/asks" {
		t.Fatalf("got %v", p)
	}
}

func TestV5EnhancedAuthChallengeResponse(t *testing.T) {
	_, addr, _ := enginetest.Start(t, engine.Config{Scripts: filepath.Join("testdata", "enhancedauth")})
	try := func(answer func(challenge string) string) *codec.Packet {
		c := enginetest.Dial(t, addr, codec.V5)
		p := &codec.Packet{Type: codec.CONNECT, ProtocolLevel: codec.V5, ClientID: "ea", CleanSession: true}
		p.Properties.SetString(codec.PropAuthMethod, "reverse")
		c.Send(p)
		a := c.Expect(codec.AUTH)
		if a.ReasonCode != codec.ContinueAuthentication || a.Properties.AuthMethod != "reverse" {
			t.Fatalf("AUTH %+v", a)
		}
		resp := &codec.Packet{Type: codec.AUTH, ReasonCode: codec.ContinueAuthentication}
		resp.Properties.SetString(codec.PropAuthMethod, "reverse")
		resp.Properties.SetBytes(codec.PropAuthData, []byte(answer(string(a.Properties.AuthData))))
		c.Send(resp)
		return c.Expect(codec.CONNACK)
	}
	reverse := func(s string) string {
		b := []byte(s)
		for i, j := 0, len(b)-1; i < j; i, j = i+1, j-1 {
			b[i], b[j] = b[j], b[i]
		}
		return string(b)
	}
	if a := try(reverse); a.ReasonCode != 0 || a.Properties.AuthMethod != "reverse" {
		t.Fatalf("right answer: %+v", a)
	}
	if a := try(func(string) string { return "guess" }); a.ReasonCode != codec.NotAuthorized || a.Properties.ReasonString != "wrong answer" {
		t.Fatalf("wrong answer: %+v", a)
	}
}

// TestMixedVersions: 3.1.1 and 5.0 clients on the same topics.
func TestMixedVersions(t *testing.T) {
	_, _, addr := startBroker(t, nil)
	v3 := enginetest.Dial(t, addr, codec.V311)
	v3.Connect("three")
	v3.Send(&codec.Packet{Type: codec.SUBSCRIBE, PacketID: 1, Subscriptions: []codec.Subscription{{Topic: "mix/#", QoS: 1}}})
	v3.Expect(codec.SUBACK)
	v5, _ := connect5(t, addr, "five", true, nil)
	subscribe5(t, v5, 1, codec.Subscription{Topic: "mix/#", QoS: 1})
	p := &codec.Packet{Type: codec.PUBLISH, QoS: 1, PacketID: 1, Topic: "mix/a", Payload: []byte("from5")}
	p.Properties.SetString(codec.PropContentType, "text/plain")
	v5.Send(p)
	got3 := v3.Expect(codec.PUBLISH) // 5.0 properties are dropped for 3.1.1
	if string(got3.Payload) != "from5" {
		t.Fatalf("3.1.1 got %v", got3)
	}
	v3.Send(&codec.Packet{Type: codec.PUBACK, PacketID: got3.PacketID})
	types := map[codec.Type]*codec.Packet{}
	for i := 0; i < 2; i++ { // its PUBACK and its own copy, in either order
		p := v5.Expect(codec.Type(0))
		types[p.Type] = p
	}
	if types[codec.PUBACK] == nil || types[codec.PUBLISH] == nil || types[codec.PUBLISH].Properties.ContentType != "text/plain" {
		t.Fatalf("5.0 client got %v", types)
	}
	v5.Send(&codec.Packet{Type: codec.PUBACK, PacketID: types[codec.PUBLISH].PacketID})
	v3.Send(&codec.Packet{Type: codec.PUBLISH, QoS: 1, PacketID: 2, Topic: "mix/b", Payload: []byte("from3")})
	if p := v5.Expect(codec.PUBLISH); string(p.Payload) != "from3" || !p.Properties.Empty() {
		t.Fatalf("5.0 got %v", p)
	}
}

func TestV5ResponseInformation(t *testing.T) {
	_, _, addr := startBroker(t, func(name, src string) string {
		if name == "main.lua" {
			return strings.Replace(src, `queue_drop = "oldest" })`, `queue_drop = "oldest", response_information = "responses/" })`, 1)
		}
		return src
	})
	_, ack := connect5(t, addr, "asker", true, func(p *codec.Packet) { p.Properties.SetUint(codec.PropRequestResponseInfo, 1) })
	if ack.Properties.ResponseInfo != "responses/asker/" {
		t.Fatalf("response information %q", ack.Properties.ResponseInfo)
	}
	_, ack = connect5(t, addr, "quiet", true, nil)
	if ack.Properties.Has(codec.PropResponseInfo) {
		t.Fatal("response information sent unasked")
	}
}

// TestTopicLevelLimit: a topic deeper than MaxTopicLevels is refused
// everywhere it could enter the trees: a filter in SUBACK (0x8F, 3.1.1:
// 0x80), a PUBLISH with DISCONNECT 0x90, a will with CONNACK 0x90.
func TestTopicLevelLimit(t *testing.T) {
	dir := filepath.Join(enginetest.RepoDir(), "scripts")
	_, addr, _ := enginetest.Start(t, engine.Config{Scripts: dir, MaxTopicLevels: 5})
	c, _ := connect5(t, addr, "deep", true, nil)
	ack := subscribe5(t, c, 1, codec.Subscription{Topic: "a/b/c/d/e"}, codec.Subscription{Topic: "a/b/c/d/e/f"}, codec.Subscription{Topic: "a/b/c/d/#"})
	if want := []codec.ReasonCode{0, codec.TopicFilterInvalid, 0}; !reflect.DeepEqual(ack.ReasonCodes, want) {
		t.Fatalf("SUBACK codes %v, want %v", ack.ReasonCodes, want)
	}
	c.Send(&codec.Packet{Type: codec.PUBLISH, Topic: "a/b/c/d/e", Payload: []byte("5 levels")})
	if p := c.Expect(codec.PUBLISH); p.Topic != "a/b/c/d/e" {
		t.Fatalf("got %s", p.Topic)
	}
	c.Send(&codec.Packet{Type: codec.PUBLISH, Topic: "a/b/c/d/e/f", Payload: []byte("6 levels")})
	if d := c.Expect(codec.DISCONNECT); d.ReasonCode != codec.TopicNameInvalid {
		t.Fatalf("DISCONNECT %#x, want 0x90", byte(d.ReasonCode))
	}
	c.ExpectClosed()

	old := enginetest.Dial(t, addr, codec.V311)
	old.Connect("deep3")
	old.Send(&codec.Packet{Type: codec.SUBSCRIBE, PacketID: 1, Subscriptions: []codec.Subscription{{Topic: "1/2/3/4/5/6/7"}}})
	if a := old.Expect(codec.SUBACK); len(a.ReasonCodes) != 1 || a.ReasonCodes[0] != codec.V3SubackFailure {
		t.Fatalf("3.1.1 SUBACK %v, want [0x80]", a.ReasonCodes)
	}

	w := enginetest.Dial(t, addr, codec.V5)
	w.Send(&codec.Packet{Type: codec.CONNECT, ProtocolLevel: codec.V5, ClientID: "will", CleanSession: true,
		Will: &codec.Will{Topic: "w/1/2/3/4/5", Payload: []byte("x")}})
	if a := w.Expect(codec.CONNACK); a.ReasonCode != codec.TopicNameInvalid {
		t.Fatalf("CONNACK %#x, want 0x90", byte(a.ReasonCode))
	}
	w.ExpectClosed()
}
