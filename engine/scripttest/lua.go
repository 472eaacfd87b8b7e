package scripttest

import (
	"fmt"
	"strings"
	"time"

	"github.com/mqttlua/broker/codec"
	"github.com/mqttlua/broker/codec/fixture"
	"github.com/mqttlua/broker/engine/script"
	"github.com/mqttlua/broker/engine/transport"
	lua "github.com/yuin/gopher-lua"
)

// Lua test files run in a VM of their own beside the server's workers,
// with the scripts loaded (so handlers can be called directly) and the
// `testing` module of lualib/, which is built on the Go-backed
// `testing.core` below.

const testTimeout = 30 * time.Second

type luaTest struct {
	name string
	line int
	fn   *lua.LFunction
}

// loadLua lists the tests of a *_test.lua file by running it once.
func loadLua(opts Options, file string) ([]test, error) {
	e, err := newEnv(opts, "", "")
	if err != nil {
		return nil, err
	}
	defer e.close()
	lt, vm, err := e.runLuaFile(file)
	if vm != nil {
		vm.Close()
	}
	if err != nil {
		return nil, err
	}
	if len(lt) == 0 {
		return nil, fmt.Errorf("%s: no testing.test(...) calls", file)
	}
	tests := make([]test, len(lt))
	for i, t := range lt {
		i := i
		tests[i] = test{name: t.name, file: file, line: t.line, run: func(e *env) error { return e.runLuaTest(file, i) }}
	}
	return tests, nil
}

// runLuaFile makes a test VM, runs the file in it and returns the tests it
// registered.
func (e *env) runLuaFile(file string) ([]luaTest, *script.VM, error) {
	vm, err := e.srv.NewVM(-1)
	if err != nil {
		return nil, nil, err
	}
	var tests []luaTest
	L := vm.L
	L.PreloadModule("testing.core", func(L *lua.LState) int {
		L.Push(e.coreModule(L, &tests))
		return 1
	})
	src, err := readFile(file)
	if err != nil {
		return nil, vm, err
	}
	fn, err := L.Load(strings.NewReader(string(src)), file)
	if err != nil {
		return nil, vm, fmt.Errorf("%s", strings.TrimSpace(err.Error()))
	}
	L.Push(fn)
	if err := L.PCall(0, 0, nil); err != nil {
		return nil, vm, luaFailure(err)
	}
	return tests, vm, nil
}

func (e *env) runLuaTest(file string, i int) error {
	tests, vm, err := e.runLuaFile(file)
	if vm != nil {
		defer vm.Close()
	}
	if err != nil {
		return err
	}
	if i >= len(tests) {
		return fmt.Errorf("%s: test %d no longer registered", file, i+1)
	}
	vm.Lock()
	defer vm.Unlock()
	done := make(chan error, 1)
	go func() {
		vm.L.Push(tests[i].fn)
		done <- vm.L.PCall(0, 0, nil)
	}()
	select {
	case err := <-done:
		if err != nil {
			return luaFailure(err)
		}
		return nil
	case <-time.After(testTimeout):
		return fmt.Errorf("%s:%d: test ran past %s", file, tests[i].line, testTimeout)
	}
}

// luaFailure keeps a Lua error's message and the script lines of its
// traceback.
func luaFailure(err error) error {
	ae, ok := err.(*lua.ApiError)
	if !ok {
		return err
	}
	msg := ae.Object.String()
	// An assertion of the testing module reports from inside it; the
	// test's own line is in the frames below.
	if i := strings.Index(msg, "testing.lua:"); i >= 0 && !strings.Contains(msg[:i], " ") {
		if j := strings.Index(msg[i:], ": "); j >= 0 {
			msg = msg[i+j+2:]
		}
	}
	var frames []string
	for _, l := range strings.Split(ae.StackTrace, "\n") {
		l = strings.TrimSpace(l)
		if strings.Contains(l, ".lua:") && !strings.Contains(l, "lualib/testing.lua") {
			frames = append(frames, "  at "+l)
		}
	}
	if len(frames) > 3 {
		frames = frames[:3]
	}
	if len(frames) > 0 {
		msg += "\n" + strings.Join(frames, "\n")
	}
	return fmt.Errorf("%s", msg)
}

const clientType = "testing.client"

