package script

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mqttlua/broker/codec"
	"github.com/mqttlua/broker/engine/broker"
	"github.com/mqttlua/broker/engine/transport"
	lua "github.com/yuin/gopher-lua"
)

// Module is a Go-backed Lua module registered in every VM, such as one
// made by GoModule. Scripts reach it with require(Name()) and as a global.
type Module interface {
	// Name is the module's name for require and its global.
	Name() string
	// Open builds the module's table in one VM.
	Open(vm *VM) *lua.LTable
}

// VM is one Lua state running the scripts. Connections are pinned to a VM
// by fd % workers. One goroutine at a time uses a VM: whoever holds mu.
type VM struct {
	ID   int
	L    *lua.LState
	pool *Pool

	idValue lua.LValue // ID as a Lua value, for every handler call

	mu  sync.Mutex
	cur *broker.Client // connection whose handler is running, nil in timers
	// handling is the packet type whose handler is running (0: none);
	// where names what else runs (onClose, a timer, onWorkerStart, the
	// scripts' top level), for the errors of bindings called out of place.
	handling codec.Type
	where    string
	// anywhere lifts those checks, for a tool's VM (NewVM) whose code
	// calls handlers directly.
	anywhere bool
	closed   bool // set under mu by close; a reload replaced this VM
	lClosed  bool // L closed: at close, or after the last call waiting then

	server *lua.LUserData // the `server` argument of handlers
	// deliverFn is the scripts' onMqDeliver, looked up once they loaded
	// (workerStart), or nil: routing asks for it with every message.
	deliverFn *lua.LFunction
	// dataMeta is the metatable of handlers' data tables: data.cmd reads
	// data.type, Simps' spelling, at no cost to handlers that do not ask.
	dataMeta *lua.LTable

	// Handler deadline: busySince is the start of the running call in
	// UnixNano (0 when idle); the watchdog cancels ctx past the deadline.
	busySince atomic.Int64
	ctxMu     sync.Mutex
	cancel    func()
	// overBudget is set when the watchdog stopped the call for the
	// memory budget; mem is the watchdog's own record of the call.
	overBudget atomic.Bool
	mem        memWatch

	timers timerSet

	// Calls that wait (await.go): running is the state the running call
	// started on, callStart when, callUsed the CPU it used before its
	// last wait; mainBusy is set while a call waits on L, whose stack is
	// then its own; spare are threads for calls made meanwhile; waiting
	// counts the calls waiting. pastDeadline marks a call ended for
	// waiting too long, for its error.
	ctx          *stopCtx
	running      *lua.LState
	callStart    time.Time
	callUsed     time.Duration
	mainBusy     bool
	spare        []*lua.LState
	waiting      int
	pastDeadline bool

	// scratch is the packet bindings read tables into (mu held).
	scratch codec.Packet

	// stats are the worker's counters (stats.go); slot is the handler the
	// next pcall runs (-1: not counted, e.g. the scripts' top level).
	stats *workerStats
	slot  int
}

// openLibs opens the sandboxed standard library (sandbox.go), print to
// the log, and require for the scripts folder and lualib. SetMx is never
// called: it can exit the process.
func (vm *VM) openLibs() {
	L := vm.L
	openSandbox(L)
	if p := vm.pool.cfg.EnvPrefix; p != "" {
		setEnvPrefix(L, L.GetGlobal(lua.OsLibName).(*lua.LTable), p)
	}
	L.SetGlobal("print", L.NewFunction(vm.luaPrint))
	L.SetGlobal("sleep", L.NewFunction(vm.luaSleep))
	// package: require finds modules in the scripts folder, then lualib,
	// and uses the compiled chunks shared by every VM.
	if loaders, ok := L.GetField(L.Get(lua.RegistryIndex), "_LOADERS").(*lua.LTable); ok {
		loaders.RawSetInt(2, L.NewFunction(vm.loadModule))
	}
}

