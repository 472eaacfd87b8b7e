package cluster

import (
	"errors"
	"strings"
)

// NATS subjects for MQTT topics. Each topic level becomes one subject
// token; a level is escaped byte by byte so that no topic can make a NATS
// wildcard, separator or empty token (nats-server's own mapping leaves
// '*' and '>' inside topics as wildcards):
//
//   - an empty level is the token "%" (a literal '%' is escaped, so "%"
//     alone never comes from a non-empty level);
//   - '.', '*', '>', '%', bytes up to ' ' and DEL are "%XX" (hex);
//   - every other byte, UTF-8 included, is itself.
//
// Topics starting with '$' need nothing: every subject starts with our
// own prefix ("mq.m." for messages), so none collides with NATS's "$JS.",
// "$KV." or "$SYS.". The mapping is one to one (TestSubjectRoundTrip).
//
// A filter's '+' is the token wildcard '*', and "#" is '>' plus, because
// MQTT's "#" also matches its parent level ("a/#" matches "a"), the
// parent's own subject: "a/#" is two subjects, "mq.m.a" and "mq.m.a.>".

// maxSubject bounds an escaped subject: past the embedded server's
// control line (see node.go) NATS would refuse it.
const maxSubject = 60 << 10

var errSubjectTooLong = errors.New("topic too long for the cluster's subjects")

const hexDigits = "0123456789ABCDEF"

func escapeByte(c byte) bool {
	return c <= ' ' || c == 0x7f || c == '.' || c == '*' || c == '>' || c == '%'
}

// appendLevel appends one topic level as a subject token.
func appendLevel(dst []byte, level string) []byte {
	if level == "" {
		return append(dst, '%')
	}
	for i := 0; i < len(level); i++ {
		c := level[i]
		if escapeByte(c) {
			dst = append(dst, '%', hexDigits[c>>4], hexDigits[c&15])
			continue
		}
		dst = append(dst, c)
	}
	return dst
}

// escapeTopic is a topic name as subject tokens, without a prefix: the
// subject of a topic under prefix ("mq.m.") is prefix + escapeTopic.
func escapeTopic(topic string) (string, error) {
	b := make([]byte, 0, len(topic)+8)
	for i, level := range strings.Split(topic, "/") {
		if i > 0 {
			b = append(b, '.')
		}
		b = appendLevel(b, level)
	}
	if len(b) > maxSubject-len(msgPrefix) {
		return "", errSubjectTooLong
	}
	return string(b), nil
}

// filterSubjects are the subjects a topic filter draws: one, or two for a
// filter ending in "#" below the top level. A shared subscription
// "$share/g/f" draws f's.
func filterSubjects(prefix, filter string) ([]string, error) {
	if rest, ok := strings.CutPrefix(filter, "$share/"); ok {
		if _, f, ok := strings.Cut(rest, "/"); ok {
			filter = f
		}
	}
	levels := strings.Split(filter, "/")
	b := make([]byte, 0, len(prefix)+len(filter)+8)
	b = append(b, prefix...)
	var out []string
	for i, level := range levels {
		if level == "#" {
			if i > 0 {
				out = append(out, string(b[:len(b)-1])) // the parent level itself
			}
			b = append(b, '>')
			break
		}
		if level == "+" {
			b = append(b, '*')
		} else {
			b = appendLevel(b, level)
		}
		if i < len(levels)-1 {
			b = append(b, '.')
		}
	}
	if len(b) > maxSubject {
		return nil, errSubjectTooLong
	}
	return append(out, string(b)), nil
}

// subjectTopic inverts prefix + escapeTopic.
func subjectTopic(prefix, subject string) (string, error) {
	rest, ok := strings.CutPrefix(subject, prefix)
	if !ok {
		return "", errors.New("not a topic subject")
	}
	var b strings.Builder
	for i, tok := range strings.Split(rest, ".") {
		if i > 0 {
			b.WriteByte('/')
		}
		if tok == "%" {
			continue
		}
		for j := 0; j < len(tok); j++ {
			c := tok[j]
			if c != '%' {
				b.WriteByte(c)
				continue
			}
			if j+2 >= len(tok) {
				return "", errors.New("bad escape in subject")
			}
			hi, lo := strings.IndexByte(hexDigits, tok[j+1]), strings.IndexByte(hexDigits, tok[j+2])
			if hi < 0 || lo < 0 {
				return "", errors.New("bad escape in subject")
			}
			b.WriteByte(byte(hi<<4 | lo))
			j += 2
		}
	}
	return b.String(), nil
}
