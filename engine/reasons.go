package engine

import (
	"github.com/mqttlua/broker/codec"
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

// AbnormalClose reports whether the close is an abnormal loss of the
// connection for which a will message is published ([MQTT-3.1.2-8]).
func AbnormalClose(r CloseReason) bool {
	switch r {
	case CloseClientDisconnect, CloseConnectRefused, CloseNone:
		return false
	}
	return true
}

// disconnectCode is the MQTT 5.0 reason code sent in DISCONNECT before
// closing for this reason, or 0 when no DISCONNECT is sent.
func disconnectCode(r CloseReason) codec.ReasonCode {
	switch r {
	case CloseKeepAliveTimeout:
		return codec.KeepAliveTimeout
	case CloseSecondConnect, CloseProtocolError:
		return codec.ProtocolError
	case CloseMalformed:
		return codec.MalformedPacket
	case ClosePacketTooLarge:
		return codec.PacketTooLarge
	case CloseSlowConsumer:
		return codec.QuotaExceeded
	case CloseScriptError, CloseHandlerTimeout:
		return codec.ImplementationSpecificError
	case CloseTakenOver:
		return codec.SessionTakenOver
	case CloseServerShutdown:
		return codec.ServerShuttingDown
	case CloseScript:
		return codec.AdministrativeAction
	}
	return 0
}
