package engine

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mqttlua/broker/codec"
	"github.com/sirupsen/logrus"
	lua "github.com/yuin/gopher-lua"
)

// Conn is one client connection.
type Conn struct {
	// FD identifies the connection; it is never reused while the server
	// runs.
	FD int
	// fdValue is FD as a Lua value, made once: boxing a number for the
	// handlers' fd argument allocates, and it is passed with every packet.
	fdValue lua.LValue
	srv     *Server
	nc      net.Conn
	// For a connection an event loop serves: its socket and its reader.
	raw *rawConn
	rd  *codec.Reader

	// Set by the reader goroutine when CONNECT arrives; read by anyone.
	version   atomic.Uint32
	clientID  atomic.Pointer[string]
	username  atomic.Pointer[string] // nil: CONNECT had no user name
	keepAlive atomic.Int64           // read deadline in ns, 0: none

	// MQTT 5 limits from the client's CONNECT, set under mu when it
	// arrives.
	maxPacketOut    int    // Maximum Packet Size, 0: protocol maximum
	topicAliasOut   uint16 // Topic Alias Maximum for server-to-client aliases
	receiveMax      uint16 // Receive Maximum, 0: none given (65535)
	serverKeepAlive uint16 // Server Keep Alive to announce, 0: none
	sessionExpiry   uint32 // Session Expiry Interval of CONNECT
	noProblemInfo   bool   // Request Problem Information 0
	droppedTooLarge atomic.Int64

	// Reader-goroutine state.
	usedShort     bool              // the read deadline is a pooled reader's short one
	shortDeadline time.Time         // that deadline
	ranHandler    bool              // a packet was handled since the last respawn
	respawned     time.Time         // when the reader last moved goroutines
	aliasIn       map[uint16]string // client-to-server topic aliases
	// The Session Expiry Interval of the client's DISCONNECT, if it had one.
	disconnectExpiry    uint32
	disconnectHasExpiry bool
	batch               Batch
	connected           bool
	gotDisconnect       bool
	disconnectCode      codec.ReasonCode

	// mu guards the outbound queue and the closing state.
	mu       sync.Mutex
	out      []byte
	spare    []byte
	closing  bool
	reason   CloseReason
	writing  int // bytes the writer is writing now
	shutOnce sync.Once
	drained  Drained // senders waiting for the queue to fall under low water
	// The writer goroutine runs only while there is something to write,
	// so an idle connection costs one goroutine, not two.
	writerOn     bool          // a writer (goroutine, or the reader writing its own) is writing
	readerActive bool          // the reader is handling packets and will write before waiting
	pending      bool          // signalled while the writer was writing
	done         chan struct{} // closed when the writer has closed the socket

	// Data is for Go modules (the broker kit keeps its session here). It
	// is set and read under the module's own locking.
	Data atomic.Value
}

func newConn(s *Server, fd int, nc net.Conn) *Conn {
	c := &Conn{FD: fd, fdValue: lua.LNumber(fd), srv: s, nc: nc, done: make(chan struct{})}
	c.batch.owner = c
	c.clientID.Store(&noClientID)
	return c
}

// noClientID is every connection's client identifier until its CONNECT
// (shared: the pointer is replaced, never written through).
var noClientID = ""

// Version returns the connection's protocol level (0 before CONNECT).
func (c *Conn) Version() byte { return byte(c.version.Load()) }

// ClientID returns the client identifier (set from CONNECT; the kit may
// replace it with an assigned one).
func (c *Conn) ClientID() string { return *c.clientID.Load() }

// Username returns the user name of the CONNECT and whether it had one.
func (c *Conn) Username() (string, bool) {
	if u := c.username.Load(); u != nil {
		return *u, true
	}
	return "", false
}

// SetClientID replaces the client identifier, e.g. with a server-assigned one.
func (c *Conn) SetClientID(id string) { c.clientID.Store(&id) }

// RemoteAddr returns the peer's address.
func (c *Conn) RemoteAddr() net.Addr { return c.nc.RemoteAddr() }

// RemoteAddrString returns the peer's address as text, "host:port"; for
// a socket an event loop serves, without making a net.Addr first.
func (c *Conn) RemoteAddrString() string {
	if s, ok := c.nc.(interface{ remoteAddrString() string }); ok {
		return s.remoteAddrString()
	}
	return c.nc.RemoteAddr().String()
}

// Server returns the server the connection belongs to.
func (c *Conn) Server() *Server { return c.srv }

// WorkerID returns the ID of the VM the connection is pinned to.
func (c *Conn) WorkerID() int { return c.FD % len(c.srv.VMs()) }

// SetKeepAlive sets the keep alive in seconds; the connection is closed
// when nothing arrives within 1.5 times it ([MQTT-3.1.2-24]).
func (c *Conn) SetKeepAlive(seconds int) {
	c.keepAlive.Store(int64(time.Duration(seconds) * 1500 * time.Millisecond))
}

