package script

import (
	"fmt"
	"slices"

	"github.com/mqttlua/broker/codec"
	"github.com/mqttlua/broker/engine/broker"
	"github.com/mqttlua/broker/engine/transport"
	lua "github.com/yuin/gopher-lua"
)

// Bindings follow OpenResty's two kinds of failure: misuse raises a Lua
// error ("bad argument #1 to 'send' (number expected, got nil)"), an
// operational failure returns nil and a short lowercase message
// ("closed", "full").

const serverTypeName = "mqtt.server"

// openBindings registers the server userdata and the mqtt, log, json,
// shared, timer, broker and crypto modules, each also as a global.
func (vm *VM) openBindings() {
	L := vm.L
	mt := L.NewTypeMetatable(serverTypeName)
	L.SetField(mt, "__index", L.SetFuncs(L.NewTable(), map[string]lua.LGFunction{
		"send":        vm.serverSend,
		"close":       vm.serverClose,
		"exist":       vm.serverExist,
		"info":        vm.serverInfo,
		"connections": vm.serverConnections,
	}))
	L.SetField(mt, "__tostring", L.NewFunction(func(L *lua.LState) int {
		L.Push(lua.LString(fmt.Sprintf("server (worker %d)", vm.ID)))
		return 1
	}))
	vm.dataMeta = L.NewTable()
	vm.dataMeta.RawSetString("__index", L.NewFunction(func(L *lua.LState) int {
		if k, ok := L.Get(2).(lua.LString); ok && k == "cmd" {
			L.Push(L.CheckTable(1).RawGetString("type"))
			return 1
		}
		L.Push(lua.LNil)
		return 1
	}))
	vm.server = L.NewUserData()
	vm.server.Value = vm
	L.SetMetatable(vm.server, mt)
	L.SetGlobal("server", vm.server)

	for name, open := range map[string]func() *lua.LTable{
		"mqtt":   vm.openMQTT,
		"log":    vm.openLog,
		"json":   vm.openJSON,
		"shared": vm.openShared,
		"timer":  vm.openTimer,
		"broker": vm.openBroker,
		"crypto": vm.openCrypto,
	} {
		t := open()
		L.PreloadModule(name, func(L *lua.LState) int { L.Push(t); return 1 })
		L.SetGlobal(name, t)
	}
}

// checkServer is the `self` check of server methods.
func checkServer(L *lua.LState) {
	ud, ok := L.Get(1).(*lua.LUserData)
	if !ok {
		L.ArgError(1, "server expected (call server:method, not server.method)")
	}
	if _, ok := ud.Value.(*VM); !ok {
		L.ArgError(1, "server expected")
	}
}

// checkFD reads an fd argument.
func checkFD(L *lua.LState, n int) int {
	v := L.CheckNumber(n)
	if v < 1 || float64(v) != float64(int(v)) {
		L.ArgError(n, "fd must be a positive integer")
	}
	return int(v)
}

// server:send(fd, bytes | packet) -> true | nil, err
func (vm *VM) serverSend(L *lua.LState) int {
	checkServer(L)
	fd := checkFD(L, 2)
	c := vm.pool.broker.Client(fd)
	var err error
	switch data := L.Get(3).(type) {
	case lua.LString:
		if c != nil {
			err = c.SendVia([]byte(data), vm.Batch())
		}
	case *lua.LTable:
		if c != nil {
			var p *codec.Packet
			if p, err = TablePacket(data, c.Version()); err != nil {
				L.ArgError(3, err.Error())
			}
			err = c.SendPacketVia(p, vm.Batch())
			var ce *codec.Error
			if asCodecError(err, &ce) {
				L.ArgError(3, err.Error())
			}
		}
	default:
		L.TypeError(3, lua.LTString)
	}
	if c == nil {
		err = transport.ErrClosed
	}
	if err != nil {
		L.Push(lua.LNil)
		L.Push(lua.LString(err.Error()))
		return 2
	}
	L.Push(lua.LTrue)
	return 1
}

// server:close(fd [, reasonCode [, reasonString]]) -> true | nil, "closed"
func (vm *VM) serverClose(L *lua.LState) int {
	checkServer(L)
	fd := checkFD(L, 2)
	code := codec.ReasonCode(L.OptInt(3, int(codec.AdministrativeAction)))
	if L.Get(3) != lua.LNil && !code.ValidFor(codec.DISCONNECT) {
		L.ArgError(3, fmt.Sprintf("0x%02X is not a DISCONNECT reason code", byte(code)))
	}
	reasonString := L.OptString(4, "")
	c := vm.pool.broker.Client(fd)
	if c == nil || c.Closing() {
		L.Push(lua.LNil)
		L.Push(lua.LString("closed"))
		return 2
	}
	c.CloseWithCode(transport.CloseScript, code, reasonString)
	L.Push(lua.LTrue)
	return 1
}

// connArg checks a server method's self and fd arguments and returns the
// connection, or nil when it is gone.
func (vm *VM) connArg(L *lua.LState) *broker.Client {
	checkServer(L)
	return vm.pool.broker.Client(checkFD(L, 2))
}

// pushClosed returns the operational failure nil, "closed".
func pushClosed(L *lua.LState) int {
	L.Push(lua.LNil)
	L.Push(lua.LString("closed"))
	return 2
}

// server:exist(fd) -> bool
func (vm *VM) serverExist(L *lua.LState) int {
	checkServer(L)
	c := vm.pool.broker.Client(checkFD(L, 2))
	L.Push(lua.LBool(c != nil && !c.Closing()))
	return 1
}

