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

// FieldKind is the kind of value a scalar field of the mapping holds.
type FieldKind uint8

// The field kinds.
const (
	KindInt    FieldKind = iota // an integer
	KindBool                    // a flag; 0/1 are accepted when reading
	KindString                  // text
	KindBytes                   // binary: a string in plain data and in Lua
)

// Field is one scalar field of the data mapping. Fields drives ToMap and
// FromMap, and the engine's Lua tables, so that each name and each rule
// for when a field is present is written once.
type Field struct {
	Name string
	Kind FieldKind
	// Max is the largest value of an integer field.
	Max int
	// When reports whether p, at protocol level version, carries the
	// field (nil: always).
	When func(p *Packet, version byte) bool
	// The field's value in p: the getter of its Kind is set. Typed
	// getters, not one returning a Value: the engine calls them for every
	// field of every packet a handler gets.
	Int   func(p *Packet) int
	Bool  func(p *Packet) bool
	Str   func(p *Packet) string
	Bytes func(p *Packet) []byte
	// The setter of its Kind stores a value read from data, where the
	// field is present.
	SetInt   func(p *Packet, n int)
	SetBool  func(p *Packet, b bool)
	SetStr   func(p *Packet, s string)
	SetBytes func(p *Packet, b []byte)
}

func intField(name string, max int, get func(p *Packet) int, set func(p *Packet, n int), when func(p *Packet, v byte) bool) Field {
	return Field{Name: name, Kind: KindInt, Max: max, When: when, Int: get, SetInt: set}
}

func boolField(name string, get func(p *Packet) bool, set func(p *Packet, b bool)) Field {
	return Field{Name: name, Kind: KindBool, Bool: get, SetBool: set}
}

func v5Only(_ *Packet, v byte) bool { return v == V5 }

var (
	fieldMessageID = intField("message_id", 0xffff, func(p *Packet) int { return int(p.PacketID) }, func(p *Packet, n int) { p.PacketID = uint16(n) }, nil)
	fieldCode      = intField("code", 0xff, func(p *Packet) int { return int(p.ReasonCode) }, func(p *Packet, n int) { p.ReasonCode = ReasonCode(n) }, v5Only)
	ackFields      = []Field{fieldMessageID, fieldCode}
)

// packetFields are the scalar fields of each packet type, in the order
// they are written.
var packetFields = [16][]Field{
	CONNECT: {
		{Name: "protocol_name", Kind: KindString,
			Str: func(p *Packet) string {
				if p.ProtocolName == "" {
					return protocolName(p.ProtocolLevel)
				}
				return p.ProtocolName
			},
			SetStr: func(p *Packet, s string) { p.ProtocolName = s }},
		intField("protocol_level", 0xff, func(p *Packet) int { return int(p.ProtocolLevel) }, func(p *Packet, n int) { p.ProtocolLevel = byte(n) }, nil),
		boolField("clean_session", func(p *Packet) bool { return p.CleanSession }, func(p *Packet, b bool) { p.CleanSession = b }),
		intField("keep_alive", 0xffff, func(p *Packet) int { return int(p.KeepAlive) }, func(p *Packet, n int) { p.KeepAlive = uint16(n) }, nil),
		{Name: "client_id", Kind: KindString,
			Str:    func(p *Packet) string { return p.ClientID },
			SetStr: func(p *Packet, s string) { p.ClientID = s }},
		{Name: "user_name", Kind: KindString,
			When:   func(p *Packet, _ byte) bool { return p.UsernameFlag || p.Username != "" },
			Str:    func(p *Packet) string { return p.Username },
			SetStr: func(p *Packet, s string) { p.UsernameFlag, p.Username = true, s }},
		{Name: "password", Kind: KindBytes,
			When:     func(p *Packet, _ byte) bool { return p.PasswordFlag || p.Password != nil },
			Bytes:    func(p *Packet) []byte { return p.Password },
			SetBytes: func(p *Packet, b []byte) { p.PasswordFlag, p.Password = true, b }},
	},
	CONNACK: {
		boolField("session_present", func(p *Packet) bool { return p.SessionPresent }, func(p *Packet, b bool) { p.SessionPresent = b }),
		intField("code", 0xff, func(p *Packet) int { return int(p.ReasonCode) }, func(p *Packet, n int) { p.ReasonCode = ReasonCode(n) }, nil),
	},
	PUBLISH: {
		boolField("dup", func(p *Packet) bool { return p.Dup }, func(p *Packet, b bool) { p.Dup = b }),
		intField("qos", 2, func(p *Packet) int { return int(p.QoS) }, func(p *Packet, n int) { p.QoS = byte(n) }, nil),
		boolField("retain", func(p *Packet) bool { return p.Retain }, func(p *Packet, b bool) { p.Retain = b }),
		{Name: "topic", Kind: KindString,
			Str:    func(p *Packet) string { return p.Topic },
			SetStr: func(p *Packet, s string) { p.Topic = s }},
		{Name: "message", Kind: KindBytes,
			Bytes:    func(p *Packet) []byte { return p.Payload },
			SetBytes: func(p *Packet, b []byte) { p.Payload = b }},
		intField("message_id", 0xffff, func(p *Packet) int { return int(p.PacketID) }, func(p *Packet, n int) { p.PacketID = uint16(n) },
			func(p *Packet, _ byte) bool { return p.QoS > 0 }),
	},
	PUBACK:      ackFields,
	PUBREC:      ackFields,
	PUBREL:      ackFields,
	PUBCOMP:     ackFields,
	SUBSCRIBE:   {fieldMessageID},
	SUBACK:      {fieldMessageID},
	UNSUBSCRIBE: {fieldMessageID},
	UNSUBACK:    {fieldMessageID},
	DISCONNECT:  {fieldCode},
	AUTH:        {fieldCode},
}

