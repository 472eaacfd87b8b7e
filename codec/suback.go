package codec

// SUBACK (3.1.1 §3.9, 5.0 §3.9) and UNSUBACK (3.1.1 §3.11, 5.0 §3.11) share
// a layout: a packet identifier, 5.0 properties, and one code per filter
// (UNSUBACK has no codes before 5.0).

func decodeSuback(d *decoder, p *Packet, version byte) error {
	var err error
	if p.PacketID, err = d.packetID(); err != nil {
		return err
	}
	if version == V5 {
		if err := p.Properties.decode(d, p.Type, "properties"); err != nil {
			return err
		}
	} else if p.Type == UNSUBACK {
		return nil
	}
	if d.remaining() == 0 {
		return protocolErr("codes", p.Type.String()+" without reason codes", "MQTT-3.9.3-1")
	}
	for d.remaining() > 0 {
		c, _ := d.byte("codes")
		if err := checkSubackCode(p.Type, ReasonCode(c), version); err != nil {
			return err
		}
		p.ReasonCodes = append(p.ReasonCodes, ReasonCode(c))
	}
	return nil
}

func checkSubackCode(t Type, c ReasonCode, version byte) error {
	if version == V5 {
		if !c.ValidFor(t) {
			return protocolErr("codes", "reason code "+c.String()+" not valid in "+t.String(), "5.0:§3.9.3")
		}
		return nil
	}
	// 3.1.1 §3.9.3: 0x00, 0x01, 0x02 and 0x80 only.
	if c > GrantedQoS2 && c != V3SubackFailure {
		return protocolErr("codes", "SUBACK return code is reserved", "3.1.1:§3.9.3")
	}
	return nil
}

func (p *Packet) checkSuback(version byte) error {
	if p.PacketID == 0 {
		return protocolErr("message_id", "packet identifier 0", "MQTT-2.3.1-1")
	}
	if p.Type == UNSUBACK && version != V5 {
		return nil
	}
	if len(p.ReasonCodes) == 0 {
		return protocolErr("codes", p.Type.String()+" without reason codes", "MQTT-3.9.3-1")
	}
	for _, c := range p.ReasonCodes {
		if err := checkSubackCode(p.Type, c, version); err != nil {
			return err
		}
	}
	if version == V5 {
		return p.Properties.check(p.Type, "properties")
	}
	return nil
}

func (p *Packet) subackSize(version byte) (n, propSize int) {
	n = 2
	if version == V5 {
		propSize = p.Properties.size()
		n += varintLen(uint32(propSize)) + propSize
	} else if p.Type == UNSUBACK {
		return n, 0
	}
	return n + len(p.ReasonCodes), propSize
}

func (p *Packet) subackBody(dst []byte, version byte, propSize int) []byte {
	dst = appendUint16(dst, p.PacketID)
	if version == V5 {
		dst = p.Properties.appendTo(dst, propSize)
	} else if p.Type == UNSUBACK {
		return dst
	}
	for _, c := range p.ReasonCodes {
		dst = append(dst, byte(c))
	}
	return dst
}
