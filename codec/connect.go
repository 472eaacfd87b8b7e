package codec

// CONNECT (3.1.1 §3.1, 5.0 §3.1).

const (
	connFlagReserved = 0x01
	connFlagClean    = 0x02
	connFlagWill     = 0x04
	connFlagWillQoS  = 0x18
	connFlagRetain   = 0x20
	connFlagPassword = 0x40
	connFlagUsername = 0x80
)

// protocolName returns the protocol name that goes with a protocol level.
func protocolName(level byte) string {
	if level == V31 {
		return "MQIsdp"
	}
	return "MQTT"
}

func decodeConnect(d *decoder, p *Packet) error {
	var err error
	if p.ProtocolName, err = d.string("protocol_name"); err != nil {
		return err
	}
	if p.ProtocolLevel, err = d.byte("protocol_level"); err != nil {
		return err
	}
	// [MQTT-3.1.2-1] a wrong protocol name; [MQTT-3.1.2-2] an unsupported
	// level is answered with CONNACK 0x01 (0x84 in 5.0) by the engine.
	switch {
	case p.ProtocolName == "MQTT" && (p.ProtocolLevel == V311 || p.ProtocolLevel == V5):
	case p.ProtocolName == "MQIsdp" && p.ProtocolLevel == V31:
	case p.ProtocolName != "MQTT" && p.ProtocolName != "MQIsdp":
		return &Error{Code: UnsupportedProtocolVersion, Field: "protocol_name", Reason: "unknown protocol name " + quote(p.ProtocolName), Spec: "MQTT-3.1.2-1"}
	default:
		return &Error{Code: UnsupportedProtocolVersion, Field: "protocol_level", Reason: "unsupported protocol level for " + quote(p.ProtocolName), Spec: "MQTT-3.1.2-2"}
	}
	version := p.ProtocolLevel
	flags, err := d.byte("connect_flags")
	if err != nil {
		return err
	}
	if flags&connFlagReserved != 0 {
		// [MQTT-3.1.2-3]
		return malformed("connect_flags", "reserved flag is set", "MQTT-3.1.2-3")
	}
	p.CleanSession = flags&connFlagClean != 0
	willQoS := (flags & connFlagWillQoS) >> 3
	if flags&connFlagWill == 0 {
		if willQoS != 0 {
			// [MQTT-3.1.2-13]
			return malformed("connect_flags.will_qos", "will QoS set without a will", "MQTT-3.1.2-13")
		}
		if flags&connFlagRetain != 0 {
			// [MQTT-3.1.2-15]
			return malformed("connect_flags.will_retain", "will retain set without a will", "MQTT-3.1.2-15")
		}
	} else if willQoS == 3 {
		// [MQTT-3.1.2-14]
		return malformed("connect_flags.will_qos", "will QoS 3", "MQTT-3.1.2-14")
	}
	p.UsernameFlag = flags&connFlagUsername != 0
	p.PasswordFlag = flags&connFlagPassword != 0
	if version < V5 && p.PasswordFlag && !p.UsernameFlag {
		// [MQTT-3.1.2-22]; 5.0 allows a password without a user name.
		return malformed("connect_flags.password", "password flag set without user name flag", "MQTT-3.1.2-22")
	}
	if p.KeepAlive, err = d.uint16("keep_alive"); err != nil {
		return err
	}
	if version == V5 {
		if err := p.Properties.decode(d, CONNECT, "properties"); err != nil {
			return err
		}
		if p.Properties.Has(PropAuthData) && !p.Properties.Has(PropAuthMethod) {
			// 5.0 §3.1.2.11.10
			return protocolErr("properties.authentication_data", "authentication data without authentication method", "5.0:§3.1.2.11.10")
		}
	}
	// [MQTT-3.1.3-3] the client identifier is the first payload field;
	// [MQTT-3.1.3-4] it is a UTF-8 encoded string.
	if p.ClientID, err = d.string("client_id"); err != nil {
		return err
	}
	if flags&connFlagWill != 0 {
		w := &Will{QoS: willQoS, Retain: flags&connFlagRetain != 0}
		p.Will = w
		if version == V5 {
			if err := w.Properties.decode(d, willProps, "will.properties"); err != nil {
				return err
			}
		}
		if w.Topic, err = d.string("will.topic"); err != nil {
			return err
		}
		if w.Topic == "" {
			// [MQTT-4.7.3-1]
			return &Error{Code: TopicNameInvalid, Field: "will.topic", Reason: "empty will topic", Spec: "MQTT-4.7.3-1"}
		}
		if err := checkTopicName(w.Topic, "will.topic"); err != nil {
			return err
		}
		if w.Payload, err = d.binary("will.message"); err != nil {
			return err
		}
	}
	if p.UsernameFlag {
		// [MQTT-3.1.2-19]
		if p.Username, err = d.string("user_name"); err != nil {
			return err
		}
	}
	if p.PasswordFlag {
		// [MQTT-3.1.2-21]
		if p.Password, err = d.binary("password"); err != nil {
			return err
		}
	}
	return nil
}