// Fields returns the scalar fields of a packet type. The compound fields
// (will, topics, filters, codes, properties) are read and written by
// Compounds and SetCompounds.
func Fields(t Type) []Field {
	if t > 15 {
		return nil
	}
	return packetFields[t]
}

// CompoundNames lists the compound fields a packet type may carry. The
// slices are shared: callers must not change them.
func CompoundNames(t Type) []string {
	switch t {
	case CONNECT:
		return compoundsConnect
	case SUBSCRIBE:
		return compoundsSubscribe
	case SUBACK, UNSUBACK:
		return compoundsAcks
	case UNSUBSCRIBE:
		return compoundsUnsubscribe
	case PINGREQ, PINGRESP:
		return nil
	}
	return compoundsOther
}

// The compound field names by packet type, made once: CompoundNames runs
// for every message a script routes.
var (
	compoundsConnect     = []string{"will", "properties"}
	compoundsSubscribe   = []string{"topics", "filters", "properties"}
	compoundsAcks        = []string{"codes", "properties"}
	compoundsUnsubscribe = []string{"topics", "properties"}
	compoundsOther       = []string{"properties"}
)

// Compounds calls set with each compound field of p that is present, as
// plain data.
func Compounds(p *Packet, version byte, set func(name string, v any)) {
	if p.Type == CONNECT {
		version = p.ProtocolLevel
	}
	v5 := version == V5
	switch p.Type {
	case CONNECT:
		if w := p.Will; w != nil {
			wm := Map{"qos": int(w.QoS), "retain": w.Retain, "topic": w.Topic, "message": string(w.Payload)}
			if v5 && !w.Properties.Empty() {
				wm["properties"] = PropertiesToMap(&w.Properties, willProps)
			}
			set("will", wm)
		}
	case SUBSCRIBE:
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
		set("topics", topics)
		set("filters", filters)
	case SUBACK, UNSUBACK:
		if p.Type == SUBACK || v5 {
			codes := make([]any, len(p.ReasonCodes))
			for i, c := range p.ReasonCodes {
				codes[i] = int(c)
			}
			set("codes", codes)
		}
	case UNSUBSCRIBE:
		topics := make([]any, len(p.Topics))
		for i, t := range p.Topics {
			topics[i] = t
		}
		set("topics", topics)
	}
	if v5 && !p.Properties.Empty() {
		set("properties", PropertiesToMap(&p.Properties, p.Type))
	}
}

