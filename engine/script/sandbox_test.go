package script_test

import (
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/mqttlua/broker/codec"
	"github.com/mqttlua/broker/engine"
	"github.com/mqttlua/broker/engine/script"
	lua "github.com/yuin/gopher-lua"
)

// TestSandboxHandlerCannotRunCommands: a handler that tries every route
// to os.execute reaches none, and the command it passes never runs.
func TestSandboxHandlerCannotRunCommands(t *testing.T) {
	_, addr, _ := startServer(t, engine.Config{Scripts: filepath.Join("testdata", "sandbox")})
	marker := filepath.Join(t.TempDir(), "escaped")
	c := dialRaw(t, addr, codec.V311)
	c.Connect("escaper")
	c.Send(&codec.Packet{Type: codec.PUBLISH, Topic: "x", Payload: []byte("touch " + marker)})
	p := c.Expect(codec.PUBLISH)
	if string(p.Payload) != "" {
		t.Errorf("routes that reached os.execute: %s", p.Payload)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatalf("the script ran a shell command: %s exists", marker)
	}
}

// TestSandboxEscapeRoutes evaluates each known route to a dangerous
// function in a worker VM; every one must come back nil or fail.
func TestSandboxEscapeRoutes(t *testing.T) {
	vm := sandboxVM(t)
	routes := []string{
		`os.execute`, `os.exit`, `os.setenv`, `os.remove`, `os.rename`, `os.tmpname`,
		`require("os").execute`, `require("os").exit`, `require("os").setenv`, `require("os").remove`,
		// os.getenv is the broker's: nothing outside its prefix.
		`os.getenv("PATH")`, `os.getenv("HOME")`, `require("os").getenv("PATH")`,
		`package.loaded.os.execute`, `package.loaded["os"].exit`, `_G.package.loaded.os.remove`, `getfenv(0).os.execute`,
		`debug.getinfo`, `debug.getregistry`, `debug.sethook`, `debug.getlocal`, `debug.getupvalue`, `debug.setupvalue`,
		`require("debug").getregistry`, `require("debug").getinfo`, `package.loaded.debug.sethook`, `package.loaded.debug.getlocal`,
		`io`, `require("io")`, `package.loaded.io`, `package.preload.io`, `package.preload.os`, `package.preload.debug`,
		`dofile`, `loadfile`, `collectgarbage`, `module`, `_printregs`, `package.loadlib`, `package.seeall`,
		`string.dump`, `getmetatable("").dump`, `getmetatable("").__index.dump`, `("").dump`,
		`require("string").dump`, `package.loaded.string.dump`, `package.loaded._G.dofile`, `require("_G").loadfile`,
		`package.loaded.channel`, `require("channel")`,
	}
	for _, r := range routes {
		err := vm.L.DoString("__probe = " + r)
		if err != nil {
			continue // a failing route is closed too (require of an absent module)
		}
		if v := vm.L.GetGlobal("__probe"); v != lua.LNil {
			t.Errorf("%s reaches %s", r, v)
		}
	}
	// What stays, stays reachable by every route.
	for _, r := range []string{`os.time`, `os.now`, `os.getenv`, `require("os").clock`, `package.loaded.os.date`, `debug.traceback`,
		`require("debug").traceback`, `("x").upper`, `getmetatable("").__index.format`, `require("string").rep`} {
		if err := vm.L.DoString("__probe = " + r); err != nil {
			t.Errorf("%s: %v", r, err)
		} else if _, ok := vm.L.GetGlobal("__probe").(*lua.LFunction); !ok {
			t.Errorf("%s is not a function", r)
		}
	}
}