func (p *Packet) checkConnect() (version byte, err error) {
	version = p.ProtocolLevel
	if version < V31 || version > V5 {
		return 0, &Error{Code: UnsupportedProtocolVersion, Field: "protocol_level", Reason: "protocol level must be 3, 4 or 5"}
	}
	if p.ProtocolName != "" && p.ProtocolName != protocolName(version) {
		return 0, &Error{Code: UnsupportedProtocolVersion, Field: "protocol_name", Reason: "protocol name does not match the level"}
	}
	if err := checkEncUTF8(p.ClientID, "client_id"); err != nil {
		return 0, err
	}
	if p.Username != "" || p.UsernameFlag {
		if err := checkEncUTF8(p.Username, "user_name"); err != nil {
			return 0, err
		}
	}
	if err := checkLen(len(p.Password), "password"); err != nil {
		return 0, err
	}
	if version < V5 && (p.PasswordFlag || p.Password != nil) && !(p.UsernameFlag || p.Username != "") {
		return 0, malformed("connect_flags.password", "password without user name", "MQTT-3.1.2-22")
	}
	if w := p.Will; w != nil {
		if w.QoS > 2 {
			return 0, malformed("will.qos", "will QoS 3", "MQTT-3.1.2-14")
		}
		if w.Topic == "" {
			return 0, &Error{Code: TopicNameInvalid, Field: "will.topic", Reason: "empty will topic", Spec: "MQTT-4.7.3-1"}
		}
		if err := checkEncUTF8(w.Topic, "will.topic"); err != nil {
			return 0, err
		}
		if err := checkTopicName(w.Topic, "will.topic"); err != nil {
			return 0, err
		}
		if err := checkLen(len(w.Payload), "will.message"); err != nil {
			return 0, err
		}
		if version == V5 {
			if err := w.Properties.check(willProps, "will.properties"); err != nil {
				return 0, err
			}
		}
	}
	if version == V5 {
		if err := p.Properties.check(CONNECT, "properties"); err != nil {
			return 0, err
		}
	}
	return version, nil
}

func (p *Packet) connectBody(dst []byte, version byte, propSize, willPropSize int) []byte {
	dst = appendString(dst, protocolName(version))
	dst = append(dst, version)
	var flags byte
	if p.CleanSession {
		flags |= connFlagClean
	}
	if w := p.Will; w != nil {
		flags |= connFlagWill | w.QoS<<3
		if w.Retain {
			flags |= connFlagRetain
		}
	}
	if p.PasswordFlag || p.Password != nil {
		flags |= connFlagPassword
	}
	if p.UsernameFlag || p.Username != "" {
		flags |= connFlagUsername
	}
	dst = append(dst, flags)
	dst = appendUint16(dst, p.KeepAlive)
	if version == V5 {
		dst = p.Properties.appendTo(dst, propSize)
	}
	dst = appendString(dst, p.ClientID)
	if w := p.Will; w != nil {
		if version == V5 {
			dst = w.Properties.appendTo(dst, willPropSize)
		}
		dst = appendString(dst, w.Topic)
		dst = appendBinary(dst, w.Payload)
	}
	if flags&connFlagUsername != 0 {
		dst = appendString(dst, p.Username)
	}
	if flags&connFlagPassword != 0 {
		dst = appendBinary(dst, p.Password)
	}
	return dst
}

func (p *Packet) connectSize(version byte) (n, propSize, willPropSize int) {
	n = 2 + len(protocolName(version)) + 1 + 1 + 2 + 2 + len(p.ClientID)
	if version == V5 {
		propSize = p.Properties.size()
		n += varintLen(uint32(propSize)) + propSize
	}
	if w := p.Will; w != nil {
		if version == V5 {
			willPropSize = w.Properties.size()
			n += varintLen(uint32(willPropSize)) + willPropSize
		}
		n += 2 + len(w.Topic) + 2 + len(w.Payload)
	}
	if p.UsernameFlag || p.Username != "" {
		n += 2 + len(p.Username)
	}
	if p.PasswordFlag || p.Password != nil {
		n += 2 + len(p.Password)
	}
	return n, propSize, willPropSize
}

func quote(s string) string {
	if len(s) > 32 {
		s = s[:32] + "..."
	}
	return "\"" + s + "\""
}
