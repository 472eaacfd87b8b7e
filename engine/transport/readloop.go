package transport

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mqttlua/broker/codec"
	"github.com/sirupsen/logrus"
)

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
	r.MaxPacketSize = c.t.cfg.MaxPacketSize
	r.FirstConnect = true
	return r
}

// afterRead takes in what a read returned and reports whether to go on.
//
//go:noinline
func (c *Conn) afterRead(r *codec.Reader, n int, err error) bool {
	r.Advance(n)
	if n > 0 {
		c.t.Stats.BytesIn.Add(int64(n))
	}
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
			if c.closingNow.Load() {
				// Closing (from another goroutine, or lingering): what
				// the peer still sends is not handled.
				return false
			}
			c.t.Stats.PacketsIn[p.Type&15].Add(1)
			c.recv.Packet(p)
			c.ranHandler = true
		}
		if err != nil || c.closingNow.Load() {
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
	if t := c.readWait(); t > 0 {
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
	if c.closingNow.Load() {
		// shut may have set the deadline that wakes this reader just
		// before the line above replaced it.
		c.nc.SetReadDeadline(time.Now())
	}
}

// readWait is how long the next read may wait (0: no limit). Until the
// layer above sets a read timeout, it is what is left of the connect
// timeout counted from accept: an absolute deadline, which a client
// sending its CONNECT a byte at a time does not push back.
func (c *Conn) readWait() time.Duration {
	if t := c.readTimeout.Load(); t >= 0 {
		return time.Duration(t)
	}
	left := c.connectBy - monoNow()
	if left <= 0 {
		left = 1 // past: the read times out at once
	}
	return time.Duration(left)
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

// readError hands a read or decode error to the layer above, which
// answers as the protocol says; a broken connection is just closed.
func (c *Conn) readError(err error, p *codec.Packet) {
	if c.closingNow.Load() {
		return // closing already: nothing to answer, nobody to tell
	}
	var ce *codec.Error
	var ne net.Error
	switch {
	case errors.As(err, &ce):
		c.recv.Malformed(ce, p)
	case errors.As(err, &ne) && ne.Timeout():
		c.recv.TimedOut()
	default:
		if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, net.ErrClosed) &&
			c.t.cfg.Log.IsLevelEnabled(logrus.DebugLevel) {
			c.t.cfg.Log.WithError(err).WithField("fd", c.FD).Debug("read failed")
		}
		c.Close(CloseNetworkError)
	}
}

// finish runs once when the reader stops: it waits for the writer, removes
// the connection, and tells the script and the modules. On an event loop
// (inLoop) it does not wait: if the writer is still busy, the rest runs on
// a goroutine.
func (c *Conn) finish(inLoop bool) {
	c.mu.Lock()
	if !c.closing {
		c.closing, c.reason = true, CloseNetworkError
		c.closingNow.Store(true)
	}
	if c.peerReason != CloseNone && (c.reason == CloseNetworkError || c.reason == CloseClientDisconnect) {
		c.reason = c.peerReason
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
			if c.raw != nil {
				c.raw.finishingOffLoop()
			}
			go func() {
				<-c.done
				c.closed(reason)
			}()
			return
		}
	} else {
		<-c.done
	}
	if c.lingering {
		c.t.lingerWG.Add(1) // before closed, which Shutdown's wait follows
	}
	c.closed(reason)
	if c.lingering {
		c.linger()
	}
}

// closed removes the connection once its socket is closed, and tells the
// layer above.
func (c *Conn) closed(reason CloseReason) {
	defer c.t.wg.Done()
	c.t.conns.Delete(c.FD)
	if c.ls != nil {
		c.ls.conns.Add(-1)
	}
	c.t.Stats.Connections.Add(-1)
	c.t.Stats.Closes[reason].Add(1)
	c.recv.Closed(reason)
}
