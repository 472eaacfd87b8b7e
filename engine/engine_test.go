package engine_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho5 "github.com/eclipse/paho.golang/paho"
	paho3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/mqttlua/broker/codec"
	"github.com/mqttlua/broker/engine"
	"github.com/mqttlua/broker/engine/script"
	"github.com/mqttlua/broker/engine/transport"
)

func simpsConfig() engine.Config {
	return engine.Config{Scripts: filepath.Join(repoDir(), "scripts", "examples", "simps"), LuaLib: filepath.Join(repoDir(), "lualib")}
}

// TestSimpsRawScriptWithPaho311 runs the Simps raw-mode script (CONNACK via
// mqtt.getAck, broadcast over server:connections(), acks by hand) with
// Paho's 3.1.1 client.
func TestSimpsRawScriptWithPaho311(t *testing.T) {
	_, addr, _ := startServer(t, simpsConfig())
	var got sync.Map
	var count atomic.Int64
	opts := func(id string) *paho3.ClientOptions {
		return paho3.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).SetAutoReconnect(false).
			SetConnectRetry(false).SetProtocolVersion(4)
	}
	sub := paho3.NewClient(opts("sub"))
	if tok := sub.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer sub.Disconnect(100)
	tok := sub.Subscribe("a/#", 1, func(_ paho3.Client, m paho3.Message) {
		got.Store(string(m.Payload()), m.Topic())
		count.Add(1)
	})
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	if st := tok.(*paho3.SubscribeToken); st.Result()["a/#"] != 1 {
		t.Fatalf("SUBACK granted %v", st.Result())
	}
	pub := paho3.NewClient(opts("pub"))
	if tok := pub.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer pub.Disconnect(100)
	for i := 0; i < 10; i++ {
		// QoS 1 and 2 tokens complete only when the script's PUBACK /
		// PUBREC and PUBCOMP arrive.
		tok := pub.Publish("a/b", byte(i%3), false, fmt.Sprintf("m%d", i))
		if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("publish %d: %v", i, tok.Error())
		}
	}
	waitFor(t, "10 messages", func() bool { return count.Load() == 10 })
	time.Sleep(50 * time.Millisecond)
	if n := count.Load(); n != 10 {
		t.Fatalf("want exactly 10 messages, got %d", n)
	}
	if tok := sub.Unsubscribe("a/#"); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("unsubscribe: %v", tok.Error())
	}
}

// TestSimpsRawScriptWithPaho5 does the same with Paho's MQTT 5 client.
func TestSimpsRawScriptWithPaho5(t *testing.T) {
	_, addr, _ := startServer(t, simpsConfig())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	received := make(chan string, 10)
	newClient := func(id string) *paho5.Client {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c := paho5.NewClient(paho5.ClientConfig{Conn: conn, ClientID: id,
			OnPublishReceived: []func(paho5.PublishReceived) (bool, error){func(pr paho5.PublishReceived) (bool, error) {
				received <- pr.Packet.Topic + "=" + string(pr.Packet.Payload)
				return true, nil
			}}})
		ca, err := c.Connect(ctx, &paho5.Connect{ClientID: id, CleanStart: true, KeepAlive: 30})
		if err != nil || ca.ReasonCode != 0 {
			t.Fatalf("connect %s: %v %v", id, ca, err)
		}
		t.Cleanup(func() { c.Disconnect(&paho5.Disconnect{}) })
		return c
	}
	sub := newClient("sub5")
	sa, err := sub.Subscribe(ctx, &paho5.Subscribe{Subscriptions: []paho5.SubscribeOptions{{Topic: "x/+", QoS: 2}, {Topic: "y", QoS: 0}}})
	if err != nil || len(sa.Reasons) != 2 || sa.Reasons[0] != 2 || sa.Reasons[1] != 0 {
		t.Fatalf("subscribe: %+v %v", sa, err)
	}
	pub := newClient("pub5")
	for qos := byte(0); qos < 3; qos++ {
		if _, err := pub.Publish(ctx, &paho5.Publish{Topic: "x/1", QoS: qos, Payload: []byte{'0' + qos}}); err != nil {
			t.Fatalf("publish qos %d: %v", qos, err)
		}
	}
	for i := 0; i < 3; i++ {
		select {
		case m := <-received:
			if !strings.HasPrefix(m, "x/1=") {
				t.Fatalf("got %q", m)
			}
		case <-ctx.Done():
			t.Fatalf("got %d of 3 messages", i)
		}
	}
	select {
	case m := <-received:
		t.Fatalf("unexpected extra message %q", m)
	case <-time.After(50 * time.Millisecond):
	}
}

