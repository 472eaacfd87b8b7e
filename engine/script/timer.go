package script

import (
	"sync"
	"time"

	lua "github.com/yuin/gopher-lua"
)

// timerSet holds a VM's timers. Their callbacks run on the VM that set
// them, under its lock, with the handler deadline.
type timerSet struct {
	mu     sync.Mutex
	next   int
	timers map[int]*time.Timer
	closed bool
}

func (ts *timerSet) add(f func(id int) *time.Timer) int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.closed {
		return 0
	}
	if ts.timers == nil {
		ts.timers = map[int]*time.Timer{}
	}
	ts.next++
	id := ts.next
	ts.timers[id] = f(id)
	return id
}

func (ts *timerSet) cancel(id int) bool {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	t, ok := ts.timers[id]
	if ok {
		t.Stop()
		delete(ts.timers, id)
	}
	return ok
}

// rearm schedules a repeating timer again unless it was cancelled; it
// runs under the lock so that cancel wins races.
func (ts *timerSet) rearm(id int, d time.Duration) bool {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	t, ok := ts.timers[id]
	if ok {
		t.Reset(d)
	}
	return ok
}

func (ts *timerSet) stopAll() {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.closed = true
	for id, t := range ts.timers {
		t.Stop()
		delete(ts.timers, id)
	}
}

func (vm *VM) openTimer() *lua.LTable {
	L := vm.L
	schedule := func(L *lua.LState, repeat bool) int {
		sec := float64(L.CheckNumber(1))
		fn := L.CheckFunction(2)
		if sec < 0.001 || (repeat && sec < 0.01) {
			L.ArgError(1, "interval too small")
		}
		d := time.Duration(sec * float64(time.Second))
		id := vm.timers.add(func(id int) *time.Timer {
			return time.AfterFunc(d, func() { vm.fire(id, fn, repeat, d) })
		})
		L.Push(lua.LNumber(id))
		return 1
	}
	return L.SetFuncs(L.NewTable(), map[string]lua.LGFunction{
		// timer.after(seconds, fn) -> id
		"after": func(L *lua.LState) int { return schedule(L, false) },
		// timer.every(seconds, fn) -> id
		"every": func(L *lua.LState) int { return schedule(L, true) },
		// timer.cancel(id) -> bool
		"cancel": func(L *lua.LState) int {
			L.Push(lua.LBool(vm.timers.cancel(L.CheckInt(1))))
			return 1
		},
	})
}

// fire runs a timer callback on its VM. A failing callback is logged and,
// if repeating, cancelled.
func (vm *VM) fire(id int, fn *lua.LFunction, repeat bool, d time.Duration) {
	if !repeat {
		vm.timers.mu.Lock()
		_, ok := vm.timers.timers[id]
		delete(vm.timers.timers, id)
		vm.timers.mu.Unlock()
		if !ok {
			return
		}
	}
	vm.mu.Lock()
	if vm.closed {
		vm.mu.Unlock()
		return
	}
	vm.where, vm.slot = "a timer", slotTimer
	L := vm.state()
	L.Push(fn)
	err := vm.pcallOn(L, 0, 0)
	vm.putState(L)
	vm.where, vm.slot = "", -1
	vm.mu.Unlock()
	if err != nil {
		vm.pool.scriptFailed(nil, "timer", err)
		vm.timers.cancel(id)
		return
	}
	if repeat {
		vm.timers.rearm(id, d)
	}
}
