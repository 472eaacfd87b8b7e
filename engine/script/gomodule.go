package script

import (
	lua "github.com/yuin/gopher-lua"
	luar "layeh.com/gopher-luar"
)

// GoModule returns a Module that hands scripts plain Go values, for Go
// programs that embed the engine: each entry of values becomes a field of
// the module's table (and global), converted by gopher-luar. Functions are
// callable with their Lua arguments converted to the parameter types,
// struct fields and methods are reachable by name (or by a `luar:"name"`
// tag), maps and slices are indexable. No hand-written binding is needed:
//
//	engine.GoModule("devices", map[string]any{
//		"owner": func(id string) (string, bool) { return registry.Owner(id) },
//	})
//
// lets a script call `local owner, ok = devices.owner(data.client_id)`.
//
// The values are shared by every VM, and VMs run handlers in parallel, so
// they must be safe for concurrent use. Reflection makes a call several
// times slower than a binding written against gopher-lua (as the broker
// module's are): use it for conveniences, not for what runs on every message.
func GoModule(name string, values map[string]any) Module {
	return &goModule{name: name, values: values}
}

type goModule struct {
	name   string
	values map[string]any
}

func (m *goModule) Name() string { return m.name }

func (m *goModule) Open(vm *VM) *lua.LTable {
	t := vm.L.CreateTable(0, len(m.values))
	for k, v := range m.values {
		t.RawSetString(k, luar.New(vm.L, v))
	}
	return t
}
