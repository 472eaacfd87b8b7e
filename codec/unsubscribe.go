package codec

// UNSUBSCRIBE (3.1.1 §3.10, 5.0 §3.10).

func decodeUnsubscribe(d *decoder, p *Packet, version byte) error {
	var err error
	if p.PacketID, err = d.packetID(); err != nil {
		return err
	}
	if version == V5 {
		if err := p.Properties.decode(d, UNSUBSCRIBE, "properties"); err != nil {
			return err
		}
	}
	if d.remaining() == 0 {
		// [MQTT-3.10.3-2] at least one topic filter.
		return protocolErr("topics", "UNSUBSCRIBE without topic filters", "MQTT-3.10.3-2")
	}
	for d.remaining() > 0 {
		// [MQTT-3.10.3-1] topic filters are UTF-8 encoded strings.
		t, err := d.string("topics")
		if err != nil {
			return err
		}
		if err := checkTopicFilter(t, "topics", version); err != nil {
			return err
		}
		p.Topics = append(p.Topics, t)
	}
	return nil
}

func (p *Packet) checkUnsubscribe(version byte) error {
	if p.PacketID == 0 {
		return protocolErr("message_id", "packet identifier 0", "MQTT-2.3.1-1")
	}
	if len(p.Topics) == 0 {
		return protocolErr("topics", "UNSUBSCRIBE without topic filters", "MQTT-3.10.3-2")
	}
	for _, t := range p.Topics {
		if err := checkEncUTF8(t, "topics"); err != nil {
			return err
		}
		if err := checkTopicFilter(t, "topics", version); err != nil {
			return err
		}
	}
	if version == V5 {
		return p.Properties.check(UNSUBSCRIBE, "properties")
	}
	return nil
}

func (p *Packet) unsubscribeSize(version byte) (n, propSize int) {
	n = 2
	if version == V5 {
		propSize = p.Properties.size()
		n += varintLen(uint32(propSize)) + propSize
	}
	for _, t := range p.Topics {
		n += 2 + len(t)
	}
	return n, propSize
}

func (p *Packet) unsubscribeBody(dst []byte, version byte, propSize int) []byte {
	dst = appendUint16(dst, p.PacketID)
	if version == V5 {
		dst = p.Properties.appendTo(dst, propSize)
	}
	for _, t := range p.Topics {
		dst = appendString(dst, t)
	}
	return dst
}
