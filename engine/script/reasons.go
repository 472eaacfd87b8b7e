package script

import (
	"github.com/mqttlua/broker/engine/transport"
	lua "github.com/yuin/gopher-lua"
)

// closeReasonValues are the names as Lua values, made once: onClose gets
// one for every connection.
var closeReasonValues = func() []lua.LValue {
	v := make([]lua.LValue, transport.NumCloseReasons)
	for i := range v {
		v[i] = lua.LString(transport.CloseReason(i).String())
	}
	return v
}()

// reasonValue is r's name as a Lua value.
func reasonValue(r transport.CloseReason) lua.LValue {
	if int(r) >= 0 && int(r) < len(closeReasonValues) {
		return closeReasonValues[r]
	}
	return lua.LString(r.String())
}