func TestFirstPacketMustBeConnect(t *testing.T) {
	srv, addr, _ := startServer(t, simpsConfig())
	c := dialRaw(t, addr, codec.V311)
	c.Send(&codec.Packet{Type: codec.PINGREQ})
	c.ExpectClosed()
	waitFor(t, "close counted", func() bool { return srv.Stats.Closes[transport.CloseNotConnect].Load() == 1 })
}

func TestSecondConnectIsProtocolError(t *testing.T) {
	_, addr, _ := startServer(t, simpsConfig())
	c := dialRaw(t, addr, codec.V5)
	c.Connect("twice")
	c.Send(&codec.Packet{Type: codec.CONNECT, ProtocolLevel: codec.V5, ClientID: "twice"})
	if d := c.Expect(codec.DISCONNECT); d.ReasonCode != codec.ProtocolError {
		t.Fatalf("want DISCONNECT 0x82, got %#x", byte(d.ReasonCode))
	}
	c.ExpectClosed()
}

func TestMalformedPacketsCloseWithReasonCode(t *testing.T) {
	cases := []struct {
		name  string
		level byte
		bytes []byte
		code  codec.ReasonCode // 0: closed without DISCONNECT
	}{
		{"v5 qos 3", codec.V5, []byte{0x36, 0x05, 0x00, 0x01, 'a', 0x00, 0x01}, codec.MalformedPacket},
		{"v5 wildcard topic", codec.V5, []byte{0x30, 0x05, 0x00, 0x02, 'a', '#', 0x00}, codec.TopicNameInvalid},
		{"v5 subscribe without filters", codec.V5, []byte{0x82, 0x03, 0x00, 0x01, 0x00}, codec.ProtocolError},
		{"v5 reserved flags", codec.V5, []byte{0xC1, 0x00}, codec.MalformedPacket},
		{"v5 oversize", codec.V5, append([]byte{0x30, 0xE8, 0x07, 0x00, 0x01, 'a', 0x00}, make([]byte, 996)...), codec.PacketTooLarge},
		{"v5 CONNACK from client", codec.V5, []byte{0x20, 0x03, 0x00, 0x00, 0x00}, codec.ProtocolError},
		{"v311 qos 3", codec.V311, []byte{0x36, 0x05, 0x00, 0x01, 'a', 0x00, 0x01}, 0},
		{"v311 oversize", codec.V311, append([]byte{0x30, 0xE8, 0x07, 0x00, 0x01, 'a'}, make([]byte, 997)...), 0},
	}
	cfg := simpsConfig()
	cfg.MaxPacketSize = 512
	_, addr, _ := startServer(t, cfg)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRaw(t, addr, tc.level)
			c.Connect("m")
			c.SendRaw(tc.bytes)
			if tc.code != 0 {
				if d := c.Expect(codec.DISCONNECT); d.ReasonCode != tc.code {
					t.Fatalf("want DISCONNECT %#x, got %#x", byte(tc.code), byte(d.ReasonCode))
				}
			}
			c.ExpectClosed()
		})
	}
}

