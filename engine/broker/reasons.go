package broker

import (
	"github.com/mqttlua/broker/codec"
	"github.com/mqttlua/broker/engine/transport"
)

// abnormalClose reports whether the close is an abnormal loss of the
// connection for which a will message is published ([MQTT-3.1.2-8]).
func abnormalClose(r transport.CloseReason) bool {
	switch r {
	case transport.CloseClientDisconnect, transport.CloseConnectRefused, transport.CloseNone:
		return false
	}
	return true
}

// disconnectCode is the MQTT 5.0 reason code sent in DISCONNECT before
// closing for this reason, or 0 when no DISCONNECT is sent.
func disconnectCode(r transport.CloseReason) codec.ReasonCode {
	switch r {
	case transport.CloseKeepAliveTimeout:
		return codec.KeepAliveTimeout
	case transport.CloseSecondConnect, transport.CloseProtocolError:
		return codec.ProtocolError
	case transport.CloseMalformed:
		return codec.MalformedPacket
	case transport.ClosePacketTooLarge:
		return codec.PacketTooLarge
	case transport.CloseSlowConsumer:
		return codec.QuotaExceeded
	case transport.CloseScriptError, transport.CloseHandlerTimeout, transport.CloseStoreError:
		return codec.ImplementationSpecificError
	case transport.CloseTakenOver:
		return codec.SessionTakenOver
	case transport.CloseServerShutdown:
		return codec.ServerShuttingDown
	case transport.CloseScript:
		return codec.AdministrativeAction
	}
	return 0
}
