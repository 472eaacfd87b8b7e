package codec

import "fmt"

// ReasonCode is an MQTT 5.0 reason code. For MQTT 3.1 and 3.1.1 the same
// type carries the CONNACK return code and the SUBACK return codes, which
// V311Code maps from their 5.0 counterparts. A ReasonCode is also an error,
// so callers can test a decode error with errors.Is(err, codec.MalformedPacket).
type ReasonCode byte

// The MQTT 5.0 reason codes (5.0 §2.4). 0x00 has three names, one per
// packet family.
const (
	Success                             ReasonCode = 0x00
	NormalDisconnection                 ReasonCode = 0x00
	GrantedQoS0                         ReasonCode = 0x00
	GrantedQoS1                         ReasonCode = 0x01
	GrantedQoS2                         ReasonCode = 0x02
	DisconnectWithWillMessage           ReasonCode = 0x04
	NoMatchingSubscribers               ReasonCode = 0x10
	NoSubscriptionExisted               ReasonCode = 0x11
	ContinueAuthentication              ReasonCode = 0x18
	ReAuthenticate                      ReasonCode = 0x19
	UnspecifiedError                    ReasonCode = 0x80
	MalformedPacket                     ReasonCode = 0x81
	ProtocolError                       ReasonCode = 0x82
	ImplementationSpecificError         ReasonCode = 0x83
	UnsupportedProtocolVersion          ReasonCode = 0x84
	ClientIdentifierNotValid            ReasonCode = 0x85
	BadUserNameOrPassword               ReasonCode = 0x86
	NotAuthorized                       ReasonCode = 0x87
	ServerUnavailable                   ReasonCode = 0x88
	ServerBusy                          ReasonCode = 0x89
	Banned                              ReasonCode = 0x8A
	ServerShuttingDown                  ReasonCode = 0x8B
	BadAuthenticationMethod             ReasonCode = 0x8C
	KeepAliveTimeout                    ReasonCode = 0x8D
	SessionTakenOver                    ReasonCode = 0x8E
	TopicFilterInvalid                  ReasonCode = 0x8F
	TopicNameInvalid                    ReasonCode = 0x90
	PacketIdentifierInUse               ReasonCode = 0x91
	PacketIdentifierNotFound            ReasonCode = 0x92
	ReceiveMaximumExceeded              ReasonCode = 0x93
	TopicAliasInvalid                   ReasonCode = 0x94
	PacketTooLarge                      ReasonCode = 0x95
	MessageRateTooHigh                  ReasonCode = 0x96
	QuotaExceeded                       ReasonCode = 0x97
	AdministrativeAction                ReasonCode = 0x98
	PayloadFormatInvalid                ReasonCode = 0x99
	RetainNotSupported                  ReasonCode = 0x9A
	QoSNotSupported                     ReasonCode = 0x9B
	UseAnotherServer                    ReasonCode = 0x9C
	ServerMoved                         ReasonCode = 0x9D
	SharedSubscriptionsNotSupported     ReasonCode = 0x9E
	ConnectionRateExceeded              ReasonCode = 0x9F
	MaximumConnectTime                  ReasonCode = 0xA0
	SubscriptionIdentifiersNotSupported ReasonCode = 0xA1
	WildcardSubscriptionsNotSupported   ReasonCode = 0xA2
)

// The MQTT 3.1 / 3.1.1 CONNACK return codes (3.1.1 §3.2.2.3) and the SUBACK
// failure code (3.1.1 §3.9.3).
const (
	V3Accepted                    ReasonCode = 0x00
	V3UnacceptableProtocolVersion ReasonCode = 0x01
	V3IdentifierRejected          ReasonCode = 0x02
	V3ServerUnavailable           ReasonCode = 0x03
	V3BadUserNameOrPassword       ReasonCode = 0x04
	V3NotAuthorized               ReasonCode = 0x05
	V3SubackFailure               ReasonCode = 0x80
)

