package codec

import (
	"strings"
	"unicode/utf8"
)

// decoder reads the fields of one packet body. Every read checks bounds and
// reports a malformed-packet error naming the field, so packet decoders can
// be written as straight-line code.
type decoder struct {
	b   []byte
	off int
}

func (d *decoder) remaining() int { return len(d.b) - d.off }

func (d *decoder) byte(field string) (byte, error) {
	if d.off >= len(d.b) {
		return 0, malformed(field, "packet ends before this field", "")
	}
	c := d.b[d.off]
	d.off++
	return c, nil
}

func (d *decoder) uint16(field string) (uint16, error) {
	if len(d.b)-d.off < 2 {
		return 0, malformed(field, "packet ends before this field", "")
	}
	v := uint16(d.b[d.off])<<8 | uint16(d.b[d.off+1])
	d.off += 2
	return v, nil
}

func (d *decoder) uint32(field string) (uint32, error) {
	if len(d.b)-d.off < 4 {
		return 0, malformed(field, "packet ends before this field", "")
	}
	b := d.b[d.off:]
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	d.off += 4
	return v, nil
}

// packetID reads a packet identifier, which must not be 0 where a packet
// has one ([MQTT-2.3.1-1]).
func (d *decoder) packetID() (uint16, error) {
	id, err := d.uint16("message_id")
	if err == nil && id == 0 {
		err = protocolErr("message_id", "packet identifier 0", "MQTT-2.3.1-1")
	}
	return id, err
}

// binary reads two-byte-length-prefixed bytes, aliasing the input.
func (d *decoder) binary(field string) ([]byte, error) {
	n, err := d.uint16(field)
	if err != nil {
		return nil, err
	}
	if int(n) > len(d.b)-d.off {
		return nil, malformed(field, "length prefix runs past the end of the packet", "")
	}
	v := d.b[d.off : d.off+int(n) : d.off+int(n)]
	d.off += int(n)
	return v, nil
}

// string reads a UTF-8 encoded string and copies it.
func (d *decoder) string(field string) (string, error) {
	b, err := d.binary(field)
	if err != nil {
		return "", err
	}
	if err := checkUTF8(b, field); err != nil {
		return "", err
	}
	return string(b), nil
}

// varint reads a variable byte integer (1.5.5 / 2.2.3).
func (d *decoder) varint(field string) (uint32, error) {
	v, n, err := decodeVarint(d.b[d.off:], field)
	if err != nil {
		return 0, err
	}
	d.off += n
	return v, nil
}

// decodeVarint decodes a variable byte integer at the start of b. It returns
// n == 0 and no error when b holds only a valid prefix.
func decodeVarint(b []byte, field string) (v uint32, n int, err error) {
	var shift uint
	for i := 0; i < len(b); i++ {
		c := b[i]
		if i == 4 {
			// [MQTT-1.5.5-1] at most four bytes (3.1.1 §2.2.3).
			return 0, 0, malformed(field, "variable byte integer longer than 4 bytes", "MQTT-1.5.5-1")
		}
		v |= uint32(c&0x7f) << shift
		if c&0x80 == 0 {
			// 5.0 [MQTT-1.5.5-1]: the minimum number of bytes. A trailing
			// zero continuation group means a non-minimal encoding.
			if i > 0 && c == 0 {
				return 0, 0, malformed(field, "variable byte integer not minimally encoded", "5.0:MQTT-1.5.5-1")
			}
			return v, i + 1, nil
		}
		shift += 7
	}
	if len(b) >= 4 {
		return 0, 0, malformed(field, "variable byte integer longer than 4 bytes", "MQTT-1.5.5-1")
	}
	return 0, 0, nil
}

// checkUTF8 enforces the rules for UTF-8 encoded strings: well-formed, no
// surrogates (Go's decoder rejects their encodings), no U+0000.
func checkUTF8[T string | []byte](b T, field string) error {
	for i := 0; i < len(b); {
		c := b[i]
		if c < utf8.RuneSelf {
			if c == 0 {
				// [MQTT-1.5.3-2]
				return malformed(field, "string contains U+0000", "MQTT-1.5.3-2")
			}
			i++
			continue
		}
		r, size := decodeRune(b[i:])
		if r == utf8.RuneError && size <= 1 {
			// [MQTT-1.5.3-1] ill-formed UTF-8, including encoded surrogates.
			return malformed(field, "string is not well-formed UTF-8", "MQTT-1.5.3-1")
		}
		i += size
	}
	return nil
}

