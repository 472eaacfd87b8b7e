package codec

import "fmt"

// PropID is an MQTT 5.0 property identifier.
type PropID byte

// The 27 MQTT 5.0 properties (5.0 §2.2.2.2).
const (
	PropPayloadFormat        PropID = 0x01
	PropMessageExpiry        PropID = 0x02
	PropContentType          PropID = 0x03
	PropResponseTopic        PropID = 0x08
	PropCorrelationData      PropID = 0x09
	PropSubscriptionID       PropID = 0x0B
	PropSessionExpiry        PropID = 0x11
	PropAssignedClientID     PropID = 0x12
	PropServerKeepAlive      PropID = 0x13
	PropAuthMethod           PropID = 0x15
	PropAuthData             PropID = 0x16
	PropRequestProblemInfo   PropID = 0x17
	PropWillDelay            PropID = 0x18
	PropRequestResponseInfo  PropID = 0x19
	PropResponseInfo         PropID = 0x1A
	PropServerReference      PropID = 0x1C
	PropReasonString         PropID = 0x1F
	PropReceiveMaximum       PropID = 0x21
	PropTopicAliasMaximum    PropID = 0x22
	PropTopicAlias           PropID = 0x23
	PropMaximumQoS           PropID = 0x24
	PropRetainAvailable      PropID = 0x25
	PropUserProperty         PropID = 0x26
	PropMaximumPacketSize    PropID = 0x27
	PropWildcardSubAvailable PropID = 0x28
	PropSubIDAvailable       PropID = 0x29
	PropSharedSubAvailable   PropID = 0x2A
)

// WireType is how a property value is encoded.
type WireType byte

// Property wire types (5.0 §1.5).
const (
	WireByte WireType = iota + 1
	WireUint16
	WireUint32
	WireVarint
	WireString
	WireBinary
	WireStringPair
)

// willProps is a pseudo packet type for the will properties of CONNECT,
// which have their own allowed set.
const willProps Type = 0

// PropInfo describes one property: the table row that drives decode, encode,
// validation and the data mapping.
type PropInfo struct {
	ID   PropID
	Name string // snake_case name used in data tables and scripts
	Wire WireType
	// In lists the packet types the property may appear in; Type 0 stands
	// for the will properties of CONNECT.
	In []Type
	// Repeat is true for the properties that may appear more than once.
	Repeat bool
	// Bool is true for byte properties whose only valid values are 0 and 1.
	Bool bool
	// NonZero is true for properties where 0 is a protocol error.
	NonZero bool
}

// PropTable lists every property in identifier order, which is also the
// order Encode writes them in.
var PropTable = []PropInfo{
	{PropPayloadFormat, "payload_format_indicator", WireByte, []Type{PUBLISH, willProps}, false, true, false},
	{PropMessageExpiry, "message_expiry_interval", WireUint32, []Type{PUBLISH, willProps}, false, false, false},
	{PropContentType, "content_type", WireString, []Type{PUBLISH, willProps}, false, false, false},
	{PropResponseTopic, "response_topic", WireString, []Type{PUBLISH, willProps}, false, false, false},
	{PropCorrelationData, "correlation_data", WireBinary, []Type{PUBLISH, willProps}, false, false, false},
	{PropSubscriptionID, "subscription_identifier", WireVarint, []Type{PUBLISH, SUBSCRIBE}, true, false, true},
	{PropSessionExpiry, "session_expiry_interval", WireUint32, []Type{CONNECT, CONNACK, DISCONNECT}, false, false, false},
	{PropAssignedClientID, "assigned_client_identifier", WireString, []Type{CONNACK}, false, false, false},
	{PropServerKeepAlive, "server_keep_alive", WireUint16, []Type{CONNACK}, false, false, false},
	{PropAuthMethod, "authentication_method", WireString, []Type{CONNECT, CONNACK, AUTH}, false, false, false},
	{PropAuthData, "authentication_data", WireBinary, []Type{CONNECT, CONNACK, AUTH}, false, false, false},
	{PropRequestProblemInfo, "request_problem_information", WireByte, []Type{CONNECT}, false, true, false},
	{PropWillDelay, "will_delay_interval", WireUint32, []Type{willProps}, false, false, false},
	{PropRequestResponseInfo, "request_response_information", WireByte, []Type{CONNECT}, false, true, false},
	{PropResponseInfo, "response_information", WireString, []Type{CONNACK}, false, false, false},
	{PropServerReference, "server_reference", WireString, []Type{CONNACK, DISCONNECT}, false, false, false},
	{PropReasonString, "reason_string", WireString, []Type{CONNACK, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK, UNSUBACK, DISCONNECT, AUTH}, false, false, false},
	{PropReceiveMaximum, "receive_maximum", WireUint16, []Type{CONNECT, CONNACK}, false, false, true},
	{PropTopicAliasMaximum, "topic_alias_maximum", WireUint16, []Type{CONNECT, CONNACK}, false, false, false},
	{PropTopicAlias, "topic_alias", WireUint16, []Type{PUBLISH}, false, false, true},
	{PropMaximumQoS, "maximum_qos", WireByte, []Type{CONNACK}, false, true, false},
	{PropRetainAvailable, "retain_available", WireByte, []Type{CONNACK}, false, true, false},
	{PropUserProperty, "user_property", WireStringPair, []Type{CONNECT, CONNACK, PUBLISH, willProps, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, DISCONNECT, AUTH}, true, false, false},
	{PropMaximumPacketSize, "maximum_packet_size", WireUint32, []Type{CONNECT, CONNACK}, false, false, true},
	{PropWildcardSubAvailable, "wildcard_subscription_available", WireByte, []Type{CONNACK}, false, true, false},
	{PropSubIDAvailable, "subscription_identifier_available", WireByte, []Type{CONNACK}, false, true, false},
	{PropSharedSubAvailable, "shared_subscription_available", WireByte, []Type{CONNACK}, false, true, false},
}

