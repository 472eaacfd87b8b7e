package transport

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mqttlua/broker/codec"
)

// Receiver is the layer above for one connection: the transport hands it
// what the connection reads and tells it how the connection ended. Its
// methods run on the connection's reader (a goroutine or an event loop),
// one at a time, in order.
type Receiver interface {
	// Packet handles one decoded packet. Output it queues for this or
	// other connections should go through the connection's Batch.
	Packet(p *codec.Packet)
	// Malformed is told what the codec refused (p holds what was decoded
	// of the packet); it answers as the protocol says and closes.
	Malformed(err *codec.Error, p *codec.Packet)
	// TimedOut is told that nothing arrived within the read timeout; it
	// closes the connection.
	TimedOut()
	// Closed is called once, after the socket is closed and the
	// connection has left the transport's table.
	Closed(reason CloseReason)
}

// Encoder appends encoded packets to dst and returns the extended slice.
// It runs under the connection's lock and must not block.
type Encoder func(dst []byte) ([]byte, error)

// Conn is one client connection: its socket, its reader's state, and its
// outbound queue with the writer that empties it.
type Conn struct {
	// FD identifies the connection; it is never reused while the
	// transport runs.
	FD   int
	t    *Transport
	nc   net.Conn
	recv Receiver
	ls   *listenerState // nil for ServeConn's
	cert *PeerCert      // the verified client certificate, if any
	// For a connection an event loop serves: its socket and its reader.
	raw *rawConn
	rd  *codec.Reader

	written     atomic.Int64 // bytes written to the socket, for telling a slow peer from a stuck one
	readTimeout atomic.Int64 // how long a read may wait, ns; 0: no limit; -1: not set, connectBy applies
	connectBy   int64        // monoNow deadline for the CONNECT, until readTimeout is set

	// Reader state.
	usedShort     bool      // the read deadline is a pooled reader's short one
	shortDeadline time.Time // that deadline
	ranHandler    bool      // a packet was handled since the last respawn
	respawned     time.Time // when the reader last moved goroutines
	batch         Batch

	// mu guards the outbound queue and the closing state.
	mu           sync.Mutex
	out          []byte
	spare        []byte
	maxPacketOut int         // largest packet the peer accepts, 0: no limit
	peerReason   CloseReason // the reason for a close by the peer, if set
	closing      bool
	reason       CloseReason
	// closingNow mirrors closing for the reader, which checks it per
	// packet without the lock.
	closingNow atomic.Bool
	// lingering is set by shut (before done closes) when the socket was
	// half-closed to linger: the reader then discards input for a while
	// before closing it (see linger.go).
	lingering bool
	writing   int // bytes the writer is writing now
	shutOnce  sync.Once
	drained   Drained // senders waiting for the queue to fall under low water
	// The writer goroutine runs only while there is something to write,
	// so an idle connection costs one goroutine, not two.
	writerOn     bool          // a writer (goroutine, or the reader writing its own) is writing
	readerActive bool          // the reader is handling packets and will write before waiting
	pending      bool          // signalled while the writer was writing
	done         chan struct{} // closed when the writer has closed the socket
}

func newConn(t *Transport, fd int, nc net.Conn) *Conn {
	c := &Conn{FD: fd, t: t, nc: nc, done: make(chan struct{})}
	c.batch.owner = c
	c.readTimeout.Store(-1)
	c.connectBy = monoNow() + int64(t.cfg.ConnectTimeout)
	c.recv = t.cfg.Open(c)
	return c
}

// Batch is the batch of the connection's reader: output queued through
// it while a packet of this connection is handled is written when the
// whole read is handled. Only code running on the reader (Receiver
// methods) may use it.
func (c *Conn) Batch() *Batch { return &c.batch }

// Receiver returns the connection's Receiver, made by Config.Open.
func (c *Conn) Receiver() Receiver { return c.recv }

