package engine_test

import (
	"net"
	"sync/atomic"
	"testing"

	"github.com/mqttlua/broker/codec"
)

// countingConn counts the writes the server makes to one connection.
type countingConn struct {
	net.Conn
	writes atomic.Int64
}

func (c *countingConn) Write(b []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(b)
}

// TestWriterBatchesBursts: 1000 PUBLISHes arriving in one burst reach a
// subscriber in a handful of writes, not one per packet.
func TestWriterBatchesBursts(t *testing.T) {
	srv, addr, _ := startServer(t, simpsConfig())
	// The subscriber's server side goes through ServeConn with a counter.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	counted := make(chan *countingConn, 1)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		cc := &countingConn{Conn: nc}
		counted <- cc
		srv.ServeConn(cc)
	}()
	sub := dialRaw(t, ln.Addr().String(), codec.V311)
	sub.Connect("sub")
	cc := <-counted
	before := cc.writes.Load()

	pub := dialRaw(t, addr, codec.V311)
	pub.Connect("pub")
	var burst []byte
	const n = 1000
	for i := 0; i < n; i++ {
		burst, _ = (&codec.Packet{Type: codec.PUBLISH, Topic: "b", Payload: []byte{byte(i)}}).Append(burst, codec.V311)
	}
	pub.SendRaw(burst)
	for i := 0; i < n; i++ {
		if p := sub.Expect(codec.PUBLISH); p.Payload[0] != byte(i) {
			t.Fatalf("message %d out of order", i)
		}
	}
	writes := cc.writes.Load() - before
	t.Logf("%d packets in %d writes", n, writes)
	if writes > 50 {
		t.Fatalf("%d writes for a burst of %d packets", writes, n)
	}
}
