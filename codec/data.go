package codec

import (
	"fmt"
	"sort"
)

// The data mapping turns a Packet into plain data (maps, lists, strings,
// ints, bools) with Simps' field names and back. The engine's Lua tables,
// the fixtures in testdata/packets and `broker test` all use these names:
//
//	type, protocol_name, protocol_level, clean_session, keep_alive,
//	client_id, user_name, password, will = {qos, retain, topic, message,
//	properties}, dup, qos, retain, topic, message, message_id, topics,
//	filters, codes, code, session_present, properties
//
// SUBSCRIBE carries its filters twice: `topics` maps each filter to its QoS
// (3.1/3.1.1) or to its options table (5.0), as Simps does, and `filters`
// lists {topic, qos, no_local, retain_as_published, retain_handling} in
// packet order, which SUBACK codes follow. UNSUBSCRIBE's `topics` is a list.
// Properties use the snake_case names of PropTable; user_property is a list
// of {key, value} pairs; subscription_identifier is a list in PUBLISH and a
// number in SUBSCRIBE. Binary fields (message, password, correlation_data,
// authentication_data) are strings, as they are in Lua and PHP.

// Map is a packet as plain data.
type Map = map[string]any

// ToMap returns p, decoded at protocol level version, as plain data.
func ToMap(p *Packet, version byte) Map {
	if p.Type == CONNECT {
		version = p.ProtocolLevel
	}
	m := Map{"type": int(p.Type)}
	v5 := version == V5
	switch p.Type {
	case CONNECT:
		m["protocol_name"] = p.ProtocolName
		if m["protocol_name"] == "" {
			m["protocol_name"] = protocolName(p.ProtocolLevel)
		}
		m["protocol_level"] = int(p.ProtocolLevel)
		m["clean_session"] = p.CleanSession
		m["keep_alive"] = int(p.KeepAlive)
		m["client_id"] = p.ClientID
		if w := p.Will; w != nil {
			wm := Map{"qos": int(w.QoS), "retain": w.Retain, "topic": w.Topic, "message": string(w.Payload)}
			if v5 && !w.Properties.Empty() {
				wm["properties"] = PropertiesToMap(&w.Properties, willProps)
			}
			m["will"] = wm
		}
		if p.UsernameFlag || p.Username != "" {
			m["user_name"] = p.Username
		}
		if p.PasswordFlag || p.Password != nil {
			m["password"] = string(p.Password)
		}
	case CONNACK:
		m["session_present"] = p.SessionPresent
		m["code"] = int(p.ReasonCode)
	case PUBLISH:
		m["dup"] = p.Dup
		m["qos"] = int(p.QoS)
		m["retain"] = p.Retain
		m["topic"] = p.Topic
		m["message"] = string(p.Payload)
		if p.QoS > 0 {
			m["message_id"] = int(p.PacketID)
		}
	case PUBACK, PUBREC, PUBREL, PUBCOMP:
		m["message_id"] = int(p.PacketID)
		if v5 {
			m["code"] = int(p.ReasonCode)
		}
	case SUBSCRIBE:
		m["message_id"] = int(p.PacketID)
		topics := Map{}
		filters := make([]any, 0, len(p.Subscriptions))
		for _, s := range p.Subscriptions {
			f := Map{"topic": s.Topic, "qos": int(s.QoS)}
			if v5 {
				opts := Map{"qos": int(s.QoS), "no_local": s.NoLocal,
					"retain_as_published": s.RetainAsPublished, "retain_handling": int(s.RetainHandling)}
				topics[s.Topic] = opts
				f["no_local"] = s.NoLocal
				f["retain_as_published"] = s.RetainAsPublished
				f["retain_handling"] = int(s.RetainHandling)
			} else {
				topics[s.Topic] = int(s.QoS)
			}
			filters = append(filters, f)
		}
		m["topics"] = topics
		m["filters"] = filters
	case SUBACK, UNSUBACK:
		m["message_id"] = int(p.PacketID)
		if p.Type == SUBACK || v5 {
			codes := make([]any, len(p.ReasonCodes))
			for i, c := range p.ReasonCodes {
				codes[i] = int(c)
			}
			m["codes"] = codes
		}
	case UNSUBSCRIBE:
		m["message_id"] = int(p.PacketID)
		topics := make([]any, len(p.Topics))
		for i, t := range p.Topics {
			topics[i] = t
		}
		m["topics"] = topics
	case DISCONNECT, AUTH:
		if v5 {
			m["code"] = int(p.ReasonCode)
		}
	}
	if v5 && !p.Properties.Empty() {
		m["properties"] = PropertiesToMap(&p.Properties, p.Type)
	}
	return m
}

