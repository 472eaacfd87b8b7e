package engine_test

import (
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mqttlua/broker/codec"
	"github.com/mqttlua/broker/engine"
	"golang.org/x/crypto/bcrypt"
)

// TestAwaitOthersGoOn: a CONNECT handler that waits (sleep, inside a
// pcall and a coroutine of the script's own) does not hold up the other
// clients of its worker (one worker here): they are all accepted while it
// waits; and the waiting connection's own next packet is handled only
// after its CONNECT handler has finished, so its order is kept.
func TestAwaitOthersGoOn(t *testing.T) {
	_, addr, logs := startServer(t, engine.Config{Scripts: filepath.Join("testdata", "await"), Workers: 1})
	slow := dialRaw(t, addr, codec.V311)
	slow.Send(&codec.Packet{Type: codec.CONNECT, ProtocolLevel: 4, ClientID: "slow-1", CleanSession: true, KeepAlive: 60,
		Username: "2", UsernameFlag: true})
	slow.Send(&codec.Packet{Type: codec.PUBLISH, Topic: "count"})
	// Ten others connect and are answered while the slow one waits.
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := dialRaw(t, addr, codec.V311)
			c.Connect(fmt.Sprintf("quick-%d", i))
		}()
	}
	wg.Wait()
	// Only now does the slow one get its CONNACK, then the answer to the
	// PUBLISH it sent right after CONNECT.
	p := slow.Expect(codec.CONNACK)
	if p.ReasonCode != 0 {
		t.Fatalf("slow CONNACK %#x; log:\n%s", byte(p.ReasonCode), logs)
	}
	if got := slow.Expect(codec.PUBLISH); string(got.Payload) != "12" {
		t.Fatalf("count after the slow CONNECT: %q (want 12: 11 CONNECTs and this PUBLISH); log:\n%s", got.Payload, logs)
	}
	if strings.Contains(logs.String(), "slow connect failed") {
		t.Fatalf("the wait inside pcall and a coroutine failed:\n%s", logs)
	}
}

// TestAwaitKeepsOrder: packets a client sends while its handler waits are
// handled after it, in order, and the answers come back in order.
func TestAwaitKeepsOrder(t *testing.T) {
	_, addr, _ := startServer(t, engine.Config{Scripts: filepath.Join("testdata", "await"), Workers: 1})
	c := dialRaw(t, addr, codec.V311)
	c.Connect("orderly")
	other := dialRaw(t, addr, codec.V311)
	other.Connect("other")
	c.Send(&codec.Packet{Type: codec.PUBLISH, Topic: "sleep", Payload: []byte("0.3")})
	c.Send(&codec.Packet{Type: codec.PUBLISH, Topic: "sleep", Payload: []byte("0")})
	c.Send(&codec.Packet{Type: codec.PUBLISH, Topic: "count"})
	// The other client is served while c waits.
	other.Send(&codec.Packet{Type: codec.PUBLISH, Topic: "count"})
	if p := other.Expect(codec.PUBLISH); p.Topic != "count" {
		t.Fatalf("other got %v", p)
	}
	if p := c.Expect(codec.PUBLISH); p.Topic != "slept" || string(p.Payload) != "0.3" {
		t.Fatalf("first answer %s %q", p.Topic, p.Payload)
	}
	if p := c.Expect(codec.PUBLISH); p.Topic != "slept" || string(p.Payload) != "0.0" {
		t.Fatalf("second answer %s %q", p.Topic, p.Payload)
	}
	if p := c.Expect(codec.PUBLISH); p.Topic != "count" {
		t.Fatalf("third answer %v", p)
	}
}

// TestAwaitDeadlines: a call that waits past the handler deadline (waits
// included) is ended as a handler past its deadline; the CPU bound
// counts the CPU used across waits; a wait in onMqDeliver (the routing
// path) is refused with an error naming it, and the message is delivered
// as it is.
func TestAwaitDeadlines(t *testing.T) {
	_, addr, logs := startServer(t, engine.Config{Scripts: filepath.Join("testdata", "await"), Workers: 1,
		HandlerTimeout: 200 * time.Millisecond, HandlerDeadline: 700 * time.Millisecond})
	forever := dialRaw(t, addr, codec.V311)
	forever.Connect("forever")
	forever.Send(&codec.Packet{Type: codec.PUBLISH, Topic: "forever"})
	forever.ExpectClosed()
	waitFor(t, "the deadline logged", func() bool {
		return strings.Contains(logs.String(), "handler waited past its deadline of 700ms")
	})
	spin := dialRaw(t, addr, codec.V311)
	spin.Connect("spin")
	spin.Send(&codec.Packet{Type: codec.PUBLISH, Topic: "spin"})
	spin.ExpectClosed()
	waitFor(t, "the CPU deadline logged", func() bool {
		return strings.Contains(logs.String(), "handler ran past its deadline of 200ms")
	})

	sub := dialRaw(t, addr, codec.V311)
	sub.Connect("sub")
	sub.Send(&codec.Packet{Type: codec.SUBSCRIBE, PacketID: 1, Subscriptions: []codec.Subscription{{Topic: "deliver/#"}}})
	sub.Expect(codec.SUBACK)
	pub := dialRaw(t, addr, codec.V311)
	pub.Connect("pub")
	pub.Send(&codec.Packet{Type: codec.PUBLISH, Topic: "deliver/sleep", Payload: []byte("x")})
	if p := sub.Expect(codec.PUBLISH); string(p.Payload) != "x" {
		t.Fatalf("delivered %q", p.Payload)
	}
	waitFor(t, "the refused wait logged", func() bool {
		return strings.Contains(logs.String(), "sleep cannot wait in onMqDeliver")
	})
}

