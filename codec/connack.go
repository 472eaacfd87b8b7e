package codec

// CONNACK (3.1.1 §3.2, 5.0 §3.2).

func decodeConnack(d *decoder, p *Packet, version byte) error {
	flags, err := d.byte("session_present")
	if err != nil {
		return err
	}
	// MQTT 3.1 has no acknowledge flags: the byte is unused.
	if version >= V311 {
		if flags&^1 != 0 {
			// [MQTT-3.2.2-1] (5.0 numbering) reserved bits 7-1 are 0.
			return malformed("session_present", "reserved acknowledge flags are set", "5.0:MQTT-3.2.2-1")
		}
		p.SessionPresent = flags == 1
	}
	code, err := d.byte("code")
	if err != nil {
		return err
	}
	p.ReasonCode = ReasonCode(code)
	if version == V5 {
		if !p.ReasonCode.ValidFor(CONNACK) {
			return protocolErr("code", "reason code not valid in CONNACK", "5.0:§3.2.2.2")
		}
		if err := p.Properties.decode(d, CONNACK, "properties"); err != nil {
			return err
		}
	} else if code > byte(V3NotAuthorized) {
		return protocolErr("code", "return code is reserved", "3.1.1:§3.2.2.3")
	}
	if p.SessionPresent && code != 0 {
		// [MQTT-3.2.2-4]: session present is 0 with a non-zero code.
		return protocolErr("session_present", "session present with a refusal", "MQTT-3.2.2-4")
	}
	return nil
}

func (p *Packet) checkConnack(version byte) error {
	if p.SessionPresent && p.ReasonCode != 0 {
		return protocolErr("session_present", "session present with a refusal", "MQTT-3.2.2-4")
	}
	if version == V5 {
		if !p.ReasonCode.ValidFor(CONNACK) {
			return protocolErr("code", "reason code not valid in CONNACK", "5.0:§3.2.2.2")
		}
		return p.Properties.check(CONNACK, "properties")
	}
	if p.ReasonCode > V3NotAuthorized {
		return protocolErr("code", "not a 3.1.1 return code (map it with V311Code)", "3.1.1:§3.2.2.3")
	}
	return nil
}

func (p *Packet) connackBody(dst []byte, version byte, propSize int) []byte {
	var flags byte
	if p.SessionPresent && version >= V311 {
		flags = 1
	}
	dst = append(dst, flags, byte(p.ReasonCode))
	if version == V5 {
		dst = p.Properties.appendTo(dst, propSize)
	}
	return dst
}
