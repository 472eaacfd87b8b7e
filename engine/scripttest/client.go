package scripttest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/mqttlua/broker/codec"
	"github.com/mqttlua/broker/codec/fixture"
	"github.com/mqttlua/broker/engine/broker"
)

// client is a test client on an in-memory connection. A goroutine reads
// what the server sends into a queue, as a socket buffer would: an
// in-memory pipe has none, and a server writing to a client that the test
// is not reading from at that moment must not block.
type client struct {
	name  string
	from  string
	level byte
	conn  net.Conn
	r     *codec.Reader
	in    *chanReader
	// srvConn is the server's side, for the close reason.
	srvConn *broker.Client
}

// chanReader hands the bytes a goroutine read from the pipe to the
// test's codec.Reader, with a deadline per read.
type chanReader struct {
	ch       chan []byte
	cur      []byte
	err      error
	deadline time.Time
}

func (r *chanReader) Read(p []byte) (int, error) {
	for len(r.cur) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		t := time.NewTimer(time.Until(r.deadline))
		select {
		case b, ok := <-r.ch:
			t.Stop()
			if !ok {
				r.err = io.EOF
				continue
			}
			r.cur = b
		case <-t.C:
			return 0, timeoutError{}
		}
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}

func newClient(name, from string) *client {
	return &client{name: name, from: from, level: codec.V311}
}

func (c *client) attach(conn net.Conn) {
	c.conn = conn
	c.in = &chanReader{ch: make(chan []byte, 100000)}
	c.r = codec.NewReader(c.in, 0)
	go func() {
		defer close(c.in.ch)
		for {
			b := make([]byte, 4096)
			n, err := conn.Read(b)
			if n > 0 {
				c.in.ch <- b[:n]
			}
			if err != nil {
				return
			}
		}
	}()
}

func (c *client) write(b []byte) error {
	if c.conn == nil {
		return errors.New("not connected")
	}
	c.conn.SetWriteDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.conn.Write(b); err != nil {
		return fmt.Errorf("send: %v", err)
	}
	return nil
}

// sendData encodes a packet given as data at the client's level. A
// CONNECT sets the level for what follows.
func (c *client) sendData(m codec.Map) error {
	p, err := codec.FromMap(m)
	if err != nil {
		return err
	}
	level := c.level
	if p.Type == codec.CONNECT {
		if _, ok := m["protocol_level"]; !ok {
			p.ProtocolLevel = c.level
		}
		level = p.ProtocolLevel
		c.setLevel(level)
	}
	b, err := codec.Encode(p, level)
	if err != nil {
		return err
	}
	return c.write(b)
}

func (c *client) setLevel(level byte) {
	c.level = level
}

// timeoutError is next's error when nothing arrived in time.
type timeoutError struct{}

func (timeoutError) Error() string { return "timeout" }
func (timeoutError) Timeout() bool { return true }

// next returns the next packet as data, waiting up to d.
func (c *client) next(d time.Duration) (codec.Map, []byte, error) {
	if c.conn == nil {
		return nil, nil, errors.New("not connected")
	}
	c.in.deadline = time.Now().Add(d)
	c.r.Version = c.level
	var p codec.Packet
	if err := c.r.ReadPacket(&p); err != nil {
		return nil, nil, err
	}
	raw, _ := codec.Encode(&p, c.level)
	return normalize(codec.ToMap(&p, c.level)), raw, nil
}

// expectClosed waits for the server to close the connection; any packet
// before that is returned as unexpected.
func (c *client) expectClosed(d time.Duration) (codec.Map, error) {
	deadline := time.Now().Add(d)
	for {
		m, _, err := c.next(time.Until(deadline))
		if err == nil {
			if m["type"] == int(codec.DISCONNECT) {
				continue // a 5.0 DISCONNECT may come first
			}
			return m, nil
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil, errors.New("still open")
		}
		if err == io.EOF || errors.Is(err, io.ErrClosedPipe) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, nil
		}
		return nil, err
	}
}

// normalize makes decoded data comparable with data read from JSON or Lua.
func normalize(m codec.Map) codec.Map {
	b, _ := json.Marshal(m)
	var v any
	json.Unmarshal(b, &v)
	return fixture.Normalize(v).(codec.Map)
}

// expectedData turns the JSON of a step into packet data, accepting type
// names ("PUBLISH") and reason-code names in "code" ("NOT_AUTHORIZED").
func expectedData(src string) (codec.Map, error) {
	var v any
	d := json.NewDecoder(strings.NewReader(src))
	if err := d.Decode(&v); err != nil {
		return nil, fmt.Errorf("bad JSON: %v", err)
	}
	m, ok := fixture.Normalize(v).(codec.Map)
	if !ok {
		return nil, errors.New("want a JSON object")
	}
	return namesToNumbers(m)
}

func namesToNumbers(m codec.Map) (codec.Map, error) {
	if s, ok := m["type"].(string); ok {
		t, ok := codec.TypeByName(strings.ToUpper(s))
		if !ok {
			return nil, fmt.Errorf("unknown packet type %q", s)
		}
		m["type"] = int(t)
	}
	if s, ok := m["code"].(string); ok {
		c, ok := codec.ReasonByName(strings.ToUpper(s))
		if !ok {
			return nil, fmt.Errorf("unknown reason code %q", s)
		}
		m["code"] = int(c)
	}
	if l, ok := m["codes"].([]any); ok {
		for i, e := range l {
			if s, ok := e.(string); ok {
				c, ok := codec.ReasonByName(strings.ToUpper(s))
				if !ok {
					return nil, fmt.Errorf("unknown reason code %q", s)
				}
				l[i] = int(c)
			}
		}
	}
	return m, nil
}

// subset reports whether every field of want is in got with the same
// value; tables are compared the same way, recursively, lists exactly.
func subset(want, got any) bool {
	switch w := want.(type) {
	case codec.Map:
		g, ok := got.(codec.Map)
		if !ok {
			return false
		}
		for k, v := range w {
			if !subset(v, g[k]) {
				return false
			}
		}
		return true
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return false
		}
		for i := range w {
			if !subset(w[i], g[i]) {
				return false
			}
		}
		return true
	}
	return reflect.DeepEqual(want, got)
}

// show renders packet data with its type and codes named, keys sorted.
func show(m codec.Map) string {
	if m == nil {
		return "nothing"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b bytes.Buffer
	b.WriteString("{")
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		v := m[k]
		if k == "type" {
			if n, ok := v.(int); ok {
				v = codec.Type(n).String()
			}
		}
		j, _ := json.Marshal(v)
		fmt.Fprintf(&b, "%q: %s", k, j)
	}
	b.WriteString("}")
	return b.String()
}

// readFile is os.ReadFile, for the loaders.
var readFile = os.ReadFile