func TestConnectRejections(t *testing.T) {
	_, addr, _ := startServer(t, simpsConfig())
	t.Run("unsupported level gets CONNACK 0x01", func(t *testing.T) {
		c := dialRaw(t, addr, codec.V311)
		c.SendRaw([]byte{0x10, 0x0d, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x06, 0x02, 0x00, 0x3c, 0x00, 0x01, 'c'})
		if a := c.Expect(codec.CONNACK); a.ReasonCode != codec.V3UnacceptableProtocolVersion {
			t.Fatalf("want 0x01, got %#x", byte(a.ReasonCode))
		}
		c.ExpectClosed()
	})
	t.Run("v311 reserved connect flag is closed without reply", func(t *testing.T) {
		c := dialRaw(t, addr, codec.V311)
		c.SendRaw([]byte{0x10, 0x0d, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x03, 0x00, 0x3c, 0x00, 0x01, 'c'})
		c.ExpectClosed()
	})
	t.Run("v5 malformed connect gets CONNACK 0x82", func(t *testing.T) {
		c := dialRaw(t, addr, codec.V5)
		// receive maximum 0 is a protocol error
		c.SendRaw([]byte{0x10, 0x11, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x05, 0x02, 0x00, 0x3c, 0x03, 0x21, 0x00, 0x00, 0x00, 0x01, 'c'})
		if a := c.Expect(codec.CONNACK); a.ReasonCode != codec.ProtocolError {
			t.Fatalf("want 0x82, got %#x", byte(a.ReasonCode))
		}
		c.ExpectClosed()
	})
}

func TestConnectTimeout(t *testing.T) {
	cfg := simpsConfig()
	cfg.ConnectTimeout = 200 * time.Millisecond
	srv, addr, _ := startServer(t, cfg)
	c := dialRaw(t, addr, codec.V311)
	start := time.Now()
	c.ExpectClosed()
	if time.Since(start) > 3*time.Second {
		t.Fatal("connect timeout not enforced")
	}
	waitFor(t, "close counted", func() bool { return srv.Stats.Closes[transport.CloseConnectTimeout].Load() == 1 })
}

// TestConnectDeadlineIsAbsolute: a client that sends its CONNECT one byte
// at a time does not push the connect timeout back; it is cut off when
// the timeout from accept passes, long before its CONNECT is complete
// (the deadline restarted on every byte, so the connection was held
// forever).
func TestConnectDeadlineIsAbsolute(t *testing.T) {
	cfg := simpsConfig()
	cfg.ConnectTimeout = 300 * time.Millisecond
	srv, addr, _ := startServer(t, cfg)
	connect, err := codec.Encode(&codec.Packet{Type: codec.CONNECT, ProtocolLevel: codec.V311, ClientID: "slowloris-client", CleanSession: true}, codec.V311)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	closed := make(chan struct{})
	go func() {
		io.Copy(io.Discard, nc)
		close(closed)
	}()
	// 100 ms a byte: the whole CONNECT would take over two seconds.
	for i := range connect[:len(connect)-1] {
		select {
		case <-closed:
			waitFor(t, "close counted", func() bool { return srv.Stats.Closes[transport.CloseConnectTimeout].Load() == 1 })
			if i < 2 {
				t.Fatalf("closed after only %d bytes", i)
			}
			return
		case <-time.After(100 * time.Millisecond):
		}
		if _, err := nc.Write(connect[i : i+1]); err != nil {
			break
		}
	}
	select {
	case <-closed:
	default:
		t.Fatalf("still open after %d of the CONNECT's %d bytes, sent over %v with a connect timeout of %v",
			len(connect)-1, len(connect), time.Duration(len(connect)-1)*100*time.Millisecond, cfg.ConnectTimeout)
	}
}

// TestMaxConnections: a connection past the limit is closed at once and
// counted; the ones already in are served, and a place that frees up is
// given to the next.
func TestMaxConnections(t *testing.T) {
	cfg := simpsConfig()
	cfg.MaxConnections = 1
	srv, addr, logs := startServer(t, cfg)
	first := dialRaw(t, addr, codec.V311)
	first.Send(&codec.Packet{Type: codec.CONNECT, ProtocolLevel: codec.V311, ClientID: "first", CleanSession: true})
	first.Expect(codec.CONNACK)
	extra := dialRaw(t, addr, codec.V311)
	extra.ExpectClosed()
	if n := srv.Stats.Refused.Load(); n != 1 {
		t.Fatalf("refused %d connections, want 1", n)
	}
	if !strings.Contains(logs.String(), "connection refused: 1 connections is the maximum") {
		t.Fatalf("no log line for the refusal: %s", logs.String())
	}
	first.Send(&codec.Packet{Type: codec.PINGREQ})
	first.Expect(codec.PINGRESP)
	first.Conn.Close()
	waitFor(t, "the first connection gone", func() bool { return srv.Stats.Connections.Load() == 0 })
	next := dialRaw(t, addr, codec.V311)
	next.Send(&codec.Packet{Type: codec.CONNECT, ProtocolLevel: codec.V311, ClientID: "next", CleanSession: true})
	next.Expect(codec.CONNACK)
}