// debug reports whether debug lines are logged; building a logrus entry
// costs allocations, so per-connection debug lines check first.
func (c *Conn) debug() bool { return c.srv.cfg.Log.IsLevelEnabled(logrus.DebugLevel) }

func (c *Conn) log() *logrus.Entry {
	return c.srv.cfg.Log.WithFields(logrus.Fields{"fd": c.FD, "client_id": c.ClientID()})
}

// ErrClosed is returned when queuing to a connection that is closing.
var ErrClosed = errors.New("closed")

// ErrFull is returned when a connection's outbound queue is over its limit;
// the connection is then closed as a slow consumer.
var ErrFull = errors.New("full")

// Batch defers waking connection writers until Flush. A reader goroutine
// handles every packet of one read before flushing, so a burst of packets
// that fan out to a subscriber is written to it in one syscall instead of
// one per packet (as nats-server's read loop does with its pending
// clients). A Batch belongs to one goroutine.
type Batch struct {
	owner *Conn // the connection whose reader owns the batch
	conns []*Conn
	seen  map[*Conn]struct{} // only for large fan-outs
	// Backpressure: receivers whose queues passed their high-water mark.
	// The owner's reader waits for them before reading more, so a slow
	// subscriber slows its publishers down instead of losing messages.
	pressure []Pressure
}

// Pressure is a receiver (a connection's outbound queue, a session's
// queue) that its senders should wait for.
type Pressure interface {
	// WaitDrained returns when the queue is back under its low-water
	// mark, the receiver is gone, or the timeout passed.
	WaitDrained(timeout time.Duration)
	// SameClient reports whether the receiver belongs to connection c: a
	// reader never waits for its own client, which cannot drain while
	// the reader waits.
	SameClient(c *Conn) bool
}

// Drained lets senders under backpressure wait, holding no lock, until a
// queue guarded by a mutex is short enough again. The queue's owner calls
// Signal (with the mutex held) when it drains or goes away. The zero value
// is ready; the channel exists only while someone waits.
type Drained struct{ ch chan struct{} }

// Wait returns when done() (called with mu held) is true, or timeout
// passes.
func (d *Drained) Wait(mu sync.Locker, done func() bool, timeout time.Duration) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		mu.Lock()
		if done() {
			mu.Unlock()
			return
		}
		if d.ch == nil {
			d.ch = make(chan struct{})
		}
		ch := d.ch
		mu.Unlock()
		select {
		case <-ch:
		case <-deadline.C:
			return
		}
	}
}

// Signal wakes every waiter, which then checks its condition again. The
// caller holds the mutex given to Wait.
func (d *Drained) Signal() {
	if d.ch != nil {
		close(d.ch)
		d.ch = nil
	}
}

// PressureWait bounds one wait for a slow receiver. Past it the reader
// goes on and the receiver's hard limits apply; it also ends waits in a
// cycle (two clients that each wait for the other to read).
const PressureWait = 2 * time.Second

// AddPressure records a receiver to wait for at the end of the read.
func (b *Batch) AddPressure(p Pressure) {
	if b.owner != nil && p.SameClient(b.owner) {
		return
	}
	for _, q := range b.pressure {
		if q == p {
			return
		}
	}
	b.pressure = append(b.pressure, p)
}

// Add records that c has queued output to write.
func (b *Batch) Add(c *Conn) {
	if len(b.conns) < 16 {
		// Most reads reach a few connections: a scan beats a map, and
		// an idle connection keeps no map.
		for _, x := range b.conns {
			if x == c {
				return
			}
		}
		b.conns = append(b.conns, c)
		return
	}
	if b.seen == nil {
		b.seen = map[*Conn]struct{}{}
	}
	if len(b.seen) == 0 {
		for _, x := range b.conns {
			b.seen[x] = struct{}{}
		}
	}
	if _, ok := b.seen[c]; !ok {
		b.seen[c] = struct{}{}
		b.conns = append(b.conns, c)
	}
}

// flushOthers is Flush for every connection but the owner, which its
// reader writes itself.
func (b *Batch) flushOthers() {
	for i, c := range b.conns {
		if c == b.owner {
			b.conns[i] = b.conns[len(b.conns)-1]
			b.conns = b.conns[:len(b.conns)-1]
			break
		}
	}
	b.Flush()
}

// Flush wakes the writer of every connection added since the last Flush.
func (b *Batch) Flush() {
	for i, c := range b.conns {
		c.signal()
		b.conns[i] = nil
	}
	if cap(b.conns) > 64 {
		b.conns = nil // do not keep a big fan-out's slice
	} else {
		b.conns = b.conns[:0]
	}
	b.seen = nil
}

