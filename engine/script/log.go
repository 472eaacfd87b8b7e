package script

import (
	"strings"

	"github.com/sirupsen/logrus"
	lua "github.com/yuin/gopher-lua"
)

// logEntry is a logrus entry with the connection being handled and the
// script position of the caller.
func (vm *VM) logEntry(L *lua.LState) *logrus.Entry {
	e := vm.pool.cfg.Log.WithField("worker", vm.ID)
	if c := vm.cur; c != nil {
		e = e.WithFields(logrus.Fields{"fd": c.FD, "client_id": c.ClientID()})
	}
	if where := strings.TrimSuffix(L.Where(1), ":"); where != "" {
		e = e.WithField("script", where)
	}
	return e
}

func (vm *VM) openLog() *lua.LTable {
	L := vm.L
	logAt := func(level logrus.Level) lua.LGFunction {
		return func(L *lua.LState) int {
			if !vm.pool.cfg.Log.IsLevelEnabled(level) {
				return 0
			}
			msg := L.CheckString(1)
			e := vm.logEntry(L)
			if f, ok := L.Get(2).(*lua.LTable); ok {
				f.ForEach(func(k, v lua.LValue) { e = e.WithField(k.String(), v.String()) })
			}
			e.Log(level, msg)
			return 0
		}
	}
	return L.SetFuncs(L.NewTable(), map[string]lua.LGFunction{
		"debug": logAt(logrus.DebugLevel),
		"info":  logAt(logrus.InfoLevel),
		"warn":  logAt(logrus.WarnLevel),
		"error": logAt(logrus.ErrorLevel),
	})
}
