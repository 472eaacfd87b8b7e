package broker_test

import (
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"github.com/mqttlua/broker/codec"
	"github.com/mqttlua/broker/engine"
	"github.com/mqttlua/broker/engine/broker"
	"github.com/mqttlua/broker/engine/enginetest"
	"github.com/mqttlua/broker/engine/transport"
)

// TestOverloadSlowsPublishersLosesNothing: a publisher bursting far more
// than a slow subscriber reads is held back (the broker stops reading its
// socket) instead of the subscriber being cut off or messages dropped.
// The connection limit is 64 KB of queued output and the burst is many
// MB, more than the loopback socket buffers hold, so without backpressure
// the subscriber would be cut off as a slow consumer.
func TestOverloadSlowsPublishersLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("moves several MB")
	}
	// Both transports: the event loops pause reading the publisher's
	// socket, a reader goroutine waits before its next read.
	for _, goroutines := range []bool{false, true} {
		t.Run(fmt.Sprintf("goroutine_per_conn=%v", goroutines), func(t *testing.T) {
			testOverload(t, goroutines)
		})
	}
}

func testOverload(t *testing.T, goroutines bool) {
	srv, addr, _ := enginetest.Start(t, engine.Config{Scripts: copyScripts(t, nil), MaxOutbound: 64 << 10, GoroutinePerConn: goroutines})
	k := srv.Broker()
	for _, tc := range []struct {
		qos byte
		n   int
	}{{0, 100000}, {1, 30000}, {2, 20000}} {
		t.Run(fmt.Sprintf("qos%d", tc.qos), func(t *testing.T) {
			sub := enginetest.Dial(t, addr, codec.V311)
			sub.Connect(fmt.Sprintf("slow-sub-%d", tc.qos))
			sub.Send(&codec.Packet{Type: codec.SUBSCRIBE, PacketID: 1, Subscriptions: []codec.Subscription{{Topic: "load/#", QoS: tc.qos}}})
			sub.Expect(codec.SUBACK)
			pub := enginetest.Dial(t, addr, codec.V311)
			pub.Connect(fmt.Sprintf("fast-pub-%d", tc.qos))

			// The whole burst, written at once: each payload is its
			// sequence number, padded.
			var burst []byte
			payload := make([]byte, 48)
			for i := 0; i < tc.n; i++ {
				binary.BigEndian.PutUint64(payload, uint64(i))
				p := &codec.Packet{Type: codec.PUBLISH, Topic: "load/x", QoS: tc.qos, Payload: payload}
				if tc.qos > 0 {
					p.PacketID = uint16(i%65535) + 1
				}
				var err error
				if burst, err = p.Append(burst, codec.V311); err != nil {
					t.Fatal(err)
				}
			}
			// Written in 64 KB pieces, so that the PUBRELs of QoS 2 (each
			// Write's bytes stay together) go out in between.
			written := make(chan error, 1)
			go func() {
				for len(burst) > 0 {
					n := min(len(burst), 64<<10)
					if _, err := pub.Conn.Write(burst[:n]); err != nil {
						written <- err
						return
					}
					burst = burst[n:]
				}
				written <- nil
			}()
			acks := make(chan int, 1)
			go func() { // the publisher's side of the QoS 1 and 2 flows
				n := 0
				for n < tc.n && tc.qos > 0 {
					p, err := pub.Next(30 * time.Second)
					if err != nil {
						break
					}
					switch p.Type {
					case codec.PUBACK, codec.PUBCOMP:
						n++
					case codec.PUBREC:
						b, _ := codec.Encode(&codec.Packet{Type: codec.PUBREL, PacketID: p.PacketID}, codec.V311)
						pub.Conn.Write(b)
					}
				}
				acks <- n
			}()

			// The subscriber reads slowly: a pause every 5000 messages.
			for want := 0; want < tc.n; {
				p, err := sub.Next(30 * time.Second)
				if err != nil {
					t.Fatalf("after %d of %d messages: %v (slow consumer closes: %d)", want, tc.n, err, srv.Stats.Closes[transport.CloseSlowConsumer].Load())
				}
				if p.Type == codec.PUBREL {
					sub.Send(&codec.Packet{Type: codec.PUBCOMP, PacketID: p.PacketID})
					continue
				}
				if p.Type != codec.PUBLISH {
					t.Fatalf("want PUBLISH, got %v", p)
				}
				if got := int(binary.BigEndian.Uint64(p.Payload)); got != want {
					t.Fatalf("message %d arrived as number %d (lost or duplicated)", want, got)
				}
				switch p.QoS {
				case 1:
					sub.Send(&codec.Packet{Type: codec.PUBACK, PacketID: p.PacketID})
				case 2:
					sub.Send(&codec.Packet{Type: codec.PUBREC, PacketID: p.PacketID})
				}
				if want++; want%5000 == 0 {
					time.Sleep(20 * time.Millisecond)
				}
			}
			if err := <-written; err != nil {
				t.Fatal(err)
			}
			if tc.qos > 0 {
				if n := <-acks; n != tc.n {
					t.Fatalf("publisher got %d PUBACK/PUBCOMPs, want %d", n, tc.n)
				}
			}
			// Nothing more, apart from the last PUBRELs of QoS 2.
			for {
				p, err := sub.Next(100 * time.Millisecond)
				if err != nil {
					break
				}
				if p.Type != codec.PUBREL {
					t.Fatalf("want nothing more, got %v", p)
				}
				sub.Send(&codec.Packet{Type: codec.PUBCOMP, PacketID: p.PacketID})
			}
			if d, c := k.Stats.Dropped.Load(), srv.Stats.Closes[transport.CloseSlowConsumer].Load(); d != 0 || c != 0 {
				t.Fatalf("dropped %d messages, cut off %d slow consumers", d, c)
			}
		})
	}
}