// flushAndWait flushes, then waits for the receivers under pressure. Only
// the owner's reader calls it, holding no lock, before reading more. The
// owner's own output (CONNACK, PUBACK, PINGRESP, ...) is written right here
// by the reader when no writer goroutine is running: no goroutine to start
// and no hand-off for the common request/reply case, as nats-server's read
// loop flushes its own client inline.
func (b *Batch) flushAndWait() {
	b.flushOwn()
	for _, p := range b.takePressure() {
		p.WaitDrained(PressureWait)
	}
}

// flushOwn flushes the batch, then writes the owner's own output.
func (b *Batch) flushOwn() {
	b.flushOthers() // first: the owner's write may block
	b.owner.writeOwn()
}

// takePressure returns the receivers to wait for, and forgets them; nil
// (no allocation) when there are none, as almost always.
func (b *Batch) takePressure() []Pressure {
	if len(b.pressure) == 0 {
		return nil
	}
	wait := append([]Pressure(nil), b.pressure...)
	clear(b.pressure)
	b.pressure = b.pressure[:0]
	return wait
}

// wake signals c's writer now, or at the batch's flush.
func (c *Conn) wakeVia(batch *Batch) {
	if batch != nil {
		batch.Add(c)
	} else {
		c.signal()
	}
}

// Send queues raw bytes for the connection. A CONNACK with a failure code
// closes the connection once it is written ([MQTT-3.2.2-5]).
func (c *Conn) Send(b []byte) error { return c.SendVia(b, nil) }

// SendVia is Send with the writer's wake-up deferred to batch (nil: now).
func (c *Conn) SendVia(b []byte, batch *Batch) error {
	// Raw bytes may hold several packets: no per-packet size check.
	err := c.appendVia(func(dst []byte) ([]byte, error) { return append(dst, b...), nil }, batch, false)
	if err == nil && len(b) >= 4 && b[0] == byte(codec.CONNACK)<<4 {
		var p codec.Packet
		if _, err := codec.Decode(b, c.Version(), &p); err == nil && p.ReasonCode != 0 {
			c.Close(CloseConnectRefused)
		}
	}
	return err
}

// SendPacket encodes p for the connection's protocol level straight into
// its outbound queue.
func (c *Conn) SendPacket(p *codec.Packet) error { return c.SendPacketVia(p, nil) }

// SendPacketVia is SendPacket with the writer's wake-up deferred to batch
// (nil: now).
func (c *Conn) SendPacketVia(p *codec.Packet, batch *Batch) error {
	v := c.Version()
	if v == 0 {
		v = codec.V311
	}
	if p.Type == codec.CONNACK && v == codec.V5 && p.ReasonCode == 0 {
		p = c.decorateConnack(p)
	}
	err := c.AppendVia(func(dst []byte) ([]byte, error) {
		if c.noProblemInfo && p.Type != codec.PUBLISH && p.Type != codec.CONNACK && p.Type != codec.DISCONNECT &&
			(p.Properties.Has(codec.PropReasonString) || p.Properties.Has(codec.PropUserProperty)) {
			// 5.0 [MQTT-3.1.2-29]: the client asked for no Reason String or
			// User Properties outside PUBLISH, CONNACK and DISCONNECT.
			q := *p
			q.Properties.Clear(codec.PropReasonString)
			q.Properties.User = nil
			return q.Append(dst, v)
		}
		return p.Append(dst, v)
	}, batch)
	if err == nil && p.Type == codec.CONNACK && p.ReasonCode != 0 {
		c.Close(CloseConnectRefused)
	}
	return err
}

// decorateConnack adds to a successful 5.0 CONNACK the limits the engine
// enforces, unless the sender set them: Receive Maximum, Topic Alias
// Maximum, Maximum Packet Size and Server Keep Alive.
func (c *Conn) decorateConnack(p *codec.Packet) *codec.Packet {
	d := *p
	pr := &d.Properties
	cfg := &c.srv.cfg
	if !pr.Has(codec.PropReceiveMaximum) && cfg.ReceiveMaximum < 65535 {
		pr.SetUint(codec.PropReceiveMaximum, uint32(cfg.ReceiveMaximum))
	}
	if !pr.Has(codec.PropTopicAliasMaximum) && cfg.TopicAliasMaximum > 0 {
		pr.SetUint(codec.PropTopicAliasMaximum, uint32(cfg.TopicAliasMaximum))
	}
	if !pr.Has(codec.PropMaximumPacketSize) && cfg.MaxPacketSize < codec.MaxPacketSize {
		pr.SetUint(codec.PropMaximumPacketSize, uint32(cfg.MaxPacketSize))
	}
	if !pr.Has(codec.PropServerKeepAlive) && c.serverKeepAlive > 0 {
		pr.SetUint(codec.PropServerKeepAlive, uint32(c.serverKeepAlive))
	}
	return &d
}

// ErrTooLarge is returned when a packet exceeds the client's Maximum Packet
// Size; it is dropped, counted, and the connection stays open.
var ErrTooLarge = errors.New("too large")

