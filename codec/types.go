package codec

import "fmt"

// Type is an MQTT control packet type, the high nibble of the first byte.
type Type byte

// The control packet types. Their values are the wire values, which are also
// the values of Simps' MQTT::CONNECT ... constants.
const (
	CONNECT     Type = 1
	CONNACK     Type = 2
	PUBLISH     Type = 3
	PUBACK      Type = 4
	PUBREC      Type = 5
	PUBREL      Type = 6
	PUBCOMP     Type = 7
	SUBSCRIBE   Type = 8
	SUBACK      Type = 9
	UNSUBSCRIBE Type = 10
	UNSUBACK    Type = 11
	PINGREQ     Type = 12
	PINGRESP    Type = 13
	DISCONNECT  Type = 14
	AUTH        Type = 15
)

var typeNames = [16]string{
	"RESERVED", "CONNECT", "CONNACK", "PUBLISH", "PUBACK", "PUBREC", "PUBREL", "PUBCOMP",
	"SUBSCRIBE", "SUBACK", "UNSUBSCRIBE", "UNSUBACK", "PINGREQ", "PINGRESP", "DISCONNECT", "AUTH",
}

// String returns the packet type's name as the specification spells it.
func (t Type) String() string {
	if t < 16 {
		return typeNames[t]
	}
	return fmt.Sprintf("Type(%d)", byte(t))
}

// TypeByName returns the packet type called name ("CONNECT", ...).
func TypeByName(name string) (Type, bool) {
	for i := 1; i < 16; i++ {
		if typeNames[i] == name {
			return Type(i), true
		}
	}
	return 0, false
}

// Protocol levels, the byte that follows the protocol name in CONNECT.
const (
	V31  byte = 3 // MQTT 3.1, protocol name "MQIsdp"
	V311 byte = 4 // MQTT 3.1.1
	V5   byte = 5 // MQTT 5.0
)

// Size limits that follow from the wire format.
const (
	// MaxRemainingLength is the largest value a 4-byte variable byte
	// integer can hold.
	MaxRemainingLength = 268435455
	// MaxPacketSize is the largest possible packet: a fixed header of
	// 5 bytes and the largest remaining length.
	MaxPacketSize = MaxRemainingLength + 5
)

// Packet is one MQTT control packet of any type. Only the fields that belong
// to Type are meaningful; the rest are zero. A Packet can be reused across
// decodes: Decode resets it first, and keeps the capacity of its slices.
type Packet struct {
	Type Type

	// PUBLISH fixed-header flags.
	Dup    bool
	QoS    byte
	Retain bool

	// PacketID is the packet identifier (Simps: message_id) of PUBLISH with
	// QoS > 0, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBSCRIBE, SUBACK,
	// UNSUBSCRIBE and UNSUBACK.
	PacketID uint16

	// CONNECT.
	ProtocolName  string
	ProtocolLevel byte
	CleanSession  bool // Clean Start in MQTT 5.0
	KeepAlive     uint16
	ClientID      string
	UsernameFlag  bool
	Username      string
	PasswordFlag  bool
	Password      []byte
	Will          *Will

	// CONNACK.
	SessionPresent bool

	// PUBLISH.
	Topic   string
	Payload []byte

	// SUBSCRIBE: the filters in packet order.
	Subscriptions []Subscription
	// UNSUBSCRIBE: the filters in packet order.
	Topics []string

	// ReasonCode is the single reason code of CONNACK (the return code in
	// 3.1/3.1.1), PUBACK, PUBREC, PUBREL, PUBCOMP, DISCONNECT and AUTH.
	ReasonCode ReasonCode
	// ReasonCodes are the per-filter codes of SUBACK and of a 5.0 UNSUBACK.
	ReasonCodes []ReasonCode

	// Properties are the MQTT 5.0 properties; empty for other levels.
	Properties Properties
}

// Will is the will message of a CONNECT.
type Will struct {
	QoS        byte
	Retain     bool
	Topic      string
	Payload    []byte
	Properties Properties
}

// Subscription is one topic filter of a SUBSCRIBE with its options. Only QoS
// exists before MQTT 5.0.
type Subscription struct {
	Topic             string
	QoS               byte
	NoLocal           bool
	RetainAsPublished bool
	RetainHandling    byte
}

// Reset clears p for reuse, keeping the capacity of its slices.
func (p *Packet) Reset() {
	subs, topics, codes := p.Subscriptions[:0], p.Topics[:0], p.ReasonCodes[:0]
	props := p.Properties
	props.Reset()
	*p = Packet{Subscriptions: subs, Topics: topics, ReasonCodes: codes, Properties: props}
}

// String returns a short description for logs.
func (p *Packet) String() string {
	switch p.Type {
	case PUBLISH:
		return fmt.Sprintf("PUBLISH(id=%d qos=%d retain=%t dup=%t topic=%q len=%d)",
			p.PacketID, p.QoS, p.Retain, p.Dup, p.Topic, len(p.Payload))
	case CONNECT:
		return fmt.Sprintf("CONNECT(level=%d client_id=%q clean=%t keep_alive=%d)",
			p.ProtocolLevel, p.ClientID, p.CleanSession, p.KeepAlive)
	default:
		return p.Type.String()
	}
}

// hasPacketID reports whether a packet of this type carries a packet id.
func (p *Packet) hasPacketID() bool {
	switch p.Type {
	case PUBACK, PUBREC, PUBREL, PUBCOMP, SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK:
		return true
	case PUBLISH:
		return p.QoS > 0
	}
	return false
}
