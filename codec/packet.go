package codec

import "errors"

// ErrIncomplete is returned by Decode when b holds only part of a packet.
var ErrIncomplete = errors.New("codec: incomplete packet")

// requiredFlags are the fixed-header flags of every type but PUBLISH
// ([MQTT-2.2.2-1]); AUTH exists only in 5.0.
var requiredFlags = [16]byte{PUBREL: 0x02, SUBSCRIBE: 0x02, UNSUBSCRIBE: 0x02}

// parseHeader parses a fixed header at the start of b. It returns hdr == 0
// when b does not yet hold a whole fixed header.
func parseHeader(b []byte) (remaining uint32, hdr int, err error) {
	if len(b) < 2 {
		return 0, 0, nil
	}
	v, n, err := decodeVarint(b[1:], "remaining_length")
	if err != nil || n == 0 {
		return 0, 0, err
	}
	return v, 1 + n, nil
}

// Decode decodes one complete packet at the start of b into p, for a
// connection at protocol level version (ignored for CONNECT, which carries
// its own). It returns the number of bytes consumed, or ErrIncomplete when b
// holds only a prefix of a packet. Byte fields of p alias b (see the package
// documentation).
func Decode(b []byte, version byte, p *Packet) (int, error) {
	remaining, hdr, err := parseHeader(b)
	if err != nil {
		return 0, err
	}
	if hdr == 0 || len(b)-hdr < int(remaining) {
		return 0, ErrIncomplete
	}
	n := hdr + int(remaining)
	return n, DecodeBody(b[0], b[hdr:n], version, p)
}

// DecodeBody decodes a packet from its first byte and its body (the bytes
// after the remaining length).
func DecodeBody(first byte, body []byte, version byte, p *Packet) error {
	p.Reset()
	t := Type(first >> 4)
	flags := first & 0x0f
	p.Type = t
	if version == 0 {
		version = V311
	}
	switch {
	case t == 0:
		return malformed("type", "reserved packet type 0", "MQTT-2.2.1")
	case t == AUTH && version != V5:
		return malformed("type", "AUTH before MQTT 5.0 is a reserved packet type", "MQTT-2.2.1")
	case t != PUBLISH && flags != requiredFlags[t]:
		// [MQTT-2.2.2-1] [MQTT-2.2.2-2]
		return malformed("fixed_header.flags", "reserved flags of "+t.String()+" are wrong", "MQTT-2.2.2-2")
	}
	d := decoder{b: body}
	var err error
	switch t {
	case CONNECT:
		err = decodeConnect(&d, p)
	case CONNACK:
		err = decodeConnack(&d, p, version)
	case PUBLISH:
		err = decodePublish(&d, p, flags, version)
	case PUBACK, PUBREC, PUBREL, PUBCOMP:
		err = decodeAck(&d, p, version)
	case SUBSCRIBE:
		err = decodeSubscribe(&d, p, version)
	case SUBACK, UNSUBACK:
		err = decodeSuback(&d, p, version)
	case UNSUBSCRIBE:
		err = decodeUnsubscribe(&d, p, version)
	case DISCONNECT, AUTH:
		err = decodeDisconnect(&d, p, version)
	case PINGREQ, PINGRESP:
	}
	if err != nil {
		return err
	}
	if d.remaining() != 0 {
		return malformed("remaining_length", "bytes left over after the last field", "MQTT-2.2.3")
	}
	return nil
}

// Check validates p as Append would, without encoding it.
func (p *Packet) Check(version byte) error {
	_, err := p.check(version)
	return err
}

func (p *Packet) check(version byte) (byte, error) {
	if p.Type == CONNECT {
		return p.checkConnect()
	}
	if version < V31 || version > V5 {
		return 0, &Error{Code: UnsupportedProtocolVersion, Field: "protocol_level", Reason: "protocol level must be 3, 4 or 5"}
	}
	var err error
	switch p.Type {
	case CONNACK:
		err = p.checkConnack(version)
	case PUBLISH:
		err = p.checkPublish(version)
	case PUBACK, PUBREC, PUBREL, PUBCOMP:
		err = p.checkAck(version)
	case SUBSCRIBE:
		err = p.checkSubscribe(version)
	case SUBACK, UNSUBACK:
		err = p.checkSuback(version)
	case UNSUBSCRIBE:
		err = p.checkUnsubscribe(version)
	case DISCONNECT:
		err = p.checkDisconnect(version)
	case AUTH:
		if version != V5 {
			return 0, malformed("type", "AUTH exists only in MQTT 5.0", "MQTT-2.2.1")
		}
		err = p.checkDisconnect(version)
	case PINGREQ, PINGRESP:
	default:
		err = malformed("type", "unknown packet type", "MQTT-2.2.1")
	}
	return version, err
}

// Append validates p, encodes it for protocol level version (CONNECT uses
// its own ProtocolLevel) and appends it to dst. With a dst of enough
// capacity it does not allocate.
func (p *Packet) Append(dst []byte, version byte) ([]byte, error) {
	version, err := p.check(version)
	if err != nil {
		return dst, err
	}
	var n, propSize, willPropSize int
	first := byte(p.Type) << 4
	switch p.Type {
	case CONNECT:
		n, propSize, willPropSize = p.connectSize(version)
	case CONNACK:
		n = 2
		if version == V5 {
			propSize = p.Properties.size()
			n += varintLen(uint32(propSize)) + propSize
		}
	case PUBLISH:
		first |= p.publishFlags()
		n = 2 + len(p.Topic) + len(p.Payload)
		if p.QoS > 0 {
			n += 2
		}
		if version == V5 {
			propSize = p.Properties.size()
			n += varintLen(uint32(propSize)) + propSize
		}
	case PUBACK, PUBREC, PUBREL, PUBCOMP:
		n, propSize = p.ackSize(version)
	case SUBSCRIBE, UNSUBSCRIBE:
		if p.Type == SUBSCRIBE {
			n, propSize = p.subscribeSize(version)
		} else {
			n, propSize = p.unsubscribeSize(version)
		}
	case SUBACK, UNSUBACK:
		n, propSize = p.subackSize(version)
	case DISCONNECT, AUTH:
		n, propSize = p.disconnectSize(version)
	}
	first |= requiredFlags[p.Type]
	if n > MaxRemainingLength {
		return dst, &Error{Code: PacketTooLarge, Field: "remaining_length", Reason: "packet larger than 256 MB"}
	}
	dst = append(dst, first)
	dst = appendVarint(dst, uint32(n))
	switch p.Type {
	case CONNECT:
		dst = p.connectBody(dst, version, propSize, willPropSize)
	case CONNACK:
		dst = p.connackBody(dst, version, propSize)
	case PUBLISH:
		dst = p.publishBody(dst, version, propSize)
	case PUBACK, PUBREC, PUBREL, PUBCOMP:
		dst = p.ackBody(dst, n, propSize)
	case SUBSCRIBE:
		dst = p.subscribeBody(dst, version, propSize)
	case UNSUBSCRIBE:
		dst = p.unsubscribeBody(dst, version, propSize)
	case SUBACK, UNSUBACK:
		dst = p.subackBody(dst, version, propSize)
	case DISCONNECT, AUTH:
		dst = p.disconnectBody(dst, n, propSize)
	}
	return dst, nil
}

// Encode returns p encoded for protocol level version in a new slice.
func Encode(p *Packet, version byte) ([]byte, error) {
	return p.Append(nil, version)
}
