package transport

// CloseReason says why a connection ended. The transport counts closes by
// reason; the layers above log them and pass them to scripts by name.
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
	CloseStoreError                           // a message could not be stored, and 3.1.1 has no way to refuse it
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
	CloseStoreError:               "store_error",
}

// String returns the reason's snake_case name.
func (r CloseReason) String() string {
	if int(r) < len(closeReasonNames) {
		return closeReasonNames[r]
	}
	return "unknown"
}

// NumCloseReasons is one more than the highest CloseReason.
const NumCloseReasons = len(closeReasonNames)
