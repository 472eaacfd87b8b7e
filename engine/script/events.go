package script

import (
	"github.com/mqttlua/broker/engine/broker"
	lua "github.com/yuin/gopher-lua"
)

// Message events: onMqQueued(server, client_id, data),
// onMqDropped(server, client_id, data, reason) and
// onMqAcked(server, client_id, data), where data is {topic, message,
// qos, retain, properties}. The broker queues them (broker/events.go) and hands them
// over in order on one goroutine; each runs on the worker its client id
// hashes to, as onSessionEnd does: the subscriber may be offline, and
// the code that caused the event may hold another worker.

var eventHandlers = [...]struct {
	kind broker.EventKind
	name string
}{
	{broker.EventQueued, "onMqQueued"},
	{broker.EventDropped, "onMqDropped"},
	{broker.EventAcked, "onMqAcked"},
}

// EventsWanted implements broker.Hooks: the kinds the scripts define a
// handler for, as found when they were last loaded.
func (s *Pool) EventsWanted() broker.EventKind { return broker.EventKind(s.eventsWanted.Load()) }

// noteEvents records which event handlers a freshly loaded VM defines
// (all VMs run the same scripts). mu is held or the VM is not shared yet.
func (s *Pool) noteEvents(vm *VM) {
	var wanted broker.EventKind
	for _, h := range eventHandlers {
		if vm.global(h.name) != nil {
			wanted |= h.kind
		}
	}
	s.eventsWanted.Store(uint32(wanted))
}

// MessageEvent implements broker.Hooks.
func (s *Pool) MessageEvent(ev broker.MessageEvent) {
	name := ""
	for _, h := range eventHandlers {
		if h.kind == ev.Kind {
			name = h.name
		}
	}
	vm := s.lockVMFor(ev.ClientID)
	fn := vm.global(name)
	if fn == nil {
		vm.mu.Unlock()
		return
	}
	L := vm.state()
	data := messageTable(L, ev.Message, ev.QoS, ev.Message.Retain)
	var id lua.LValue = lua.LNil
	if ev.ClientID != "" {
		id = lua.LString(ev.ClientID)
	}
	vm.where, vm.slot = name, slotEvent
	L.Push(fn)
	L.Push(vm.server)
	L.Push(id)
	L.Push(data)
	nargs := 3
	if ev.Kind == broker.EventDropped {
		L.Push(lua.LString(ev.Reason))
		nargs = 4
	}
	err := vm.pcallOn(L, nargs, 0)
	vm.putState(L)
	vm.where, vm.slot = "", -1
	vm.mu.Unlock()
	if err != nil {
		s.scriptFailed(nil, name, err)
	}
}
