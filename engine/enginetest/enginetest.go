// Package enginetest has helpers for tests that run a broker on loopback
// and talk to it with hand-built packets.
package enginetest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/mqttlua/broker/codec"
	"github.com/mqttlua/broker/engine"
	"github.com/sirupsen/logrus"
)

// RepoDir is the repository root.
func RepoDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// LogBuffer collects log output for assertions.
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// Start runs a server on 127.0.0.1:0 (or on the listeners cfg names) and
// stops it when the test ends; it returns the first listener's address. A
// nil cfg.Log logs at debug level into the returned buffer.
func Start(t testing.TB, cfg engine.Config) (*engine.Server, string, *LogBuffer) {
	t.Helper()
	logs := &LogBuffer{}
	if cfg.Log == nil {
		log := logrus.New()
		log.SetOutput(logs)
		log.SetLevel(logrus.DebugLevel)
		cfg.Log = log
	}
	if len(cfg.Listen) == 0 && len(cfg.Listeners) == 0 {
		cfg.Listen = []string{"127.0.0.1:0"}
	}
	if os.Getenv("ENGINETEST_GOROUTINE_PER_CONN") != "" {
		// .ci/run runs the engine's tests a second time on the other
		// transport.
		cfg.GoroutinePerConn = true
	}
	if cfg.Workers == 0 {
		cfg.Workers = 2
	}
	if cfg.SysInterval == 0 {
		// $SYS's retained messages would be in every count; the tests
		// of $SYS set an interval.
		cfg.SysInterval = -1
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

// Client speaks MQTT with hand-built packets.
type Client struct {
	t     testing.TB
	Conn  net.Conn
	r     *codec.Reader
	Level byte
}

// Dial connects a Client speaking protocol level level.
func Dial(t testing.TB, addr string, level byte) *Client {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	r := codec.NewReader(conn, 0)
	r.Version = level
	return &Client{t: t, Conn: conn, r: r, Level: level}
}

// Wrap makes a Client of a connection dialled otherwise (TLS, WebSocket,
// a Unix socket).
func Wrap(t testing.TB, conn net.Conn, level byte) *Client {
	t.Cleanup(func() { conn.Close() })
	r := codec.NewReader(conn, 0)
	r.Version = level
	return &Client{t: t, Conn: conn, r: r, Level: level}
}

// Send encodes and writes p.
func (c *Client) Send(p *codec.Packet) {
	c.t.Helper()
	b, err := codec.Encode(p, c.Level)
	if err != nil {
		c.t.Fatal(err)
	}
	c.SendRaw(b)
}

// SendRaw writes bytes as they are.
func (c *Client) SendRaw(b []byte) {
	c.t.Helper()
	if _, err := c.Conn.Write(b); err != nil {
		c.t.Fatal(err)
	}
}

// Connect sends a clean-session CONNECT and expects CONNACK 0.
func (c *Client) Connect(clientID string) *codec.Packet {
	c.t.Helper()
	return c.ConnectWith(&codec.Packet{Type: codec.CONNECT, ProtocolLevel: c.Level, ClientID: clientID, CleanSession: true, KeepAlive: 60})
}

// ConnectWith sends p and expects CONNACK 0.
func (c *Client) ConnectWith(p *codec.Packet) *codec.Packet {
	c.t.Helper()
	if p.ProtocolLevel == 0 {
		p.ProtocolLevel = c.Level
	}
	c.Send(p)
	ack := c.Expect(codec.CONNACK)
	if ack.ReasonCode != 0 {
		c.t.Fatalf("CONNACK code %#x", byte(ack.ReasonCode))
	}
	return ack
}

// Next reads the next packet within the timeout. Its byte fields are
// copies.
func (c *Client) Next(timeout time.Duration) (*codec.Packet, error) {
	c.Conn.SetReadDeadline(time.Now().Add(timeout))
	p := &codec.Packet{}
	if err := c.r.ReadPacket(p); err != nil {
		return nil, err
	}
	p.Payload = append([]byte(nil), p.Payload...)
	return p, nil
}

// Expect reads the next packet and fails unless it has type t (0: any).
func (c *Client) Expect(t codec.Type) *codec.Packet {
	c.t.Helper()
	p, err := c.Next(5 * time.Second)
	if err != nil {
		c.t.Fatalf("want %s, got error %v", t, err)
	}
	if t != 0 && p.Type != t {
		c.t.Fatalf("want %s, got %v", t, p)
	}
	return p
}

// ExpectNothing fails if a packet arrives within d.
func (c *Client) ExpectNothing(d time.Duration) {
	c.t.Helper()
	p, err := c.Next(d)
	if err == nil {
		c.t.Fatalf("want nothing, got %v", p)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		c.t.Fatalf("want nothing, got error %v", err)
	}
}

// ExpectClosed waits for the server to close the connection, failing on
// any packet in between.
func (c *Client) ExpectClosed() {
	c.t.Helper()
	p, err := c.Next(5 * time.Second)
	if err == nil {
		c.t.Fatalf("want the connection closed, got %v", p)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		c.t.Fatalf("want the connection closed, got a timeout")
	}
	if err != io.EOF && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.As(err, new(*net.OpError)) {
		c.t.Fatalf("want the connection closed, got %v", err)
	}
}

// MQTTjs returns node and the node_modules folder holding MQTT.js
// (MQTTJS_NODE_PATH), skipping the test without them outside CI (.ci/run
// installs them; in CI their absence fails the test).
func MQTTjs(t testing.TB) (node, nodePath string) {
	t.Helper()
	node, err := exec.LookPath("node")
	nodePath = os.Getenv("MQTTJS_NODE_PATH")
	if err != nil || nodePath == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("node and MQTTJS_NODE_PATH are needed in CI (see .ci/run)")
		}
		t.Skip("set MQTTJS_NODE_PATH to a node_modules folder with mqtt installed")
	}
	return node, nodePath
}

// MosquittoTool returns the path of a mosquitto client program, skipping
// the test when it is absent outside CI (.ci/run installs
// mosquitto-clients, and in CI its absence fails the test).
func MosquittoTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s not installed in CI", name)
		}
		t.Skipf("%s not installed (apt-get install mosquitto-clients)", name)
	}
	return p
}

// WaitFor polls cond until it holds or 5 seconds pass.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// CopyScripts copies the default scripts (main.lua, auth.lua, acl.lua) to
// a temporary folder, passing each through edit (if not nil), and
// returns the folder.
func CopyScripts(tb testing.TB, edit func(name, src string) string) string {
	tb.Helper()
	dir := tb.TempDir()
	for _, name := range []string{"main.lua", "auth.lua", "acl.lua"} {
		b, err := os.ReadFile(filepath.Join(RepoDir(), "scripts", name))
		if err != nil {
			tb.Fatal(err)
		}
		src := string(b)
		if edit != nil {
			src = edit(name, src)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	return dir
}