// RemoteAddr returns the peer's address.
func (c *Conn) RemoteAddr() net.Addr { return c.nc.RemoteAddr() }

// RemoteAddrString returns the peer's address as text, "host:port"
// (behind a PROXY header, the client's as the proxy saw it; on a Unix
// socket, "unix:" and the socket's path); for a socket an event loop
// serves, without making a net.Addr first.
func (c *Conn) RemoteAddrString() string {
	if c.ls != nil && c.ls.cfg.Scheme == "unix" {
		return "unix:" + c.ls.cfg.Addr
	}
	if s, ok := c.nc.(interface{ remoteAddrString() string }); ok {
		return s.remoteAddrString()
	}
	return c.nc.RemoteAddr().String()
}

// Listener returns the URL of the listener the connection came from
// ("" for ServeConn's).
func (c *Conn) Listener() string {
	if c.ls == nil {
		return ""
	}
	return c.ls.url
}

// PeerCert returns the client's verified TLS certificate, or nil.
func (c *Conn) PeerCert() *PeerCert { return c.cert }

// SetReadTimeout sets how long each read may wait for input before the
// Receiver is told it TimedOut (0: no limit). Until it is called the
// connect timeout applies, counted from accept.
func (c *Conn) SetReadTimeout(d time.Duration) { c.readTimeout.Store(int64(d)) }

// SetMaxPacketOut sets the largest packet Append may queue (0: no limit).
func (c *Conn) SetMaxPacketOut(n int) {
	c.mu.Lock()
	c.maxPacketOut = n
	c.mu.Unlock()
}

// ExpectClose names the reason recorded when the peer now closes the
// connection (or it is closed with CloseClientDisconnect): after an MQTT
// DISCONNECT, a closed socket is the client's orderly goodbye.
func (c *Conn) ExpectClose(reason CloseReason) {
	c.mu.Lock()
	c.peerReason = reason
	c.mu.Unlock()
}

// ErrClosed is returned when queuing to a connection that is closing.
var ErrClosed = errors.New("closed")

// ErrFull is returned when a connection's outbound queue is over its limit;
// the connection is then closed as a slow consumer.
var ErrFull = errors.New("full")

// ErrTooLarge is returned when a packet exceeds the peer's maximum packet
// size; it is dropped, counted, and the connection stays open.
var ErrTooLarge = errors.New("too large")

// wakeVia signals c's writer now, or at the batch's flush.
func (c *Conn) wakeVia(batch *Batch) {
	if batch != nil {
		batch.add(c)
	} else {
		c.signal()
	}
}

// Append lets enc append one encoded packet to the outbound queue, under
// the connection's lock, so that fan-out encodes straight into the queue
// with no intermediate buffer. The writer's wake-up is deferred to batch
// (nil: now). On error, past the peer's maximum packet size or past the
// queue's limit nothing is queued.
func (c *Conn) Append(enc Encoder, batch *Batch) error { return c.appendVia(enc, batch, true) }

// Write queues raw bytes, which may hold several packets (no packet size
// check), waking the writer through batch (nil: now).
func (c *Conn) Write(b []byte, batch *Batch) error {
	return c.appendVia(func(dst []byte) ([]byte, error) { return append(dst, b...), nil }, batch, false)
}

// AppendUnchecked is Append without the packet size check, for replies
// sent before the peer's limit is known.
func (c *Conn) AppendUnchecked(enc Encoder, batch *Batch) error {
	return c.appendVia(enc, batch, false)
}

func (c *Conn) appendVia(enc Encoder, batch *Batch, sizeCheck bool) error {
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
		c.out = out[:n]
		c.mu.Unlock()
		c.t.Stats.DroppedTooLarge.Add(1)
		return ErrTooLarge
	}
	// The limit counts the part the writer is writing now too: memory is
	// bounded by MaxOutbound, not twice it.
	if len(out)+c.writing > c.t.cfg.MaxOutbound {
		c.out = out[:n]
		c.mu.Unlock()
		c.CutOff()
		return ErrFull
	}
	c.out = out
	// Senders are held back by what waits to be written, not by what the
	// writer is writing: counting that too paused publishers to a fast
	// reader whenever its writer held a large buffer (fan-in -10%).
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
func (c *Conn) highWater() int { return c.t.cfg.MaxOutbound / 4 }
func (c *Conn) lowWater() int  { return c.t.cfg.MaxOutbound / 8 }

