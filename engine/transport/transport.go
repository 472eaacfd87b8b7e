package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
)

// Config configures a Transport. Every field must be set; the engine
// applies the defaults.
type Config struct {
	// Listen lists the TCP addresses to listen on (host:port).
	Listen []string
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
	// Listening is told each listener's address when it opens.
	Listening func(addr net.Addr)
}

// monoBase anchors the monotonic clock deadlines are kept in.
var monoBase = time.Now()

func monoNow() int64 { return int64(time.Since(monoBase)) }

// Listener is a source of connections. TCP is the one implementation
// today; each accepted net.Conn goes to establish, and everything after
// that is the same Conn whatever the listener.
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

	// Stats are the transport's counters (Config.Stats, or its own).
	Stats *Stats

	mu        sync.Mutex // guards listeners
	listeners []Listener
	closing   atomic.Bool
	stop      chan struct{}
	readers   readerPool
	evl       *eventLoops // nil: every connection has a reader goroutine
}

// Stats are counters, safe to read at any time.
type Stats struct {
	ConnectionsTotal atomic.Int64
	Connections      atomic.Int64
	Refused          atomic.Int64 // connections past MaxConnections
	PacketsIn        atomic.Int64
	SlowConsumers    atomic.Int64
	DroppedTooLarge  atomic.Int64 // packets over a peer's maximum packet size
	Closes           [NumCloseReasons]atomic.Int64
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
	// MQTT has its own keep alive: TCP keep-alive probes would only cost
	// three setsockopt calls per accepted connection.
	lc := net.ListenConfig{KeepAlive: -1}
	for _, addr := range t.cfg.Listen {
		ln, err := lc.Listen(context.Background(), "tcp", addr)
		if err != nil {
			t.closeListeners()
			return fmt.Errorf("listen on %s: %w", addr, err)
		}
		t.mu.Lock()
		t.listeners = append(t.listeners, &tcpListener{t: t, ln: ln})
		t.mu.Unlock()
		if t.cfg.Listening != nil {
			t.cfg.Listening(ln.Addr())
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

// Addrs returns the addresses the transport listens on.
func (t *Transport) Addrs() []net.Addr {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]net.Addr, len(t.listeners))
	for i, ln := range t.listeners {
		out[i] = ln.Addr()
	}
	return out
}

// Serve accepts connections on every listener until Shutdown.
func (t *Transport) Serve() {
	t.mu.Lock()
	lns := append([]Listener(nil), t.listeners...)
	t.mu.Unlock()
	var wg sync.WaitGroup
	for _, ln := range lns {
		wg.Add(1)
		go func(ln Listener) {
			defer wg.Done()
			ln.Serve(func(nc net.Conn) { t.ServeConn(nc) })
		}(ln)
	}
	wg.Wait()
}

// tcpListener is a TCP listener: on Linux its connections are accepted by
// the event loops themselves, elsewhere (or with GoroutinePerConn) by
// net.Listener.Accept, each getting a reader goroutine.
type tcpListener struct {
	t  *Transport
	ln net.Listener
}

func (l *tcpListener) Addr() net.Addr { return l.ln.Addr() }
func (l *tcpListener) Close() error   { return l.ln.Close() }

func (l *tcpListener) Serve(establish func(net.Conn)) {
	if l.t.acceptRaw(l.ln) {
		return
	}
	var delay time.Duration
	for {
		nc, err := l.ln.Accept()
		if err != nil {
			if l.t.closing.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off as
			// net/http does rather than spin.
			if delay == 0 {
				delay = 5 * time.Millisecond
			} else if delay *= 2; delay > time.Second {
				delay = time.Second
			}
			l.t.cfg.Log.WithError(err).Warn("accept failed")
			time.Sleep(delay)
			continue
		}
		delay = 0
		establish(nc)
	}
}

// ServeConn serves one connection from any listener (TCP, TLS, an
// in-memory pipe). It returns at once, with the connection (nil if
// refused); the connection runs on its own goroutines.
func (t *Transport) ServeConn(nc net.Conn) *Conn {
	if !t.admit(func() string { return nc.RemoteAddr().String() }) {
		nc.Close()
		return nil
	}
	c := newConn(t, int(t.nextFD.Add(1)), nc)
	t.track(c)
	// The writer goroutine starts when there is something to write.
	t.readers.serve(c, t.stop)
	return c
}

// admit reports whether a new connection may be served: not while
// shutting down, nor past MaxConnections (counted and logged with the
// peer's address, which remote gives).
func (t *Transport) admit(remote func() string) bool {
	if t.closing.Load() {
		return false
	}
	if max := t.cfg.MaxConnections; max > 0 && t.Stats.Connections.Load() >= int64(max) {
		t.Stats.Refused.Add(1)
		t.cfg.Log.WithField("remote", remote()).Warnf("connection refused: %d connections is the maximum", max)
		return false
	}
	return true
}

// track adds a new connection to the table and counters, for its reader
// (goroutine or event loop); Conn.closed takes it out.
func (t *Transport) track(c *Conn) {
	t.conns.Store(c.FD, c)
	t.Stats.Connections.Add(1)
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
	for _, ln := range t.listeners {
		ln.Close()
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
	go func() { t.wg.Wait(); close(done) }()
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

// EventLoops reports whether the event loops serve TCP connections.
func (t *Transport) EventLoops() bool { return t.evl != nil }