// AppendVia lets enc append encoded packets to the connection's outbound
// queue, under its lock, so that fan-out encodes straight into the queue
// with no intermediate buffer. enc must not block. On error or past the
// queue's limit nothing is queued.
func (c *Conn) AppendVia(enc func(dst []byte) ([]byte, error), batch *Batch) error {
	return c.appendVia(enc, batch, true)
}

// appendVia is AppendVia; sizeCheck applies the client's Maximum Packet
// Size to what enc appended (one packet).
func (c *Conn) appendVia(enc func(dst []byte) ([]byte, error), batch *Batch, sizeCheck bool) error {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return ErrClosed
	}
	n := len(c.out)
	out, err := enc(c.out)
	if err != nil {
		c.out = out[:n]
		c.mu.Unlock()
		return err
	}
	if sizeCheck && c.maxPacketOut > 0 && len(out)-n > c.maxPacketOut {
		// 5.0 [MQTT-3.1.2-25]: never send more than the client accepts.
		c.out = out[:n]
		c.mu.Unlock()
		c.droppedTooLarge.Add(1)
		c.srv.Stats.DroppedTooLarge.Add(1)
		return ErrTooLarge
	}
	if len(out) > c.srv.cfg.MaxOutbound {
		c.out = out[:n]
		c.mu.Unlock()
		c.slowConsumer()
		return ErrFull
	}
	c.out = out
	pressed := batch != nil && len(out) > c.highWater()
	c.mu.Unlock()
	c.wakeVia(batch)
	if pressed {
		batch.AddPressure(c)
	}
	return nil
}

// highWater is the queued byte count past which senders wait; lowWater the
// count they wait for.
func (c *Conn) highWater() int { return c.srv.cfg.MaxOutbound / 4 }
func (c *Conn) lowWater() int  { return c.srv.cfg.MaxOutbound / 8 }

// WaitDrained waits until the outbound queue is under the low-water mark,
// the connection closes, or the timeout passes.
func (c *Conn) WaitDrained(timeout time.Duration) {
	c.drained.Wait(&c.mu, func() bool { return c.closing || len(c.out)+c.writing < c.lowWater() }, timeout)
}

// SameClient reports whether c is other.
func (c *Conn) SameClient(other *Conn) bool { return c == other }

func (c *Conn) slowConsumer() {
	c.srv.Stats.SlowConsumers.Add(1)
	c.Close(CloseSlowConsumer)
}

// signal starts the writer, or tells the running one to go round again.
func (c *Conn) signal() {
	c.mu.Lock()
	if c.writerOn || c.readerActive {
		// A writer will go round again, or the connection's own reader,
		// busy handling its packets, writes before it next waits.
		c.pending = true
		c.mu.Unlock()
		return
	}
	c.writerOn = true
	c.mu.Unlock()
	c.srv.wg.Add(1)
	go c.writeLoop()
}

// Close closes the connection for reason. For MQTT 5 clients a DISCONNECT
// with the reason's code is written first.
func (c *Conn) Close(reason CloseReason) {
	c.CloseWithCode(reason, reason.DisconnectCode(), "")
}

// CloseWithCode closes the connection, first sending an MQTT 5 client a
// DISCONNECT with code and, if not empty, a reason string. code 0 sends
// no DISCONNECT.
func (c *Conn) CloseWithCode(reason CloseReason, code codec.ReasonCode, reasonString string) {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return
	}
	c.closing = true
	c.reason = reason
	c.drained.Signal() // senders waiting for this queue go on
	if code != 0 && c.Version() == codec.V5 && reason != CloseSlowConsumer {
		// [MQTT-4.13.2-1] a DISCONNECT with a reason code before closing.
		d := codec.Packet{Type: codec.DISCONNECT, ReasonCode: code}
		if reasonString != "" {
			d.Properties.SetString(codec.PropReasonString, reasonString)
		}
		if out, err := d.Append(c.out, codec.V5); err == nil {
			c.out = out
		}
	}
	c.mu.Unlock()
	c.signal()
}

// Closing reports whether the connection is closing or closed.
func (c *Conn) Closing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closing
}

// writeLoop writes whatever is queued in one call per round, so a burst of
// packets costs one syscall. It never holds mu during the write. Bytes
// queued through a Batch wait for its flush, whose signal starts a round.
// The goroutine exits when a round finds no new signal, and closes the
// socket once the connection is closing and its queue is written.
func (c *Conn) writeLoop() {
	defer c.srv.wg.Done()
	c.writeRounds(false)
}

