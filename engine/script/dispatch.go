package script

import (
	"hash/fnv"
	"strings"

	"github.com/mqttlua/broker/codec"
	"github.com/mqttlua/broker/engine/broker"
	"github.com/mqttlua/broker/engine/transport"
	"github.com/sirupsen/logrus"
	lua "github.com/yuin/gopher-lua"
)

// Open implements broker.Hooks: a connection's handlers run on VM
// fd % workers.
func (s *Pool) Open(c *broker.Client) broker.ClientHooks {
	return &clientHooks{s: s, c: c, fdValue: lua.LNumber(c.FD)}
}

// clientHooks run one connection's handlers.
type clientHooks struct {
	s *Pool
	c *broker.Client
	// fdValue is the fd as a Lua value, made once: boxing a number for
	// the handlers' fd argument allocates, and it is passed with every
	// packet.
	fdValue lua.LValue
}

// Packet runs the handler for p on the connection's VM, if the scripts
// define one. It is called by the connection's reader.
func (h *clientHooks) Packet(p *codec.Packet) (bool, broker.Verdict) {
	s, c := h.s, h.c
	vm := s.lockVM(c.FD)
	fn := vm.handler(p.Type)
	if fn == nil {
		vm.mu.Unlock()
		return false, broker.VerdictNone
	}
	L := vm.state()
	vm.cur, vm.handling, vm.slot = c, p.Type, int(p.Type&15)
	L.Push(fn)
	L.Push(vm.server)
	L.Push(h.fdValue)
	L.Push(vm.idValue)
	data := PacketTable(L, p, c.Version())
	data.Metatable = vm.dataMeta
	L.Push(data)
	err := vm.pcallOn(L, 4, 1)
	var ret lua.LValue = lua.LNil
	if err == nil {
		ret = L.Get(-1)
		L.Pop(1)
	}
	vm.putState(L)
	vm.cur, vm.handling, vm.slot = nil, 0, -1
	vm.mu.Unlock()
	if err != nil {
		s.scriptFailed(c, s.callbackName(p.Type), err)
		return true, broker.VerdictNone
	}
	switch ret {
	case lua.LTrue:
		return true, broker.VerdictTrue
	case lua.LFalse:
		return true, broker.VerdictFalse
	}
	return true, broker.VerdictNone
}

// Closed runs the script's onClose(server, fd, reason, session) on the
// connection's VM; session is "offline", "gone", "taken_over", or nil
// for a connection without one.
func (h *clientHooks) Closed(reason transport.CloseReason, session string) {
	s, c := h.s, h.c
	vm := s.lockVM(c.FD)
	fn := vm.global("onClose")
	if fn == nil {
		vm.mu.Unlock()
		return
	}
	vm.cur, vm.where, vm.slot = c, "onClose", slotClose
	L := vm.state()
	L.Push(fn)
	L.Push(vm.server)
	L.Push(h.fdValue)
	L.Push(reasonValue(reason))
	if session == "" {
		L.Push(lua.LNil)
	} else {
		L.Push(lua.LString(session))
	}
	err := vm.pcallOn(L, 4, 0)
	vm.putState(L)
	vm.cur, vm.where, vm.slot = nil, "", -1
	vm.mu.Unlock()
	// The connection's reader has stopped: write what onClose queued for
	// others now.
	c.Batch().Flush()
	if err != nil {
		s.scriptFailed(nil, "onClose", err)
	}
}

// scriptFailed logs a handler failure once, with the script's position and
// traceback, and closes only that connection.
func (s *Pool) scriptFailed(c *broker.Client, handler string, err error) {
	s.cfg.Errors.Add(1)
	reason := transport.CloseScriptError
	fields := logrus.Fields{"handler": handler}
	if le, ok := err.(*LuaError); ok {
		if le.Timeout {
			reason = transport.CloseHandlerTimeout
		}
		if le.Traceback != "" {
			fields["traceback"] = nameHandlerFrame(le.Traceback, handler)
		}
	}
	entry := s.cfg.Log.WithFields(fields)
	if c != nil {
		entry = entry.WithFields(logrus.Fields{"fd": c.FD, "client_id": c.ClientID()})
	}
	entry.Error(err.Error())
	if c != nil {
		c.Close(reason)
	}
}

// nameHandlerFrame names the handler in a traceback: gopher-lua calls the
// frame a Go caller started "main chunk", which for a handler is its
// function.
func nameHandlerFrame(tb, handler string) string {
	i := strings.LastIndex(tb, "in main chunk")
	if i < 0 || handler == "" {
		return tb
	}
	return tb[:i] + "in function '" + handler + "'" + tb[i+len("in main chunk"):]
}

// SessionEnded implements broker.Hooks: the script's
// onSessionEnd(server, client_id, "expired"), on the worker the client id
// hashes to (the session has no connection to pin it).
func (s *Pool) SessionEnded(clientID string) {
	vm := s.lockVMFor(clientID)
	fn := vm.global("onSessionEnd")
	if fn == nil {
		vm.mu.Unlock()
		return
	}
	vm.where, vm.slot = "onSessionEnd", slotSessionEnd
	L := vm.state()
	L.Push(fn)
	L.Push(vm.server)
	L.Push(lua.LString(clientID))
	L.Push(lua.LString("expired"))
	err := vm.pcallOn(L, 3, 0)
	vm.putState(L)
	vm.where, vm.slot = "", -1
	vm.mu.Unlock()
	if err != nil {
		s.scriptFailed(nil, "onSessionEnd", err)
	}
}

// lockVMFor locks the worker a client id hashes to, for what concerns a
// session rather than a connection (which is pinned by its fd).
func (s *Pool) lockVMFor(clientID string) *VM {
	h := fnv.New32a()
	h.Write([]byte(clientID))
	return s.lockVM(int(h.Sum32() & 0x7fffffff))
}
