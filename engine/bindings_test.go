package engine_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/mqttlua/broker/codec"
	"github.com/mqttlua/broker/engine"
)

// TestBindings drives testdata/bindings/main.lua: each PUBLISH to
// cmd/<name> makes the script answer on result/<name>.
func TestBindings(t *testing.T) {
	srv, addr, logs := startServer(t, engine.Config{Scripts: filepath.Join("testdata", "bindings"), Workers: 2})
	c := dialRaw(t, addr, codec.V5)
	c.Connect("binder")
	ask := func(name, msg string) string {
		t.Helper()
		c.Send(&codec.Packet{Type: codec.PUBLISH, Topic: "cmd/" + name, Payload: []byte(msg)})
		p := c.Expect(codec.PUBLISH)
		if p.Topic != "result/"+name {
			t.Fatalf("want result/%s, got %s", name, p.Topic)
		}
		return string(p.Payload)
	}
	cases := []struct{ name, msg, want string }{
		{"incr", "", "1"},
		{"incr", "", "2"},
		{"workers", "", "2"}, // onWorkerStart ran once per VM
		{"json", `{"n":41}`, `{"n":42,"seen":true}`},
		{"info", "", "binder 5 true"},
		{"addr", "", "127.0.0.1: true nil closed binder nil 5 false"},
		{"unpack", "", "x/y z 7"},
		{"timer", "", "fired"},
		{"badarg", "", "bad argument #2 to"},
		{"sendclosed", "", "nil closed"},
		{"io", "", "nil nil nil"},
		{"badshared", "", "false 1"},
	}
	for _, tc := range cases {
		if got := ask(tc.name, tc.msg); !strings.Contains(got, tc.want) {
			t.Errorf("%s: want %q, got %q", tc.name, tc.want, got)
		}
	}
	// A second client on the other VM shares the counter.
	c2 := dialRaw(t, addr, codec.V311)
	c2.Connect("other")
	c2.Send(&codec.Packet{Type: codec.PUBLISH, Topic: "cmd/incr"})
	if p := c2.Expect(codec.PUBLISH); string(p.Payload) != "3" {
		t.Errorf("shared counter across VMs: got %s", p.Payload)
	}
	// server:close with a reason code and string.
	c.Send(&codec.Packet{Type: codec.PUBLISH, Topic: "cmd/kick"})
	d := c.Expect(codec.DISCONNECT)
	if d.ReasonCode != codec.AdministrativeAction || d.Properties.ReasonString != "kicked by script" {
		t.Fatalf("kick: %+v", d)
	}
	c.ExpectClosed()
	waitFor(t, "onClose recorded the reason", func() bool {
		v, ok := srv.Shared.Get("closed:1")
		return ok && v == "script_close"
	})
	if strings.Contains(logs.String(), "level=error") {
		t.Errorf("unexpected error logged:\n%s", logs.String())
	}
}

func TestConnectRefusedByScript(t *testing.T) {
	_, addr, _ := startServer(t, engine.Config{Scripts: filepath.Join("testdata", "bindings")})
	// A 5.0 reason code sent to a 3.1.1 client is mapped: 0x87 -> 0x05.
	c := dialRaw(t, addr, codec.V311)
	c.Send(&codec.Packet{Type: codec.CONNECT, ProtocolLevel: codec.V311, ClientID: "refuse-me", CleanSession: true})
	if a := c.Expect(codec.CONNACK); a.ReasonCode != codec.V3NotAuthorized {
		t.Fatalf("want 0x05, got %#x", byte(a.ReasonCode))
	}
	c.ExpectClosed()
	c5 := dialRaw(t, addr, codec.V5)
	c5.Send(&codec.Packet{Type: codec.CONNECT, ProtocolLevel: codec.V5, ClientID: "refuse-me", CleanSession: true})
	if a := c5.Expect(codec.CONNACK); a.ReasonCode != codec.NotAuthorized {
		t.Fatalf("want 0x87, got %#x", byte(a.ReasonCode))
	}
	c5.ExpectClosed()
	// onMqConnect returning false closes without an answer.
	d := dialRaw(t, addr, codec.V311)
	d.Send(&codec.Packet{Type: codec.CONNECT, ProtocolLevel: codec.V311, ClientID: "drop-me", CleanSession: true})
	d.ExpectClosed()
}

// TestDefaultHandlers: with no handlers at all the engine still completes
// every flow the protocol requires.
func TestDefaultHandlers(t *testing.T) {
	dir := t.TempDir()
	if err := osWriteFile(filepath.Join(dir, "main.lua"), "-- no handlers\n"); err != nil {
		t.Fatal(err)
	}
	_, addr, _ := startServer(t, engine.Config{Scripts: dir})
	c := dialRaw(t, addr, codec.V5)
	c.Connect("d")
	c.Send(&codec.Packet{Type: codec.PINGREQ})
	c.Expect(codec.PINGRESP)
	c.Send(&codec.Packet{Type: codec.PUBLISH, QoS: 1, PacketID: 4, Topic: "t"})
	if a := c.Expect(codec.PUBACK); a.PacketID != 4 {
		t.Fatal("PUBACK id")
	}
	c.Send(&codec.Packet{Type: codec.PUBLISH, QoS: 2, PacketID: 5, Topic: "t"})
	c.Expect(codec.PUBREC)
	c.Send(&codec.Packet{Type: codec.PUBREL, PacketID: 5})
	c.Expect(codec.PUBCOMP)
	c.Send(&codec.Packet{Type: codec.SUBSCRIBE, PacketID: 6, Subscriptions: []codec.Subscription{{Topic: "a"}, {Topic: "b"}}})
	if a := c.Expect(codec.SUBACK); len(a.ReasonCodes) != 2 || a.ReasonCodes[0] != codec.ImplementationSpecificError {
		t.Fatalf("SUBACK %v", a.ReasonCodes)
	}
	c.Send(&codec.Packet{Type: codec.UNSUBSCRIBE, PacketID: 7, Topics: []string{"a"}})
	c.Expect(codec.UNSUBACK)
	c.Send(&codec.Packet{Type: codec.DISCONNECT})
	c.ExpectClosed()
}