// propIndex maps an identifier to its PropTable row + 1 (0: unknown).
var propIndex [256]uint8

// propAllowed[t] has bit id set when property id may appear in type t.
var propAllowed [16]uint64

func init() {
	for i, p := range PropTable {
		propIndex[p.ID] = uint8(i + 1)
		for _, t := range p.In {
			propAllowed[t] |= 1 << p.ID
		}
	}
}

// Info returns the table row of a property.
func (id PropID) Info() (PropInfo, bool) {
	if i := propIndex[id]; i != 0 {
		return PropTable[i-1], true
	}
	return PropInfo{}, false
}

// String returns the property's snake_case name.
func (id PropID) String() string {
	if info, ok := id.Info(); ok {
		return info.Name
	}
	return fmt.Sprintf("property 0x%02X", byte(id))
}

// PropByName returns the property with the given snake_case name.
func PropByName(name string) (PropInfo, bool) {
	for _, p := range PropTable {
		if p.Name == name {
			return p, true
		}
	}
	return PropInfo{}, false
}

// UserProperty is one user property; a packet keeps them in order,
// duplicates included.
type UserProperty struct {
	Key, Value string
}

// Properties holds the MQTT 5.0 properties of a packet or a will. A scalar
// property is present when its bit is set in the mask (see Has and Set), so
// that an explicit 0 is told apart from an absent property; SubscriptionIDs
// and User are present when non-empty.
type Properties struct {
	present uint64

	PayloadFormat        byte
	MessageExpiry        uint32
	ContentType          string
	ResponseTopic        string
	CorrelationData      []byte
	SubscriptionIDs      []uint32
	SessionExpiry        uint32
	AssignedClientID     string
	ServerKeepAlive      uint16
	AuthMethod           string
	AuthData             []byte
	RequestProblemInfo   byte
	WillDelay            uint32
	RequestResponseInfo  byte
	ResponseInfo         string
	ServerReference      string
	ReasonString         string
	ReceiveMaximum       uint16
	TopicAliasMaximum    uint16
	TopicAlias           uint16
	MaximumQoS           byte
	RetainAvailable      byte
	User                 []UserProperty
	MaximumPacketSize    uint32
	WildcardSubAvailable byte
	SubIDAvailable       byte
	SharedSubAvailable   byte
}

// Has reports whether property id is present.
func (p *Properties) Has(id PropID) bool {
	switch id {
	case PropSubscriptionID:
		return len(p.SubscriptionIDs) > 0
	case PropUserProperty:
		return len(p.User) > 0
	}
	return p.present&(1<<id) != 0
}

// Set marks property id as present; its field holds the value.
func (p *Properties) Set(id PropID) { p.present |= 1 << (id & 63) }

// Clear removes property id.
func (p *Properties) Clear(id PropID) {
	p.present &^= 1 << (id & 63)
	switch id {
	case PropSubscriptionID:
		p.SubscriptionIDs = p.SubscriptionIDs[:0]
	case PropUserProperty:
		p.User = p.User[:0]
	}
}

// Empty reports whether no property is present.
func (p *Properties) Empty() bool {
	return p.present == 0 && len(p.SubscriptionIDs) == 0 && len(p.User) == 0
}