// ToMap returns p, decoded at protocol level version, as plain data.
func ToMap(p *Packet, version byte) Map {
	if p.Type == CONNECT {
		version = p.ProtocolLevel
	}
	m := Map{"type": int(p.Type)}
	for _, f := range Fields(p.Type) {
		if f.When != nil && !f.When(p, version) {
			continue
		}
		switch f.Kind {
		case KindInt:
			m[f.Name] = f.Int(p)
		case KindBool:
			m[f.Name] = f.Bool(p)
		case KindString:
			m[f.Name] = f.Str(p)
		case KindBytes:
			m[f.Name] = string(f.Bytes(p))
		}
	}
	Compounds(p, version, func(name string, v any) { m[name] = v })
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
// zero, but a CONNECT's protocol level, which is 3.1.1. The result is not
// validated: Append does that.
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
	for _, f := range Fields(p.Type) {
		if v, ok := m[f.Name]; !ok || v == nil {
			continue
		}
		switch f.Kind {
		case KindInt:
			n := c.int(f.Name, 0)
			if n > f.Max {
				c.fail(f.Name, fmt.Sprintf("an integer 0..%d", f.Max), m[f.Name])
			}
			f.SetInt(p, n)
		case KindBool:
			f.SetBool(p, c.bool(f.Name))
		case KindString:
			f.SetStr(p, c.str(f.Name))
		case KindBytes:
			f.SetBytes(p, []byte(c.str(f.Name)))
		}
	}
	if c.err != nil {
		return nil, c.err
	}
	if p.Type == CONNECT {
		if _, ok := m["protocol_level"]; !ok {
			p.ProtocolLevel = V311
		}
	}
	if err := SetCompounds(p, func(name string) (any, error) { return m[name], nil }); err != nil {
		return nil, err
	}
	return p, nil
}

// SetCompounds reads p's compound fields from get, which returns a
// field's plain data (nil when it is absent).
func SetCompounds(p *Packet, get func(name string) (any, error)) error {
	switch p.Type {
	case CONNECT:
		v, err := get("will")
		if err != nil {
			return err
		}
		if wm, ok := v.(Map); ok {
			wc := mapReader{m: wm, prefix: "will."}
			p.Will = &Will{QoS: byte(wc.int("qos", 0)), Retain: wc.bool("retain"),
				Topic: wc.str("topic"), Payload: []byte(wc.str("message"))}
			if err := wc.err; err != nil {
				return err
			}
			if err := PropertiesFromMap(wm["properties"], &p.Will.Properties, "will.properties"); err != nil {
				return err
			}
		} else if v != nil {
			return fmt.Errorf("will: want a table, got %T", v)
		}
	case SUBSCRIBE:
		filters, err := get("filters")
		if err != nil {
			return err
		}
		topics, err := get("topics")
		if err != nil {
			return err
		}
		if err := subscriptionsFromMap(Map{"filters": filters, "topics": topics}, p); err != nil {
			return err
		}
	case UNSUBSCRIBE:
		v, err := get("topics")
		if err != nil {
			return err
		}
		switch topics := v.(type) {
		case []any:
			for i, t := range topics {
				s, ok := t.(string)
				if !ok {
					return fmt.Errorf("topics[%d]: want a string, got %T", i+1, t)
				}
				p.Topics = append(p.Topics, s)
			}
		case nil:
		default:
			return fmt.Errorf("topics: want a list of topic filters, got %T", topics)
		}
	case SUBACK, UNSUBACK:
		v, err := get("codes")
		if err != nil {
			return err
		}
		if codes, ok := v.([]any); ok {
			for i, v := range codes {
				n, ok := toInt(v)
				if !ok || n < 0 || n > 255 {
					return fmt.Errorf("codes[%d]: want a reason code, got %v", i+1, v)
				}
				p.ReasonCodes = append(p.ReasonCodes, ReasonCode(n))
			}
		} else if v != nil {
			return fmt.Errorf("codes: want a list, got %T", v)
		}
	}
	if p.Type == PINGREQ || p.Type == PINGRESP {
		return nil
	}
	v, err := get("properties")
	if err != nil {
		return err
	}
	return PropertiesFromMap(v, &p.Properties, "properties")
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
