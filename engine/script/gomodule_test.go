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
// Every VM calls it at once. gopher-luar copies the whole struct behind a
// pointer to read any field (reading Site raced with Owner's writes when
// the mutex and the counter sat in the struct), so what changes lives
// behind a pointer and is reached through methods.
type registry struct {
	state *registryState
	Site  string `luar:"site"` // never changes
}

type registryState struct {
	mu      sync.Mutex
	owners  map[string]string
	lookups int
}

func (r *registry) Owner(id string) (string, bool) {
	r.state.mu.Lock()
	defer r.state.mu.Unlock()
	r.state.lookups++
	o, ok := r.state.owners[id]
	return o, ok
}

// Lookups returns how many times Owner was called.
func (r *registry) Lookups() int {
	r.state.mu.Lock()
	defer r.state.mu.Unlock()
	return r.state.lookups
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
    message = table.concat({ owner ~= "" and owner or "-", tostring(ok), sum, kind, devices.registry:lookups(), devices.registry.site }, " ") })
end
`
	if err := os.WriteFile(filepath.Join(dir, "main.lua"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	reg := &registry{state: &registryState{owners: map[string]string{"lamp": "alice"}}, Site: "hq"}
	mod := script.GoModule("devices", map[string]any{
		"registry": reg,
		"add":      func(a, b int) int { return a + b },
		"kinds":    map[string]string{"lamp": "light"},
	})
	_, addr, logs := startServer(t, engine.Config{Scripts: dir, Workers: 2, Modules: []script.Module{mod}})
	for i, tc := range []struct{ topic, want string }{
		{"lamp", "alice true 42 light 1 hq"},
		{"fan", "- false 42 none 2 hq"}, // another connection, the other VM, the same Go value
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
