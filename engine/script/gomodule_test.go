package script_test

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/mqttlua/broker/codec"
	"github.com/mqttlua/broker/engine"
	"github.com/mqttlua/broker/engine/script"
)

// registry is a Go value a program embedding the engine hands to scripts.
type registry struct {
	mu      sync.Mutex
	owners  map[string]string
	Lookups int `luar:"lookups"`
}

func (r *registry) Owner(id string) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.Lookups++
	o, ok := r.owners[id]
	return o, ok
}

// TestGoModule: Go functions, a struct's methods and tagged fields reach
// scripts through script.GoModule, in every VM, without a binding.
func TestGoModule(t *testing.T) {
	dir := t.TempDir()
	src := `
function onMqPublish(server, fd, fromId, data)
  local owner, ok = devices.registry:owner(data.topic)
  local sum = devices.add(20, 22)
  local kind = require("devices").kinds[data.topic] or "none"
  server:send(fd, { type = mqtt.PUBLISH, topic = "result",
    message = table.concat({ owner ~= "" and owner or "-", tostring(ok), sum, kind, devices.registry.lookups }, " ") })
end
`
	if err := os.WriteFile(filepath.Join(dir, "main.lua"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	reg := &registry{owners: map[string]string{"lamp": "alice"}}
	mod := script.GoModule("devices", map[string]any{
		"registry": reg,
		"add":      func(a, b int) int { return a + b },
		"kinds":    map[string]string{"lamp": "light"},
	})
	_, addr, logs := startServer(t, engine.Config{Scripts: dir, Workers: 2, Modules: []script.Module{mod}})
	for i, tc := range []struct{ topic, want string }{
		{"lamp", "alice true 42 light 1"},
		{"fan", "- false 42 none 2"}, // another connection, the other VM, the same Go value
	} {
		c := dialRaw(t, addr, codec.V311)
		c.Connect(string(rune('a' + i)))
		c.Send(&codec.Packet{Type: codec.PUBLISH, Topic: tc.topic})
		if got := string(c.Expect(codec.PUBLISH).Payload); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.topic, got, tc.want)
		}
	}
	if strings.Contains(logs.String(), "level=error") {
		t.Errorf("unexpected error logged:\n%s", logs.String())
	}
}