// TestSandboxReachableGoFunctions walks everything a script can reach
// from its globals (tables, metatables, upvalues, the string metatable,
// package.loaded and what each package.preload loader returns) and
// checks no gopher-lua function outside the allow-list is among them,
// whatever path leads there.
func TestSandboxReachableGoFunctions(t *testing.T) {
	vm := sandboxVM(t)
	L := vm.L
	denied := map[string]bool{}
	for _, name := range []string{
		"osExecute", "osExit", "osGetEnv", "osSetEnv", "osRemove", "osRename", "osTmpname", "osSetLocale",
		"debugGetInfo", "debugGetLocal", "debugGetMetatable", "debugGetUpvalue", "debugSetFEnv",
		"debugSetLocal", "debugSetMetatable", "debugSetUpvalue", "debugGetFEnv", "debugSetHook", "debugGetRegistry",
		"baseDoFile", "baseLoadFile", "baseCollectGarbage", "base_PrintRegs", "loModule", "loLoadLib", "loSeeAll",
		"loLoaderLua", "strDump",
	} {
		denied["github.com/yuin/gopher-lua."+name] = true
	}
	seen := map[lua.LValue]bool{}
	var walk func(path string, v lua.LValue)
	walk = func(path string, v lua.LValue) {
		if v == nil || v == lua.LNil || seen[v] {
			return
		}
		switch x := v.(type) {
		case *lua.LTable:
			seen[v] = true
			x.ForEach(func(k, val lua.LValue) { walk(path+"."+k.String(), val) })
			walk(path+"<mt>", x.Metatable)
		case *lua.LUserData:
			seen[v] = true
			walk(path+"<mt>", x.Metatable)
		case *lua.LFunction:
			seen[v] = true
			if x.IsG {
				name := runtime.FuncForPC(reflect.ValueOf(x.GFunction).Pointer()).Name()
				if denied[name] || strings.HasPrefix(name, "github.com/yuin/gopher-lua.io") {
					t.Errorf("%s reaches %s", path, name)
				}
			}
			for i, up := range x.Upvalues {
				walk(path+"<up"+string(rune('0'+i))+">", up.Value())
			}
		}
	}
	walk("_G", L.Get(lua.GlobalsIndex))
	walk(`getmetatable("")`, L.GetMetatable(lua.LString("")))
	walk("registry._LOADED", L.GetField(L.Get(lua.RegistryIndex), "_LOADED"))
	walk("registry._LOADERS", L.GetField(L.Get(lua.RegistryIndex), "_LOADERS"))
	preload := L.GetField(L.GetGlobal("package"), "preload").(*lua.LTable)
	preload.ForEach(func(k, loader lua.LValue) {
		L.Push(loader)
		L.Push(k)
		if err := L.PCall(1, 1, nil); err != nil {
			t.Fatalf("preload %s: %v", k, err)
		}
		walk("preload."+k.String()+"()", L.Get(-1))
		L.Pop(1)
	})
	if len(seen) < 20 {
		t.Fatalf("the walk saw only %d values: it is not walking", len(seen))
	}
}

func sandboxVM(t *testing.T) *script.VM {
	t.Helper()
	srv, err := engine.New(engine.Config{Scripts: filepath.Join("testdata", "sandbox"), Listen: []string{"127.0.0.1:0"}})
	if err != nil {
		t.Fatal(err)
	}
	vm, err := srv.NewVM(0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(vm.Close)
	return vm
}

// TestGetenvPrefix: os.getenv answers for the variables under its prefix
// (SCRIPT_ by default, settings.env_prefix otherwise) and nil for the
// rest of the environment; os.now has sub-second resolution.
func TestGetenvPrefix(t *testing.T) {
	t.Setenv("SCRIPT_DB_PASSWORD", "hunter2")
	t.Setenv("APP_TOKEN", "t0k")
	vm := sandboxVM(t)
	if err := vm.L.DoString(`
assert(os.getenv("SCRIPT_DB_PASSWORD") == "hunter2", "the prefixed variable")
assert(os.getenv("APP_TOKEN") == nil and os.getenv("PATH") == nil, "another variable")
local a = os.now()
assert(math.abs(a - os.time()) < 2, "os.now is the time")
local b
repeat b = os.now() until b ~= a
assert(b - a < 0.5, "os.now moves in less than a second")
`); err != nil {
		t.Fatal(err)
	}
	srv, err := engine.New(engine.Config{Scripts: filepath.Join("testdata", "sandbox"), Listen: []string{"127.0.0.1:0"}, ScriptEnvPrefix: "APP_"})
	if err != nil {
		t.Fatal(err)
	}
	app, err := srv.NewVM(0)
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	if err := app.L.DoString(`assert(os.getenv("APP_TOKEN") == "t0k" and os.getenv("SCRIPT_DB_PASSWORD") == nil, "env_prefix APP_")`); err != nil {
		t.Fatal(err)
	}
}
