package script

import (
	"fmt"
	"runtime/metrics"
	"time"

	lua "github.com/yuin/gopher-lua"
)

// Memory budgets. gopher-lua allocates through Go's allocator with no
// hook of its own, so a VM's memory is measured from outside, by the
// watchdog, at no cost to the handlers:
//
//   - During a call: the bytes allocated since the watchdog first saw the
//     call running, with the heap in use grown by half as much. Past the
//     budget, the VM that has been running longest is stopped, as a
//     handler past its deadline is: its call fails with a Lua error, and
//     its client is closed.
//   - Between calls: what a VM keeps (globals, module tables, upvalues,
//     the registry), estimated by walking it, but only when the whole
//     heap is over one budget, and only for a VM no one is using. A VM
//     over its budget is rebuilt from the compiled scripts (its Lua state
//     is lost; connections, sessions and shared values live in Go and
//     stay).
//
// The counts are the whole process's, so a call is charged with what
// other goroutines allocate meanwhile; handlers that run for milliseconds
// allocate little, which makes the longest-running VM the one to blame.

// heapSamples read the bytes allocated since the process started (which
// only grow, whatever the collector frees meanwhile: a call's share is
// the difference) and the bytes of heap objects now (live, and dead not
// yet swept: whether walking the idle VMs is worth it).
var heapSamples = []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}, {Name: "/memory/classes/heap/objects:bytes"}}

func heapBytes() (allocated, inUse int64) {
	metrics.Read(heapSamples)
	if heapSamples[0].Value.Kind() != metrics.KindUint64 || heapSamples[1].Value.Kind() != metrics.KindUint64 {
		return 0, 0
	}
	return int64(heapSamples[0].Value.Uint64()), int64(heapSamples[1].Value.Uint64())
}

// memWatch is the watchdog's memory of one VM's running call.
type memWatch struct {
	call      int64 // the busySince of the call being watched
	base      int64 // the bytes allocated when the watchdog first saw it
	baseInUse int64 // the heap in use then
}

// retainedCheckEvery spaces the walks of idle VMs.
const retainedCheckEvery = time.Second

// checkMemory runs on each watchdog tick. now is its time.
func (s *Pool) checkMemory(now time.Time) {
	budget := s.cfg.MemoryBudget
	if budget <= 0 {
		return
	}
	allocated, heap := heapBytes()
	var culprit *VM
	for _, vm := range s.VMs() {
		call := vm.busySince.Load()
		w := &vm.mem
		if call == 0 {
			w.call = 0
			continue
		}
		if w.call != call {
			w.call, w.base, w.baseInUse = call, allocated, heap
			continue
		}
		// Both: the bytes allocated meanwhile (which only grow, so other
		// garbage being collected cannot hide a runaway call) and the heap
		// in use having grown by half the budget (which other
		// goroutines' garbage does not do, so a busy broker's churn
		// during a slow call is not blamed on it).
		if allocated-w.base > budget && heap-w.baseInUse > budget/2 && (culprit == nil || call < culprit.mem.call) {
			culprit = vm
		}
	}
	if culprit != nil {
		culprit.stopOverBudget()
		culprit.mem.call = 0
	}
	if heap > budget && now.Sub(s.lastRetainedCheck) >= retainedCheckEvery {
		s.lastRetainedCheck = now
		s.checkRetained(budget)
	}
}

// stopOverBudget stops the VM's running call as over its memory budget.
func (vm *VM) stopOverBudget() {
	vm.overBudget.Store(true)
	vm.cancelCall()
}

// checkRetained estimates what each idle VM keeps and rebuilds those
// over budget.
func (s *Pool) checkRetained(budget int64) {
	for _, vm := range s.VMs() {
		if !vm.mu.TryLock() {
			continue // busy: the next check
		}
		size := int64(-1)
		if !vm.closed {
			size = retainedSize(vm.L, budget)
		}
		vm.mu.Unlock()
		if size > budget {
			// On its own goroutine: the new worker's onWorkerStart runs
			// under the deadline this watchdog enforces.
			go func(vm *VM, size int64) {
				if err := s.rebuildVM(vm); err != nil {
					s.cfg.Log.WithError(err).WithField("worker", vm.ID).Error("a Lua worker over its memory budget could not be rebuilt; it keeps running")
					return
				}
				s.cfg.Log.WithField("worker", vm.ID).Warnf("Lua worker %d kept about %d MiB, over its memory budget of %d MiB: rebuilt from the scripts (its Lua globals and module state start afresh)",
					vm.ID, size>>20, budget>>20)
			}(vm, size)
		}
	}
}

// rebuildVM replaces one VM with a fresh one running the current
// scripts, as Reload does for all.
func (s *Pool) rebuildVM(old *VM) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	vms := s.VMs()
	if old.ID >= len(vms) || vms[old.ID] != old {
		return nil // a reload replaced it already
	}
	sc := s.scripts()
	vm, err := newVM(s, old.ID, sc)
	if err != nil {
		return err
	}
	if err := vm.workerStart(); err != nil {
		vm.close()
		return err
	}
	next := append([]*VM(nil), vms...)
	next[old.ID] = vm
	s.vms.Store(&next)
	old.close()
	return nil
}

// retainedSize estimates the bytes a Lua state keeps reachable from its
// globals and registry: tables (their slots), strings, functions and
// their upvalues. It stops counting past limit (the answer is then over
// limit), so a huge state costs a bounded walk.
func retainedSize(L *lua.LState, limit int64) int64 {
	w := sizeWalk{seen: map[any]bool{}, limit: limit}
	w.value(L.G.Global)
	w.value(L.G.Registry)
	return w.total
}

type sizeWalk struct {
	seen  map[any]bool
	total int64
	limit int64
	stack []lua.LValue
}

// Rough sizes: an LTable's header and a slot of its hash or array part,
// a string's header, a function's closure.
const (
	tableBytes = 96
	slotBytes  = 40
	strBytes   = 16
	funcBytes  = 64
)

func (w *sizeWalk) value(v lua.LValue) {
	w.stack = append(w.stack[:0], v)
	for len(w.stack) > 0 && w.total <= w.limit {
		v := w.stack[len(w.stack)-1]
		w.stack = w.stack[:len(w.stack)-1]
		switch x := v.(type) {
		case lua.LString:
			w.total += strBytes + int64(len(x))
		case *lua.LTable:
			if w.seen[x] {
				continue
			}
			w.seen[x] = true
			w.total += tableBytes
			if mt, ok := x.Metatable.(*lua.LTable); ok {
				w.stack = append(w.stack, mt)
			}
			x.ForEach(func(k, v lua.LValue) {
				w.total += slotBytes
				w.stack = append(w.stack, k, v)
			})
		case *lua.LFunction:
			if w.seen[x] {
				continue
			}
			w.seen[x] = true
			w.total += funcBytes
			for _, uv := range x.Upvalues {
				if uv != nil {
					w.stack = append(w.stack, uv.Value())
				}
			}
		}
	}
}

// budgetError is the message of a call stopped over its budget.
func budgetError(budget int64) string {
	return fmt.Sprintf("handler exceeded the Lua memory budget of %d MiB", budget>>20)
}