// PropertiesToMap returns properties as plain data for a packet of type t.
func PropertiesToMap(props *Properties, t Type) Map {
	m := Map{}
	for i := range PropTable {
		info := &PropTable[i]
		if !props.Has(info.ID) {
			continue
		}
		switch info.Wire {
		case WireString:
			m[info.Name], _ = props.String(info.ID)
		case WireBinary:
			b, _ := props.Bytes(info.ID)
			m[info.Name] = string(b)
		case WireStringPair:
			l := make([]any, len(props.User))
			for j, u := range props.User {
				l[j] = []any{u.Key, u.Value}
			}
			m[info.Name] = l
		case WireVarint:
			if t == SUBSCRIBE {
				m[info.Name] = int(props.SubscriptionIDs[0])
				continue
			}
			l := make([]any, len(props.SubscriptionIDs))
			for j, v := range props.SubscriptionIDs {
				l[j] = int(v)
			}
			m[info.Name] = l
		default:
			v, _ := props.Uint(info.ID)
			m[info.Name] = int(v)
		}
	}
	return m
}

// FromMap builds a packet from plain data. It accepts what ToMap returns,
// numbers as any Go integer or float type (JSON and Lua give float64), flags
// as bools or 0/1 (Simps scripts write `session_present = 0`), and `cmd` as
// a synonym of `type` (as Simps' MQTT::getAck does). Missing fields are
// zero. The result is not validated: Append does that.
func FromMap(m Map) (*Packet, error) {
	p := &Packet{}
	c := mapReader{m: m}
	t := c.int("type", -1)
	if t < 0 {
		t = c.int("cmd", -1)
	}
	if t < 1 || t > 15 {
		return nil, fmt.Errorf("type: want a packet type 1..15, got %v", m["type"])
	}
	p.Type = Type(t)
	switch p.Type {
	case CONNECT:
		p.ProtocolLevel = byte(c.int("protocol_level", int(V311)))
		p.ProtocolName = c.str("protocol_name")
		p.CleanSession = c.bool("clean_session")
		p.KeepAlive = uint16(c.int("keep_alive", 0))
		p.ClientID = c.str("client_id")
		if wm, ok := m["will"].(Map); ok {
			wc := mapReader{m: wm, prefix: "will."}
			p.Will = &Will{QoS: byte(wc.int("qos", 0)), Retain: wc.bool("retain"),
				Topic: wc.str("topic"), Payload: []byte(wc.str("message"))}
			if err := wc.err; err != nil {
				return nil, err
			}
			if err := PropertiesFromMap(wm["properties"], &p.Will.Properties, "will.properties"); err != nil {
				return nil, err
			}
		}
		if _, ok := m["user_name"]; ok {
			p.UsernameFlag, p.Username = true, c.str("user_name")
		}
		if _, ok := m["password"]; ok {
			p.PasswordFlag, p.Password = true, []byte(c.str("password"))
		}
	case CONNACK:
		p.SessionPresent = c.bool("session_present")
		p.ReasonCode = ReasonCode(c.int("code", 0))
	case PUBLISH:
		p.Dup = c.bool("dup")
		p.QoS = byte(c.int("qos", 0))
		p.Retain = c.bool("retain")
		p.Topic = c.str("topic")
		p.Payload = []byte(c.str("message"))
		p.PacketID = uint16(c.int("message_id", 0))
	case SUBSCRIBE:
		p.PacketID = uint16(c.int("message_id", 0))
		if err := subscriptionsFromMap(m, p); err != nil {
			return nil, err
		}
	case UNSUBSCRIBE:
		p.PacketID = uint16(c.int("message_id", 0))
		switch topics := m["topics"].(type) {
		case []any:
			for i, t := range topics {
				s, ok := t.(string)
				if !ok {
					return nil, fmt.Errorf("topics[%d]: want a string, got %T", i+1, t)
				}
				p.Topics = append(p.Topics, s)
			}
		case nil:
		default:
			return nil, fmt.Errorf("topics: want a list of topic filters, got %T", topics)
		}
	case SUBACK, UNSUBACK:
		p.PacketID = uint16(c.int("message_id", 0))
		if codes, ok := m["codes"].([]any); ok {
			for i, v := range codes {
				n, ok := toInt(v)
				if !ok || n < 0 || n > 255 {
					return nil, fmt.Errorf("codes[%d]: want a reason code, got %v", i+1, v)
				}
				p.ReasonCodes = append(p.ReasonCodes, ReasonCode(n))
			}
		} else if m["codes"] != nil {
			return nil, fmt.Errorf("codes: want a list, got %T", m["codes"])
		}
	default:
		p.PacketID = uint16(c.int("message_id", 0))
		p.ReasonCode = ReasonCode(c.int("code", 0))
	}
	if c.err != nil {
		return nil, c.err
	}
	if err := PropertiesFromMap(m["properties"], &p.Properties, "properties"); err != nil {
		return nil, err
	}
	return p, nil
}