// TestFullSocketWaitsLosesNothing: a client that stops reading while
// more is sent to it than the loopback socket buffers hold. The broker's
// writes then find the socket full and wait for it to drain (on the event
// loops: for epoll's output edge), and once the client reads again
// everything arrives, in order and once. Both ways output reaches a
// client are covered: from another connection's publish (written by the
// client's writer goroutine) and from its own (written by its reader or
// event loop first, the rest handed to a writer goroutine).
func TestFullSocketWaitsLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 16 MB")
	}
	for _, goroutines := range []bool{false, true} {
		for _, self := range []bool{false, true} {
			t.Run(fmt.Sprintf("goroutine_per_conn=%v/own_publish=%v", goroutines, self), func(t *testing.T) {
				testFullSocket(t, goroutines, self)
			})
		}
	}
}

func testFullSocket(t *testing.T, goroutines, self bool) {
	const n, size = 256, 64 << 10 // 16 MB
	// Room for all of it: what is tested is waiting for the socket, not
	// backpressure or the slow-consumer limit.
	srv, addr, _ := enginetest.Start(t, engine.Config{Scripts: copyScripts(t, nil), MaxOutbound: 64 << 20, GoroutinePerConn: goroutines})
	k := srv.Broker()
	sub := enginetest.Dial(t, addr, codec.V311)
	sub.Connect("full-sub")
	sub.Send(&codec.Packet{Type: codec.SUBSCRIBE, PacketID: 1, Subscriptions: []codec.Subscription{{Topic: "big/#"}}})
	sub.Expect(codec.SUBACK)
	pub := sub
	if !self {
		pub = enginetest.Dial(t, addr, codec.V311)
		pub.Connect("full-pub")
	}
	var burst []byte
	payload := make([]byte, size)
	for i := 0; i < n; i++ {
		binary.BigEndian.PutUint64(payload, uint64(i))
		var err error
		if burst, err = (&codec.Packet{Type: codec.PUBLISH, Topic: "big/x", Payload: payload}).Append(burst, codec.V311); err != nil {
			t.Fatal(err)
		}
	}
	written := make(chan error, 1)
	go func() {
		_, err := pub.Conn.Write(burst)
		written <- err
	}()
	// Not reading until the broker has had time to fill the socket.
	time.Sleep(300 * time.Millisecond)
	for want := 0; want < n; want++ {
		p, err := sub.Next(30 * time.Second)
		if err != nil {
			t.Fatalf("after %d of %d messages: %v (closes: network %d, slow consumer %d)", want, n, err,
				srv.Stats.Closes[transport.CloseNetworkError].Load(), srv.Stats.Closes[transport.CloseSlowConsumer].Load())
		}
		if p.Type != codec.PUBLISH || len(p.Payload) != size {
			t.Fatalf("want a %d-byte PUBLISH, got %v", size, p)
		}
		if got := int(binary.BigEndian.Uint64(p.Payload)); got != want {
			t.Fatalf("message %d arrived as number %d (lost or duplicated)", want, got)
		}
	}
	if err := <-written; err != nil {
		t.Fatal(err)
	}
	if d := k.Stats.Dropped.Load(); d != 0 {
		t.Fatalf("dropped %d messages", d)
	}
}

