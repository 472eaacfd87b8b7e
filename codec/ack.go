package codec

// PUBACK, PUBREC, PUBREL and PUBCOMP (3.1.1 §3.4-3.7, 5.0 §3.4-3.7) share
// one layout: a packet identifier and, in 5.0, an optional reason code and
// properties.

func decodeAck(d *decoder, p *Packet, version byte) error {
	var err error
	if p.PacketID, err = d.packetID(); err != nil {
		return err
	}
	if version != V5 || d.remaining() == 0 {
		// 5.0 §3.4.2.1: no reason code means 0x00 Success.
		return nil
	}
	code, _ := d.byte("code")
	p.ReasonCode = ReasonCode(code)
	if !p.ReasonCode.ValidFor(p.Type) {
		return protocolErr("code", "reason code not valid in "+p.Type.String(), "5.0:§3.4.2.1")
	}
	if d.remaining() == 0 {
		return nil
	}
	return p.Properties.decode(d, p.Type, "properties")
}

func (p *Packet) checkAck(version byte) error {
	if p.PacketID == 0 {
		return protocolErr("message_id", "packet identifier 0", "MQTT-2.3.1-1")
	}
	if version == V5 {
		if !p.ReasonCode.ValidFor(p.Type) {
			return protocolErr("code", "reason code not valid in "+p.Type.String(), "5.0:§3.4.2.1")
		}
		return p.Properties.check(p.Type, "properties")
	}
	return nil
}

// ackSize returns the body size: the reason code and property length are
// left out when they carry nothing (5.0 §3.4.2.1).
func (p *Packet) ackSize(version byte) (n, propSize int) {
	if version != V5 || (p.ReasonCode == Success && p.Properties.Empty()) {
		return 2, 0
	}
	if p.Properties.Empty() {
		return 3, 0
	}
	propSize = p.Properties.size()
	return 3 + varintLen(uint32(propSize)) + propSize, propSize
}

func (p *Packet) ackBody(dst []byte, n, propSize int) []byte {
	dst = appendUint16(dst, p.PacketID)
	if n > 2 {
		dst = append(dst, byte(p.ReasonCode))
	}
	if n > 3 {
		dst = p.Properties.appendTo(dst, propSize)
	}
	return dst
}
