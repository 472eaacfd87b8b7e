package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
)

// Config configures a Transport. Every field must be set; the engine
// applies the defaults.
type Config struct {
	// Listeners lists the listeners to open.
	Listeners []ListenerConfig
	// Loops is the number of event loops (Linux) and the modulus of the
	// connection-to-loop assignment: connection FD goes to loop FD % Loops.
	Loops int
	// GoroutinePerConn serves TCP connections with a reader goroutine
	// each, as ServeConn serves other transports, instead of the event
	// loops (Linux only; elsewhere it is always so).
	GoroutinePerConn bool
	// MaxPacketSize is the largest packet the codec accepts.
	MaxPacketSize int
	// MaxConnections refuses connections past this many (0: no limit).
	MaxConnections int
	// ConnectTimeout is the read timeout of a new connection.
	ConnectTimeout time.Duration
	// MaxOutbound bounds a connection's queued outbound bytes; past it
	// the connection is closed as a slow consumer.
	MaxOutbound int
	// Log receives the transport's warnings.
	Log *logrus.Logger
	// Open makes the Receiver of a new connection, before anything of it
	// is read.
	Open func(c *Conn) Receiver
	// Stats receives the counters; nil: the transport keeps its own.
	Stats *Stats
	// Listening is told each listener's URL and address when it opens.
	Listening func(url string, addr net.Addr)
}

// monoBase anchors the monotonic clock deadlines are kept in.
var monoBase = time.Now()

func monoNow() int64 { return int64(time.Since(monoBase)) }

// Listener is a source of connections: TCP, TLS, WebSocket (over TCP or
// TLS) or a Unix socket, each optionally behind a PROXY protocol header.
// Each accepted net.Conn goes to establish, and everything after that is
// the same Conn whatever the listener.
type Listener interface {
	// Addr is the address it listens on.
	Addr() net.Addr
	// Serve accepts connections and passes each to establish until the
	// listener is closed.
	Serve(establish func(net.Conn))
	// Close stops accepting.
	Close() error
}

// Transport owns the listeners and the live connections.
type Transport struct {
	cfg Config

	conns  sync.Map // fd (int) -> *Conn
	nextFD atomic.Int64
	wg     sync.WaitGroup // connection goroutines
	// lingerWG counts sockets lingering after their connection ended
	// (linger.go), which Shutdown waits for too.
	lingerWG sync.WaitGroup

	// Stats are the transport's counters (Config.Stats, or its own).
	Stats *Stats

	mu        sync.Mutex // guards listeners
	listeners []opened
	closing   atomic.Bool
	stop      chan struct{}
	readers   readerPool
	evl       *eventLoops // nil: every connection has a reader goroutine
}

// Stats are counters, safe to read at any time.
type Stats struct {
	ConnectionsTotal atomic.Int64
	Connections      atomic.Int64
	ConnectionsPeak  atomic.Int64 // the most connections at once
	Refused          atomic.Int64 // connections past MaxConnections
	// PacketsIn counts decoded packets by type (index: the packet type).
	PacketsIn [16]atomic.Int64
	// PacketsOut counts the packets the layer above queued, by type, as
	// it reports them: the transport sees only bytes.
	PacketsOut      [16]atomic.Int64
	BytesIn         atomic.Int64 // bytes read from clients (after TLS and WebSocket framing)
	BytesOut        atomic.Int64 // bytes written to clients (before TLS and WebSocket framing)
	SlowConsumers   atomic.Int64
	DroppedTooLarge atomic.Int64 // packets over a peer's maximum packet size
	Closes          [NumCloseReasons]atomic.Int64
}

// New returns a transport that listens nowhere yet.
func New(cfg Config) *Transport {
	t := &Transport{cfg: cfg, Stats: cfg.Stats, stop: make(chan struct{}), readers: readerPool{conns: make(chan *Conn)}}
	if t.Stats == nil {
		t.Stats = &Stats{}
	}
	return t
}

// Listen opens every configured listener.
func (t *Transport) Listen() error {
	for _, lc := range t.cfg.Listeners {
		o, err := t.open(lc)
		if err != nil {
			t.closeListeners()
			return err
		}
		t.mu.Lock()
		t.listeners = append(t.listeners, o)
		t.mu.Unlock()
		if t.cfg.Listening != nil {
			t.cfg.Listening(o.ls.url, o.ln.Addr())
		}
	}
	if eventLoopsAvailable && !t.cfg.GoroutinePerConn && t.evl == nil {
		if err := t.startEventLoops(); err != nil {
			t.closeListeners()
			return err
		}
	}
	return nil
}

// ReloadTLS reads every TLS listener's certificate files again (on
// SIGHUP): new handshakes use them. A listener whose files do not load
// keeps its current certificates; the error says which and why.
func (t *Transport) ReloadTLS() error {
	var errs []error
	for _, o := range t.opened() {
		if h := o.ls.tls; h != nil {
			if err := h.reload(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// opened returns a copy of the listener list.
func (t *Transport) opened() []opened {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]opened(nil), t.listeners...)
}

// Addrs returns the addresses the transport listens on.
func (t *Transport) Addrs() []net.Addr {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]net.Addr, len(t.listeners))
	for i, o := range t.listeners {
		out[i] = o.ln.Addr()
	}
	return out
}