// ReasonInfo describes one named reason code.
type ReasonInfo struct {
	Code ReasonCode
	// Name is the constant name used by scripts (mqtt.MALFORMED_PACKET).
	Name string
	// Text is the name the specification gives it.
	Text string
	// Packets lists the packet types that may carry it (5.0 §2.4).
	Packets []Type
	// V3 is true for the 3.1/3.1.1 return codes, whose values overlap
	// with 5.0 codes of other meanings.
	V3 bool
}

var (
	ackTypes     = []Type{PUBACK, PUBREC}
	relTypes     = []Type{PUBREL, PUBCOMP}
	failTypes    = []Type{CONNACK, PUBACK, PUBREC, SUBACK, UNSUBACK, DISCONNECT}
	connackOnly  = []Type{CONNACK}
	discOnly     = []Type{DISCONNECT}
	connackDisc  = []Type{CONNACK, DISCONNECT}
	subackOnly   = []Type{SUBACK}
	subackDisc   = []Type{SUBACK, DISCONNECT}
	pubDisc      = []Type{CONNACK, PUBACK, PUBREC, SUBACK, UNSUBACK, DISCONNECT}
	ackDisc      = []Type{PUBACK, PUBREC, DISCONNECT}
	topicInvalid = []Type{CONNACK, PUBACK, PUBREC, DISCONNECT}
)

