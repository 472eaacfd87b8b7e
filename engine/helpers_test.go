package engine_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/mqttlua/broker/codec"
	"github.com/mqttlua/broker/engine"
	"github.com/sirupsen/logrus"
)

// repoDir is the repository root.
func repoDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..")
}

// logBuffer collects log output for assertions.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// startServer runs a server on 127.0.0.1:0 with the given scripts and
// stops it when the test ends.
func startServer(t *testing.T, cfg engine.Config) (*engine.Server, string, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	log := logrus.New()
	log.SetOutput(logs)
	log.SetLevel(logrus.DebugLevel)
	cfg.Log = log
	cfg.Listen = []string{"127.0.0.1:0"}
	if cfg.Workers == 0 {
		cfg.Workers = 2
	}
	srv, err := engine.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return srv, srv.Addrs()[0].String(), logs
}

// rawClient speaks MQTT with hand-built packets.
type rawClient struct {
	t     *testing.T
	conn  net.Conn
	r     *codec.Reader
	level byte
}

func dialRaw(t *testing.T, addr string, level byte) *rawClient {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	r := codec.NewReader(conn, 0)
	r.Version = level
	return &rawClient{t: t, conn: conn, r: r, level: level}
}

func (c *rawClient) send(p *codec.Packet) {
	c.t.Helper()
	b, err := codec.Encode(p, c.level)
	if err != nil {
		c.t.Fatal(err)
	}
	c.sendRaw(b)
}

func (c *rawClient) sendRaw(b []byte) {
	c.t.Helper()
	if _, err := c.conn.Write(b); err != nil {
		c.t.Fatal(err)
	}
}

// connect sends CONNECT and expects CONNACK 0.
func (c *rawClient) connect(clientID string) {
	c.t.Helper()
	c.send(&codec.Packet{Type: codec.CONNECT, ProtocolLevel: c.level, ClientID: clientID, CleanSession: true, KeepAlive: 60})
	p := c.expect(codec.CONNACK)
	if p.ReasonCode != 0 {
		c.t.Fatalf("CONNACK code %#x", byte(p.ReasonCode))
	}
}

// next reads the next packet within the timeout.
func (c *rawClient) next(timeout time.Duration) (*codec.Packet, error) {
	c.conn.SetReadDeadline(time.Now().Add(timeout))
	p := &codec.Packet{}
	if err := c.r.ReadPacket(p); err != nil {
		return nil, err
	}
	// Copy what aliases the reader's buffer.
	p.Payload = append([]byte(nil), p.Payload...)
	return p, nil
}

func (c *rawClient) expect(t codec.Type) *codec.Packet {
	c.t.Helper()
	p, err := c.next(5 * time.Second)
	if err != nil {
		c.t.Fatalf("want %s, got error %v", t, err)
	}
	if p.Type != t {
		c.t.Fatalf("want %s, got %v", t, p)
	}
	return p
}

// expectClosed waits for the server to close the connection, failing on
// any packet in between.
func (c *rawClient) expectClosed() {
	c.t.Helper()
	p, err := c.next(5 * time.Second)
	if err == nil {
		c.t.Fatalf("want the connection closed, got %v", p)
	}
	if err != io.EOF && !isReset(err) {
		c.t.Fatalf("want the connection closed, got %v", err)
	}
}

func isReset(err error) bool {
	var ne *net.OpError
	ok := false
	if e, is := err.(*net.OpError); is {
		ne, ok = e, true
	}
	return ok && !ne.Timeout()
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
