package broker_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/mqttlua/broker/codec"
	"github.com/mqttlua/broker/engine"
	"github.com/mqttlua/broker/engine/enginetest"
)

// TestScriptAPI drives broker.publish, broker.clients, broker.kick and
// broker.stats from testdata/admin/main.lua.
func TestScriptAPI(t *testing.T) {
	_, addr, logs := enginetest.Start(t, engine.Config{Scripts: filepath.Join("testdata", "admin")})
	admin := enginetest.Dial(t, addr, codec.V311)
	admin.Connect("admin")
	admin.Send(&codec.Packet{Type: codec.SUBSCRIBE, PacketID: 1, Subscriptions: []codec.Subscription{{Topic: "admin/result"}, {Topic: "news/#", QoS: 1}}})
	admin.Expect(codec.SUBACK)
	victim := enginetest.Dial(t, addr, codec.V5)
	victim.Connect("victim")

	ask := func(cmd, msg string) string {
		t.Helper()
		admin.Send(&codec.Packet{Type: codec.PUBLISH, Topic: "admin/" + cmd, Payload: []byte(msg)})
		for {
			p := admin.Expect(codec.PUBLISH)
			if p.QoS > 0 {
				admin.Send(&codec.Packet{Type: codec.PUBACK, PacketID: p.PacketID})
			}
			if p.Topic == "admin/result" {
				return string(p.Payload)
			}
		}
	}
	if got := ask("publish", "today"); got != "reached 1" {
		t.Fatalf("publish: %q\n%s", got, logs)
	}
	if got := ask("clients", ""); got != "admin+[admin/result@0,news/#@1] victim+[]" {
		t.Fatalf("clients: %q", got)
	}
	if got := ask("stats", ""); got != "1 2 0" {
		t.Fatalf("stats: %q", got)
	}
	if got := ask("kick", "victim"); got != "true" {
		t.Fatalf("kick: %q", got)
	}
	d := victim.Expect(codec.DISCONNECT)
	if d.ReasonCode != codec.AdministrativeAction || d.Properties.ReasonString != "bye" {
		t.Fatalf("kick: %+v", d)
	}
	victim.ExpectClosed()
	if got := ask("kick", "nobody"); got != "false" {
		t.Fatalf("kick nobody: %q", got)
	}
	// The kick is counted by reason, and logged at info with the client.
	// (The count comes just before the log line: wait for both.)
	enginetest.WaitFor(t, "the close counted", func() bool { return ask("stats", "") == "1 2 1" })
	enginetest.WaitFor(t, "an info line for the kick", func() bool {
		return strings.Contains(logs.String(), `level=info msg="connection closed" client_id=victim fd=2 reason=script_close`)
	})
}
