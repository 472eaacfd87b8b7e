package script_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/mqttlua/broker/codec"
	"github.com/mqttlua/broker/engine"
)

// TestBindingContexts: the broker bindings that act on the packet being
// handled raise a clear error out of their handler, for another
// connection, or on a connection the script answered without a session.
func TestBindingContexts(t *testing.T) {
	_, addr, logs := startServer(t, engine.Config{Scripts: filepath.Join("testdata", "contexts")})
	defer func() {
		if t.Failed() {
			t.Log(logs.String())
		}
	}()
	ask := func(c interface {
		Send(*codec.Packet)
		Expect(codec.Type) *codec.Packet
	}, p *codec.Packet, want string) {
		t.Helper()
		c.Send(p)
		got := c.Expect(codec.PUBLISH)
		if got.Topic != "err" || !strings.Contains(string(got.Payload), want) {
			t.Errorf("%s: got %s %q, want an error containing %q", p.Topic, got.Topic, got.Payload, want)
		}
	}
	c := dialRaw(t, addr, codec.V311)
	c.Connect("kit")
	ask(c, &codec.Packet{Type: codec.PUBLISH, Topic: "accept"}, "broker.accept may only be called in onMqConnect or onMqAuth, not in onMqPublish")
	ask(c, &codec.Packet{Type: codec.PUBLISH, Topic: "timer"}, "broker.route may only be called in onMqPublish, not in a timer")
	ask(c, &codec.Packet{Type: codec.PUBLISH, Topic: "otherfd"}, "is not the connection whose onMqPublish is running")

	raw := dialRaw(t, addr, codec.V311)
	raw.Connect("raw")
	ask(raw, &codec.Packet{Type: codec.SUBSCRIBE, PacketID: 1, Subscriptions: []codec.Subscription{{Topic: "a"}}},
		"broker.subscribe: fd 2 has no session: its CONNECT was answered without broker.accept")
}
