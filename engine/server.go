package engine

import (
	"context"
	"errors"
	"net"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mqttlua/broker/codec"
	"github.com/mqttlua/broker/engine/broker"
	"github.com/mqttlua/broker/engine/transport"
)

// Server is a running broker: its transport, its VMs and its modules.
type Server struct {
	cfg           Config
	callbackNames [16]string

	sc  atomic.Pointer[scripts]
	vms atomic.Pointer[[]*VM]

	tr     *transport.Transport
	broker *broker.Broker

	// Shared is the key-value store every VM sees as `shared`.
	Shared *SharedStore
	// Stats are the broker's counters.
	Stats Stats

	reloadMu sync.Mutex // serialises Reload
	shut     atomic.Bool
	stop     chan struct{} // closed by Shutdown: ends the watchdog
}

// Stats are counters, safe to read at any time: the transport's, and the
// scripts' errors.
type Stats struct {
	transport.Stats
	ScriptErrors atomic.Int64
}

// New loads the scripts and starts the VMs. A script that does not load is
// reported as a *ScriptError naming its file and line.
func New(cfg Config) (*Server, error) {
	s := &Server{cfg: cfg.withDefaults(), Shared: NewSharedStore(), stop: make(chan struct{})}
	s.broker = broker.New(broker.Config{
		TopicAliasMaximum: s.cfg.TopicAliasMaximum, ReceiveMaximum: s.cfg.ReceiveMaximum,
		MaxKeepAlive: s.cfg.MaxKeepAlive, MaxPacketSize: s.cfg.MaxPacketSize, Log: s.cfg.Log,
	})
	s.broker.SetHooks(s)
	s.tr = transport.New(transport.Config{
		Listen: s.cfg.Listen, Loops: s.cfg.Workers, GoroutinePerConn: s.cfg.GoroutinePerConn,
		MaxPacketSize: s.cfg.MaxPacketSize, MaxConnections: s.cfg.MaxConnections,
		ConnectTimeout: s.cfg.ConnectTimeout, MaxOutbound: s.cfg.MaxOutbound,
		Log: s.cfg.Log, Open: s.broker.Open, Stats: &s.Stats.Stats,
		Listening: func(addr net.Addr) {
			s.cfg.Log.WithField("addr", addr.String()).Infof("listening on %s with %d Lua workers, scripts from %s", addr, s.cfg.Workers, s.cfg.Scripts)
		},
	})
	s.broker.SetTransport(s.tr)
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
func (s *Server) Listen() error { return s.tr.Listen() }

// Addrs returns the addresses the server listens on.
func (s *Server) Addrs() []net.Addr { return s.tr.Addrs() }

// Serve accepts connections on every listener until Shutdown.
func (s *Server) Serve() { s.tr.Serve() }

// ServeConn serves one connection from any transport (TCP, TLS, an
// in-memory pipe). It returns at once, with the connection (nil if
// refused); the connection runs on its own goroutines.
func (s *Server) ServeConn(nc net.Conn) *broker.Client {
	if t := s.tr.ServeConn(nc); t != nil {
		return t.Receiver().(*broker.Client)
	}
	return nil
}

// Broker returns the broker layer: sessions, routing, retained messages.
func (s *Server) Broker() *broker.Broker { return s.broker }

// Shutdown stops accepting, tells MQTT 5 clients with DISCONNECT 0x8B,
// closes every connection and waits for them until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	if s.shut.Swap(true) {
		return nil
	}
	err := s.tr.Shutdown(ctx, func(t *transport.Conn) { t.Receiver().(*broker.Client).Close(transport.CloseServerShutdown) })
	close(s.stop)
	for _, vm := range s.VMs() {
		vm.close()
	}
	return err
}

// callbackName returns the handler name for a packet type.
func (s *Server) callbackName(t codec.Type) string { return s.callbackNames[t] }