func TestKeepAliveExpiry(t *testing.T) {
	srv, addr, _ := startServer(t, simpsConfig())
	c := dialRaw(t, addr, codec.V5)
	c.Send(&codec.Packet{Type: codec.CONNECT, ProtocolLevel: codec.V5, ClientID: "ka", KeepAlive: 1})
	c.Expect(codec.CONNACK)
	// A PINGREQ inside the window keeps it alive.
	time.Sleep(700 * time.Millisecond)
	c.Send(&codec.Packet{Type: codec.PINGREQ})
	c.Expect(codec.PINGRESP)
	start := time.Now()
	// [MQTT-3.1.2-24] closed after 1.5 x keep alive of silence.
	if d := c.Expect(codec.DISCONNECT); d.ReasonCode != codec.KeepAliveTimeout {
		t.Fatalf("want 0x8D, got %#x", byte(d.ReasonCode))
	}
	if el := time.Since(start); el < time.Second {
		t.Fatalf("closed after %v, before 1.5 x keep alive", el)
	}
	c.ExpectClosed()
	waitFor(t, "close counted", func() bool { return srv.Stats.Closes[transport.CloseKeepAliveTimeout].Load() == 1 })
}

// TestScriptFailureIsolated: an error and an endless loop in one client's
// handler close that client only; another keeps publishing and receiving.
func TestScriptFailureIsolated(t *testing.T) {
	cfg := engine.Config{Scripts: filepath.Join("testdata", "faulty"), HandlerTimeout: 200 * time.Millisecond, Workers: 1}
	srv, addr, logs := startServer(t, cfg)

	a := dialRaw(t, addr, codec.V311)
	a.Connect("a")
	b := dialRaw(t, addr, codec.V311)
	b.Connect("b")

	bad := dialRaw(t, addr, codec.V311)
	bad.Connect("bad")
	bad.Send(&codec.Packet{Type: codec.PUBLISH, Topic: "boom", Payload: []byte("x")})
	bad.ExpectClosed()

	loop := dialRaw(t, addr, codec.V5)
	loop.Connect("loop")
	loop.Send(&codec.Packet{Type: codec.PUBLISH, Topic: "loop", Payload: []byte("x")})
	if d := loop.Expect(codec.DISCONNECT); d.ReasonCode != codec.ImplementationSpecificError {
		t.Fatalf("want 0x83, got %#x", byte(d.ReasonCode))
	}
	loop.ExpectClosed()

	// A pattern that backtracks over a 30 KB payload is stopped at the
	// deadline too (it ran inside Go, where the deadline was not checked,
	// for minutes, and every connection of the worker waited).
	trim := dialRaw(t, addr, codec.V311)
	trim.Connect("trim")
	trim.Send(&codec.Packet{Type: codec.PUBLISH, Topic: "trim", Payload: []byte("a" + strings.Repeat(" ", 30000) + "b")})
	trim.ExpectClosed()

	// The shared VM still serves the others.
	for i := 0; i < 20; i++ {
		a.Send(&codec.Packet{Type: codec.PUBLISH, QoS: 1, PacketID: uint16(i + 1), Topic: "t", Payload: []byte{byte(i)}})
		if ack := a.Expect(codec.PUBACK); ack.PacketID != uint16(i+1) {
			t.Fatalf("PUBACK for %d", ack.PacketID)
		}
		if m := b.Expect(codec.PUBLISH); m.Payload[0] != byte(i) {
			t.Fatalf("message %d: got %v", i, m.Payload)
		}
	}
	out := logs.String()
	if !strings.Contains(out, "testdata/faulty/main.lua:8: boom requested") {
		t.Errorf("log lacks the script position of the error:\n%s", out)
	}
	if !strings.Contains(out, "ran past its deadline") {
		t.Errorf("log lacks the deadline error:\n%s", out)
	}
	// The traceback's bottom frame is the handler, not "main chunk".
	if !strings.Contains(out, "in function 'onMqPublish'") || strings.Contains(out, "in main chunk") {
		t.Errorf("the traceback does not name the handler:\n%s", out)
	}
	waitFor(t, "one script error and two timeouts counted", func() bool {
		return srv.Stats.Closes[transport.CloseScriptError].Load() == 1 && srv.Stats.Closes[transport.CloseHandlerTimeout].Load() == 2
	})
}

