package transport

import (
	"bytes"
	"context"
	"net"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mqttlua/broker/codec"
	"github.com/sirupsen/logrus"
)

// TestAcceptFailureBacksOff: when accept4 fails (out of file descriptors,
// here made to fail), the waiting connection keeps the listener readable;
// the loops must take it out of their sets and retry at their sweep, not
// call accept again on every turn, and must accept again once it works.
// The warning is logged once, not per retry.
func TestAcceptFailureBacksOff(t *testing.T) {
	var calls atomic.Int64
	var failing atomic.Bool
	failing.Store(true)
	acceptFn = func(lfd int, sa *syscall.RawSockaddrAny) (int, syscall.Errno) {
		calls.Add(1)
		if failing.Load() {
			return -1, syscall.EMFILE
		}
		return rawAccept(lfd, sa)
	}
	defer func() { acceptFn = rawAccept }()

	var logs bytes.Buffer
	log := logrus.New()
	log.SetOutput(&logs)
	tr := New(Config{Listeners: []ListenerConfig{{Scheme: "mqtt", Addr: "127.0.0.1:0"}}, Loops: 2, MaxPacketSize: 1 << 20, ConnectTimeout: 10 * time.Second,
		MaxOutbound: 1 << 20, Log: log, Open: func(c *Conn) Receiver { return nopReceiver{c} }})
	if err := tr.Listen(); err != nil {
		t.Fatal(err)
	}
	go tr.Serve()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		tr.Shutdown(ctx, func(c *Conn) { c.Close(CloseServerShutdown) })
	}()
	if !tr.EventLoops() {
		t.Fatal("the event loops did not start")
	}

	conn, err := net.Dial("tcp", tr.Addrs()[0].String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Three sweeps' worth of failing: each loop may retry about once per
	// sweep; a loop that spins calls accept thousands of times.
	time.Sleep(3 * sweepEvery)
	if n := calls.Load(); n == 0 || n > 20 {
		t.Fatalf("accept called %d times in %v of failures", n, 3*sweepEvery)
	}
	if n := strings.Count(logs.String(), "accept failed"); n != 1 {
		t.Errorf("want one warning, got %d:\n%s", n, logs.String())
	}

	failing.Store(false)
	deadline := time.Now().Add(5 * time.Second)
	for tr.Stats.ConnectionsTotal.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the waiting connection was never accepted once accept worked again")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// nopReceiver ignores what a connection sends and closes it on errors.
type nopReceiver struct{ c *Conn }

func (r nopReceiver) Packet(*codec.Packet)                  {}
func (r nopReceiver) Malformed(*codec.Error, *codec.Packet) { r.c.Close(CloseMalformed) }
func (r nopReceiver) TimedOut()                             { r.c.Close(CloseConnectTimeout) }
func (r nopReceiver) Closed(CloseReason)                    {}
