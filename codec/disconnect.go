package codec

// DISCONNECT (3.1.1 §3.14, 5.0 §3.14) and AUTH (5.0 §3.15) share a layout:
// empty before 5.0; in 5.0 an optional reason code and optional properties.

func decodeDisconnect(d *decoder, p *Packet, version byte) error {
	if version != V5 || d.remaining() == 0 {
		// 5.0 §3.14.2.1: no reason code means 0x00.
		return nil
	}
	code, _ := d.byte("code")
	p.ReasonCode = ReasonCode(code)
	if !p.ReasonCode.ValidFor(p.Type) {
		return protocolErr("code", "reason code not valid in "+p.Type.String(), "5.0:§3.14.2.1")
	}
	if d.remaining() == 0 {
		return nil
	}
	if err := p.Properties.decode(d, p.Type, "properties"); err != nil {
		return err
	}
	if p.Type == AUTH && p.Properties.Has(PropAuthData) && !p.Properties.Has(PropAuthMethod) {
		return protocolErr("properties.authentication_data", "authentication data without authentication method", "5.0:§3.15.2.2.3")
	}
	return nil
}

func (p *Packet) checkDisconnect(version byte) error {
	if version != V5 {
		return nil
	}
	if !p.ReasonCode.ValidFor(p.Type) {
		return protocolErr("code", "reason code not valid in "+p.Type.String(), "5.0:§3.14.2.1")
	}
	return p.Properties.check(p.Type, "properties")
}

// disconnectSize leaves out what carries nothing (5.0 §3.14.2.1, §3.15.2.1).
func (p *Packet) disconnectSize(version byte) (n, propSize int) {
	if version != V5 || (p.ReasonCode == 0 && p.Properties.Empty()) {
		return 0, 0
	}
	if p.Properties.Empty() {
		return 1, 0
	}
	propSize = p.Properties.size()
	return 1 + varintLen(uint32(propSize)) + propSize, propSize
}

func (p *Packet) disconnectBody(dst []byte, n, propSize int) []byte {
	if n > 0 {
		dst = append(dst, byte(p.ReasonCode))
	}
	if n > 1 {
		dst = p.Properties.appendTo(dst, propSize)
	}
	return dst
}