// Reset removes every property, keeping slice capacity.
func (p *Properties) Reset() {
	ids, user := p.SubscriptionIDs[:0], p.User[:0]
	*p = Properties{SubscriptionIDs: ids, User: user}
}

// SetUint sets a byte, two-byte, four-byte or variable byte integer property.
// For the subscription identifier it appends one.
func (p *Properties) SetUint(id PropID, v uint32) {
	switch id {
	case PropPayloadFormat:
		p.PayloadFormat = byte(v)
	case PropMessageExpiry:
		p.MessageExpiry = v
	case PropSubscriptionID:
		p.SubscriptionIDs = append(p.SubscriptionIDs, v)
		return
	case PropSessionExpiry:
		p.SessionExpiry = v
	case PropServerKeepAlive:
		p.ServerKeepAlive = uint16(v)
	case PropRequestProblemInfo:
		p.RequestProblemInfo = byte(v)
	case PropWillDelay:
		p.WillDelay = v
	case PropRequestResponseInfo:
		p.RequestResponseInfo = byte(v)
	case PropReceiveMaximum:
		p.ReceiveMaximum = uint16(v)
	case PropTopicAliasMaximum:
		p.TopicAliasMaximum = uint16(v)
	case PropTopicAlias:
		p.TopicAlias = uint16(v)
	case PropMaximumQoS:
		p.MaximumQoS = byte(v)
	case PropRetainAvailable:
		p.RetainAvailable = byte(v)
	case PropMaximumPacketSize:
		p.MaximumPacketSize = v
	case PropWildcardSubAvailable:
		p.WildcardSubAvailable = byte(v)
	case PropSubIDAvailable:
		p.SubIDAvailable = byte(v)
	case PropSharedSubAvailable:
		p.SharedSubAvailable = byte(v)
	default:
		return
	}
	p.Set(id)
}

// Uint returns an integer property (the first subscription identifier for
// PropSubscriptionID) and whether it is present.
func (p *Properties) Uint(id PropID) (uint32, bool) {
	if !p.Has(id) {
		return 0, false
	}
	switch id {
	case PropPayloadFormat:
		return uint32(p.PayloadFormat), true
	case PropMessageExpiry:
		return p.MessageExpiry, true
	case PropSubscriptionID:
		return p.SubscriptionIDs[0], true
	case PropSessionExpiry:
		return p.SessionExpiry, true
	case PropServerKeepAlive:
		return uint32(p.ServerKeepAlive), true
	case PropRequestProblemInfo:
		return uint32(p.RequestProblemInfo), true
	case PropWillDelay:
		return p.WillDelay, true
	case PropRequestResponseInfo:
		return uint32(p.RequestResponseInfo), true
	case PropReceiveMaximum:
		return uint32(p.ReceiveMaximum), true
	case PropTopicAliasMaximum:
		return uint32(p.TopicAliasMaximum), true
	case PropTopicAlias:
		return uint32(p.TopicAlias), true
	case PropMaximumQoS:
		return uint32(p.MaximumQoS), true
	case PropRetainAvailable:
		return uint32(p.RetainAvailable), true
	case PropMaximumPacketSize:
		return p.MaximumPacketSize, true
	case PropWildcardSubAvailable:
		return uint32(p.WildcardSubAvailable), true
	case PropSubIDAvailable:
		return uint32(p.SubIDAvailable), true
	case PropSharedSubAvailable:
		return uint32(p.SharedSubAvailable), true
	}
	return 0, false
}

// stringField returns the field of a string property.
func (p *Properties) stringField(id PropID) *string {
	switch id {
	case PropContentType:
		return &p.ContentType
	case PropResponseTopic:
		return &p.ResponseTopic
	case PropAssignedClientID:
		return &p.AssignedClientID
	case PropAuthMethod:
		return &p.AuthMethod
	case PropResponseInfo:
		return &p.ResponseInfo
	case PropServerReference:
		return &p.ServerReference
	case PropReasonString:
		return &p.ReasonString
	}
	return nil
}

// SetString sets a UTF-8 string property.
func (p *Properties) SetString(id PropID, s string) {
	if f := p.stringField(id); f != nil {
		*f = s
		p.Set(id)
	}
}

// String returns a string property and whether it is present.
func (p *Properties) String(id PropID) (string, bool) {
	if f := p.stringField(id); f != nil && p.Has(id) {
		return *f, true
	}
	return "", false
}

func (p *Properties) binaryField(id PropID) *[]byte {
	switch id {
	case PropCorrelationData:
		return &p.CorrelationData
	case PropAuthData:
		return &p.AuthData
	}
	return nil
}