// TestManyConnections: 2000 concurrent connections on 4 workers all get
// their CONNACK.
func TestManyConnections(t *testing.T) {
	cfg := simpsConfig()
	cfg.Workers = 4
	srv, addr, _ := startServer(t, cfg)
	const n = 2000
	var wg sync.WaitGroup
	var ok atomic.Int64
	conns := make([]net.Conn, n)
	errs := make(chan error, n)
	connect := []byte{0x10, 0x0d, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x02, 0x00, 0x3c, 0x00, 0x01, 'c'}
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
			if err != nil {
				errs <- err
				return
			}
			conns[i] = conn
			conn.SetDeadline(time.Now().Add(20 * time.Second))
			if _, err := conn.Write(connect); err != nil {
				errs <- err
				return
			}
			buf := make([]byte, 4)
			if _, err := ioReadFull(conn, buf); err != nil {
				errs <- err
				return
			}
			if buf[0] != 0x20 || buf[3] != 0 {
				errs <- fmt.Errorf("got % x", buf)
				return
			}
			ok.Add(1)
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if ok.Load() != n {
		t.Fatalf("%d of %d got CONNACK", ok.Load(), n)
	}
	if c := srv.Stats.Connections.Load(); c != n {
		t.Fatalf("server counts %d connections", c)
	}
	for _, c := range conns {
		c.Close()
	}
	waitFor(t, "all closed", func() bool { return srv.Stats.Connections.Load() == 0 })
}