// loadModule is the package loader for script and lualib modules.
func (vm *VM) loadModule(L *lua.LState) int {
	name := L.CheckString(1)
	sc := vm.pool.scripts()
	path, ok := "", false
	if sc != nil {
		path, ok = sc.find(name)
	}
	if !ok {
		L.Push(lua.LString(fmt.Sprintf("\n\tno module '%s' in %s or %s", name, vm.pool.cfg.Scripts, vm.pool.cfg.LuaLib)))
		return 1
	}
	proto, err := sc.proto(path)
	if err != nil {
		L.RaiseError("%s", err.Error())
	}
	L.Push(L.NewFunctionFromProto(proto))
	return 1
}

func (vm *VM) luaPrint(L *lua.LState) int {
	parts := make([]string, L.GetTop())
	for i := range parts {
		parts[i] = L.ToStringMeta(L.Get(i + 1)).String()
	}
	vm.logEntry(L).Info(strings.Join(parts, "\t"))
	return 0
}

// newVM creates a VM, opens its libraries and modules, and runs main.lua.
func newVM(pool *Pool, id int, sc *scripts) (*VM, error) {
	vm := &VM{ID: id, idValue: lua.LNumber(id), pool: pool, where: "the scripts' top level", slot: -1}
	if id >= 0 && id < len(pool.workers) {
		vm.stats = &pool.workers[id]
	} else {
		vm.stats = &workerStats{} // a tool's VM (NewVM): counted apart
	}
	vm.L = lua.NewState(lua.Options{SkipOpenLibs: true, CallStackSize: 200, RegistrySize: 1024 * 4, RegistryMaxSize: 1024 * 256})
	vm.openLibs()
	vm.openBindings()
	for _, m := range pool.cfg.Modules {
		m := m
		t := m.Open(vm)
		vm.L.PreloadModule(m.Name(), func(L *lua.LState) int { L.Push(t); return 1 })
		vm.L.SetGlobal(m.Name(), t)
	}
	vm.resetContext()
	vm.L.Push(vm.L.NewFunctionFromProto(sc.main))
	if err := vm.pcall(0, 0); err != nil {
		vm.L.Close()
		return nil, err
	}
	if sc.setup != nil {
		vm.L.Push(vm.L.NewFunctionFromProto(sc.setup))
		if err := vm.pcall(0, 0); err != nil {
			vm.L.Close()
			return nil, err
		}
	}
	if err := vm.resolveHandlers(); err != nil {
		vm.L.Close()
		return nil, err
	}
	vm.deliverFn = vm.global("onMqDeliver") // again after onWorkerStart
	return vm, nil
}

// resolveHandlers makes the handlers named "module:function" (config.lua's
// { "module", "function" }) globals of that name, so that handler lookup
// is the same for every handler, and checks that every handler the user
// named exists.
func (vm *VM) resolveHandlers() error {
	p := vm.pool
	configFile := filepath.Join(p.cfg.Scripts, "config.lua")
	for t, name := range p.callbackNames {
		mod, fn, ok := strings.Cut(name, ":")
		if !ok {
			continue
		}
		err := vm.L.CallByParam(lua.P{Fn: vm.L.GetGlobal("require"), NRet: 1, Protect: true}, lua.LString(mod))
		if err != nil {
			return &ScriptError{File: configFile, Msg: fmt.Sprintf("receiveCallbacks[%s]: module %q: %v", codec.Type(t), mod, err)}
		}
		m := vm.L.Get(-1)
		vm.L.Pop(1)
		tbl, isTable := m.(*lua.LTable)
		var f *lua.LFunction
		if isTable {
			f, _ = tbl.RawGetString(fn).(*lua.LFunction)
		}
		if f == nil {
			return &ScriptError{File: configFile, Msg: fmt.Sprintf("receiveCallbacks[%s]: module %q has no function %q", codec.Type(t), mod, fn)}
		}
		vm.L.SetGlobal(name, f)
	}
	for _, t := range p.cfg.Required {
		name := p.callbackNames[t&15]
		if _, ok := vm.L.GetGlobal(name).(*lua.LFunction); !ok {
			return &ScriptError{File: configFile, Msg: fmt.Sprintf("receiveCallbacks[%s] names %s, which the scripts do not define", t, name)}
		}
	}
	return nil
}