// Serve accepts connections on every listener until Shutdown.
func (t *Transport) Serve() {
	var wg sync.WaitGroup
	for _, o := range t.opened() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o.ln.Serve(func(nc net.Conn) { t.serveConn(nc, o.ls) })
		}()
	}
	wg.Wait()
}

// tcpListener is a TCP listener: on Linux its connections are accepted by
// the event loops themselves (raw), elsewhere (or with GoroutinePerConn,
// or behind a PROXY header) by net.Listener.Accept, each getting a reader
// goroutine.
type tcpListener struct {
	ls  *listenerState
	ln  net.Listener
	raw bool
}

func (l *tcpListener) Addr() net.Addr { return l.ln.Addr() }
func (l *tcpListener) Close() error   { return l.ln.Close() }

func (l *tcpListener) Serve(establish func(net.Conn)) {
	if l.raw && l.ls.t.acceptRaw(l.ln, l.ls) {
		return
	}
	acceptLoop(l.ls, l.ln, establish)
}

// ServeConn serves one connection from outside the listeners (an
// in-memory pipe, a connection an embedding program accepted). It
// returns at once, with the connection (nil if refused); the connection
// runs on its own goroutines.
func (t *Transport) ServeConn(nc net.Conn) *Conn { return t.serveConn(nc, nil) }

func (t *Transport) serveConn(nc net.Conn, ls *listenerState) *Conn {
	if !t.admit(ls, func() string { return nc.RemoteAddr().String() }) {
		nc.Close()
		return nil
	}
	c := newConn(t, int(t.nextFD.Add(1)), nc)
	c.ls = ls
	switch x := nc.(type) {
	case *tls.Conn:
		st := x.ConnectionState()
		c.cert = peerCert(&st)
	case *wsConn:
		c.cert = peerCert(x.state)
	}
	t.track(c)
	if _, fragile := nc.(interface{ fragileDeadlines() }); fragile {
		// A pooled reader's short deadline would end it: a goroutine
		// of its own.
		go c.readLoop()
		return c
	}
	// The writer goroutine starts when there is something to write.
	t.readers.serve(c, t.stop)
	return c
}

// admit reports whether a new connection may be served: not while
// shutting down, nor past MaxConnections or its listener's own maximum
// (counted and logged with the peer's address, which remote gives).
func (t *Transport) admit(ls *listenerState, remote func() string) bool {
	if t.closing.Load() {
		return false
	}
	if max := t.cfg.MaxConnections; max > 0 && t.Stats.Connections.Load() >= int64(max) {
		t.Stats.Refused.Add(1)
		t.cfg.Log.WithField("remote", remote()).Warnf("connection refused: %d connections is the maximum", max)
		return false
	}
	if ls != nil {
		if max := ls.cfg.MaxConnections; max > 0 && ls.conns.Load() >= int64(max) {
			t.Stats.Refused.Add(1)
			t.cfg.Log.WithFields(logrus.Fields{"remote": remote(), "listener": ls.url}).Warnf("connection refused: %d connections is this listener's maximum", max)
			return false
		}
	}
	return true
}

// track adds a new connection to the table and counters, for its reader
// (goroutine or event loop); Conn.closed takes it out.
func (t *Transport) track(c *Conn) {
	t.conns.Store(c.FD, c)
	if c.ls != nil {
		c.ls.conns.Add(1)
	}
	now := t.Stats.Connections.Add(1)
	for peak := t.Stats.ConnectionsPeak.Load(); now > peak && !t.Stats.ConnectionsPeak.CompareAndSwap(peak, now); peak = t.Stats.ConnectionsPeak.Load() {
	}
	t.Stats.ConnectionsTotal.Add(1)
	t.wg.Add(1)
}

// Conn returns the live connection with this fd, or nil.
func (t *Transport) Conn(fd int) *Conn {
	if v, ok := t.conns.Load(fd); ok {
		return v.(*Conn)
	}
	return nil
}

// Range calls f for each live connection until f returns false.
func (t *Transport) Range(f func(*Conn) bool) {
	t.conns.Range(func(_, v any) bool { return f(v.(*Conn)) })
}

func (t *Transport) closeListeners() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, o := range t.listeners {
		o.ln.Close()
	}
	t.closeRawListeners()
}

// Shutdown stops accepting, has goodbye close every connection (the
// layer above sends its protocol's farewell), and waits for them until
// ctx ends; connections whose peers do not read are then cut off.
func (t *Transport) Shutdown(ctx context.Context, goodbye func(*Conn)) error {
	if t.closing.Swap(true) {
		return nil
	}
	t.closeListeners()
	t.Range(func(c *Conn) bool {
		goodbye(c)
		return true
	})
	done := make(chan struct{})
	go func() { t.wg.Wait(); t.lingerWG.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		t.Range(func(c *Conn) bool {
			if c.raw != nil {
				c.raw.abort()
			} else {
				c.nc.Close()
			}
			return true
		})
		err = ctx.Err()
	}
	close(t.stop)
	t.stopEventLoops()
	return err
}

// ListenerConnections calls f with each listener's URL and live
// connections, in the order they were configured.
func (t *Transport) ListenerConnections(f func(url string, n int64)) {
	for _, o := range t.opened() {
		f(o.ls.url, o.ls.conns.Load())
	}
}

// EventLoops reports whether the event loops serve TCP connections.
func (t *Transport) EventLoops() bool { return t.evl != nil }