// SetBytes sets a binary data property.
func (p *Properties) SetBytes(id PropID, b []byte) {
	if f := p.binaryField(id); f != nil {
		*f = b
		p.Set(id)
	}
}

// Bytes returns a binary data property and whether it is present.
func (p *Properties) Bytes(id PropID) ([]byte, bool) {
	if f := p.binaryField(id); f != nil && p.Has(id) {
		return *f, true
	}
	return nil, false
}

// decode reads a property length and the properties that follow, for a
// packet of type t (willProps for will properties).
func (p *Properties) decode(d *decoder, t Type, field string) error {
	n, err := d.varint("length")
	if err != nil {
		err.(*Error).Field = field + ".length"
		return err
	}
	if int(n) > d.remaining() {
		return malformed(field+".length", "property length runs past the end of the packet", "")
	}
	end := d.off + int(n)
	sub := decoder{b: d.b[:end], off: d.off}
	for sub.off < end {
		if err := p.decodeOne(&sub, t); err != nil {
			// Field names are relative to the property list until here,
			// so that no name is built unless there is an error: this loop
			// runs for every property of every PUBLISH.
			if ce, ok := err.(*Error); ok {
				ce.Field = field + "." + ce.Field
				if ce.Field == field+"." {
					ce.Field = field
				}
			}
			return err
		}
	}
	d.off = end
	return nil
}

// decodeOne reads one property. Error fields name the property only.
func (p *Properties) decodeOne(d *decoder, t Type) error {
	idb, err := d.varint("")
	if err != nil {
		return err
	}
	if idb > 0xff || propIndex[idb] == 0 {
		return malformed("", fmt.Sprintf("unknown property identifier 0x%02X", idb), "")
	}
	id := PropID(idb)
	info := &PropTable[propIndex[id]-1]
	name := info.Name
	if propAllowed[t]&(1<<id) == 0 {
		// 5.0 §2.2.2.2: a property not allowed in this packet.
		return protocolErr(name, "property not allowed in "+packetName(t), "5.0:§2.2.2.2")
	}
	if !info.Repeat && p.Has(id) {
		// 5.0: "It is a Protocol Error to include ... more than once".
		return protocolErr(name, "property included more than once", "5.0:§3.1.2.11")
	}
	switch info.Wire {
	case WireByte:
		v, err := d.byte(name)
		if err != nil {
			return err
		}
		if info.Bool && v > 1 {
			return protocolErr(name, fmt.Sprintf("value %d is not 0 or 1", v), "5.0:§3.1.2.11")
		}
		p.SetUint(id, uint32(v))
	case WireUint16:
		v, err := d.uint16(name)
		if err != nil {
			return err
		}
		if info.NonZero && v == 0 {
			if id == PropTopicAlias {
				// 5.0 [MQTT-3.3.2-8]: a Topic Alias of 0 is not permitted.
				return &Error{Code: TopicAliasInvalid, Field: name, Reason: "topic alias 0", Spec: "5.0:MQTT-3.3.2-8"}
			}
			return protocolErr(name, "value 0 is a protocol error", "5.0:§3.1.2.11")
		}
		p.SetUint(id, uint32(v))
	case WireUint32:
		v, err := d.uint32(name)
		if err != nil {
			return err
		}
		if info.NonZero && v == 0 {
			return protocolErr(name, "value 0 is a protocol error", "5.0:§3.1.2.11")
		}
		p.SetUint(id, v)
	case WireVarint:
		v, err := d.varint(name)
		if err != nil {
			return err
		}
		if v == 0 {
			// 5.0 §3.8.2.1.2: a Subscription Identifier of 0 is a
			// Protocol Error.
			return protocolErr(name, "subscription identifier 0", "5.0:§3.8.2.1.2")
		}
		if t == SUBSCRIBE && len(p.SubscriptionIDs) > 0 {
			return protocolErr(name, "property included more than once", "5.0:§3.8.2.1.2")
		}
		p.SetUint(id, v)
	case WireString:
		s, err := d.string(name)
		if err != nil {
			return err
		}
		p.SetString(id, s)
	case WireBinary:
		b, err := d.binary(name)
		if err != nil {
			return err
		}
		p.SetBytes(id, b)
	case WireStringPair:
		k, err := d.string("user_property.key")
		if err != nil {
			return err
		}
		v, err := d.string("user_property.value")
		if err != nil {
			return err
		}
		p.User = append(p.User, UserProperty{k, v})
	}
	return nil
}

func packetName(t Type) string {
	if t == willProps {
		return "will properties"
	}
	return t.String()
}

