package codec

import (
	"errors"
	"strings"
	"testing"
)

// TestCheckTopicName: the topic rules of a PUBLISH, for a topic a script
// chose.
func TestCheckTopicName(t *testing.T) {
	for topic, spec := range map[string]string{
		"":                         "MQTT-4.7.3-1",
		"a/+":                      "MQTT-3.3.2-2",
		"a/#":                      "MQTT-3.3.2-2",
		"a\xff":                    "MQTT-1.5.3-1",
		"a\x00b":                   "MQTT-1.5.3-2",
		strings.Repeat("a", 65536): "",
	} {
		err := CheckTopicName(topic)
		var e *Error
		if !errors.As(err, &e) {
			t.Errorf("%.20q: %v, want an *Error", topic, err)
			continue
		}
		if spec != "" && e.Spec != spec {
			t.Errorf("%.20q: %v, want %s", topic, err, spec)
		}
	}
	for _, ok := range []string{"a", "a/b", "$SYS/x", "/", "ä/ö"} {
		if err := CheckTopicName(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
}
