package engine

import (
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mqttlua/broker/codec"
)

// Server is a running broker: its listeners, its connections and its VMs.
type Server struct {
	cfg           Config
	callbackNames [16]string

	sc  atomic.Pointer[scripts]
	vms atomic.Pointer[[]*VM]

	conns  sync.Map // fd (int) -> *Conn
	nextFD atomic.Int64
	wg     sync.WaitGroup // connection goroutines

	// Shared is the key-value store every VM sees as `shared`.
	Shared *SharedStore
	// Stats are the broker's counters.
	Stats Stats

	mu        sync.Mutex
	reloadMu  sync.Mutex // serialises Reload
	listeners []net.Listener
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
	DroppedTooLarge  atomic.Int64 // packets over a client's Maximum Packet Size
	ScriptErrors     atomic.Int64
	Closes           [len(closeReasonNames)]atomic.Int64
}

// New loads the scripts and starts the VMs. A script that does not load is
// reported as a *ScriptError naming its file and line.
func New(cfg Config) (*Server, error) {
	s := &Server{cfg: cfg.withDefaults(), Shared: NewSharedStore(), stop: make(chan struct{}), readers: readerPool{conns: make(chan *Conn)}}
	for t, n := range s.cfg.Callbacks {
		if t < 16 {
			s.callbackNames[t] = n
		}
	}
	sc, err := s.loadScripts()
	if err != nil {
		return nil, err
	}
	s.sc.Store(sc)
	vms, err := s.startVMs(sc)
	if err != nil {
		return nil, err
	}
	s.vms.Store(&vms)
	go s.watchdog()
	return s, nil
}

// loadScripts compiles the scripts folder and the configured setup.
func (s *Server) loadScripts() (*scripts, error) {
	sc, err := loadScripts(s.cfg.Scripts, s.cfg.LuaLib)
	if err != nil {
		return nil, err
	}
	if s.cfg.Setup != "" {
		name := s.cfg.SetupName
		if name == "" {
			name = "setup"
		}
		if sc.setup, err = compileSource(s.cfg.Setup, name); err != nil {
			return nil, err
		}
	}
	return sc, nil
}

// Reload loads the scripts again and swaps in new VMs running them, keeping
// every connection, session, subscription, retained message and shared
// value. A packet is handled by the old VMs or the new ones, never both:
// each is dispatched to whichever pool is current when it arrives, and the
// old VMs are closed once their running calls return. If check is not nil
// it must approve the new scripts (e.g. their tests pass) first. On error
// the old scripts keep serving.
func (s *Server) Reload(check func() error) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	sc, err := s.loadScripts()
	if err != nil {
		return err
	}
	if check != nil {
		if err := check(); err != nil {
			return err
		}
	}
	vms, err := s.startVMs(sc)
	if err != nil {
		return err
	}
	s.sc.Store(sc)
	old := s.vms.Swap(&vms)
	for _, vm := range *old {
		vm.close() // waits for its running call
	}
	s.cfg.Log.WithField("scripts", s.cfg.Scripts).Info("scripts reloaded")
	return nil
}

// startVMs builds the VM pool for a set of scripts and runs each VM's
// onWorkerStart.
func (s *Server) startVMs(sc *scripts) ([]*VM, error) {
	vms := make([]*VM, s.cfg.Workers)
	for i := range vms {
		vm, err := newVM(s, i, sc)
		if err != nil {
			for _, v := range vms[:i] {
				v.close()
			}
			return nil, scriptErrorOf(err, sc.mainPath)
		}
		vms[i] = vm
	}
	for _, vm := range vms {
		vm.mu.Lock()
		if fn := vm.global("onWorkerStart"); fn != nil {
			vm.L.Push(fn)
			vm.L.Push(vm.server)
			vm.L.Push(vm.idValue)
			if err := vm.pcall(2, 0); err != nil {
				vm.mu.Unlock()
				for _, v := range vms {
					v.close()
				}
				return nil, scriptErrorOf(err, sc.mainPath)
			}
		}
		vm.mu.Unlock()
	}
	return vms, nil
}

// luaPos matches the "file:line: " that starts a Lua error message.
var luaPos = regexp.MustCompile(`^(\S+?):(\d+): (.*)$`)

// scriptErrorOf turns a Lua runtime error during loading into a one-line
// ScriptError ("scripts/main.lua:3: attempt to call a nil value").
func scriptErrorOf(err error, file string) error {
	var se *ScriptError
	if errors.As(err, &se) {
		return se
	}
	msg := oneLine(err.Error())
	if m := luaPos.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[2])
		return &ScriptError{File: m[1], Line: line, Msg: m[3]}
	}
	return &ScriptError{File: file, Msg: msg}
}

func (s *Server) scripts() *scripts { return s.sc.Load() }

// vm returns the VM a connection is pinned to.
func (s *Server) vm(fd int) *VM {
	vms := *s.vms.Load()
	return vms[fd%len(vms)]
}

// lockVM returns the connection's VM, locked. A VM replaced by a reload
// while this waited for it is skipped for its successor.
func (s *Server) lockVM(fd int) *VM {
	for {
		vm := s.vm(fd)
		vm.mu.Lock()
		if !vm.closed {
			return vm
		}
		vm.mu.Unlock()
	}
}

// VMs returns the current VM pool.
func (s *Server) VMs() []*VM { return *s.vms.Load() }