// CheckTopicName reports whether topic may be a PUBLISH's topic name:
// not empty [MQTT-4.7.3-1], a valid UTF-8 string of at most 65535 bytes
// [MQTT-1.5.3-1], no wildcards [MQTT-3.3.2-2]. It is Check of a PUBLISH
// without building one, for a topic a script chose.
func CheckTopicName(topic string) error {
	if topic == "" {
		return &Error{Code: TopicNameInvalid, Field: "topic", Reason: "empty topic name", Spec: "MQTT-4.7.3-1"}
	}
	if err := checkEncUTF8(topic, "topic"); err != nil {
		return err
	}
	return checkTopicName(topic, "topic")
}

// checkTopicName validates a PUBLISH topic name. empty is allowed only for a
// 5.0 PUBLISH that carries a topic alias.
func checkTopicName(topic string, field string) error {
	// [MQTT-3.3.2-2] no wildcards in a topic name.
	// Two IndexByte scans: ContainsAny builds its byte set on every call,
	// and this runs for every PUBLISH in and every message routed.
	if strings.IndexByte(topic, '+') >= 0 || strings.IndexByte(topic, '#') >= 0 {
		return &Error{Code: TopicNameInvalid, Field: field, Reason: "topic name contains a wildcard", Spec: "MQTT-3.3.2-2"}
	}
	return nil
}

// checkTopicFilter validates a topic filter of SUBSCRIBE or UNSUBSCRIBE.
func checkTopicFilter(filter string, field string, version byte) error {
	if filter == "" {
		// [MQTT-4.7.3-1] at least one character.
		return &Error{Code: MalformedPacket, Field: field, Reason: "empty topic filter", Spec: "MQTT-4.7.3-1"}
	}
	if version == V5 && strings.HasPrefix(filter, "$share/") {
		rest := filter[len("$share/"):]
		slash := strings.IndexByte(rest, '/')
		// 5.0 §4.8.2: ShareName is at least one character, without
		// wildcards or '/', and is followed by '/' and a topic filter.
		if slash <= 0 || slash == len(rest)-1 || strings.ContainsAny(rest[:slash], "+#") {
			return &Error{Code: TopicFilterInvalid, Field: field, Reason: "shared subscription is not $share/{ShareName}/{filter}", Spec: "5.0:MQTT-4.8.2-1"}
		}
		filter = rest[slash+1:]
	}
	for i := 0; i < len(filter); i++ {
		switch filter[i] {
		case '#':
			// [MQTT-4.7.1-2] '#' alone in its level and last.
			if i != len(filter)-1 || (i > 0 && filter[i-1] != '/') {
				return &Error{Code: TopicFilterInvalid, Field: field, Reason: "'#' must be the last level on its own", Spec: "MQTT-4.7.1-2"}
			}
		case '+':
			// [MQTT-4.7.1-3] '+' occupies a whole level.
			if (i > 0 && filter[i-1] != '/') || (i < len(filter)-1 && filter[i+1] != '/') {
				return &Error{Code: TopicFilterInvalid, Field: field, Reason: "'+' must occupy a whole level", Spec: "MQTT-4.7.1-3"}
			}
		}
	}
	return nil
}

// Encoding helpers. They append to dst and never fail; callers check sizes
// first.

func appendUint16(dst []byte, v uint16) []byte { return append(dst, byte(v>>8), byte(v)) }

func appendUint32(dst []byte, v uint32) []byte {
	return append(dst, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

func appendString(dst []byte, s string) []byte {
	dst = appendUint16(dst, uint16(len(s)))
	return append(dst, s...)
}

func appendBinary(dst []byte, b []byte) []byte {
	dst = appendUint16(dst, uint16(len(b)))
	return append(dst, b...)
}

func appendVarint(dst []byte, v uint32) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v > 0 {
			c |= 0x80
		}
		dst = append(dst, c)
		if v == 0 {
			return dst
		}
	}
}

func varintLen(v uint32) int {
	switch {
	case v < 128:
		return 1
	case v < 16384:
		return 2
	case v < 2097152:
		return 3
	default:
		return 4
	}
}

// checkLen rejects strings and binary data too long for a 2-byte prefix.
func checkLen(n int, field string) error {
	if n > 65535 {
		return malformed(field, "longer than 65535 bytes", "")
	}
	return nil
}

// checkEncUTF8 validates a string the caller asked us to encode.
func checkEncUTF8(s, field string) error {
	if err := checkLen(len(s), field); err != nil {
		return err
	}
	return checkUTF8(s, field)
}

func decodeRune[T string | []byte](b T) (rune, int) {
	switch v := any(b).(type) {
	case string:
		return utf8.DecodeRuneInString(v)
	case []byte:
		return utf8.DecodeRune(v)
	}
	return utf8.RuneError, 0
}