// TestStuckQoS1SubscriberIsCutOff: a QoS 1 subscriber that stopped
// acknowledging (and reading) is cut off as a slow consumer once a
// publisher's wait for its queue ends with no acknowledgement, and its
// persistent session keeps the backlog offline. It used to hold every
// publisher at one read per 2 s for as long as it stayed connected.
func TestStuckQoS1SubscriberIsCutOff(t *testing.T) {
	srv, k, addr := startBroker(t, nil)
	sub := enginetest.Dial(t, addr, codec.V311)
	sub.ConnectWith(&codec.Packet{Type: codec.CONNECT, ProtocolLevel: codec.V311, ClientID: "stuck", CleanSession: false})
	sub.Send(&codec.Packet{Type: codec.SUBSCRIBE, PacketID: 1, Subscriptions: []codec.Subscription{{Topic: "q", QoS: 1}}})
	sub.Expect(codec.SUBACK) // and then never reads nor acknowledges
	pub := enginetest.Dial(t, addr, codec.V311)
	pub.Connect("pub")
	flooded := make(chan error, 1)
	go func() {
		for i := 1; i <= 2000; i++ {
			b, _ := codec.Encode(&codec.Packet{Type: codec.PUBLISH, Topic: "q", Payload: []byte("m"), QoS: 1, PacketID: uint16(i)}, codec.V311)
			if _, err := pub.Conn.Write(b); err != nil {
				flooded <- err
				return
			}
		}
		flooded <- nil
	}()
	enginetest.WaitFor(t, "the stuck subscriber cut off", func() bool {
		return srv.Stats.Closes[transport.CloseSlowConsumer].Load() == 1
	})
	if err := <-flooded; err != nil {
		t.Fatal(err)
	}
	enginetest.WaitFor(t, "the session offline", func() bool { ci, _ := k.Info("stuck"); return !ci.Connected })
	if ci, _ := k.Info("stuck"); ci.Queued+ci.Inflight == 0 || ci.Queued > k.Settings().MaxQueued {
		t.Errorf("offline backlog: %d queued, %d in flight", ci.Queued, ci.Inflight)
	}
	pub.Send(&codec.Packet{Type: codec.PINGREQ})
	for {
		if p := pub.Expect(0); p.Type == codec.PINGRESP {
			break
		}
	}
}

// TestRetainedStreamedToWildcard: a # subscription over more retained
// messages than the connection's queue holds gets all of them, in topic
// order, as it reads; all at once, they passed the queue's limit and cut
// the subscriber off as a slow consumer.
func TestRetainedStreamedToWildcard(t *testing.T) {
	const n = 20000 // 20,000 x ~270 bytes: five times the queue's limit
	srv, addr, _ := enginetest.Start(t, engine.Config{Scripts: copyScripts(t, nil), MaxOutbound: 1 << 20})
	k := srv.Broker()
	payload := make([]byte, 256)
	for i := 0; i < n; i++ {
		k.Inject(&broker.Message{Topic: fmt.Sprintf("r/%05d", i), Payload: payload, Retain: true}, nil)
	}
	sub := enginetest.Dial(t, addr, codec.V311)
	sub.Connect("all")
	sub.Send(&codec.Packet{Type: codec.SUBSCRIBE, PacketID: 1, Subscriptions: []codec.Subscription{{Topic: "#"}}})
	sub.Expect(codec.SUBACK)
	for i := 0; i < n; i++ {
		p := sub.Expect(codec.PUBLISH)
		if want := fmt.Sprintf("r/%05d", i); p.Topic != want || !p.Retain {
			t.Fatalf("message %d: got %s (retain %v), want %s", i, p.Topic, p.Retain, want)
		}
	}
	sub.ExpectNothing(50 * time.Millisecond)
	if c := srv.Stats.Closes[transport.CloseSlowConsumer].Load(); c != 0 {
		t.Fatalf("%d slow consumers cut off", c)
	}
}
