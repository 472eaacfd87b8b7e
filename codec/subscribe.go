package codec

import "strings"

// SUBSCRIBE (3.1.1 §3.8, 5.0 §3.8).

const (
	subOptQoS            = 0x03
	subOptNoLocal        = 0x04
	subOptRetainAsPub    = 0x08
	subOptRetainHandling = 0x30
)

func decodeSubscribe(d *decoder, p *Packet, version byte) error {
	var err error
	if p.PacketID, err = d.packetID(); err != nil {
		return err
	}
	if version == V5 {
		if err := p.Properties.decode(d, SUBSCRIBE, "properties"); err != nil {
			return err
		}
	}
	if d.remaining() == 0 {
		// [MQTT-3.8.3-3] at least one topic filter.
		return protocolErr("topics", "SUBSCRIBE without topic filters", "MQTT-3.8.3-3")
	}
	for d.remaining() > 0 {
		var s Subscription
		// [MQTT-3.8.3-1] topic filters are UTF-8 encoded strings.
		if s.Topic, err = d.string("topics"); err != nil {
			return err
		}
		if err := checkTopicFilter(s.Topic, "topics", version); err != nil {
			return err
		}
		opts, err := d.byte("topics.qos")
		if err != nil {
			return err
		}
		s.QoS = opts & subOptQoS
		if s.QoS == 3 {
			return malformed("topics.qos", "QoS 3", "MQTT-3.8.3-4")
		}
		if version == V5 {
			if opts&0xC0 != 0 {
				// 5.0 [MQTT-3.8.3-5] reserved bits 6-7 are 0.
				return malformed("topics.options", "reserved subscription option bits are set", "5.0:MQTT-3.8.3-5")
			}
			s.NoLocal = opts&subOptNoLocal != 0
			s.RetainAsPublished = opts&subOptRetainAsPub != 0
			s.RetainHandling = (opts & subOptRetainHandling) >> 4
			if s.RetainHandling == 3 {
				return protocolErr("topics.retain_handling", "retain handling 3", "5.0:§3.8.3.1")
			}
			if s.NoLocal && strings.HasPrefix(s.Topic, "$share/") {
				// 5.0 [MQTT-3.8.3-4] no local on a shared subscription.
				return protocolErr("topics.no_local", "no local on a shared subscription", "5.0:MQTT-3.8.3-4")
			}
		} else if opts&^subOptQoS != 0 {
			// [MQTT-3-8.3-4] reserved bits of the requested QoS byte are 0.
			return malformed("topics.qos", "reserved bits of the requested QoS byte are set", "MQTT-3-8.3-4")
		}
		p.Subscriptions = append(p.Subscriptions, s)
	}
	return nil
}

func (p *Packet) checkSubscribe(version byte) error {
	if p.PacketID == 0 {
		return protocolErr("message_id", "packet identifier 0", "MQTT-2.3.1-1")
	}
	if len(p.Subscriptions) == 0 {
		return protocolErr("topics", "SUBSCRIBE without topic filters", "MQTT-3.8.3-3")
	}
	for i := range p.Subscriptions {
		s := &p.Subscriptions[i]
		if err := checkEncUTF8(s.Topic, "topics"); err != nil {
			return err
		}
		if err := checkTopicFilter(s.Topic, "topics", version); err != nil {
			return err
		}
		if s.QoS > 2 {
			return malformed("topics.qos", "QoS 3", "MQTT-3.8.3-4")
		}
		if s.RetainHandling > 2 {
			return protocolErr("topics.retain_handling", "retain handling 3", "5.0:§3.8.3.1")
		}
	}
	if version == V5 {
		return p.Properties.check(SUBSCRIBE, "properties")
	}
	return nil
}

func (s *Subscription) options(version byte) byte {
	o := s.QoS
	if version == V5 {
		if s.NoLocal {
			o |= subOptNoLocal
		}
		if s.RetainAsPublished {
			o |= subOptRetainAsPub
		}
		o |= s.RetainHandling << 4
	}
	return o
}

func (p *Packet) subscribeSize(version byte) (n, propSize int) {
	n = 2
	if version == V5 {
		propSize = p.Properties.size()
		n += varintLen(uint32(propSize)) + propSize
	}
	for i := range p.Subscriptions {
		n += 3 + len(p.Subscriptions[i].Topic)
	}
	return n, propSize
}

func (p *Packet) subscribeBody(dst []byte, version byte, propSize int) []byte {
	dst = appendUint16(dst, p.PacketID)
	if version == V5 {
		dst = p.Properties.appendTo(dst, propSize)
	}
	for i := range p.Subscriptions {
		s := &p.Subscriptions[i]
		dst = appendString(dst, s.Topic)
		dst = append(dst, s.options(version))
	}
	return dst
}
