package script

import (
	"errors"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mqttlua/broker/codec"
	"github.com/mqttlua/broker/engine/broker"
	"github.com/sirupsen/logrus"
)

// Config configures a Pool. Every field but Modules, Setup and Errors
// must be set; the engine applies the defaults.
type Config struct {
	// Scripts is the folder holding main.lua and the user's modules.
	Scripts string
	// LuaLib is the folder of Lua modules shipped with the broker; it is
	// on the module path after Scripts.
	LuaLib string
	// Workers is the number of VMs.
	Workers int
	// HandlerTimeout bounds one handler or timer call.
	HandlerTimeout time.Duration
	// Callbacks maps packet types to the names of their handlers.
	Callbacks map[codec.Type]string
	// Log receives the scripts' log lines and their failures.
	Log *logrus.Logger
	// Modules are extra Go-backed Lua modules.
	Modules []Module
	// Setup is Lua run in every VM after main.lua, e.g. the setup block of
	// a script test; SetupName names it in errors (a fixture file).
	Setup, SetupName string
	// Errors counts handler failures (nil: not counted).
	Errors *atomic.Int64
	// EnvPrefix starts the names of the environment variables os.getenv
	// reads (default DefaultEnvPrefix).
	EnvPrefix string
	// Required are the handler types whose Callbacks entries the user
	// named (config.lua's receiveCallbacks): the scripts must define
	// them, or loading (start and reload) fails, rather than the
	// protocol defaults answering silently.
	Required []codec.Type
	// MemoryBudget bounds, in bytes, what one VM may allocate in a call
	// and keep between calls (membudget.go); 0 or less: no budget.
	MemoryBudget int64
	// WaitTimeout bounds one wait of a handler for I/O when the call
	// names no timeout of its own (default 5 s); HandlerDeadline bounds a
	// handler call as a whole, its waits included (default 30 s). See
	// await.go.
	WaitTimeout, HandlerDeadline time.Duration
}

// Pool is the workers: one VM per worker running the scripts, the
// compiled scripts they share, and the hooks the broker calls.
type Pool struct {
	cfg           Config
	callbackNames [16]string
	broker        *broker.Broker

	sc  atomic.Pointer[scripts]
	vms atomic.Pointer[[]*VM]
	// workers are each worker's counters (stats.go), kept across reloads.
	workers []workerStats
	// eventsWanted are the broker.EventKind bits the scripts handle.
	eventsWanted atomic.Uint32

	// Shared is the key-value store every VM sees as `shared`.
	Shared *SharedStore

	reloadMu sync.Mutex // serialises Reload and the rebuild of a VM
	stop     chan struct{}
	// lastRetainedCheck is when the watchdog last walked the idle VMs
	// (watchdog goroutine only).
	lastRetainedCheck time.Time
	stopOnce          sync.Once
}

// New compiles the scripts and starts the VMs, whose bindings act on b.
// A script that does not load is reported as a *ScriptError naming its
// file and line.
func New(cfg Config, b *broker.Broker) (*Pool, error) {
	s := &Pool{cfg: cfg, broker: b, Shared: NewSharedStore(), stop: make(chan struct{}), workers: make([]workerStats, max(cfg.Workers, 1))}
	if s.cfg.Errors == nil {
		s.cfg.Errors = new(atomic.Int64)
	}
	if s.cfg.WaitTimeout <= 0 {
		s.cfg.WaitTimeout = 5 * time.Second
	}
	if s.cfg.HandlerDeadline <= 0 {
		s.cfg.HandlerDeadline = 30 * time.Second
	}
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

// Close stops the watchdog and closes the VMs, each once its running
// call returns.
func (s *Pool) Close() {
	s.stopOnce.Do(func() { close(s.stop) })
	for _, vm := range s.VMs() {
		vm.close()
	}
}

// loadScripts compiles the scripts folder and the configured setup.
func (s *Pool) loadScripts() (*scripts, error) {
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
func (s *Pool) Reload(check func() error) error {
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
func (s *Pool) startVMs(sc *scripts) ([]*VM, error) {
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
	if len(vms) > 0 {
		s.noteEvents(vms[0])
	}
	for _, vm := range vms {
		if err := vm.workerStart(); err != nil {
			for _, v := range vms {
				v.close()
			}
			return nil, scriptErrorOf(err, sc.mainPath)
		}
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

func (s *Pool) scripts() *scripts { return s.sc.Load() }

// vm returns the VM a connection is pinned to.
func (s *Pool) vm(fd int) *VM {
	vms := *s.vms.Load()
	return vms[fd%len(vms)]
}

// lockVM returns the connection's VM, locked. A VM replaced by a reload
// while this waited for it is skipped for its successor.
func (s *Pool) lockVM(fd int) *VM {
	for {
		vm := s.vm(fd)
		if !vm.mu.TryLock() {
			// Taken: how long connections wait for their worker is
			// what a slow handler costs the others.
			t0 := time.Now()
			vm.mu.Lock()
			vm.stats.waitNanos.Add(uint64(time.Since(t0)))
			vm.stats.waits.Add(1)
		}
		if !vm.closed {
			return vm
		}
		vm.mu.Unlock()
	}
}

// VMs returns the current VM pool.
func (s *Pool) VMs() []*VM { return *s.vms.Load() }

// watchdog enforces the handler deadline and the memory budget on every
// VM. It ticks often enough to stop an allocation loop early (at about a
// gigabyte a second, 25 ms is 25 MB).
func (s *Pool) watchdog() {
	period := min(s.cfg.HandlerTimeout/10, 25*time.Millisecond)
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
			s.checkMemory(now)
		}
	}
}

// handlerName names the handler of a packet type, for messages: its
// configured name, or the packet type's when none is configured.
func (s *Pool) handlerName(t codec.Type) string {
	if n := s.callbackNames[t&15]; n != "" {
		return n
	}
	return "the " + t.String() + " handler"
}

// callbackName returns the handler name for a packet type.
func (s *Pool) callbackName(t codec.Type) string { return s.callbackNames[t] }

// workerStart runs the scripts' onWorkerStart(server, workerId), if they
// define one, on a VM no connection uses yet.
func (vm *VM) workerStart() error {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	// The scripts are loaded: what routing asks of every message is
	// looked up once here (the scripts define their handlers at load).
	defer func() { vm.deliverFn = vm.global("onMqDeliver") }()
	fn := vm.global("onWorkerStart")
	if fn == nil {
		return nil
	}
	vm.where, vm.slot = "onWorkerStart", slotWorkerStart
	defer func() { vm.where, vm.slot = "", -1 }()
	vm.L.Push(fn)
	vm.L.Push(vm.server)
	vm.L.Push(vm.idValue)
	return vm.pcall(2, 0)
}