// Reasons is the table of every named reason code, in code order. It drives
// String, ReasonByName, validation of received codes, and the Lua constants.
var Reasons = []ReasonInfo{
	{Success, "SUCCESS", "Success", []Type{CONNACK, PUBACK, PUBREC, PUBREL, PUBCOMP, UNSUBACK, AUTH}, false},
	{NormalDisconnection, "NORMAL_DISCONNECTION", "Normal disconnection", discOnly, false},
	{GrantedQoS0, "GRANTED_QOS_0", "Granted QoS 0", subackOnly, false},
	{GrantedQoS1, "GRANTED_QOS_1", "Granted QoS 1", subackOnly, false},
	{GrantedQoS2, "GRANTED_QOS_2", "Granted QoS 2", subackOnly, false},
	{DisconnectWithWillMessage, "DISCONNECT_WITH_WILL_MESSAGE", "Disconnect with Will Message", discOnly, false},
	{NoMatchingSubscribers, "NO_MATCHING_SUBSCRIBERS", "No matching subscribers", ackTypes, false},
	{NoSubscriptionExisted, "NO_SUBSCRIPTION_EXISTED", "No subscription existed", []Type{UNSUBACK}, false},
	{ContinueAuthentication, "CONTINUE_AUTHENTICATION", "Continue authentication", []Type{AUTH}, false},
	{ReAuthenticate, "RE_AUTHENTICATE", "Re-authenticate", []Type{AUTH}, false},
	{UnspecifiedError, "UNSPECIFIED_ERROR", "Unspecified error", failTypes, false},
	{MalformedPacket, "MALFORMED_PACKET", "Malformed Packet", connackDisc, false},
	{ProtocolError, "PROTOCOL_ERROR", "Protocol Error", connackDisc, false},
	{ImplementationSpecificError, "IMPLEMENTATION_SPECIFIC_ERROR", "Implementation specific error", failTypes, false},
	{UnsupportedProtocolVersion, "UNSUPPORTED_PROTOCOL_VERSION", "Unsupported Protocol Version", connackOnly, false},
	{ClientIdentifierNotValid, "CLIENT_IDENTIFIER_NOT_VALID", "Client Identifier not valid", connackOnly, false},
	{BadUserNameOrPassword, "BAD_USER_NAME_OR_PASSWORD", "Bad User Name or Password", connackOnly, false},
	{NotAuthorized, "NOT_AUTHORIZED", "Not authorized", pubDisc, false},
	{ServerUnavailable, "SERVER_UNAVAILABLE", "Server unavailable", connackOnly, false},
	{ServerBusy, "SERVER_BUSY", "Server busy", connackDisc, false},
	{Banned, "BANNED", "Banned", connackOnly, false},
	{ServerShuttingDown, "SERVER_SHUTTING_DOWN", "Server shutting down", discOnly, false},
	{BadAuthenticationMethod, "BAD_AUTHENTICATION_METHOD", "Bad authentication method", connackDisc, false},
	{KeepAliveTimeout, "KEEP_ALIVE_TIMEOUT", "Keep Alive timeout", discOnly, false},
	{SessionTakenOver, "SESSION_TAKEN_OVER", "Session taken over", discOnly, false},
	{TopicFilterInvalid, "TOPIC_FILTER_INVALID", "Topic Filter invalid", []Type{SUBACK, UNSUBACK, DISCONNECT}, false},
	{TopicNameInvalid, "TOPIC_NAME_INVALID", "Topic Name invalid", topicInvalid, false},
	{PacketIdentifierInUse, "PACKET_IDENTIFIER_IN_USE", "Packet Identifier in use", []Type{PUBACK, PUBREC, SUBACK, UNSUBACK}, false},
	{PacketIdentifierNotFound, "PACKET_IDENTIFIER_NOT_FOUND", "Packet Identifier not found", relTypes, false},
	{ReceiveMaximumExceeded, "RECEIVE_MAXIMUM_EXCEEDED", "Receive Maximum exceeded", discOnly, false},
	{TopicAliasInvalid, "TOPIC_ALIAS_INVALID", "Topic Alias invalid", discOnly, false},
	{PacketTooLarge, "PACKET_TOO_LARGE", "Packet too large", connackDisc, false},
	{MessageRateTooHigh, "MESSAGE_RATE_TOO_HIGH", "Message rate too high", discOnly, false},
	{QuotaExceeded, "QUOTA_EXCEEDED", "Quota exceeded", []Type{CONNACK, PUBACK, PUBREC, SUBACK, DISCONNECT}, false},
	{AdministrativeAction, "ADMINISTRATIVE_ACTION", "Administrative action", discOnly, false},
	{PayloadFormatInvalid, "PAYLOAD_FORMAT_INVALID", "Payload format invalid", []Type{CONNACK, PUBACK, PUBREC, DISCONNECT}, false},
	{RetainNotSupported, "RETAIN_NOT_SUPPORTED", "Retain not supported", connackDisc, false},
	{QoSNotSupported, "QOS_NOT_SUPPORTED", "QoS not supported", connackDisc, false},
	{UseAnotherServer, "USE_ANOTHER_SERVER", "Use another server", connackDisc, false},
	{ServerMoved, "SERVER_MOVED", "Server moved", connackDisc, false},
	{SharedSubscriptionsNotSupported, "SHARED_SUBSCRIPTIONS_NOT_SUPPORTED", "Shared Subscriptions not supported", subackDisc, false},
	{ConnectionRateExceeded, "CONNECTION_RATE_EXCEEDED", "Connection rate exceeded", connackDisc, false},
	{MaximumConnectTime, "MAXIMUM_CONNECT_TIME", "Maximum connect time", discOnly, false},
	{SubscriptionIdentifiersNotSupported, "SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED", "Subscription Identifiers not supported", subackDisc, false},
	{WildcardSubscriptionsNotSupported, "WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED", "Wildcard Subscriptions not supported", subackDisc, false},

	{V3Accepted, "CONNECTION_ACCEPTED", "Connection Accepted", connackOnly, true},
	{V3UnacceptableProtocolVersion, "UNACCEPTABLE_PROTOCOL_VERSION", "Connection Refused, unacceptable protocol version", connackOnly, true},
	{V3IdentifierRejected, "IDENTIFIER_REJECTED", "Connection Refused, identifier rejected", connackOnly, true},
	{V3ServerUnavailable, "V3_SERVER_UNAVAILABLE", "Connection Refused, Server unavailable", connackOnly, true},
	{V3BadUserNameOrPassword, "V3_BAD_USER_NAME_OR_PASSWORD", "Connection Refused, bad user name or password", connackOnly, true},
	{V3NotAuthorized, "V3_NOT_AUTHORIZED", "Connection Refused, not authorized", connackOnly, true},
	{V3SubackFailure, "FAILURE", "Failure", subackOnly, true},
}