// writeRounds writes the queue round after round, the caller holding the
// writer role (writerOn). It ends when a round finds no new signal
// (giving the role up), or after closing the socket once the connection
// is closing and its queue is written. With handOff, it writes one round
// only and leaves any more to a writer goroutine: the reader that calls it
// must get back to reading.
func (c *Conn) writeRounds(handOff bool) {
	for {
		c.mu.Lock()
		buf, closing := c.out, c.closing
		c.out = c.spare[:0]
		c.spare = nil
		c.writing = len(buf)
		c.pending = false
		c.mu.Unlock()
		off := 0
		if handOff && c.raw != nil && len(buf) > 0 {
			// An event loop writes what the socket takes now and
			// leaves the rest to a writer goroutine: it must not wait.
			n, err := c.raw.tryWrite(buf)
			if err != nil {
				c.CloseWithCode(CloseNetworkError, 0, "")
				c.shut()
				return
			}
			if off = n; off < len(buf) {
				c.srv.wg.Add(1)
				go func() {
					defer c.srv.wg.Done()
					if c.write(buf, off, closing) {
						c.writeRounds(false)
					}
				}()
				return
			}
		}
		if !c.write(buf, off, closing) {
			return
		}
		c.mu.Lock()
		if c.pending || (c.closing && len(c.out) > 0) || (c.closing && !closing) {
			c.mu.Unlock()
			if handOff {
				c.srv.wg.Add(1)
				go c.writeLoop()
				return
			}
			continue
		}
		if c.closing {
			c.mu.Unlock()
			c.shut()
			return
		}
		c.writerOn = false
		c.mu.Unlock()
		return
	}
}

// writeOwn is called by the connection's reader before it waits for more
// input: from now on signals start a writer goroutine again, and what is
// queued (the replies to the packets just handled, above all) is written
// right here unless a writer goroutine is at it. No goroutine to start
// and no hand-off for the common request/reply case, as nats-server's read
// loop flushes its own client inline.
func (c *Conn) writeOwn() {
	c.mu.Lock()
	c.readerActive = false
	if c.writerOn {
		// A writer goroutine is finishing a round: it must go round
		// again for what the handlers just queued.
		c.pending = true
		c.mu.Unlock()
		return
	}
	if len(c.out) == 0 && !c.pending && !c.closing {
		c.mu.Unlock()
		return
	}
	c.writerOn = true
	c.mu.Unlock()
	c.writeRounds(true)
}

// write writes buf[off:], a buffer taken from the queue, and recycles
// buf. On an error it closes the connection and reports false.
func (c *Conn) write(buf []byte, off int, closing bool) bool {
	if len(buf) > off {
		if closing {
			// Do not let a peer that stopped reading hold up the close.
			c.nc.SetWriteDeadline(time.Now().Add(2 * time.Second))
		}
		if _, err := c.nc.Write(buf[off:]); err != nil {
			c.CloseWithCode(CloseNetworkError, 0, "")
			c.shut()
			return false
		}
	}
	c.recycle(buf)
	return true
}

// shut closes the socket, once; it ends the reader's wait too.
func (c *Conn) shut() {
	c.shutOnce.Do(func() {
		c.nc.Close()
		close(c.done)
	})
}

// recycle keeps a written buffer as the next spare unless it grew large,
// so an idle connection does not keep a burst's memory.
func (c *Conn) recycle(buf []byte) {
	c.mu.Lock()
	c.writing = 0
	if c.spare == nil && cap(buf) <= 64*1024 {
		c.spare = buf[:0]
	}
	if len(c.out) < c.lowWater() {
		c.drained.Signal()
	}
	c.mu.Unlock()
}

var packetPool = sync.Pool{New: func() any { return new(codec.Packet) }}

// readLoop is the connection's reader goroutine. It does the blocking
// read itself, with nothing but its own small frame above the network
// code: an idle connection parks here, and how much of its stack is in use
// then decides whether the runtime can shrink the stack (to 2 KiB it must
// use under 512 bytes plus the runtime's frames), which is most of an idle
// connection's memory.
func (c *Conn) readLoop() { c.readFrom(c.newReader(), false) }

// respawnEvery bounds how often a connection's reader moves to a fresh
// goroutine; see readFrom.
const respawnEvery = time.Second

// pooledIdle is how long a pooled reader waits for a connection's next
// packet before handing it to a fresh goroutine.
const pooledIdle = 50 * time.Millisecond

// readerPool keeps reader goroutines whose stacks handlers already grew,
// for new connections: most of a short-lived connection's cost is
// otherwise starting a goroutine and growing its stack for the Lua
// handler of its CONNECT.
type readerPool struct {
	conns chan *Conn // unbuffered: a send succeeds only to an idle reader
	total atomic.Int32
}

const maxPooledReaders = 64

// serve runs a connection on an idle pooled reader, or a new one while
// the pool is below its size, or else a plain goroutine.
func (p *readerPool) serve(c *Conn, stop <-chan struct{}) {
	select {
	case p.conns <- c:
		return
	default:
	}
	if p.total.Add(1) > maxPooledReaders {
		p.total.Add(-1)
		go c.readLoop()
		return
	}
	go p.loop(c, stop)
}