// NewVM builds a VM outside the worker pool, with the scripts loaded, for
// tools that drive the scripts themselves (the `broker test` runner). It
// shares the server's modules and bindings; its calls have no deadline
// unless the caller sets a context with vm.L.SetContext.
func (s *Pool) NewVM(id int) (*VM, error) {
	vm, err := newVM(s, id, s.scripts())
	if err != nil {
		return nil, scriptErrorOf(err, s.scripts().mainPath)
	}
	vm.L.RemoveContext()
	vm.anywhere = true
	return vm, nil
}

// Close releases a VM made with NewVM.
func (vm *VM) Close() { vm.close() }

// Lock and Unlock take the VM for a caller outside the engine; handlers,
// timers and the caller never run on it at the same time.
func (vm *VM) Lock()   { vm.mu.Lock() }
func (vm *VM) Unlock() { vm.mu.Unlock() }

// resetContext gives the VM a fresh cancellable context. Must be called
// with mu held or before the VM is shared.
func (vm *VM) resetContext() {
	ctx := &stopCtx{done: make(chan struct{})}
	vm.ctxMu.Lock()
	vm.cancel = ctx.stop
	vm.ctxMu.Unlock()
	vm.ctx = ctx
	vm.L.SetContext(ctx)
}

// stopCtx is the context gopher-lua checks before every Lua instruction
// (that check is how the watchdog stops an endless loop). Its Done is a
// field read; a context.WithCancel's Done is an atomic load and a type
// assertion, which at one call per instruction was a few percent of a
// busy handler's time.
type stopCtx struct {
	done chan struct{}
	once sync.Once
}

func (c *stopCtx) stop()                       { c.once.Do(func() { close(c.done) }) }
func (c *stopCtx) Deadline() (time.Time, bool) { return time.Time{}, false }
func (c *stopCtx) Done() <-chan struct{}       { return c.done }
func (c *stopCtx) Value(any) any               { return nil }

func (c *stopCtx) Err() error {
	select {
	case <-c.done:
		return context.Canceled
	default:
		return nil
	}
}

// pcall runs the function and arguments on the main state's stack under
// the handler deadline, for what runs while no handler can (loading).
func (vm *VM) pcall(nargs, nret int) error { return vm.pcallOn(vm.L, nargs, nret) }

// pcallOn runs the function and arguments on L's stack (a state from
// vm.state) under the handler deadline. A failure is returned as a
// *LuaError. mu must be held; the call may wait (await), with mu
// released meanwhile.
func (vm *VM) pcallOn(L *lua.LState, nargs, nret int) error {
	start := time.Now()
	running, callStart, callUsed := vm.running, vm.callStart, vm.callUsed
	vm.running, vm.callStart, vm.callUsed = L, start, 0
	vm.busySince.Store(start.UnixNano())
	err := L.PCall(nargs, nret, nil)
	vm.busySince.Store(0)
	vm.running, vm.callStart, vm.callUsed = running, callStart, callUsed
	if vm.closed && vm.waiting == 0 && !vm.lClosed {
		// A reload closed the VM while this call waited: it was the last.
		vm.lClosed = true
		vm.L.Close()
	}
	if err == nil {
		if vm.slot >= 0 {
			vm.stats.record(vm.slot, time.Since(start), nil)
		}
		return nil
	}
	lerr := vm.callError(L, err)
	if vm.slot >= 0 {
		vm.stats.record(vm.slot, time.Since(start), lerr)
	}
	return lerr
}