func subscriptionsFromMap(m Map, p *Packet) error {
	if filters, ok := m["filters"].([]any); ok {
		for i, f := range filters {
			fm, ok := f.(Map)
			if !ok {
				return fmt.Errorf("filters[%d]: want a table, got %T", i+1, f)
			}
			s, err := subscriptionFromMap(fm, fm["topic"], fmt.Sprintf("filters[%d].", i+1))
			if err != nil {
				return err
			}
			p.Subscriptions = append(p.Subscriptions, s)
		}
		return nil
	}
	topics, ok := m["topics"].(Map)
	if !ok {
		if m["topics"] == nil {
			return nil
		}
		return fmt.Errorf("topics: want a table of topic filter -> qos, got %T", m["topics"])
	}
	// A map has no order; sort so that the same table always encodes the
	// same bytes.
	keys := make([]string, 0, len(topics))
	for k := range topics {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		var s Subscription
		var err error
		switch v := topics[k].(type) {
		case Map:
			s, err = subscriptionFromMap(v, k, "topics["+k+"].")
		default:
			q, ok := toInt(v)
			if !ok {
				return fmt.Errorf("topics[%s]: want a QoS or an options table, got %T", k, v)
			}
			s = Subscription{Topic: k, QoS: byte(q)}
		}
		if err != nil {
			return err
		}
		p.Subscriptions = append(p.Subscriptions, s)
	}
	return nil
}

func subscriptionFromMap(m Map, topic any, prefix string) (Subscription, error) {
	t, ok := topic.(string)
	if !ok {
		return Subscription{}, fmt.Errorf("%stopic: want a string, got %T", prefix, topic)
	}
	c := mapReader{m: m, prefix: prefix}
	s := Subscription{Topic: t, QoS: byte(c.int("qos", 0)), NoLocal: c.bool("no_local"),
		RetainAsPublished: c.bool("retain_as_published"), RetainHandling: byte(c.int("retain_handling", 0))}
	return s, c.err
}

