package broker_test

import (
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mqttlua/broker/codec"
	"github.com/mqttlua/broker/engine"
	"github.com/sirupsen/logrus"
)

// memConn is an in-memory net.Conn for benchmarks: reads come from chunks
// handed to feed, writes are counted and discarded. Unlike net.Pipe it
// never blocks the server on a reader, so a benchmark measures the
// server's work (decode, Lua, routing, encoding) and not socket syscalls.
type memConn struct {
	in      chan []byte
	cur     []byte
	done    chan struct{}
	once    sync.Once
	written atomic.Int64
	notify  chan struct{} // poked after each write
}

func newMemConn() *memConn {
	return &memConn{in: make(chan []byte, 64), done: make(chan struct{}), notify: make(chan struct{}, 1)}
}

func (c *memConn) feed(b []byte) { c.in <- b }

func (c *memConn) Read(p []byte) (int, error) {
	for len(c.cur) == 0 {
		select {
		case b := <-c.in:
			c.cur = b
		case <-c.done:
			return 0, io.EOF
		}
	}
	n := copy(p, c.cur)
	c.cur = c.cur[n:]
	return n, nil
}

func (c *memConn) Write(p []byte) (int, error) {
	select {
	case <-c.done:
		return 0, net.ErrClosed
	default:
	}
	c.written.Add(int64(len(p)))
	select {
	case c.notify <- struct{}{}:
	default:
	}
	return len(p), nil
}

// waitWritten waits until at least n bytes were written to c.
func (c *memConn) waitWritten(tb testing.TB, n int64) {
	deadline := time.After(30 * time.Second)
	for c.written.Load() < n {
		select {
		case <-c.notify:
		case <-deadline:
			tb.Fatalf("server wrote %d bytes, want %d", c.written.Load(), n)
		}
	}
}

func (c *memConn) Close() error                     { c.once.Do(func() { close(c.done) }); return nil }
func (c *memConn) LocalAddr() net.Addr              { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1883} }
func (c *memConn) RemoteAddr() net.Addr             { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000} }
func (c *memConn) SetDeadline(time.Time) error      { return nil }
func (c *memConn) SetReadDeadline(time.Time) error  { return nil }
func (c *memConn) SetWriteDeadline(time.Time) error { return nil }

// busyScripts is the edit cmd/mqtt-bench/compare.sh makes for its
// "broker+lua" column: two ACL rules checked on every PUBLISH and a
// shared counter incremented per message.
func busyScripts(name, src string) string {
	switch name {
	case "acl.lua":
		return strings.Replace(src, "\nacl.rules = {", "\nacl.rules = {\n  { action = \"deny\", topic = \"secret/#\" },\n  { action = \"allow\", topic = \"bench/#\" },", 1)
	case "main.lua":
		return strings.Replace(src, "\n  route(fd, data)", "\n  shared.incr(\"published:\" .. data.topic, 1)\n  route(fd, data)", 1)
	}
	return src
}

// deliverScripts adds an onMqDeliver that changes nothing: the cost of
// the delivery hook itself, per delivery (one subscriber here).
func deliverScripts(name, src string) string {
	if name == "main.lua" {
		return src + "\nfunction onMqDeliver(server, fd, fromId, data) end\n"
	}
	return src
}

// benchServer runs the default scripts (edited by edit) with the kit, on
// no listener: connections come in through ServeConn.
func benchServer(b *testing.B, edit func(name, src string) string) *engine.Server {
	dir := copyScripts(b, edit)
	log := logrus.New()
	log.SetOutput(io.Discard)
	srv, err := engine.New(engine.Config{Scripts: dir, Workers: 2, Log: log})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return srv
}

func encode(b *testing.B, buf []byte, p *codec.Packet) []byte {
	out, err := p.Append(buf, codec.V311)
	if err != nil {
		b.Fatal(err)
	}
	return out
}

// BenchmarkPublish measures one QoS 0 PUBLISH through the whole server
// path — decode, onMqPublish in Lua, routing, encoding for one wildcard
// subscriber — without sockets, for the default scripts ("bare"), the
// compare.sh "busy" handler, and an onMqDeliver that changes nothing
// ("deliver"). The differences are the Lua cost of the busy handler and
// of the delivery hook, free of loopback and load-generator noise.
func BenchmarkPublish(b *testing.B) {
	for _, bc := range []struct {
		name string
		edit func(name, src string) string
	}{{"bare", nil}, {"busy", busyScripts}, {"deliver", deliverScripts}} {
		b.Run(bc.name, func(b *testing.B) {
			srv := benchServer(b, bc.edit)
			sub, pub := newMemConn(), newMemConn()
			srv.ServeConn(sub)
			srv.ServeConn(pub)
			connect := func(c *memConn, id string, extra []byte) {
				buf := encode(b, nil, &codec.Packet{Type: codec.CONNECT, ProtocolName: "MQTT", ProtocolLevel: codec.V311, CleanSession: true, ClientID: id})
				c.feed(append(buf, extra...))
			}
			subscribe := encode(b, nil, &codec.Packet{Type: codec.SUBSCRIBE, PacketID: 1, Subscriptions: []codec.Subscription{{Topic: "bench/#"}}})
			connect(sub, "sub", subscribe)
			sub.waitWritten(b, 4+5) // CONNACK, SUBACK
			connect(pub, "pub", nil)
			pub.waitWritten(b, 4)

			// A chunk of 64 PUBLISHes per read, as a busy publisher's
			// socket delivers them.
			const perChunk = 64
			payload := make([]byte, 64)
			var chunk []byte
			for i := 0; i < perChunk; i++ {
				chunk = encode(b, chunk, &codec.Packet{Type: codec.PUBLISH, Topic: "bench/1", Payload: payload})
			}
			delivery := int64(len(chunk) / perChunk) // same shape out as in
			chunks := (b.N + perChunk - 1) / perChunk
			start := sub.written.Load()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < chunks; i++ {
				pub.feed(chunk)
			}
			sub.waitWritten(b, start+int64(chunks*perChunk)*delivery)
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(chunks*perChunk), "ns/msg")
		})
	}
}

// BenchmarkConnect measures a connection's whole life in the server
// without sockets: CONNECT through onMqConnect (auth.lua, broker.accept)
// to CONNACK, then DISCONNECT and the close. What it leaves out — accept,
// close and poller syscalls — is the same for any server.
func BenchmarkConnect(b *testing.B) {
	srv := benchServer(b, nil)
	disconnect := encode(b, nil, &codec.Packet{Type: codec.DISCONNECT})
	var connects [][]byte
	for i := 0; i < 64; i++ {
		connects = append(connects, encode(b, nil, &codec.Packet{Type: codec.CONNECT, ProtocolName: "MQTT", ProtocolLevel: codec.V311, CleanSession: true, KeepAlive: 60, ClientID: "bench-" + string(rune('a'+i%26)) + string(rune('a'+i/26))}))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c := newMemConn()
		srv.ServeConn(c)
		c.feed(connects[i%len(connects)])
		c.waitWritten(b, 4) // CONNACK
		c.feed(disconnect)
		<-c.done // the server closed it
	}
}
