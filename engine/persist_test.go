package engine_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mqttlua/broker/codec"
	"github.com/mqttlua/broker/engine"
	"github.com/mqttlua/broker/engine/enginetest"
	"github.com/mqttlua/broker/engine/store"
)

// TestRetainedSurvivesRestart: retained messages set, cleared and expiring
// before a restart are, after it, as they were (the expired one gone); a
// second broker on the same data folder is refused.
func TestRetainedSurvivesRestart(t *testing.T) {
	for _, eng := range []string{"pebble", "bbolt"} {
		t.Run(eng, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			scripts := enginetest.CopyScripts(t, nil)
			cfg := engine.Config{Scripts: scripts, DataDir: dir, StoreEngine: eng}
			srv, addr, logs := startServer(t, cfg)
			pub := dialRaw(t, addr, codec.V5)
			pub.Connect("pub")
			send := func(id uint16, topic, payload string, expiry uint32) {
				p := &codec.Packet{Type: codec.PUBLISH, Topic: topic, Payload: []byte(payload), QoS: 1, PacketID: id, Retain: true}
				if expiry > 0 {
					p.Properties.Set(codec.PropMessageExpiry)
					p.Properties.MessageExpiry = expiry
				}
				pub.Send(p)
				if ack := pub.Expect(codec.PUBACK); ack.PacketID != id {
					t.Fatalf("PUBACK %d for %d", ack.PacketID, id)
				}
			}
			send(1, "keep/a", "1", 0)
			send(2, "keep/b", "2", 0)
			send(3, "keep/b", "", 0) // cleared
			send(4, "keep/c", "3", 1)
			if !strings.Contains(logs.String(), "persistence on") {
				t.Fatalf("not logged:\n%s", logs)
			}
			if _, err := engine.New(cfg); err == nil || !strings.Contains(err.Error(), "is in use by process") {
				t.Fatalf("a second broker on the folder: %v", err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			srv.Shutdown(ctx)
			cancel()
			time.Sleep(1100 * time.Millisecond) // keep/c expires while the broker is down

			_, addr, logs = startServer(t, cfg)
			if !strings.Contains(logs.String(), "retained=1") {
				t.Errorf("loaded:\n%s", logs)
			}
			sub := dialRaw(t, addr, codec.V311)
			sub.Connect("sub")
			sub.Send(&codec.Packet{Type: codec.SUBSCRIBE, PacketID: 1, Subscriptions: []codec.Subscription{{Topic: "keep/#", QoS: 1}}})
			sub.Expect(codec.SUBACK)
			p := sub.Expect(codec.PUBLISH)
			if p.Topic != "keep/a" || string(p.Payload) != "1" || !p.Retain {
				t.Fatalf("after the restart: %v", p)
			}
			sub.ExpectNothing(200 * time.Millisecond)
		})
	}
}

// TestDurableAcksInOrder: acknowledgements that wait for the store and
// those that need not keep the order of the PUBLISHes ([MQTT-4.6.0-2]).
func TestDurableAcksInOrder(t *testing.T) {
	_, addr, _ := startServer(t, engine.Config{Scripts: enginetest.CopyScripts(t, nil), DataDir: t.TempDir()})
	pub := dialRaw(t, addr, codec.V311)
	pub.Connect("pub")
	const n = 200
	for i := 1; i <= n; i++ {
		pub.Send(&codec.Packet{Type: codec.PUBLISH, Topic: "t/" + string(rune('a'+i%26)), Payload: []byte("x"), QoS: 1, PacketID: uint16(i), Retain: i%3 == 0})
	}
	for i := 1; i <= n; i++ {
		if ack := pub.Expect(codec.PUBACK); ack.PacketID != uint16(i) {
			t.Fatalf("PUBACK %d where %d was due", ack.PacketID, i)
		}
	}
}

// failingKV is a store whose writes fail while broken is set (a full
// disk).
type failingKV struct {
	store.KV
	mu     sync.Mutex
	broken bool
}

func (f *failingKV) Apply(b *store.Batch, sync bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.broken {
		return errors.New("write /data/000123.log: no space left on device")
	}
	return f.KV.Apply(b, sync)
}

// TestStoreFailureRefuses: while the store cannot be written, a retained
// QoS 1 message is not acknowledged: a 5.0 client gets PUBACK 0x80, a
// 3.1.1 client is disconnected; the failure is logged once; once the
// store can be written again, publishes are acknowledged again.
func TestStoreFailureRefuses(t *testing.T) {
	kv, err := store.Open(t.TempDir(), store.Pebble)
	if err != nil {
		t.Fatal(err)
	}
	f := &failingKV{KV: kv, broken: true}
	srv, addr, logs := startServer(t, engine.Config{Scripts: enginetest.CopyScripts(t, nil), Store: f})
	v5 := dialRaw(t, addr, codec.V5)
	v5.Connect("v5")
	v5.Send(&codec.Packet{Type: codec.PUBLISH, Topic: "r/x", Payload: []byte("x"), QoS: 1, PacketID: 7, Retain: true})
	if ack := v5.Expect(codec.PUBACK); ack.ReasonCode != codec.UnspecifiedError {
		t.Fatalf("5.0 PUBACK %#x, want 0x80", byte(ack.ReasonCode))
	}
	v3 := dialRaw(t, addr, codec.V311)
	v3.Connect("v3")
	v3.Send(&codec.Packet{Type: codec.PUBLISH, Topic: "r/y", Payload: []byte("y"), QoS: 1, PacketID: 8, Retain: true})
	v3.ExpectClosed()
	if n := srv.Broker().Stats.StoreFailures.Load(); n != 2 {
		t.Errorf("store failures counted %d, want 2", n)
	}
	if got := strings.Count(logs.String(), "the data folder cannot be written"); got != 1 {
		t.Errorf("failure logged %d times:\n%s", got, logs)
	}
	f.mu.Lock()
	f.broken = false
	f.mu.Unlock()
	v5.Send(&codec.Packet{Type: codec.PUBLISH, Topic: "r/x", Payload: []byte("x"), QoS: 1, PacketID: 9, Retain: true})
	if ack := v5.Expect(codec.PUBACK); ack.ReasonCode.IsError() {
		t.Fatalf("after recovery: PUBACK %#x", byte(ack.ReasonCode))
	}
}

// TestSessionsSurviveRestart: persistent sessions come back after a
// restart with their subscriptions, their queued messages, their messages
// in flight (sent again with DUP) and their inbound QoS 2 packet ids (a
// PUBLISH sent again after the restart is not delivered twice).
func TestSessionsSurviveRestart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	cfg := engine.Config{Scripts: enginetest.CopyScripts(t, nil), DataDir: dir}
	srv, addr, _ := startServer(t, cfg)

	off := dialRaw(t, addr, codec.V311) // offline while messages arrive
	off.ConnectWith(&codec.Packet{Type: codec.CONNECT, ClientID: "off", KeepAlive: 60})
	off.Send(&codec.Packet{Type: codec.SUBSCRIBE, PacketID: 1, Subscriptions: []codec.Subscription{{Topic: "s/#", QoS: 2}}})
	off.Expect(codec.SUBACK)
	off.Send(&codec.Packet{Type: codec.DISCONNECT})
	off.ExpectClosed()

	on := dialRaw(t, addr, codec.V5) // online, acknowledges nothing
	p := &codec.Packet{Type: codec.CONNECT, ClientID: "on", KeepAlive: 60}
	p.Properties.Set(codec.PropSessionExpiry)
	p.Properties.SessionExpiry = 3600
	on.ConnectWith(p)
	on.Send(&codec.Packet{Type: codec.SUBSCRIBE, PacketID: 1, Subscriptions: []codec.Subscription{{Topic: "s/#", QoS: 1}}})
	on.Expect(codec.SUBACK)

	pub := dialRaw(t, addr, codec.V311)
	pub.ConnectWith(&codec.Packet{Type: codec.CONNECT, ClientID: "pub", KeepAlive: 60})
	for i, m := range []string{"a", "b", "c"} {
		pub.Send(&codec.Packet{Type: codec.PUBLISH, Topic: "s/" + m, Payload: []byte(m), QoS: 1, PacketID: uint16(i + 1)})
		pub.Expect(codec.PUBACK)
	}
	for range 3 {
		on.Expect(codec.PUBLISH) // in flight, never acknowledged
	}
	pub.Send(&codec.Packet{Type: codec.PUBLISH, Topic: "s/q2", Payload: []byte("once"), QoS: 2, PacketID: 9})
	pub.Expect(codec.PUBREC) // no PUBREL before the restart
	on.Expect(codec.PUBLISH)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	srv.Shutdown(ctx)
	cancel()

	_, addr, logs := startServer(t, cfg)
	if !strings.Contains(logs.String(), "sessions=3") {
		t.Errorf("loaded:\n%s", logs)
	}
	// The publisher sends its QoS 2 PUBLISH again (it never got
	// PUBCOMP): acknowledged, not delivered a second time.
	pub = dialRaw(t, addr, codec.V311)
	if ack := pub.ConnectWith(&codec.Packet{Type: codec.CONNECT, ClientID: "pub", KeepAlive: 60}); !ack.SessionPresent {
		t.Fatal("pub: no session present")
	}
	pub.Send(&codec.Packet{Type: codec.PUBLISH, Topic: "s/q2", Payload: []byte("once"), QoS: 2, PacketID: 9, Dup: true})
	pub.Expect(codec.PUBREC)
	pub.Send(&codec.Packet{Type: codec.PUBREL, PacketID: 9})
	if c := pub.Expect(codec.PUBCOMP); c.ReasonCode != 0 {
		t.Fatalf("PUBCOMP %#x", byte(c.ReasonCode))
	}

	off = dialRaw(t, addr, codec.V311)
	if ack := off.ConnectWith(&codec.Packet{Type: codec.CONNECT, ClientID: "off", KeepAlive: 60}); !ack.SessionPresent {
		t.Fatal("off: no session present")
	}
	var got []string
	for range 4 {
		m := off.Expect(codec.PUBLISH)
		got = append(got, string(m.Payload))
		if m.QoS == 2 {
			off.Send(&codec.Packet{Type: codec.PUBREC, PacketID: m.PacketID})
			off.Expect(codec.PUBREL)
			off.Send(&codec.Packet{Type: codec.PUBCOMP, PacketID: m.PacketID})
		} else {
			off.Send(&codec.Packet{Type: codec.PUBACK, PacketID: m.PacketID})
		}
	}
	if strings.Join(got, ",") != "a,b,c,once" {
		t.Errorf("off got %v", got)
	}
	off.ExpectNothing(200 * time.Millisecond)

	on = dialRaw(t, addr, codec.V5)
	p = &codec.Packet{Type: codec.CONNECT, ClientID: "on", KeepAlive: 60}
	p.Properties.Set(codec.PropSessionExpiry)
	p.Properties.SessionExpiry = 3600
	if ack := on.ConnectWith(p); !ack.SessionPresent {
		t.Fatal("on: no session present")
	}
	got = nil
	for range 4 {
		m := on.Expect(codec.PUBLISH)
		if !m.Dup {
			t.Errorf("in flight before the restart, sent again without DUP: %v", m)
		}
		got = append(got, string(m.Payload))
		on.Send(&codec.Packet{Type: codec.PUBACK, PacketID: m.PacketID})
	}
	if strings.Join(got, ",") != "a,b,c,once" {
		t.Errorf("on got %v", got)
	}
	// The subscription survived too: a new message arrives.
	pub.Send(&codec.Packet{Type: codec.PUBLISH, Topic: "s/new", Payload: []byte("new"), QoS: 1, PacketID: 10})
	pub.Expect(codec.PUBACK)
	if m := on.Expect(codec.PUBLISH); string(m.Payload) != "new" {
		t.Fatalf("after the restart: %v", m)
	}
}

