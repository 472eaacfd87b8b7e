package script

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mqttlua/broker/codec"
	"github.com/mqttlua/broker/engine/broker"
	lua "github.com/yuin/gopher-lua"
)

// Handlers that wait. A binding that does I/O (http, redis, pg, sleep,
// bcrypt) calls await: the VM's lock is released while the I/O runs, so
// the VM serves other connections' handlers meanwhile, and the handler
// goes on where it was when the I/O is done, with the lock again. To
// Lua the call is an ordinary function call (it may be made inside
// pcall, a metamethod, a sort comparator or a coroutine of the script's
// own, which a yield across Go frames could not).
//
// The waiting call keeps its Go stack (the goroutine of its connection's
// reader: an event loop hands its other connections to a new goroutine
// first, transport.Conn.Blocking) and its Lua state: the VM's main state,
// or one of its spare threads. The next handler on the VM runs on a
// state no call is waiting on (vm.state), so the common case, no call
// waiting, is the main state as before, at no cost.
//
// Time: the handler deadline (--handler-timeout) bounds the CPU a call
// uses, counted across its waits; each wait is bounded by its own
// timeout (the binding's, or WaitTimeout); and the call as a whole, waits
// included, by HandlerDeadline. A call past that is ended as one past its
// handler deadline: a logged error, and its connection closed.

// maxSpareThreads bounds the threads a VM keeps for calls made while
// others wait; more are made when more wait, and dropped after.
const maxSpareThreads = 64

// state returns the Lua state for the next call: the VM's main state,
// unless a call waits on it. mu must be held; putState gives it back.
func (vm *VM) state() *lua.LState {
	if !vm.mainBusy {
		return vm.L
	}
	if n := len(vm.spare); n > 0 {
		L := vm.spare[n-1]
		vm.spare = vm.spare[:n-1]
		L.SetContext(vm.ctx)
		return L
	}
	// A thread shares the main state's globals. Made without the main
	// state's context, which NewThread would wrap in a cancel context
	// (and a goroutine to follow it), and with a small registry that
	// grows as needed: thousands may wait at once.
	L := vm.L
	opts := L.Options
	L.RemoveContext()
	L.Options.RegistrySize, L.Options.MinimizeStackMemory = 256, true
	th, _ := L.NewThread()
	L.Options = opts
	L.SetContext(vm.ctx)
	th.SetContext(vm.ctx)
	return th
}

// putState takes back a state state returned, once its call is over.
func (vm *VM) putState(L *lua.LState) {
	if L == vm.L {
		return
	}
	L.SetTop(0)
	if len(vm.spare) < maxSpareThreads {
		vm.spare = append(vm.spare, L)
	}
}

// callState is what the VM knows of the running call, kept aside while
// it waits and others run.
type callState struct {
	cur      *broker.Client
	handling codec.Type
	where    string
	slot     int
	running  *lua.LState
	start    time.Time
	used     time.Duration // CPU time used before this run
}

// Await is await for the embedder's Go modules: a binding that does I/O
// runs it in op, which must return when ctx is done, and turns what op
// produced into Lua values after Await returns.
func (vm *VM) Await(L *lua.LState, what string, timeout time.Duration, op func(ctx context.Context) error) error {
	return vm.await(L, what, timeout, op)
}

// offload runs fn, CPU work of the Go side that takes long (bcrypt), with
// the VM free for other handlers where the running code may wait, and
// right here where it may not.
func (vm *VM) offload(L *lua.LState, what string, fn func()) {
	if vm.mayWait() != "" {
		fn()
		return
	}
	vm.await(L, what, vm.pool.cfg.HandlerDeadline, func(context.Context) error { fn(); return nil })
}

// luaSleep is sleep(seconds): the handler waits, its VM serves others.
func (vm *VM) luaSleep(L *lua.LState) int {
	sec := float64(L.CheckNumber(1))
	if sec < 0 {
		L.ArgError(1, "negative")
	}
	d := time.Duration(sec * float64(time.Second))
	err := vm.await(L, "sleep", d+time.Second, func(ctx context.Context) error {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	if err != nil {
		L.RaiseError("sleep: %v", err)
	}
	return 0
}

// await runs op with the VM free for other handlers, and returns its
// error. timeout bounds the wait (0: the pool's WaitTimeout); what names
// the wait in errors. It raises a Lua error where a handler may not wait
// (routing's onMqDeliver, the scripts' top level, onWorkerStart) and
// when the call's total deadline passed during the wait. mu must be held
// (the binding runs on the VM); it is held again when await returns.
func (vm *VM) await(L *lua.LState, what string, timeout time.Duration, op func(ctx context.Context) error) error {
	if err := vm.mayWait(); err != "" {
		L.RaiseError("%s cannot wait in %s: %s", what, vm.whereNow(), err)
	}
	if timeout <= 0 {
		timeout = vm.pool.cfg.WaitTimeout
	}
	now := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	totalBy := vm.callStart.Add(vm.pool.cfg.HandlerDeadline)
	if d, ok := ctx.Deadline(); ok && totalBy.Before(d) {
		var c2 context.CancelFunc
		ctx, c2 = context.WithDeadline(ctx, totalBy)
		defer c2()
	}

	// Set the call aside.
	saved := callState{
		cur: vm.cur, handling: vm.handling, where: vm.where, slot: vm.slot,
		running: vm.running, start: vm.callStart,
	}
	if since := vm.busySince.Load(); since != 0 {
		saved.used = vm.callUsed + now.Sub(time.Unix(0, since))
	}
	vm.busySince.Store(0)
	if saved.running == vm.L {
		vm.mainBusy = true
	}
	vm.waiting++
	c := vm.cur
	vm.cur, vm.handling, vm.where, vm.slot, vm.running = nil, 0, "", -1, nil
	vm.mu.Unlock()
	if c != nil {
		// Write what the call queued so far (not holding the VM: a
		// write may wait for the socket), and let an event loop go on
		// without this goroutine.
		c.Blocking()
	}

	err := op(ctx)

	// A reload may have replaced the VM meanwhile: the call still
	// finishes on it (close leaves the Lua state to the last waiter).
	vm.mu.Lock()
	vm.waiting--
	if saved.running == vm.L {
		vm.mainBusy = false
	}
	vm.cur, vm.handling, vm.where, vm.slot, vm.running = saved.cur, saved.handling, saved.where, saved.slot, saved.running
	vm.callStart, vm.callUsed = saved.start, saved.used
	// The deadline counts the CPU used before the wait; the memory
	// watchdog sees a new run (busySince differs).
	vm.busySince.Store(time.Now().Add(-saved.used).UnixNano())
	L.SetContext(vm.ctx)
	if saved.running != nil && saved.running != L {
		saved.running.SetContext(vm.ctx)
	}
	if time.Now().After(totalBy) {
		vm.pastDeadline = true
		vm.cancelCall()
		L.RaiseError("%s: the handler waited past its deadline of %s", what, vm.pool.cfg.HandlerDeadline)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("timeout after %s", timeout)
	}
	return err
}

// mayWait says why the running code may not wait, or "".
func (vm *VM) mayWait() string {
	switch {
	case vm.handling != 0:
		return ""
	case vm.where == "onMqDeliver":
		return "it runs on the routing path of every message; look up in onMqPublish or onMqSubscribe instead"
	case vm.anywhere:
		return ""
	case vm.where == "" || vm.where == "onWorkerStart" || vm.where == "the scripts' top level":
		return "the scripts are loading; wait in handlers or timers"
	}
	return ""
}