// WaitDrained waits until the outbound queue is under the low-water mark,
// the connection closes, or the timeout passes. Senders call it through
// Wait, which cuts a stuck connection off.
func (c *Conn) WaitDrained(timeout time.Duration) {
	c.drained.Wait(&c.mu, func() bool { return c.closing || len(c.out)+c.writing < c.lowWater() }, timeout)
}

// Progress is the bytes written to the socket so far.
func (c *Conn) Progress() int64 { return c.written.Load() }

// Backlogged reports whether the connection is open with more queued,
// the part being written included, than its high-water mark.
func (c *Conn) Backlogged() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.closing && len(c.out)+c.writing > c.highWater()
}

// Pressed reports whether the outbound queue is over its high-water
// mark: a sender that can wait should (see WaitDrained).
func (c *Conn) Pressed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.out) > c.highWater()
}

// SameClient reports whether c is other.
func (c *Conn) SameClient(other *Conn) bool { return c == other }

// CutOff closes the connection as a slow consumer, counted once: the
// layer above calls it for a receiver that stopped taking its messages.
func (c *Conn) CutOff() {
	if c.closeWith(CloseSlowConsumer, nil) {
		c.t.Stats.SlowConsumers.Add(1)
	}
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
	c.t.wg.Add(1)
	go c.writeLoop()
}

// Close closes the connection for reason once its queue is written.
func (c *Conn) Close(reason CloseReason) { c.CloseWith(reason, nil) }

// CloseWith closes the connection for reason, after queuing what last
// encodes (a goodbye packet; nil: nothing) behind what is queued.
func (c *Conn) CloseWith(reason CloseReason, last Encoder) { c.closeWith(reason, last) }

// closeWith is CloseWith; it reports whether this call closed the
// connection (false: it was closing already).
func (c *Conn) closeWith(reason CloseReason, last Encoder) bool {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return false
	}
	c.closing = true
	c.closingNow.Store(true)
	c.reason = reason
	c.drained.Signal() // senders waiting for this queue go on
	if last != nil && reason != CloseSlowConsumer {
		if out, err := last(c.out); err == nil {
			c.out = out
		}
	}
	c.mu.Unlock()
	// A writer blocked on a peer that stopped reading must not hold the
	// connection open: what is queued gets closeWriteGrace to go out; a
	// slow consumer's, none (it is why the connection closes).
	grace := closeWriteGrace
	if reason == CloseSlowConsumer {
		grace = 0
	}
	c.nc.SetWriteDeadline(time.Now().Add(grace))
	c.signal()
	return true
}

// closeWriteGrace is how long a closing connection's queue may take to be
// written.
const closeWriteGrace = 2 * time.Second

// Closing reports whether the connection is closing or closed.
func (c *Conn) Closing() bool { return c.closingNow.Load() }

// Reason returns why the connection closed (CloseNone while it is open).
func (c *Conn) Reason() CloseReason {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reason
}

// Blocking is called on the connection's reader, in one of its
// Receiver's methods, before the layer above waits for something slow (a
// script's HTTP or database call): what the read produced so far is
// written now, and if the reader is an event loop, the loop goes on with
// its other connections in a new goroutine while this one waits. The
// connection reads nothing more until the Receiver's method returns, so
// its packets are still handled one at a time, in order. Calling it
// again in the same method costs nothing.
func (c *Conn) Blocking() {
	c.batch.flushOwn()
	if c.raw != nil {
		c.raw.blocking(c)
	}
}