// size returns the encoded size of the properties, without the length prefix.
func (p *Properties) size() int {
	if p.Empty() {
		return 0
	}
	n := 0
	for i := range PropTable {
		info := &PropTable[i]
		if !p.Has(info.ID) {
			continue
		}
		switch info.Wire {
		case WireByte:
			n += 2
		case WireUint16:
			n += 3
		case WireUint32:
			n += 5
		case WireVarint:
			for _, v := range p.SubscriptionIDs {
				n += 1 + varintLen(v)
			}
		case WireString:
			s, _ := p.String(info.ID)
			n += 3 + len(s)
		case WireBinary:
			b, _ := p.Bytes(info.ID)
			n += 3 + len(b)
		case WireStringPair:
			for _, u := range p.User {
				n += 5 + len(u.Key) + len(u.Value)
			}
		}
	}
	return n
}

// Check validates properties for a packet of type t, as encoding does.
func (p *Properties) Check(t Type) error { return p.check(t, "properties") }

// check validates properties before encoding them into a packet of type t.
func (p *Properties) check(t Type, field string) error {
	if p.Empty() {
		return nil
	}
	for i := range PropTable {
		info := &PropTable[i]
		if !p.Has(info.ID) {
			continue
		}
		if err := p.checkOne(t, info); err != nil {
			if ce, ok := err.(*Error); ok {
				ce.Field = field + "." + ce.Field
			}
			return err
		}
	}
	return nil
}

// checkOne validates one present property; error fields name the property.
func (p *Properties) checkOne(t Type, info *PropInfo) error {
	name := info.Name
	if propAllowed[t]&(1<<info.ID) == 0 {
		return protocolErr(name, "property not allowed in "+packetName(t), "5.0:§2.2.2.2")
	}
	switch info.Wire {
	case WireVarint:
		if t == SUBSCRIBE && len(p.SubscriptionIDs) > 1 {
			return protocolErr(name, "only one subscription identifier in SUBSCRIBE", "5.0:§3.8.2.1.2")
		}
		for _, v := range p.SubscriptionIDs {
			if v == 0 || v > MaxRemainingLength {
				return protocolErr(name, "subscription identifier out of range 1..268435455", "5.0:§3.8.2.1.2")
			}
		}
	case WireString:
		s, _ := p.String(info.ID)
		if err := checkEncUTF8(s, name); err != nil {
			return err
		}
	case WireBinary:
		b, _ := p.Bytes(info.ID)
		if err := checkLen(len(b), name); err != nil {
			return err
		}
	case WireStringPair:
		for _, u := range p.User {
			if err := checkEncUTF8(u.Key, "user_property.key"); err != nil {
				return err
			}
			if err := checkEncUTF8(u.Value, "user_property.value"); err != nil {
				return err
			}
		}
	default:
		v, _ := p.Uint(info.ID)
		if info.Bool && v > 1 {
			return protocolErr(name, fmt.Sprintf("value %d is not 0 or 1", v), "5.0:§3.1.2.11")
		}
		if info.NonZero && v == 0 {
			return protocolErr(name, "value 0 is a protocol error", "5.0:§3.1.2.11")
		}
	}
	return nil
}

// appendTo writes the property length and the properties.
func (p *Properties) appendTo(dst []byte, size int) []byte {
	dst = appendVarint(dst, uint32(size))
	if size == 0 {
		return dst
	}
	for i := range PropTable {
		info := &PropTable[i]
		if !p.Has(info.ID) {
			continue
		}
		switch info.Wire {
		case WireByte:
			v, _ := p.Uint(info.ID)
			dst = append(dst, byte(info.ID), byte(v))
		case WireUint16:
			v, _ := p.Uint(info.ID)
			dst = appendUint16(append(dst, byte(info.ID)), uint16(v))
		case WireUint32:
			v, _ := p.Uint(info.ID)
			dst = appendUint32(append(dst, byte(info.ID)), v)
		case WireVarint:
			for _, v := range p.SubscriptionIDs {
				dst = appendVarint(append(dst, byte(info.ID)), v)
			}
		case WireString:
			s, _ := p.String(info.ID)
			dst = appendString(append(dst, byte(info.ID)), s)
		case WireBinary:
			b, _ := p.Bytes(info.ID)
			dst = appendBinary(append(dst, byte(info.ID)), b)
		case WireStringPair:
			for _, u := range p.User {
				dst = appendString(append(dst, byte(info.ID)), u.Key)
				dst = appendString(dst, u.Value)
			}
		}
	}
	return dst
}
