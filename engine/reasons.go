package engine

import (
	"github.com/mqttlua/broker/engine/transport"
	lua "github.com/yuin/gopher-lua"
)

// CloseReason says why a connection ended (transport.CloseReason).
type CloseReason = transport.CloseReason

// The close reasons, as the transport names them.
const (
	CloseNone                     = transport.CloseNone
	CloseClientDisconnect         = transport.CloseClientDisconnect
	CloseNetworkError             = transport.CloseNetworkError
	CloseConnectTimeout           = transport.CloseConnectTimeout
	CloseKeepAliveTimeout         = transport.CloseKeepAliveTimeout
	CloseNotConnect               = transport.CloseNotConnect
	CloseSecondConnect            = transport.CloseSecondConnect
	CloseMalformed                = transport.CloseMalformed
	CloseProtocolError            = transport.CloseProtocolError
	ClosePacketTooLarge           = transport.ClosePacketTooLarge
	CloseSlowConsumer             = transport.CloseSlowConsumer
	CloseScript                   = transport.CloseScript
	CloseScriptError              = transport.CloseScriptError
	CloseHandlerTimeout           = transport.CloseHandlerTimeout
	CloseConnectRefused           = transport.CloseConnectRefused
	CloseTakenOver                = transport.CloseTakenOver
	CloseServerShutdown           = transport.CloseServerShutdown
	CloseClientDisconnectWithWill = transport.CloseClientDisconnectWithWill
)

// closeReasonValues are the names as Lua values, made once: onClose gets
// one for every connection.
var closeReasonValues = func() []lua.LValue {
	v := make([]lua.LValue, transport.NumCloseReasons)
	for i := range v {
		v[i] = lua.LString(CloseReason(i).String())
	}
	return v
}()

// reasonValue is r's name as a Lua value.
func reasonValue(r CloseReason) lua.LValue {
	if int(r) >= 0 && int(r) < len(closeReasonValues) {
		return closeReasonValues[r]
	}
	return lua.LString(r.String())
}