// reasonText holds the first 5.0 name of each code for String.
var reasonText [256]string

// reasonAllowed[t] has bit c set when 5.0 reason code c may appear in
// packets of type t.
var reasonAllowed [16][256 / 64]uint64

func init() {
	for _, r := range Reasons {
		if r.V3 {
			continue
		}
		if reasonText[r.Code] == "" {
			reasonText[r.Code] = r.Text
		}
		for _, t := range r.Packets {
			reasonAllowed[t][r.Code/64] |= 1 << (r.Code % 64)
		}
	}
}

// String returns the specification's name for the 5.0 reason code.
func (c ReasonCode) String() string {
	if s := reasonText[c]; s != "" {
		return s
	}
	return fmt.Sprintf("reason code 0x%02X", byte(c))
}

// Error makes a ReasonCode usable as an error and as an errors.Is target.
func (c ReasonCode) Error() string { return c.String() }

// IsError reports whether the code is a failure (0x80 and above).
func (c ReasonCode) IsError() bool { return c >= 0x80 }

// ValidFor reports whether a 5.0 packet of type t may carry code c.
func (c ReasonCode) ValidFor(t Type) bool {
	return t < 16 && reasonAllowed[t][c/64]&(1<<(c%64)) != 0
}

// ReasonByName returns the code whose script constant name is name
// ("MALFORMED_PACKET").
func ReasonByName(name string) (ReasonCode, bool) {
	for _, r := range Reasons {
		if r.Name == name {
			return r.Code, true
		}
	}
	return 0, false
}

// V311Code maps a 5.0 reason code to what a 3.1 / 3.1.1 peer understands in
// a packet of type t. For CONNACK it gives the 3.1.1 return code (5.0
// §3.2.2.2 lists the correspondence the 5.0 codes were derived from); for
// SUBACK any failure becomes 0x80; granted QoS values are unchanged.
func V311Code(t Type, c ReasonCode) ReasonCode {
	switch t {
	case CONNACK:
		switch c {
		case Success:
			return V3Accepted
		case UnsupportedProtocolVersion:
			return V3UnacceptableProtocolVersion
		case ClientIdentifierNotValid:
			return V3IdentifierRejected
		case BadUserNameOrPassword, BadAuthenticationMethod:
			return V3BadUserNameOrPassword
		case NotAuthorized, Banned:
			return V3NotAuthorized
		default:
			if c <= V3NotAuthorized {
				return c // already a 3.1.1 return code
			}
			return V3ServerUnavailable
		}
	case SUBACK:
		if c.IsError() {
			return V3SubackFailure
		}
		return c
	}
	return c
}

// Error is a rejected packet: which field was wrong, why, and the reason code
// a server sends (in CONNACK or DISCONNECT for 5.0 clients) before closing.
type Error struct {
	Code   ReasonCode
	Field  string // e.g. "topic", "properties.topic_alias", "fixed_header.flags"
	Reason string
	Spec   string // normative statement violated, e.g. "MQTT-3.3.2-2"; may be empty
}

// Error formats the error as "field: reason (code) [spec]".
func (e *Error) Error() string {
	s := fmt.Sprintf("%s: %s (%s, 0x%02X)", e.Field, e.Reason, e.Code, byte(e.Code))
	if e.Spec != "" {
		s += " [" + e.Spec + "]"
	}
	return s
}

// Is lets errors.Is match an *Error against its ReasonCode.
func (e *Error) Is(target error) bool {
	c, ok := target.(ReasonCode)
	return ok && c == e.Code
}

func malformed(field, reason, spec string) *Error {
	return &Error{Code: MalformedPacket, Field: field, Reason: reason, Spec: spec}
}

func protocolErr(field, reason, spec string) *Error {
	return &Error{Code: ProtocolError, Field: field, Reason: reason, Spec: spec}
}
