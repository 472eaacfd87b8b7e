package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/mqttlua/broker/codec"
)

// client is a raw-TCP MQTT client: cheap, so the broker is what is
// measured.
type client struct {
	conn  net.Conn
	w     *bufio.Writer
	wmu   sync.Mutex
	r     *codec.Reader
	level byte
	buf   []byte
}

// Buffer sizes: bulkBuf for the clients that move messages, smallBuf for
// those that only connect (connect, idle). With 64 KB each way, a
// connection cost the load generator 128 KB of zeroed memory and its
// garbage collection: a fifth of its CPU in the connect scenario, taken
// from the same two cores the broker runs on.
const (
	bulkBuf  = 64 << 10
	smallBuf = 512
)

// dialConn opens the connection addr names: host:port or mqtt://host:port
// (TCP), mqtts://host:port (TLS, the certificate not checked: a loopback
// benchmark), ws://host:port/path or wss://host:port/path (WebSocket,
// subprotocol mqtt, one binary message per flush).
func dialConn(addr string) (net.Conn, error) {
	scheme, rest, ok := strings.Cut(addr, "://")
	if !ok {
		scheme, rest = "mqtt", addr
	}
	insecure := &tls.Config{InsecureSkipVerify: true}
	switch scheme {
	case "mqtt", "tcp":
		return net.DialTimeout("tcp", rest, 5*time.Second)
	case "mqtts", "ssl":
		return tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", rest, insecure)
	case "ws", "wss":
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		opts := &websocket.DialOptions{Subprotocols: []string{"mqtt"},
			HTTPClient: &http.Client{Transport: &http.Transport{TLSClientConfig: insecure}}}
		ws, _, err := websocket.Dial(ctx, addr, opts)
		if err != nil {
			return nil, err
		}
		ws.SetReadLimit(-1)
		return websocket.NetConn(context.Background(), ws, websocket.MessageBinary), nil
	}
	return nil, fmt.Errorf("--addr %q: want host:port or an mqtt://, mqtts://, ws:// or wss:// URL", addr)
}

// persistentSubs makes subscribers (client ids with "sub") connect with
// clean session 0 (--persistent).
var persistentSubs bool

// dial connects and completes the MQTT handshake. bufSize sizes the
// write buffer and the reader's first buffer (which grows if a packet
// needs it).
func dial(addr, id string, level byte, bufSize int) (*client, error) {
	conn, err := dialConn(addr)
	if err != nil {
		return nil, err
	}
	c := &client{conn: conn, w: bufio.NewWriterSize(conn, bufSize), r: codec.NewReader(conn, bufSize), level: level}
	c.r.Version = level
	clean := !(persistentSubs && strings.Contains(id, "sub"))
	if err := c.send(&codec.Packet{Type: codec.CONNECT, ProtocolLevel: level, ClientID: id, CleanSession: clean, KeepAlive: 300}); err != nil {
		conn.Close()
		return nil, err
	}
	if err := c.flush(); err != nil {
		conn.Close()
		return nil, err
	}
	var p codec.Packet
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if err := c.r.ReadPacket(&p); err != nil || p.Type != codec.CONNACK || p.ReasonCode != 0 {
		conn.Close()
		return nil, fmt.Errorf("connect %s: %v %v", id, p.Type, err)
	}
	conn.SetReadDeadline(time.Time{})
	return c, nil
}

// send encodes p into the write buffer.
func (c *client) send(p *codec.Packet) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	var err error
	c.buf, err = p.Append(c.buf[:0], c.level)
	if err != nil {
		return err
	}
	_, err = c.w.Write(c.buf)
	return err
}

func (c *client) flush() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.w.Flush()
}

func (c *client) subscribe(filter string, qos byte) error {
	if err := c.send(&codec.Packet{Type: codec.SUBSCRIBE, PacketID: 1, Subscriptions: []codec.Subscription{{Topic: filter, QoS: qos}}}); err != nil {
		return err
	}
	if err := c.flush(); err != nil {
		return err
	}
	var p codec.Packet
	c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	defer c.conn.SetReadDeadline(time.Time{})
	if err := c.r.ReadPacket(&p); err != nil || p.Type != codec.SUBACK || len(p.ReasonCodes) != 1 || p.ReasonCodes[0] >= 0x80 {
		return fmt.Errorf("subscribe %s: %v %v %v", filter, p.Type, p.ReasonCodes, err)
	}
	return nil
}

func (c *client) close() {
	c.send(&codec.Packet{Type: codec.DISCONNECT})
	c.flush()
	c.conn.Close()
}

// Payloads carry who sent them, their sequence number and when, so that
// receivers count losses, duplicates and latency exactly.
const headerLen = 20

func fillPayload(b []byte, pub uint32, seq uint64, now int64) {
	binary.BigEndian.PutUint32(b[0:], pub)
	binary.BigEndian.PutUint64(b[4:], seq)
	binary.BigEndian.PutUint64(b[12:], uint64(now))
}

func readPayload(b []byte) (pub uint32, seq uint64, sent int64, ok bool) {
	if len(b) < headerLen {
		return 0, 0, 0, false
	}
	return binary.BigEndian.Uint32(b), binary.BigEndian.Uint64(b[4:]), int64(binary.BigEndian.Uint64(b[12:])), true
}

// tally counts unique and duplicate sequence numbers per publisher.
type tally struct {
	mu       sync.Mutex
	seen     map[uint32][]uint64 // bitmaps
	unique   int64
	dup      int64
	last     time.Time
	first    time.Time
	latency  []int64 // ns, when recorded
	keepLats bool
}

func newTally(keepLats bool) *tally { return &tally{seen: map[uint32][]uint64{}, keepLats: keepLats} }

func (t *tally) add(pub uint32, seq uint64, sent int64, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	bits := t.seen[pub]
	w := int(seq / 64)
	if w >= len(bits) {
		nb := make([]uint64, w*2+16)
		copy(nb, bits)
		bits = nb
		t.seen[pub] = bits
	}
	if bits[w]&(1<<(seq%64)) != 0 {
		t.dup++
		return
	}
	bits[w] |= 1 << (seq % 64)
	t.unique++
	if t.first.IsZero() {
		t.first = now
	}
	t.last = now
	if t.keepLats {
		t.latency = append(t.latency, now.UnixNano()-sent)
	}
}

func (t *tally) counts() (unique, dup int64, last time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.unique, t.dup, t.last
}

// receive reads PUBLISHes into the tally until the connection closes,
// acknowledging QoS 1 ones.
func (c *client) receive(t *tally) {
	var p codec.Packet
	for {
		if err := c.r.ReadPacket(&p); err != nil {
			// A stream that does not decode is the broker's fault and
			// would otherwise show only as lost messages.
			var ce *codec.Error
			if errors.As(err, &ce) {
				fmt.Fprintln(os.Stderr, "mqtt-bench: subscriber received a malformed stream:", err)
			}
			return
		}
		if p.Type != codec.PUBLISH {
			continue
		}
		now := time.Now()
		if pub, seq, sent, ok := readPayload(p.Payload); ok {
			t.add(pub, seq, sent, now)
		}
		if p.QoS == 1 {
			c.send(&codec.Packet{Type: codec.PUBACK, PacketID: p.PacketID})
		}
		if c.r.Buffered() == 0 {
			c.flush()
		}
	}
}