func (p *readerPool) loop(c *Conn, stop <-chan struct{}) {
	defer p.total.Add(-1)
	for {
		c.readFrom(c.newReader(), true)
		select {
		case c = <-p.conns:
		case <-stop:
			return
		}
	}
}

// readFrom runs the read loop. pooled is true on one of the server's
// pooled reader goroutines (see readerPool), which serve a connection
// while it is busy and hand it to a fresh goroutine once it goes idle.
func (c *Conn) readFrom(r *codec.Reader, pooled bool) (handedOff bool) {
	for c.handleBuffered(r) {
		if !pooled && c.ranHandler && time.Since(c.respawned) > respawnEvery {
			// Handlers (Lua above all) grew this goroutine's stack, and
			// the runtime cannot shrink it back below 4 KiB while the
			// network code sits on it: go on in a fresh 2 KiB goroutine,
			// so an idle connection costs that, at most once a second.
			c.ranHandler, c.respawned = false, time.Now()
			go c.readFrom(r, false)
			return true
		}
		c.beforeRead(pooled)
		n, err := c.nc.Read(r.Space())
		if pooled && n == 0 && c.idleTimeout(err) {
			// Idle: a fresh goroutine waits for it, this one goes back
			// to the pool with its grown stack for the next connection.
			c.ranHandler, c.respawned = false, time.Now()
			go c.readFrom(r, false)
			return true
		}
		if !c.afterRead(r, n, err) {
			break
		}
	}
	c.end()
	return false
}

// idleTimeout reports whether err is the short deadline of a pooled
// reader rather than the connection's own.
//
//go:noinline
func (c *Conn) idleTimeout(err error) bool {
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || time.Now().Before(c.shortDeadline) {
		return false
	}
	return c.usedShort
}

//go:noinline
func (c *Conn) newReader() *codec.Reader {
	r := codec.NewReader(nil, 0)
	r.MaxPacketSize = c.srv.cfg.MaxPacketSize
	return r
}

// afterRead takes in what a read returned and reports whether to go on.
//
//go:noinline
func (c *Conn) afterRead(r *codec.Reader, n int, err error) bool {
	r.Advance(n)
	if err != nil && n == 0 {
		if err == io.EOF && r.Buffered() > 0 {
			err = io.ErrUnexpectedEOF
		}
		c.failRead(err)
		return false
	}
	return true
}

// end finishes the reader goroutine.
//
//go:noinline
func (c *Conn) end() {
	c.batch.flushOthers()
	c.finish(false)
}

// handleBuffered handles every whole packet buffered and reports whether
// to read more.
//
//go:noinline
func (c *Conn) handleBuffered(r *codec.Reader) bool {
	c.mu.Lock()
	c.readerActive = true
	c.mu.Unlock()
	// One packet from the pool for everything this read brought (each
	// decode resets it), back to the pool before the next read: an idle
	// connection holds none.
	p := packetPool.Get().(*codec.Packet)
	defer packetPool.Put(p)
	for {
		ok, err := r.Next(p)
		switch {
		case err != nil:
			c.readError(err, p)
		case ok:
			c.srv.Stats.PacketsIn.Add(1)
			c.handle(p)
			c.ranHandler = true
		}
		if err != nil || c.Closing() {
			return false
		}
		if !ok {
			return true
		}
	}
}

// beforeRead writes what the handled packets produced, lets slow receivers
// catch up, and sets the read deadline: the connect timeout until CONNECT,
// then 1.5 x keep alive.
//
//go:noinline
func (c *Conn) beforeRead(pooled bool) {
	c.batch.flushAndWait()
	now := time.Now()
	var d time.Time
	if t := c.readTimeout(); t > 0 {
		d = now.Add(t)
	}
	c.usedShort = false
	if pooled {
		// A pooled reader waits only briefly before handing the
		// connection on.
		if short := now.Add(pooledIdle); d.IsZero() || short.Before(d) {
			d, c.usedShort, c.shortDeadline = short, true, short
		}
	}
	c.nc.SetReadDeadline(d)
}

// readTimeout is how long the next read may wait: the connect timeout
// until CONNECT, then 1.5 x keep alive; 0 for no limit.
func (c *Conn) readTimeout() time.Duration {
	if !c.connected {
		return c.srv.cfg.ConnectTimeout
	}
	return time.Duration(c.keepAlive.Load())
}

// failRead closes the connection for a read error.
//
//go:noinline
func (c *Conn) failRead(err error) {
	p := packetPool.Get().(*codec.Packet)
	p.Reset()
	c.readError(err, p)
	packetPool.Put(p)
}