// PropertiesFromMap fills props from plain data keyed by property name.
func PropertiesFromMap(v any, props *Properties, field string) error {
	if v == nil {
		return nil
	}
	m, ok := v.(Map)
	if !ok {
		return fmt.Errorf("%s: want a table, got %T", field, v)
	}
	// Sorted so that the first error reported does not depend on map order.
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, name := range names {
		val := m[name]
		info, ok := PropByName(name)
		if !ok {
			return fmt.Errorf("%s.%s: unknown property", field, name)
		}
		switch info.Wire {
		case WireString, WireBinary:
			s, ok := val.(string)
			if !ok {
				return fmt.Errorf("%s.%s: want a string, got %T", field, name, val)
			}
			if info.Wire == WireString {
				props.SetString(info.ID, s)
			} else {
				props.SetBytes(info.ID, []byte(s))
			}
		case WireStringPair:
			l, ok := val.([]any)
			if !ok {
				return fmt.Errorf("%s.%s: want a list of {key, value} pairs, got %T", field, name, val)
			}
			for i, e := range l {
				pair, ok := e.([]any)
				if !ok || len(pair) != 2 {
					return fmt.Errorf("%s.%s[%d]: want a {key, value} pair", field, name, i+1)
				}
				k, ok1 := pair[0].(string)
				v, ok2 := pair[1].(string)
				if !ok1 || !ok2 {
					return fmt.Errorf("%s.%s[%d]: key and value must be strings", field, name, i+1)
				}
				props.User = append(props.User, UserProperty{k, v})
			}
		case WireVarint:
			list, isList := val.([]any)
			if !isList {
				list = []any{val}
			}
			for i, e := range list {
				n, ok := toInt(e)
				if !ok || n < 0 || n > MaxRemainingLength {
					return fmt.Errorf("%s.%s[%d]: want an integer, got %v", field, name, i+1, e)
				}
				props.SetUint(info.ID, uint32(n))
			}
		default:
			n, ok := toInt(val)
			limit := int64(0xffffffff)
			switch info.Wire {
			case WireByte:
				limit = 0xff
			case WireUint16:
				limit = 0xffff
			}
			if b, isBool := val.(bool); isBool && info.Wire == WireByte {
				n, ok = 0, true
				if b {
					n = 1
				}
			}
			if !ok || n < 0 || n > limit {
				return fmt.Errorf("%s.%s: want an integer 0..%d, got %v", field, name, limit, val)
			}
			props.SetUint(info.ID, uint32(n))
		}
	}
	return nil
}

// mapReader reads typed fields from plain data, remembering the first
// type error.
type mapReader struct {
	m      Map
	prefix string
	err    error
}

func (c *mapReader) int(k string, def int) int {
	v, ok := c.m[k]
	if !ok || v == nil {
		return def
	}
	n, ok := toInt(v)
	if !ok {
		if b, isBool := v.(bool); isBool {
			if b {
				return 1
			}
			return 0
		}
		c.fail(k, "an integer", v)
		return def
	}
	if n < 0 || n > 0xffffffff {
		c.fail(k, "an integer in range", v)
		return def
	}
	return int(n)
}

func (c *mapReader) bool(k string) bool {
	switch v := c.m[k].(type) {
	case nil:
		return false
	case bool:
		return v
	default:
		n, ok := toInt(v)
		if !ok {
			c.fail(k, "a boolean", v)
		}
		return n != 0
	}
}

func (c *mapReader) str(k string) string {
	switch v := c.m[k].(type) {
	case nil:
		return ""
	case string:
		return v
	case []byte:
		return string(v)
	default:
		c.fail(k, "a string", v)
		return ""
	}
}

func (c *mapReader) fail(k, want string, got any) {
	if c.err == nil {
		c.err = fmt.Errorf("%s%s: want %s, got %T(%v)", c.prefix, k, want, got, got)
	}
}

func toInt(v any) (int64, bool) {
	switch n := v.(type) {
	case int:
		return int64(n), true
	case int64:
		return n, true
	case int32:
		return int64(n), true
	case uint8:
		return int64(n), true
	case uint16:
		return int64(n), true
	case uint32:
		return int64(n), true
	case float64:
		if n != float64(int64(n)) {
			return 0, false
		}
		return int64(n), true
	}
	return 0, false
}