func ioReadFull(c net.Conn, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := c.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func TestShutdownSendsServerShuttingDown(t *testing.T) {
	cfg := simpsConfig()
	cfg.Log = nil
	srv, addr, _ := startServer(t, cfg)
	c5 := dialRaw(t, addr, codec.V5)
	c5.Connect("five")
	c3 := dialRaw(t, addr, codec.V311)
	c3.Connect("three")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if d := c5.Expect(codec.DISCONNECT); d.ReasonCode != codec.ServerShuttingDown {
		t.Fatalf("want 0x8B, got %#x", byte(d.ReasonCode))
	}
	c5.ExpectClosed()
	c3.ExpectClosed()
}

// TestStuckSubscriberIsCutOff: a subscriber that stopped reading, whose
// queue is over its high-water mark but under the hard limit, is cut off
// once a publisher's wait for it ends with nothing taken in; it used to
// stall its publishers for 2 s per read, forever.
func TestStuckSubscriberIsCutOff(t *testing.T) {
	cfg := simpsConfig()
	// High water 16 MiB: the flood below passes it (whatever the socket
	// buffers take) but not the 64 MiB hard limit.
	cfg.MaxOutbound = 64 << 20
	srv, addr, _ := startServer(t, cfg)
	stuck := dialRaw(t, addr, codec.V311)
	stuck.Connect("stuck") // and then never reads
	pub := dialRaw(t, addr, codec.V311)
	pub.Connect("pub")
	msg, err := codec.Encode(&codec.Packet{Type: codec.PUBLISH, Topic: "flood", Payload: make([]byte, 8*1024)}, codec.V311)
	if err != nil {
		t.Fatal(err)
	}
	flooded := make(chan error, 1)
	go func() {
		for i := 0; i < 5000; i++ { // 40 MiB
			if _, err := pub.Conn.Write(msg); err != nil {
				flooded <- err
				return
			}
		}
		flooded <- nil
	}()
	waitFor(t, "the stuck subscriber cut off", func() bool { return srv.Stats.Closes[transport.CloseSlowConsumer].Load() == 1 })
	if err := <-flooded; err != nil {
		t.Fatal(err)
	}
	if n := srv.Stats.SlowConsumers.Load(); n != 1 {
		t.Errorf("%d slow consumers counted, want 1", n)
	}
	// The publisher goes on.
	pub.Send(&codec.Packet{Type: codec.PINGREQ})
	for {
		if p := pub.Expect(0); p.Type == codec.PINGRESP {
			break
		}
	}
}

func TestSlowConsumerIsCutOff(t *testing.T) {
	cfg := simpsConfig()
	cfg.MaxOutbound = 64 * 1024
	srv, addr, logs := startServer(t, cfg)
	slow := dialRaw(t, addr, codec.V311)
	slow.Connect("slow") // and then never reads
	pub := dialRaw(t, addr, codec.V311)
	pub.Connect("pub")
	payload := make([]byte, 8*1024)
	// Far more than the socket buffers and the 64 KiB queue can hold.
	for i := 0; i < 2000 && srv.Stats.SlowConsumers.Load() == 0; i++ {
		pub.Send(&codec.Packet{Type: codec.PUBLISH, Topic: "flood", Payload: payload})
	}
	waitFor(t, "slow consumer cut off", func() bool { return srv.Stats.Closes[transport.CloseSlowConsumer].Load() == 1 })
	// Logged at info, with the client.
	waitFor(t, "the cut-off logged", func() bool {
		return strings.Contains(logs.String(), `level=info msg="connection closed" client_id=slow fd=1 reason=slow_consumer`)
	})
	// The publisher is unaffected.
	pub.Send(&codec.Packet{Type: codec.PINGREQ})
	pub.Expect(codec.PINGRESP)
}

func TestScriptLoadErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, src string) string {
		p := filepath.Join(dir, name)
		if err := osWriteFile(p, src); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cases := []struct {
		name, main, want string
	}{
		{"syntax", "function onMqConnect(\n  x = = 1\nend\n", "main.lua:2: "},
		{"runtime", "local x = nil\nx.y = 1\n", "main.lua:2: attempt to index"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			write("main.lua", tc.main)
			_, err := engine.New(engine.Config{Scripts: dir, Listen: []string{"127.0.0.1:0"}})
			var se *script.ScriptError
			if !errors.As(err, &se) || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("want one-line error containing %q, got %q", tc.want, err)
			}
		})
	}
	_, err := engine.New(engine.Config{Scripts: filepath.Join(dir, "missing")})
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("missing folder: %v", err)
	}
}

// TestRequestProblemInformation: a 5.0 client that sets Request Problem
// Information to 0 gets no Reason String or User Properties in a SUBACK.
func TestRequestProblemInformation(t *testing.T) {
	dir := t.TempDir()
	osWriteFile(filepath.Join(dir, "main.lua"), `
function onMqSubscribe(server, fd, fromId, data)
  server:send(fd, { type = mqtt.SUBACK, message_id = data.message_id, codes = { 0 },
    properties = { reason_string = "why", user_property = { { "k", "v" } } } })
end
`)
	_, addr, _ := startServer(t, engine.Config{Scripts: dir})
	for _, rpi := range []bool{true, false} {
		c := dialRaw(t, addr, codec.V5)
		p := &codec.Packet{Type: codec.CONNECT, ProtocolLevel: codec.V5, ClientID: "rpi", CleanSession: true}
		if !rpi {
			p.Properties.SetUint(codec.PropRequestProblemInfo, 0)
		}
		c.ConnectWith(p)
		c.Send(&codec.Packet{Type: codec.SUBSCRIBE, PacketID: 1, Subscriptions: []codec.Subscription{{Topic: "a"}}})
		a := c.Expect(codec.SUBACK)
		if a.Properties.Empty() == rpi {
			t.Fatalf("request problem information %t: SUBACK properties %+v", rpi, a.Properties)
		}
	}
}