// readError closes the connection for a read or decode error, answering
// with the reason code the protocol has for it.
func (c *Conn) readError(err error, p *codec.Packet) {
	var ce *codec.Error
	var ne net.Error
	switch {
	case errors.As(err, &ce):
		if c.debug() {
			c.log().WithError(err).Debug("rejected packet")
		}
		if !c.connected {
			c.rejectConnect(ce, p)
			return
		}
		reason := CloseMalformed
		switch ce.Code {
		case codec.PacketTooLarge:
			reason = ClosePacketTooLarge
		case codec.MalformedPacket:
		default:
			reason = CloseProtocolError
		}
		code := ce.Code
		if !code.ValidFor(codec.DISCONNECT) {
			code = codec.ProtocolError
		}
		c.CloseWithCode(reason, code, "")
	case errors.As(err, &ne) && ne.Timeout():
		if c.connected {
			c.Close(CloseKeepAliveTimeout)
		} else {
			c.Close(CloseConnectTimeout)
		}
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		c.Close(CloseNetworkError)
	default:
		if c.debug() {
			c.log().WithError(err).Debug("read failed")
		}
		c.Close(CloseNetworkError)
	}
}

// rejectConnect answers a CONNECT the codec rejected. [MQTT-3.1.2-2] an
// unsupported protocol level gets CONNACK 0x01 (0x84 for 5.0); a 5.0
// client gets a CONNACK with the codec's reason code; a 3.1.1 client with a
// malformed CONNECT is just closed ([MQTT-3.1.4-1]).
func (c *Conn) rejectConnect(ce *codec.Error, p *codec.Packet) {
	reason := CloseMalformed
	if p.Type != codec.CONNECT {
		reason = CloseNotConnect
	} else if ce.Code == codec.UnsupportedProtocolVersion {
		ack := codec.Packet{Type: codec.CONNACK, ReasonCode: codec.V3UnacceptableProtocolVersion}
		level := codec.V311
		if p.ProtocolLevel == codec.V5 {
			ack.ReasonCode, level = codec.UnsupportedProtocolVersion, codec.V5
		}
		c.queue(&ack, level)
		reason = CloseProtocolError
	} else if p.ProtocolLevel == codec.V5 && ce.Code.ValidFor(codec.CONNACK) {
		c.queue(&codec.Packet{Type: codec.CONNACK, ReasonCode: ce.Code}, codec.V5)
	}
	c.CloseWithCode(reason, 0, "")
}

// queue encodes p at a given level into the queue, for the replies sent
// before the connection's level is known.
func (c *Conn) queue(p *codec.Packet, level byte) {
	c.appendVia(func(dst []byte) ([]byte, error) { return p.Append(dst, level) }, nil, false)
}

// handle applies the engine's protocol rules to a packet and runs its
// handler.
func (c *Conn) handle(p *codec.Packet) {
	switch {
	case !c.connected && p.Type != codec.CONNECT:
		// [MQTT-3.1.0-1] the first packet is CONNECT.
		if c.debug() {
			c.log().WithField("type", p.Type.String()).Debug("first packet is not CONNECT")
		}
		c.CloseWithCode(CloseNotConnect, 0, "")
		return
	case c.connected && p.Type == codec.CONNECT:
		// [MQTT-3.1.0-2] a second CONNECT is a protocol violation.
		c.Close(CloseSecondConnect)
		return
	}
	switch p.Type {
	case codec.CONNACK, codec.SUBACK, codec.UNSUBACK, codec.PINGRESP:
		// Only a server sends these.
		c.CloseWithCode(CloseProtocolError, codec.ProtocolError, p.Type.String()+" from a client")
		return
	case codec.CONNECT:
		c.connected = true
		c.SetClientID(p.ClientID)
		if p.UsernameFlag {
			u := p.Username
			c.username.Store(&u)
		}
		ka := int(p.KeepAlive)
		if p.ProtocolLevel == codec.V5 {
			pr := &p.Properties
			c.mu.Lock()
			c.maxPacketOut = int(pr.MaximumPacketSize)
			c.topicAliasOut = pr.TopicAliasMaximum
			c.receiveMax = pr.ReceiveMaximum
			c.sessionExpiry = pr.SessionExpiry
			c.noProblemInfo = pr.Has(codec.PropRequestProblemInfo) && pr.RequestProblemInfo == 0
			c.mu.Unlock()
			if max := c.srv.cfg.MaxKeepAlive; max > 0 && (ka == 0 || ka > max) {
				// 5.0 §3.2.2.3.14: the server's keep alive replaces the
				// client's and is announced in CONNACK.
				ka = max
				c.serverKeepAlive = uint16(max)
			}
		}
		c.version.Store(uint32(p.ProtocolLevel))
		c.SetKeepAlive(ka)
	case codec.PUBLISH:
		if c.Version() == codec.V5 && !c.resolveAlias(p) {
			return
		}
	case codec.DISCONNECT:
		if c.Version() == codec.V5 && p.Properties.Has(codec.PropSessionExpiry) && c.sessionExpiry == 0 && p.Properties.SessionExpiry != 0 {
			// 5.0 §3.14.2.2.2: a session that was to end at disconnect
			// cannot be extended by DISCONNECT.
			c.CloseWithCode(CloseProtocolError, codec.ProtocolError, "session expiry interval was 0 in CONNECT")
			return
		}
		if p.Properties.Has(codec.PropSessionExpiry) {
			c.disconnectExpiry, c.disconnectHasExpiry = p.Properties.SessionExpiry, true
		}
		// [MQTT-3.14.4-3] the will is discarded, unless a 5.0 client asks
		// for it with 0x04.
		c.gotDisconnect = true
		c.disconnectCode = p.ReasonCode
	}
	c.srv.dispatch(c, p)
}