// coreModule is `testing.core`.
func (e *env) coreModule(L *lua.LState, tests *[]luaTest) *lua.LTable {
	mt := L.NewTypeMetatable(clientType)
	L.SetField(mt, "__index", L.SetFuncs(L.NewTable(), map[string]lua.LGFunction{
		"connect":        e.luaConnect,
		"send":           e.luaSend,
		"expect":         e.luaExpect,
		"expect_nothing": e.luaExpectNothing,
		"expect_closed":  e.luaExpectClosed,
		"close":          func(L *lua.LState) int { c := checkClient(L); c.conn.Close(); return 0 },
		"fd": func(L *lua.LState) int {
			c := checkClient(L)
			if c.srvConn == nil {
				L.Push(lua.LNil)
			} else {
				L.Push(lua.LNumber(c.srvConn.FD))
			}
			return 1
		},
	}))
	L.SetField(mt, "__tostring", L.NewFunction(func(L *lua.LState) int {
		L.Push(lua.LString("client " + checkClient(L).name))
		return 1
	}))
	return L.SetFuncs(L.NewTable(), map[string]lua.LGFunction{
		// register(name, fn)
		"register": func(L *lua.LState) int {
			name := L.CheckString(1)
			fn := L.CheckFunction(2)
			line := 0
			if dbg, ok := L.GetStack(1); ok {
				L.GetInfo("l", dbg, lua.LNil)
				line = dbg.CurrentLine
			}
			*tests = append(*tests, luaTest{name: name, line: line, fn: fn})
			return 0
		},
		// client(name [, {level=, from=}]) -> client
		"client": func(L *lua.LState) int {
			name := L.CheckString(1)
			c := e.client(name)
			if opts, ok := L.Get(2).(*lua.LTable); ok {
				if lv, ok := opts.RawGetString("level").(lua.LNumber); ok {
					c.setLevel(byte(lv))
				}
				if from, ok := opts.RawGetString("from").(lua.LString); ok {
					c.from = string(from)
				}
			}
			ud := L.NewUserData()
			ud.Value = c
			L.SetMetatable(ud, L.GetTypeMetatable(clientType))
			L.Push(ud)
			return 1
		},
		// fixture(name) -> packet table
		"fixture": func(L *lua.LState) int {
			f, err := fixture.ByName(L.CheckString(1))
			if err != nil || f.Packet == nil {
				L.ArgError(1, fmt.Sprintf("no valid-packet fixture: %v", err))
			}
			L.Push(script.ToLua(L, f.Packet))
			return 1
		},
		// fixture_bytes(name) -> string
		"fixture_bytes": func(L *lua.LState) int {
			f, err := fixture.ByName(L.CheckString(1))
			if err != nil {
				L.ArgError(1, err.Error())
			}
			L.Push(lua.LString(f.Bytes))
			return 1
		},
		// logs() -> the server's log so far
		"logs": func(L *lua.LState) int {
			L.Push(lua.LString(e.logs.String()))
			return 1
		},
		// wait(seconds)
		"wait": func(L *lua.LState) int {
			time.Sleep(time.Duration(float64(L.CheckNumber(1)) * float64(time.Second)))
			return 0
		},
	})
}

func checkClient(L *lua.LState) *client {
	ud, ok := L.Get(1).(*lua.LUserData)
	if ok {
		if c, ok := ud.Value.(*client); ok {
			return c
		}
	}
	L.ArgError(1, "client expected (call c:method())")
	return nil
}

// tableData converts a Lua packet table to data, accepting type names.
func tableData(L *lua.LState, n int) codec.Map {
	v, err := script.FromLua(L.CheckTable(n))
	if err != nil {
		L.ArgError(n, err.Error())
	}
	m, ok := v.(map[string]any)
	if !ok {
		L.ArgError(n, "packet table expected")
	}
	out, err := namesToNumbers(normalize(m))
	if err != nil {
		L.ArgError(n, err.Error())
	}
	return out
}

func fail(L *lua.LState, format string, a ...any) {
	L.RaiseError("%s", fmt.Sprintf(format, a...))
}

// c:connect([overrides]) -> CONNACK table
func (e *env) luaConnect(L *lua.LState) int {
	c := checkClient(L)
	m := codec.Map{"type": int(codec.CONNECT), "client_id": c.name, "clean_session": true, "keep_alive": 60, "protocol_level": int(c.level)}
	if L.Get(2) != lua.LNil {
		for k, v := range tableData(L, 2) {
			m[k] = v
		}
	}
	e.dial(c)
	if err := c.sendData(m); err != nil {
		fail(L, "connect: %v", err)
	}
	got, _, err := c.next(expectTimeout)
	if err != nil {
		fail(L, "connect: expected CONNACK, received %s", describe(err))
	}
	L.Push(script.ToLua(L, got))
	return 1
}

// c:send(packet table | bytes)
func (e *env) luaSend(L *lua.LState) int {
	c := checkClient(L)
	e.dial(c)
	var err error
	switch v := L.Get(2).(type) {
	case lua.LString:
		err = c.write([]byte(v))
	case *lua.LTable:
		err = c.sendData(tableData(L, 2))
	default:
		L.TypeError(2, lua.LTTable)
	}
	if err != nil {
		fail(L, "send: %v", err)
	}
	return 0
}

// c:expect(partial packet table) -> the packet received
func (e *env) luaExpect(L *lua.LState) int {
	c := checkClient(L)
	want := tableData(L, 2)
	got, _, err := c.next(expectTimeout)
	if err != nil || !subset(want, got) {
		received := show(got)
		if err != nil {
			received = describe(err)
		}
		fail(L, "%s: expect\n  expected: %s\n  received: %s", c.name, show(want), received)
	}
	L.Push(script.ToLua(L, got))
	return 1
}

// c:expect_nothing([seconds])
func (e *env) luaExpectNothing(L *lua.LState) int {
	c := checkClient(L)
	d := time.Duration(float64(L.OptNumber(2, lua.LNumber(nothingTimeout.Seconds()))) * float64(time.Second))
	if got, _, err := c.next(d); err == nil {
		fail(L, "%s: expect nothing\n  received: %s", c.name, show(got))
	}
	return 0
}

// c:expect_closed([reason])
func (e *env) luaExpectClosed(L *lua.LState) int {
	c := checkClient(L)
	got, err := c.expectClosed(expectTimeout)
	if err != nil || got != nil {
		received := show(got)
		if err != nil {
			received = err.Error()
		}
		fail(L, "%s: expect closed\n  received: %s", c.name, received)
	}
	if reason := L.OptString(2, ""); reason != "" && c.srvConn != nil {
		deadline := time.Now().Add(expectTimeout)
		for c.srvConn.Reason() == transport.CloseNone && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if r := c.srvConn.Reason().String(); r != reason {
			fail(L, "%s: expect closed\n  expected: close reason %s\n  received: close reason %s", c.name, reason, r)
		}
	}
	return 0
}
