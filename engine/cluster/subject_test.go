package cluster

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// TestSubjectRoundTrip: every topic maps to a subject with no empty
// token, whitespace or NATS wildcard, and back to itself.
func TestSubjectRoundTrip(t *testing.T) {
	for _, topic := range []string{
		"a", "a/b", "/", "//", "a//b", "/a", "a/", "$SYS/x", "a.b", "a*b", "a/*/b", "a/>", ">", "*",
		"%", "%25", "a b", "tab\there", "ü/ö", "\x7f", "a/%/b", "",
	} {
		checkTopic(t, topic)
	}
}

func checkTopic(t *testing.T, topic string) {
	t.Helper()
	esc, err := escapeTopic(topic)
	subj := msgPrefix + esc
	if err != nil {
		t.Fatalf("%q: %v", topic, err)
	}
	for _, tok := range strings.Split(strings.TrimPrefix(subj, msgPrefix), ".") {
		if tok == "" || tok == "*" || tok == ">" || strings.ContainsAny(tok, " \t\r\n*>") {
			t.Fatalf("%q -> %q: token %q", topic, subj, tok)
		}
	}
	back, err := subjectTopic(msgPrefix, subj)
	if err != nil || back != topic {
		t.Fatalf("%q -> %q -> %q, %v", topic, subj, back, err)
	}
}

func FuzzSubject(f *testing.F) {
	for _, s := range []string{"a/b", "a//b", "%2E", "a.b/*/>"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, topic string) {
		if !utf8.ValidString(topic) || len(topic) > 1000 {
			return
		}
		checkTopic(t, topic)
	})
}

// TestFilterSubjects: a filter draws exactly the subjects of the topics
// it matches, "#" including its parent level.
func TestFilterSubjects(t *testing.T) {
	for filter, want := range map[string]string{
		"a/b":         "mq.m.a.b",
		"a/+":         "mq.m.a.*",
		"#":           "mq.m.>",
		"a/#":         "mq.m.a mq.m.a.>",
		"+/#":         "mq.m.* mq.m.*.>",
		"a//+":        "mq.m.a.%.*",
		"a.b/*":       "mq.m.a%2Eb.%2A",
		"$share/g/a":  "mq.m.a",
		"$SYS/#":      "mq.m.$SYS mq.m.$SYS.>",
		"+":           "mq.m.*",
		"/":           "mq.m.%.%",
		"$share/g/#":  "mq.m.>",
		"a/%/#":       "mq.m.a.%25 mq.m.a.%25.>",
		"sensors/+/t": "mq.m.sensors.*.t",
	} {
		got, err := filterSubjects(msgPrefix, filter)
		if err != nil || strings.Join(got, " ") != want {
			t.Errorf("%q: %q, %v; want %q", filter, got, err, want)
		}
	}
	if _, err := escapeTopic(strings.Repeat("*", maxSubject)); err == nil {
		t.Error("an over-long subject was accepted")
	}
}