// resolveAlias applies a 5.0 topic alias (5.0 §3.3.2.3.4): a topic with an
// alias sets it, an empty topic uses it. The alias property is removed, so
// scripts and subscribers see the full topic. It closes the connection and
// returns false for an alias out of range or not set.
func (c *Conn) resolveAlias(p *codec.Packet) bool {
	if !p.Properties.Has(codec.PropTopicAlias) {
		return true
	}
	a := p.Properties.TopicAlias
	if int(a) > c.srv.cfg.TopicAliasMaximum {
		// [MQTT-3.3.2-9] / 5.0 §3.3.2.3.4: greater than the maximum.
		c.CloseWithCode(CloseProtocolError, codec.TopicAliasInvalid, "topic alias above the maximum")
		return false
	}
	if p.Topic != "" {
		if c.aliasIn == nil {
			c.aliasIn = map[uint16]string{}
		}
		c.aliasIn[a] = p.Topic
	} else if t, ok := c.aliasIn[a]; ok {
		p.Topic = t
	} else {
		c.CloseWithCode(CloseProtocolError, codec.ProtocolError, "topic alias not set")
		return false
	}
	p.Properties.Clear(codec.PropTopicAlias)
	return true
}

// MaxPacketOutLocked returns the client's Maximum Packet Size (0: no limit
// beyond the protocol's), for code running inside AppendVia's encoder,
// which holds the connection's lock.
func (c *Conn) MaxPacketOutLocked() int { return c.maxPacketOut }

// TopicAliasMaximum returns the highest topic alias the server may use
// towards the client (0: none).
func (c *Conn) TopicAliasMaximum() uint16 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.topicAliasOut
}

// ReceiveMaximum returns the client's Receive Maximum (65535 when not given).
func (c *Conn) ReceiveMaximum() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.receiveMax == 0 {
		return 65535
	}
	return int(c.receiveMax)
}

// SessionExpiry returns the Session Expiry Interval of the CONNECT, or of
// the client's DISCONNECT when it changed it. For the connection's own
// goroutine and ConnClosed.
func (c *Conn) SessionExpiry() uint32 {
	if c.disconnectHasExpiry {
		return c.disconnectExpiry
	}
	return c.sessionExpiry
}

// DroppedTooLarge returns how many packets were not sent because they
// exceeded the client's Maximum Packet Size.
func (c *Conn) DroppedTooLarge() int64 { return c.droppedTooLarge.Load() }

// finish runs once when the reader stops: it waits for the writer, removes
// the connection, and tells the script and the modules. On an event loop
// (inLoop) it does not wait: if the writer is still busy, the rest runs on
// a goroutine.
func (c *Conn) finish(inLoop bool) {
	c.mu.Lock()
	if !c.closing {
		c.closing, c.reason = true, CloseNetworkError
	}
	if c.gotDisconnect && (c.reason == CloseNetworkError || c.reason == CloseClientDisconnect) {
		c.reason = CloseClientDisconnect
		if c.disconnectCode == codec.DisconnectWithWillMessage {
			c.reason = CloseClientDisconnectWithWill
		}
	}
	reason := c.reason
	c.readerActive = false
	own := !c.writerOn
	c.writerOn = true
	c.mu.Unlock()
	if own {
		// No writer is running: this goroutine writes what is left and
		// closes the socket, rather than starting one to do it.
		c.writeRounds(inLoop)
	} else {
		c.signal()
	}
	if inLoop {
		select {
		case <-c.done:
		default:
			go func() {
				<-c.done
				c.closed(reason)
			}()
			return
		}
	} else {
		<-c.done
	}
	c.closed(reason)
}

// closed removes the connection once its socket is closed, and tells the
// script and the modules.
func (c *Conn) closed(reason CloseReason) {
	defer c.srv.wg.Done()
	c.srv.conns.Delete(c.FD)
	c.srv.Stats.Connections.Add(-1)
	c.srv.Stats.Closes[reason].Add(1)
	if c.debug() {
		c.log().WithField("reason", reason.String()).Debug("connection closed")
	}
	if c.connected {
		c.srv.onClose(c, reason)
	}
	for _, m := range c.srv.cfg.Modules {
		m.ConnClosed(c, reason)
	}
}

// Reason returns why the connection closed (CloseNone while it is open).
func (c *Conn) Reason() CloseReason {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reason
}
