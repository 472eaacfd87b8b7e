package engine

import (
	"github.com/mqttlua/broker/codec"
	lua "github.com/yuin/gopher-lua"
)

// CloseReason says why a connection ended. It is logged at debug level,
// counted, and passed to the script's onClose handler as a string.
type CloseReason int

// The close reasons.
const (
	CloseNone                     CloseReason = iota
	CloseClientDisconnect                     // the client sent DISCONNECT
	CloseNetworkError                         // the connection broke or the peer closed it
	CloseConnectTimeout                       // no CONNECT within the connect timeout
	CloseKeepAliveTimeout                     // nothing received within 1.5 x keep alive
	CloseNotConnect                           // the first packet was not CONNECT
	CloseSecondConnect                        // a second CONNECT
	CloseMalformed                            // a packet the codec rejected
	CloseProtocolError                        // a well-formed packet that breaks the protocol
	ClosePacketTooLarge                       // a packet over the maximum packet size
	CloseSlowConsumer                         // the outbound queue passed its limit
	CloseScript                               // a script called server:close
	CloseScriptError                          // a handler raised an error
	CloseHandlerTimeout                       // a handler ran past its deadline
	CloseConnectRefused                       // a CONNACK with a failure code was sent
	CloseTakenOver                            // another connection took over the session
	CloseServerShutdown                       // the broker is stopping
	CloseClientDisconnectWithWill             // a 5.0 DISCONNECT 0x04: publish the will
)

var closeReasonNames = [...]string{
	CloseNone:                     "none",
	CloseClientDisconnect:         "client_disconnect",
	CloseNetworkError:             "network_error",
	CloseConnectTimeout:           "connect_timeout",
	CloseKeepAliveTimeout:         "keep_alive_timeout",
	CloseNotConnect:               "first_packet_not_connect",
	CloseSecondConnect:            "second_connect",
	CloseMalformed:                "malformed_packet",
	CloseProtocolError:            "protocol_error",
	ClosePacketTooLarge:           "packet_too_large",
	CloseSlowConsumer:             "slow_consumer",
	CloseScript:                   "script_close",
	CloseScriptError:              "script_error",
	CloseHandlerTimeout:           "handler_timeout",
	CloseConnectRefused:           "connect_refused",
	CloseTakenOver:                "session_taken_over",
	CloseServerShutdown:           "server_shutdown",
	CloseClientDisconnectWithWill: "client_disconnect_with_will",
}

// String returns the reason's snake_case name.
func (r CloseReason) String() string {
	if int(r) < len(closeReasonNames) {
		return closeReasonNames[r]
	}
	return "unknown"
}

// closeReasonValues are the names as Lua values, made once: onClose gets
// one for every connection.
var closeReasonValues = func() []lua.LValue {
	v := make([]lua.LValue, len(closeReasonNames))
	for i, name := range closeReasonNames {
		v[i] = lua.LString(name)
	}
	return v
}()

// luaValue is String as a Lua value.
func (r CloseReason) luaValue() lua.LValue {
	if int(r) >= 0 && int(r) < len(closeReasonValues) {
		return closeReasonValues[r]
	}
	return lua.LString(r.String())
}

// Abnormal reports whether the close is an abnormal loss of the connection
// for which a will message is published ([MQTT-3.1.2-8]).
func (r CloseReason) Abnormal() bool {
	switch r {
	case CloseClientDisconnect, CloseConnectRefused, CloseNone:
		return false
	}
	return true
}

// DisconnectCode is the MQTT 5.0 reason code sent in DISCONNECT before
// closing for this reason, or 0 when no DISCONNECT is sent.
func (r CloseReason) DisconnectCode() codec.ReasonCode {
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