// TestBcryptOffTheWorker: a costly bcrypt check (broker.check_password;
// broker.authenticate is the same) runs off the worker: the other clients
// of the worker are accepted while it runs (issue 14: a guesser must not
// slow everyone down).
func TestBcryptOffTheWorker(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("pw"), 12)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("SCRIPT_HASH", string(hash))
	_, addr, logs := startServer(t, engine.Config{Scripts: filepath.Join("testdata", "await"), Workers: 1, HandlerTimeout: 30 * time.Second})
	slow := dialRaw(t, addr, codec.V311)
	slow.Send(&codec.Packet{Type: codec.CONNECT, ProtocolLevel: 4, ClientID: "hash-1", CleanSession: true, KeepAlive: 60})
	time.Sleep(50 * time.Millisecond) // its check under way
	for i := range 5 {
		c := dialRaw(t, addr, codec.V311)
		c.Connect(fmt.Sprintf("quick-%d", i))
	}
	// The quick ones are all in while the check still runs (a cost-12
	// check takes a quarter of a second, far more under the race
	// detector): had it held the worker, they would have been answered
	// after it, and its CONNACK would be here.
	slow.ExpectNothing(20 * time.Millisecond)
	p, err := slow.Next(time.Minute)
	if err != nil || p.Type != codec.CONNACK || p.ReasonCode != 0 {
		t.Fatalf("want CONNACK 0, got %v %v:\n%s", p, err, logs)
	}
	slow.Send(&codec.Packet{Type: codec.PUBLISH, Topic: "count"})
	if p := slow.Expect(codec.PUBLISH); string(p.Payload) != "7" {
		t.Fatalf("count %q", p.Payload)
	}
}

// TestAwaitManyClients: many clients whose handlers wait now and then,
// sending without waiting for answers: every answer comes back, each
// client's in order (the event loops hand over and take back connections
// all the time here).
func TestAwaitManyClients(t *testing.T) {
	_, addr, logs := startServer(t, engine.Config{Scripts: filepath.Join("testdata", "await"), Workers: 2})
	const clients, msgs = 40, 30
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := dialRaw(t, addr, codec.V311)
			c.Connect(fmt.Sprintf("many-%d", i))
			for j := range msgs {
				c.Send(&codec.Packet{Type: codec.PUBLISH, Topic: "echo", Payload: []byte(fmt.Sprint(j))})
			}
			for j := range msgs {
				p, err := c.Next(10 * time.Second)
				if err != nil {
					t.Errorf("client %d: answer %d: %v", i, j, err)
					return
				}
				if string(p.Payload) != fmt.Sprint(j) {
					t.Errorf("client %d: answer %d is %q", i, j, p.Payload)
					return
				}
			}
		}()
	}
	wg.Wait()
	if strings.Contains(logs.String(), "level=error") {
		t.Errorf("errors logged:\n%s", logs)
	}
}

// TestAwaitClientClosed: a connection the broker closes while its CONNECT
// handler waits: the handler goes on, the bindings answer nil, "closed",
// nothing fails. A timer callback may wait too.
func TestAwaitClientClosed(t *testing.T) {
	_, addr, logs := startServer(t, engine.Config{Scripts: filepath.Join("testdata", "await"), Workers: 1})
	gone := dialRaw(t, addr, codec.V311)
	gone.Send(&codec.Packet{Type: codec.CONNECT, ProtocolLevel: 4, ClientID: "gone-1", CleanSession: true, KeepAlive: 60})
	c := dialRaw(t, addr, codec.V311)
	c.Connect("ticker")
	c.Send(&codec.Packet{Type: codec.PUBLISH, Topic: "kick", Payload: []byte("1")})
	gone.ExpectClosed()
	waitFor(t, "the handler to finish", func() bool {
		return strings.Contains(logs.String(), `msg="accept after the connection closed" client_id=gone-1 err=closed fd=1 ok=nil`)
	})
	c.Send(&codec.Packet{Type: codec.PUBLISH, Topic: "timer"})
	if p := c.Expect(codec.PUBLISH); p.Topic != "timer" || string(p.Payload) != "done" {
		t.Fatalf("timer answer %v", p)
	}
	if strings.Contains(logs.String(), "level=error") {
		t.Errorf("errors logged:\n%s", logs)
	}
}