// server:info(fd) -> {fd, remote_addr, client_id, user_name,
// protocol_level, worker_id, keep_alive} | nil, "closed"
// server:info(fd, name...) -> the named facts as values, no table
// One call for everything known of a connection. Without names it builds
// the table (for display and logs); with names it returns just those, in
// order, building nothing: what a check on every message or every
// CONNECT asks (`server:info(fd, "client_id", "user_name")`,
// `server:info(fd, "remote_addr")`). An unknown name raises.
func (vm *VM) serverInfo(L *lua.LState) int {
	c := vm.connArg(L)
	top := L.GetTop()
	if top > 2 {
		// Names are checked before answering, so that a typo raises even
		// for a closed connection; most calls name one or two.
		var small [4]int
		fields := small[:0]
		for i := 3; i <= top; i++ {
			f := infoField(L.CheckString(i))
			if f < 0 {
				L.ArgError(i, "unknown field (known: fd, remote_addr, client_id, user_name, protocol_level, worker_id, keep_alive, listener, cert_cn, cert_sans, cert_fingerprint)")
			}
			fields = append(fields, f)
		}
		if c == nil {
			return pushClosed(L)
		}
		for _, f := range fields {
			L.Push(vm.infoValue(c, f))
		}
		return len(fields)
	}
	if c == nil {
		return pushClosed(L)
	}
	// Sized: L.NewTable preallocates 32 array and 32 hash slots, which
	// was most of this call's cost.
	t := L.CreateTable(0, 8)
	t.RawSetString("fd", vm.infoValue(c, infoFD))
	t.RawSetString("remote_addr", vm.infoValue(c, infoRemoteAddr))
	t.RawSetString("client_id", vm.infoValue(c, infoClientID))
	if u := vm.infoValue(c, infoUserName); u != lua.LNil {
		t.RawSetString("user_name", u)
	}
	t.RawSetString("protocol_level", vm.infoValue(c, infoProtocolLevel))
	t.RawSetString("worker_id", vm.infoValue(c, infoWorkerID))
	t.RawSetString("keep_alive", vm.infoValue(c, infoKeepAlive))
	t.RawSetString("listener", vm.infoValue(c, infoListener))
	if c.PeerCert() != nil {
		ct := L.CreateTable(0, 3)
		ct.RawSetString("cn", vm.infoValue(c, infoCertCN))
		ct.RawSetString("sans", vm.infoValue(c, infoCertSANs))
		ct.RawSetString("fingerprint", vm.infoValue(c, infoCertFingerprint))
		t.RawSetString("cert", ct)
	}
	L.Push(t)
	return 1
}

// The facts server:info knows.
const (
	infoFD = iota
	infoRemoteAddr
	infoClientID
	infoUserName
	infoProtocolLevel
	infoWorkerID
	infoKeepAlive
	infoListener
	infoCertCN
	infoCertSANs
	infoCertFingerprint
)

// infoField returns the fact a name asks for, or -1.
func infoField(name string) int {
	switch name {
	case "fd":
		return infoFD
	case "remote_addr":
		return infoRemoteAddr
	case "client_id":
		return infoClientID
	case "user_name":
		return infoUserName
	case "protocol_level":
		return infoProtocolLevel
	case "worker_id":
		return infoWorkerID
	case "keep_alive":
		return infoKeepAlive
	case "listener":
		return infoListener
	case "cert_cn":
		return infoCertCN
	case "cert_sans":
		return infoCertSANs
	case "cert_fingerprint":
		return infoCertFingerprint
	}
	return -1
}

// infoValue is one fact of server:info; user_name is nil when the CONNECT
// had none.
func (vm *VM) infoValue(c *broker.Client, f int) lua.LValue {
	switch f {
	case infoFD:
		return lua.LNumber(c.FD)
	case infoRemoteAddr:
		return lua.LString(c.RemoteAddrString())
	case infoClientID:
		return lua.LString(c.ClientID())
	case infoUserName:
		if u, ok := c.Username(); ok {
			return lua.LString(u)
		}
		return lua.LNil
	case infoProtocolLevel:
		return lua.LNumber(c.Version())
	case infoWorkerID:
		return lua.LNumber(c.FD % len(vm.pool.VMs()))
	case infoListener:
		return lua.LString(c.Listener())
	case infoCertCN, infoCertSANs, infoCertFingerprint:
		// nil without a verified client certificate.
		pc := c.PeerCert()
		if pc == nil {
			return lua.LNil
		}
		switch f {
		case infoCertCN:
			return lua.LString(pc.CommonName)
		case infoCertFingerprint:
			return lua.LString(pc.Fingerprint)
		}
		t := vm.L.CreateTable(len(pc.SANs), 0)
		for _, s := range pc.SANs {
			t.Append(lua.LString(s))
		}
		return t
	}
	return lua.LNumber(c.KeepAlive())
}

// server:connections() -> iterator over live fds, for
// `for fd in server:connections() do ... end`. The set is taken when the
// loop starts.
func (vm *VM) serverConnections(L *lua.LState) int {
	checkServer(L)
	var fds []int
	vm.pool.broker.Range(func(c *broker.Client) bool {
		if !c.Closing() && c.Connected() {
			fds = append(fds, c.FD)
		}
		return true
	})
	slices.Sort(fds)
	i := 0
	L.Push(L.NewFunction(func(L *lua.LState) int {
		if i >= len(fds) {
			L.Push(lua.LNil)
			return 1
		}
		i++
		L.Push(lua.LNumber(fds[i-1]))
		return 1
	}))
	return 1
}

func asCodecError(err error, target **codec.Error) bool {
	ce, ok := err.(*codec.Error)
	if ok {
		*target = ce
	}
	return ok
}