// TestBackupWhileRunning: a backup taken while publishers publish is a
// data folder a broker starts on, with what the first had at the time.
func TestBackupWhileRunning(t *testing.T) {
	for _, eng := range []string{"pebble", "bbolt"} {
		t.Run(eng, func(t *testing.T) {
			scripts := enginetest.CopyScripts(t, nil)
			srv, addr, _ := startServer(t, engine.Config{Scripts: scripts, DataDir: filepath.Join(t.TempDir(), "data"), StoreEngine: eng})
			sub := dialRaw(t, addr, codec.V311)
			sub.ConnectWith(&codec.Packet{Type: codec.CONNECT, ClientID: "sub", KeepAlive: 60})
			sub.Send(&codec.Packet{Type: codec.SUBSCRIBE, PacketID: 1, Subscriptions: []codec.Subscription{{Topic: "b/#", QoS: 1}}})
			sub.Expect(codec.SUBACK)
			sub.Send(&codec.Packet{Type: codec.DISCONNECT})
			sub.ExpectClosed()
			pub := dialRaw(t, addr, codec.V311)
			pub.Connect("pub")
			pub.Send(&codec.Packet{Type: codec.PUBLISH, Topic: "b/first", Payload: []byte("1"), QoS: 1, PacketID: 1, Retain: true})
			pub.Expect(codec.PUBACK)
			stop := make(chan struct{})
			done := make(chan struct{})
			go func() { // publishing goes on during the backup
				defer close(done)
				for i := 2; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					pub.Send(&codec.Packet{Type: codec.PUBLISH, Topic: "b/more", Payload: []byte("x"), QoS: 1, PacketID: uint16(i)})
					pub.Expect(codec.PUBACK)
				}
			}()
			time.Sleep(50 * time.Millisecond)
			backup := filepath.Join(t.TempDir(), "backup")
			if err := srv.Backup(backup); err != nil {
				t.Fatal(err)
			}
			close(stop)
			<-done
			if err := srv.Backup(backup); err == nil || !strings.Contains(err.Error(), "exists already") {
				t.Fatalf("a backup over an existing folder: %v", err)
			}
			_, addr2, _ := startServer(t, engine.Config{Scripts: scripts, DataDir: backup, StoreEngine: eng})
			sub = dialRaw(t, addr2, codec.V311)
			if ack := sub.ConnectWith(&codec.Packet{Type: codec.CONNECT, ClientID: "sub", KeepAlive: 60}); !ack.SessionPresent {
				t.Fatal("the backup has no session for sub")
			}
			if m := sub.Expect(codec.PUBLISH); string(m.Payload) != "1" {
				t.Fatalf("first queued message from the backup: %v", m)
			}
		})
	}
}