// callError makes a failed call's error a *LuaError.
func (vm *VM) callError(L *lua.LState, err error) *LuaError {
	le := &LuaError{Msg: err.Error()}
	if ae, ok := err.(*lua.ApiError); ok {
		le.Msg = ae.Object.String()
		le.Traceback = ae.StackTrace
	}
	if vm.ctx.Err() != nil || L.Context() != nil && L.Context().Err() != nil {
		le.Timeout = true
		le.Msg = fmt.Sprintf("handler ran past its deadline of %s", vm.pool.cfg.HandlerTimeout)
		if vm.pastDeadline {
			vm.pastDeadline = false
			le.Msg = fmt.Sprintf("handler waited past its deadline of %s (waits included)", vm.pool.cfg.HandlerDeadline)
		}
		if vm.overBudget.Swap(false) {
			le.Timeout, le.OverBudget = false, true
			le.Msg = budgetError(vm.pool.cfg.MemoryBudget)
		}
		vm.resetContext()
	}
	return le
}

// LuaError is an error raised by a script, or a handler that ran past its
// deadline.
type LuaError struct {
	Msg        string // includes the script's file:line when Lua knows it
	Traceback  string
	Timeout    bool
	OverBudget bool // stopped over its memory budget
}

func (e *LuaError) Error() string { return e.Msg }

// watchdog cancels the context of a VM whose call has run too long.
func (vm *VM) watchdog(now time.Time, limit time.Duration) {
	start := vm.busySince.Load()
	if start != 0 && now.UnixNano()-start > int64(limit) {
		vm.cancelCall()
	}
}

// cancelCall stops the running call: the next Lua instruction raises.
// Safe without mu (the watchdog's goroutine).
func (vm *VM) cancelCall() {
	vm.ctxMu.Lock()
	vm.cancel()
	vm.ctxMu.Unlock()
}

// handler returns the global function for a packet type, or nil.
func (vm *VM) handler(t codec.Type) *lua.LFunction {
	name := vm.pool.callbackNames[t]
	if name == "" {
		return nil
	}
	fn, _ := vm.L.GetGlobal(name).(*lua.LFunction)
	return fn
}

// Batch returns the write batch of the connection whose handler is
// running, or nil (timers, onWorkerStart): output queued through it is
// written when that connection's read is fully handled. mu must be held.
func (vm *VM) Batch() *transport.Batch {
	if vm.cur != nil {
		return vm.cur.Batch()
	}
	return nil
}

func (vm *VM) global(name string) *lua.LFunction {
	fn, _ := vm.L.GetGlobal(name).(*lua.LFunction)
	return fn
}

func (vm *VM) close() {
	vm.mu.Lock()
	vm.closed = true
	vm.timers.stopAll()
	if vm.waiting == 0 {
		vm.lClosed = true
		vm.L.Close()
	}
	vm.mu.Unlock()
}

// whereNow names the code running on the VM, for errors.
func (vm *VM) whereNow() string {
	if vm.handling != 0 {
		return vm.pool.handlerName(vm.handling)
	}
	if vm.where == "" {
		return "no handler"
	}
	return vm.where
}

// requireHandler raises unless the running code is the handler of one of
// types, for connection fd: what a binding that acts on the packet being
// handled needs (OpenResty's "API disabled in the context of ...").
func (vm *VM) requireHandler(L *lua.LState, fn string, fd int, types ...codec.Type) {
	if vm.anywhere {
		return
	}
	ok := false
	for _, t := range types {
		ok = ok || vm.handling == t
	}
	if !ok {
		names := make([]string, len(types))
		for i, t := range types {
			names[i] = vm.pool.handlerName(t)
		}
		L.RaiseError("%s may only be called in %s, not in %s", fn, strings.Join(names, " or "), vm.whereNow())
	}
	if vm.cur != nil && vm.cur.FD != fd {
		L.RaiseError("%s: fd %d is not the connection whose %s is running (fd %d)", fn, fd, vm.whereNow(), vm.cur.FD)
	}
}
