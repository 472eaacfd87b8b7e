package script

import (
	"os"
	"strings"
	"time"

	lua "github.com/yuin/gopher-lua"
)

// sandboxLibs is everything a script can reach of Lua's standard library:
// each library with the names it keeps. It is an allow-list, applied to
// the library tables themselves, so it holds for every path to them: the
// globals, require, package.loaded and the string metatable (whose
// __index is the string library). Left out on purpose:
//   - io, and os beyond the clock and calendar: files, processes, the
//     environment and os.exit would reach past the broker's own state.
//     (os.getenv is the broker's own: it reads only the variables whose
//     names start with a prefix, SCRIPT_ unless configured, for secrets;
//     os.now is the time with its fraction.)
//   - debug beyond traceback: getregistry, getinfo, getlocal, getupvalue
//     and sethook read and rewrite any function's state.
//   - dofile, loadfile, package.loadlib: code from anywhere on disk;
//     require finds modules in the scripts folder and lualib only.
//   - collectgarbage: gopher-lua runs a full Go collection of the whole
//     process for it, stalling every connection.
//   - string.dump, module, package.seeall, _printregs: not useful to a
//     script, and module/seeall write into package.loaded.
var sandboxLibs = []struct {
	name string
	open lua.LGFunction
	keep []string
}{
	{lua.BaseLibName, lua.OpenBase, []string{
		"_G", "_VERSION", "assert", "error", "getfenv", "getmetatable", "ipairs", "load",
		"loadstring", "newproxy", "next", "pairs", "pcall", "print", "rawequal", "rawget",
		"rawset", "require", "select", "setfenv", "setmetatable", "tonumber", "tostring",
		"type", "unpack", "xpcall",
	}},
	{lua.LoadLibName, lua.OpenPackage, []string{"loaded", "loaders", "preload", "path", "cpath", "config"}},
	{lua.TabLibName, lua.OpenTable, []string{"concat", "getn", "insert", "maxn", "remove", "sort"}},
	{lua.StringLibName, lua.OpenString, []string{
		"__index", "byte", "char", "find", "format", "gfind", "gmatch", "gsub", "len",
		"lower", "match", "rep", "reverse", "sub", "upper",
	}},
	{lua.MathLibName, lua.OpenMath, []string{
		"abs", "acos", "asin", "atan", "atan2", "ceil", "cos", "cosh", "deg", "exp", "floor",
		"fmod", "frexp", "huge", "ldexp", "log", "log10", "max", "min", "mod", "modf", "pi",
		"pow", "rad", "random", "randomseed", "sin", "sinh", "sqrt", "tan", "tanh",
	}},
	{lua.CoroutineLibName, lua.OpenCoroutine, []string{"create", "resume", "running", "status", "wrap", "yield"}},
	{lua.OsLibName, lua.OpenOs, []string{"clock", "date", "difftime", "time"}}, // + getenv, now: openSandbox
	{lua.DebugLibName, lua.OpenDebug, []string{"traceback"}},
}

// openSandbox opens the standard libraries and cuts them down to
// sandboxLibs. The globals keep only the kept base functions and the
// libraries; package.loaded keeps only the libraries; package.preload is
// emptied (the engine's modules are added to it afterwards).
func openSandbox(L *lua.LState) {
	for _, lib := range sandboxLibs {
		L.Push(L.NewFunction(lib.open))
		L.Push(lua.LString(lib.name))
		L.Call(1, 0)
	}
	globals := L.Get(lua.GlobalsIndex).(*lua.LTable)
	pkg := globals.RawGetString(lua.LoadLibName).(*lua.LTable)
	loaded := pkg.RawGetString("loaded").(*lua.LTable)
	libNames := map[string]bool{}
	for _, lib := range sandboxLibs {
		libNames[lib.name] = lib.name != lua.BaseLibName
	}
	for _, lib := range sandboxLibs {
		t, also := globals, libNames
		if lib.name != lua.BaseLibName {
			t, also = globals.RawGetString(lib.name).(*lua.LTable), nil
		}
		keepOnly(t, lib.keep, also)
		if lib.name == lua.BaseLibName {
			continue
		}
		// The same table for every path to the library.
		loaded.RawSetString(lib.name, t)
		if lib.name == lua.StringLibName {
			L.SetMetatable(lua.LString(""), t)
		}
	}
	keepOnly(loaded, nil, libNames)
	// Pattern matching that stops at the handler deadline (strlib.go).
	strT := globals.RawGetString(lua.StringLibName).(*lua.LTable)
	gmatch := L.NewFunction(strGmatch)
	strT.RawSetString("find", L.NewFunction(strFind))
	strT.RawSetString("match", L.NewFunction(strMatch))
	strT.RawSetString("gmatch", gmatch)
	strT.RawSetString("gfind", gmatch)
	strT.RawSetString("gsub", L.NewFunction(strGsub))
	strT.RawSetString("rep", L.NewFunction(strRep))
	keepOnly(pkg.RawGetString("preload").(*lua.LTable), nil, nil)
	pkg.RawSetString("path", lua.LString(""))
	pkg.RawSetString("cpath", lua.LString(""))
	osT := globals.RawGetString(lua.OsLibName).(*lua.LTable)
	setEnvPrefix(L, osT, DefaultEnvPrefix)
	osT.RawSetString("now", L.NewFunction(func(L *lua.LState) int {
		L.Push(lua.LNumber(float64(time.Now().UnixMilli()) / 1000))
		return 1
	}))
}

// DefaultEnvPrefix starts the names of the environment variables
// os.getenv reads unless the configuration names another prefix.
const DefaultEnvPrefix = "SCRIPT_"

// setEnvPrefix installs os.getenv(name), which answers for names that
// start with prefix and is nil for every other: scripts get the secrets
// meant for them (SCRIPT_DB_PASSWORD), not the process's environment.
func setEnvPrefix(L *lua.LState, osT *lua.LTable, prefix string) {
	osT.RawSetString("getenv", L.NewFunction(func(L *lua.LState) int {
		name := L.CheckString(1)
		if v, ok := os.LookupEnv(name); ok && strings.HasPrefix(name, prefix) {
			L.Push(lua.LString(v))
			return 1
		}
		L.Push(lua.LNil)
		return 1
	}))
}

// keepOnly deletes every key of t that is in neither keep nor also.
func keepOnly(t *lua.LTable, keep []string, also map[string]bool) {
	allowed := map[string]bool{}
	for _, k := range keep {
		allowed[k] = true
	}
	var drop []lua.LValue
	t.ForEach(func(k, _ lua.LValue) {
		s, ok := k.(lua.LString)
		if !ok || (!allowed[string(s)] && !also[string(s)]) {
			drop = append(drop, k)
		}
	})
	for _, k := range drop {
		t.RawSet(k, lua.LNil)
	}
}