// TestExpiredSessionLeavesStore: a session that expired is deleted from
// the store with its deliveries: after a restart it is not there.
func TestExpiredSessionLeavesStore(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	cfg := engine.Config{Scripts: enginetest.CopyScripts(t, nil), DataDir: dir}
	srv, addr, _ := startServer(t, cfg)
	c := dialRaw(t, addr, codec.V5)
	p := &codec.Packet{Type: codec.CONNECT, ClientID: "brief", KeepAlive: 60}
	p.Properties.Set(codec.PropSessionExpiry)
	p.Properties.SessionExpiry = 1
	c.ConnectWith(p)
	c.Send(&codec.Packet{Type: codec.SUBSCRIBE, PacketID: 1, Subscriptions: []codec.Subscription{{Topic: "e/#", QoS: 1}}})
	c.Expect(codec.SUBACK)
	c.Send(&codec.Packet{Type: codec.DISCONNECT})
	c.ExpectClosed()
	pub := dialRaw(t, addr, codec.V311)
	pub.Connect("pub")
	pub.Send(&codec.Packet{Type: codec.PUBLISH, Topic: "e/x", Payload: []byte("x"), QoS: 1, PacketID: 1})
	pub.Expect(codec.PUBACK)
	waitFor(t, "the session to expire", func() bool { return srv.Broker().Stats.SessionsEnded.Load() == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	srv.Shutdown(ctx)
	cancel()
	_, _, logs := startServer(t, cfg)
	if !strings.Contains(logs.String(), "queued=0") || !strings.Contains(logs.String(), "sessions=0") {
		t.Fatalf("the expired session is still stored:\n%s", logs)
	}
}

// TestSessionExpiresAcrossRestart: a session's expiry counts from its
// disconnection, not from the restart: one that expired while the broker
// was down is gone after it.
func TestSessionExpiresAcrossRestart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	cfg := engine.Config{Scripts: enginetest.CopyScripts(t, nil), DataDir: dir}
	srv, addr, _ := startServer(t, cfg)
	for _, tc := range []struct {
		id     string
		expiry uint32
	}{{"short", 1}, {"long", 3600}} {
		c := dialRaw(t, addr, codec.V5)
		p := &codec.Packet{Type: codec.CONNECT, ClientID: tc.id, KeepAlive: 60}
		p.Properties.Set(codec.PropSessionExpiry)
		p.Properties.SessionExpiry = tc.expiry
		c.ConnectWith(p)
		c.Send(&codec.Packet{Type: codec.DISCONNECT})
		c.ExpectClosed()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	srv.Shutdown(ctx)
	cancel()
	time.Sleep(1500 * time.Millisecond) // "short" expires while the broker is down
	_, _, logs := startServer(t, cfg)
	if !strings.Contains(logs.String(), "sessions=1") {
		t.Fatalf("want only the long session loaded:\n%s", logs)
	}
}

// TestSharedSubscriptionAcrossRestart: messages queued for the offline
// members of a shared subscription survive a restart, and the members
// get them, each message once among them.
func TestSharedSubscriptionAcrossRestart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	cfg := engine.Config{Scripts: enginetest.CopyScripts(t, nil), DataDir: dir}
	srv, addr, _ := startServer(t, cfg)
	member := func(addr, id string) (*enginetest.Client, bool) {
		c := dialRaw(t, addr, codec.V5)
		p := &codec.Packet{Type: codec.CONNECT, ClientID: id, KeepAlive: 60}
		p.Properties.Set(codec.PropSessionExpiry)
		p.Properties.SessionExpiry = 3600
		return c, c.ConnectWith(p).SessionPresent
	}
	for _, id := range []string{"m1", "m2"} {
		c, _ := member(addr, id)
		c.Send(&codec.Packet{Type: codec.SUBSCRIBE, PacketID: 1, Subscriptions: []codec.Subscription{{Topic: "$share/g/sh/#", QoS: 1}}})
		c.Expect(codec.SUBACK)
		c.Send(&codec.Packet{Type: codec.DISCONNECT})
		c.ExpectClosed()
	}
	pub := dialRaw(t, addr, codec.V311)
	pub.Connect("pub")
	for i := 1; i <= 6; i++ {
		pub.Send(&codec.Packet{Type: codec.PUBLISH, Topic: "sh/x", Payload: []byte{byte('0' + i)}, QoS: 1, PacketID: uint16(i)})
		pub.Expect(codec.PUBACK)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	srv.Shutdown(ctx)
	cancel()

	_, addr, _ = startServer(t, cfg)
	got := map[string]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, id := range []string{"m1", "m2"} {
		c, present := member(addr, id)
		if !present {
			t.Fatalf("%s: no session present", id)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				p, err := c.Next(time.Second)
				if err != nil {
					return
				}
				if p.Type == codec.PUBLISH {
					mu.Lock()
					got[string(p.Payload)]++
					mu.Unlock()
					c.Send(&codec.Packet{Type: codec.PUBACK, PacketID: p.PacketID})
				}
			}
		}()
	}
	wg.Wait()
	for i := 1; i <= 6; i++ {
		if n := got[string(rune('0'+i))]; n != 1 {
			t.Errorf("message %d reached the group %d times (want once)", i, n)
		}
	}
}

// TestDurableAckWithChangedDelivery: when onMqDeliver changes the message
// a persistent subscriber gets, the publisher's PUBACK still waits for
// that delivery's write (here it fails: 5.0 PUBACK 0x80).
func TestDurableAckWithChangedDelivery(t *testing.T) {
	scripts := enginetest.CopyScripts(t, func(name, src string) string {
		if name == "main.lua" {
			src += "\nfunction onMqDeliver(server, fd, fromId, data)\n  data.message = data.message .. '!'\n  return data\nend\n"
		}
		return src
	})
	kv, err := store.Open(t.TempDir(), store.Pebble)
	if err != nil {
		t.Fatal(err)
	}
	f := &failingKV{KV: kv}
	_, addr, _ := startServer(t, engine.Config{Scripts: scripts, Store: f})
	sub := dialRaw(t, addr, codec.V311)
	sub.ConnectWith(&codec.Packet{Type: codec.CONNECT, ClientID: "sub", KeepAlive: 60})
	sub.Send(&codec.Packet{Type: codec.SUBSCRIBE, PacketID: 1, Subscriptions: []codec.Subscription{{Topic: "d/#", QoS: 1}}})
	sub.Expect(codec.SUBACK)
	sub.Send(&codec.Packet{Type: codec.DISCONNECT})
	sub.ExpectClosed()
	f.mu.Lock()
	f.broken = true
	f.mu.Unlock()
	pub := dialRaw(t, addr, codec.V5)
	pub.Connect("pub")
	pub.Send(&codec.Packet{Type: codec.PUBLISH, Topic: "d/x", Payload: []byte("x"), QoS: 1, PacketID: 3})
	if ack := pub.Expect(codec.PUBACK); ack.ReasonCode != codec.UnspecifiedError {
		t.Fatalf("PUBACK %#x: acknowledged without the changed delivery on disk", byte(ack.ReasonCode))
	}
}