// Config returns the server's configuration with defaults applied.
func (s *Server) Config() Config { return s.cfg }

// watchdog enforces the handler deadline on every VM.
func (s *Server) watchdog() {
	period := s.cfg.HandlerTimeout / 10
	if period < 10*time.Millisecond {
		period = 10 * time.Millisecond
	}
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case now := <-t.C:
			for _, vm := range s.VMs() {
				vm.watchdog(now, s.cfg.HandlerTimeout)
			}
		}
	}
}

// Listen opens every configured listener. It logs one line per address.
func (s *Server) Listen() error {
	// MQTT has its own keep alive: TCP keep-alive probes would only cost
	// three setsockopt calls per accepted connection.
	lc := net.ListenConfig{KeepAlive: -1}
	for _, addr := range s.cfg.Listen {
		ln, err := lc.Listen(context.Background(), "tcp", addr)
		if err != nil {
			s.closeListeners()
			return fmt.Errorf("listen on %s: %w", addr, err)
		}
		s.mu.Lock()
		s.listeners = append(s.listeners, ln)
		s.mu.Unlock()
		s.cfg.Log.WithField("addr", ln.Addr().String()).Infof("listening on %s with %d Lua workers, scripts from %s", ln.Addr(), s.cfg.Workers, s.cfg.Scripts)
	}
	if eventLoopsAvailable && !s.cfg.GoroutinePerConn && s.evl == nil {
		if err := s.startEventLoops(); err != nil {
			s.closeListeners()
			return err
		}
	}
	return nil
}

// Addrs returns the addresses the server listens on.
func (s *Server) Addrs() []net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]net.Addr, len(s.listeners))
	for i, ln := range s.listeners {
		out[i] = ln.Addr()
	}
	return out
}

// Serve accepts connections on every listener until Shutdown.
func (s *Server) Serve() {
	s.mu.Lock()
	lns := append([]net.Listener(nil), s.listeners...)
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, ln := range lns {
		wg.Add(1)
		go func(ln net.Listener) {
			defer wg.Done()
			s.acceptLoop(ln)
		}(ln)
	}
	wg.Wait()
}

func (s *Server) acceptLoop(ln net.Listener) {
	if s.acceptRaw(ln) {
		return
	}
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.closing.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off as
			// net/http does rather than spin.
			if delay == 0 {
				delay = 5 * time.Millisecond
			} else if delay *= 2; delay > time.Second {
				delay = time.Second
			}
			s.cfg.Log.WithError(err).Warn("accept failed")
			time.Sleep(delay)
			continue
		}
		delay = 0
		s.ServeConn(nc)
	}
}

// ServeConn serves one connection from any transport (TCP, TLS, an
// in-memory pipe). It returns at once, with the connection (nil if
// refused); the connection runs on its own goroutines.
func (s *Server) ServeConn(nc net.Conn) *Conn {
	if !s.admit(func() string { return nc.RemoteAddr().String() }) {
		nc.Close()
		return nil
	}
	c := newConn(s, int(s.nextFD.Add(1)), nc)
	s.track(c)
	// The writer goroutine starts when there is something to write.
	s.readers.serve(c, s.stop)
	return c
}

// admit reports whether a new connection may be served: not while
// shutting down, nor past MaxConnections (counted and logged with the
// peer's address, which remote gives).
func (s *Server) admit(remote func() string) bool {
	if s.closing.Load() {
		return false
	}
	if max := s.cfg.MaxConnections; max > 0 && s.Stats.Connections.Load() >= int64(max) {
		s.Stats.Refused.Add(1)
		s.cfg.Log.WithField("remote", remote()).Warnf("connection refused: %d connections is the maximum", max)
		return false
	}
	return true
}

// track adds a new connection to the server's table and counters, for
// its reader (goroutine or event loop); Conn.closed takes it out.
func (s *Server) track(c *Conn) {
	s.conns.Store(c.FD, c)
	s.Stats.Connections.Add(1)
	s.Stats.ConnectionsTotal.Add(1)
	s.wg.Add(1)
}

// Conn returns the live connection with this fd, or nil.
func (s *Server) Conn(fd int) *Conn {
	if v, ok := s.conns.Load(fd); ok {
		return v.(*Conn)
	}
	return nil
}

// Range calls f for each live connection until f returns false.
func (s *Server) Range(f func(*Conn) bool) {
	s.conns.Range(func(_, v any) bool { return f(v.(*Conn)) })
}

func (s *Server) closeListeners() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ln := range s.listeners {
		ln.Close()
	}
	s.closeRawListeners()
}

// Shutdown stops accepting, tells MQTT 5 clients with DISCONNECT 0x8B,
// closes every connection and waits for them until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	if s.closing.Swap(true) {
		return nil
	}
	s.closeListeners()
	s.Range(func(c *Conn) bool {
		c.Close(CloseServerShutdown)
		return true
	})
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		// Connections whose peers do not read: cut them off.
		s.Range(func(c *Conn) bool {
			if c.raw != nil {
				c.raw.abort()
			} else {
				c.nc.Close()
			}
			return true
		})
		err = ctx.Err()
	}
	close(s.stop)
	s.stopEventLoops()
	for _, vm := range s.VMs() {
		vm.close()
	}
	return err
}

// callbackName returns the handler name for a packet type.
func (s *Server) callbackName(t codec.Type) string { return s.callbackNames[t] }
