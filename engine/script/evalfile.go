package script

import (
	"errors"
	"io/fs"
	"os"
	"time"

	"github.com/sirupsen/logrus"
	lua "github.com/yuin/gopher-lua"
)

// EvalFile runs a Lua file that returns a table (config.lua) in a
// sandboxed VM of its own, with the mqtt module, and returns the table as
// plain data (see FromLua). A missing file is not an error (nil, nil);
// any other failure is a *ScriptError.
func EvalFile(path string) (map[string]any, error) {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	proto, err := compileFile(path)
	if err != nil {
		return nil, err
	}
	vm := &VM{pool: &Pool{cfg: Config{Log: logrus.New(), HandlerTimeout: time.Second}, Shared: NewSharedStore()}, slot: -1}
	vm.L = lua.NewState(lua.Options{SkipOpenLibs: true})
	defer vm.L.Close()
	vm.openLibs()
	vm.L.SetGlobal("mqtt", vm.openMQTT())
	vm.resetContext()
	vm.L.Push(vm.L.NewFunctionFromProto(proto))
	if err := vm.pcall(0, 1); err != nil {
		return nil, scriptErrorOf(err, path)
	}
	t, ok := vm.L.Get(-1).(*lua.LTable)
	if !ok {
		return nil, &ScriptError{File: path, Msg: "must return a table"}
	}
	v, err := FromLua(t)
	if err != nil {
		return nil, &ScriptError{File: path, Msg: err.Error()}
	}
	m, _ := v.(map[string]any)
	if m == nil {
		m = map[string]any{}
	}
	return m, nil
}
