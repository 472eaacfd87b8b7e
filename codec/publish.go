package codec

// PUBLISH (3.1.1 §3.3, 5.0 §3.3).

func decodePublish(d *decoder, p *Packet, flags byte, version byte) error {
	p.Dup = flags&0x08 != 0
	p.QoS = (flags >> 1) & 0x03
	p.Retain = flags&0x01 != 0
	if p.QoS == 3 {
		// [MQTT-3.3.1-4]
		return malformed("qos", "QoS 3", "MQTT-3.3.1-4")
	}
	if p.Dup && p.QoS == 0 {
		// [MQTT-3.3.1-2]
		return malformed("dup", "DUP set on a QoS 0 message", "MQTT-3.3.1-2")
	}
	var err error
	// [MQTT-3.3.2-1] the topic name is a UTF-8 encoded string.
	if p.Topic, err = d.string("topic"); err != nil {
		return err
	}
	if err := checkTopicName(p.Topic, "topic"); err != nil {
		return err
	}
	if p.QoS > 0 {
		if p.PacketID, err = d.packetID(); err != nil {
			return err
		}
	}
	if version == V5 {
		if err := p.Properties.decode(d, PUBLISH, "properties"); err != nil {
			return err
		}
		if p.Topic == "" && !p.Properties.Has(PropTopicAlias) {
			// 5.0 §3.3.2.1: an empty topic needs a topic alias.
			return protocolErr("topic", "empty topic name without a topic alias", "5.0:§3.3.2.1")
		}
	} else if p.Topic == "" {
		// [MQTT-4.7.3-1]
		return &Error{Code: TopicNameInvalid, Field: "topic", Reason: "empty topic name", Spec: "MQTT-4.7.3-1"}
	}
	p.Payload = d.b[d.off:len(d.b):len(d.b)]
	d.off = len(d.b)
	return nil
}

func (p *Packet) checkPublish(version byte) error {
	if p.QoS > 2 {
		return malformed("qos", "QoS 3", "MQTT-3.3.1-4")
	}
	if p.QoS > 0 && p.PacketID == 0 {
		return protocolErr("message_id", "packet identifier 0", "MQTT-2.3.1-1")
	}
	if p.Topic == "" && !(version == V5 && p.Properties.Has(PropTopicAlias)) {
		return &Error{Code: TopicNameInvalid, Field: "topic", Reason: "empty topic name", Spec: "MQTT-4.7.3-1"}
	}
	if err := checkEncUTF8(p.Topic, "topic"); err != nil {
		return err
	}
	if err := checkTopicName(p.Topic, "topic"); err != nil {
		return err
	}
	if version == V5 {
		return p.Properties.check(PUBLISH, "properties")
	}
	return nil
}

func (p *Packet) publishFlags() byte {
	f := p.QoS << 1
	if p.Dup && p.QoS > 0 {
		f |= 0x08
	}
	if p.Retain {
		f |= 0x01
	}
	return f
}

func (p *Packet) publishBody(dst []byte, version byte, propSize int) []byte {
	dst = appendString(dst, p.Topic)
	if p.QoS > 0 {
		dst = appendUint16(dst, p.PacketID)
	}
	if version == V5 {
		dst = p.Properties.appendTo(dst, propSize)
	}
	return append(dst, p.Payload...)
}
