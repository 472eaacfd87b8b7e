package script_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/mqttlua/broker/engine"
	"github.com/mqttlua/broker/engine/script"
)

// sharedVMs returns n VMs of one server: they share one store.
func sharedVMs(t *testing.T, n int) []*script.VM {
	t.Helper()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "main.lua"), []byte("-- nothing\n"), 0o644)
	srv, err := engine.New(engine.Config{Scripts: dir, Listen: []string{"127.0.0.1:0"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	var vms []*script.VM
	for i := range n {
		vm, err := srv.NewVM(100 + i)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(vm.Close)
		vms = append(vms, vm)
	}
	return vms
}

// TestSharedStoreValues: tables stored by value, insert-if-absent,
// compare-and-set, keys by prefix, sets, and expiry set and refreshed.
func TestSharedStoreValues(t *testing.T) {
	vms := sharedVMs(t, 2)
	if err := vms[0].L.DoString(`
local cfg = { limit = 10, tags = { "a", "b" } }
shared.set("cfg", cfg)
cfg.limit = 99 -- a copy was stored
assert(shared.add("lock", "me") == true and shared.add("lock", "you") == false, "add")
assert(shared.cas("n", nil, 1), "cas from absent")
local ok, cur = shared.cas("n", 5, 6)
assert(not ok and cur == 1, "cas refused with the current value")
assert(shared.cas("n", 1, 2), "cas")
shared.set("user:alice", 1) shared.set("user:bob", 2) shared.set("other", 3)
assert(shared.sadd("online", "alice", "bob", "alice") == 2, "sadd counts new members")
assert(shared.srem("online", "bob", "carol") == 1, "srem counts removed members")
shared.set("short", "x", 60)
assert(shared.expire("short", 0) == true and shared.expire("absent", 5) == false, "expire")
local ok2, err = pcall(shared.sadd, "cfg", "x")
assert(not ok2 and tostring(err):find("holds a table, not a set"), "sadd on a table")
`); err != nil {
		t.Fatal(err)
	}
	// The other worker sees it all.
	if err := vms[1].L.DoString(`
local cfg = shared.get("cfg")
assert(cfg.limit == 10 and cfg.tags[2] == "b", "table by value")
assert(shared.get("lock") == "me" and shared.get("n") == 2, "add and cas")
local keys = shared.keys("user:")
assert(#keys == 2 and keys[1] == "user:alice" and keys[2] == "user:bob", "keys by prefix")
assert(shared.scard("online") == 1 and shared.sismember("online", "alice") and not shared.sismember("online", "bob"), "set")
assert(shared.smembers("online")[1] == "alice", "smembers")
assert(shared.srem("online", "alice") == 1 and shared.get("online") == nil, "an emptied set is gone")
`); err != nil {
		t.Fatal(err)
	}
}

// TestSharedStoreAtomic: compare-and-set loops and set additions from
// four workers at once lose nothing.
func TestSharedStoreAtomic(t *testing.T) {
	vms := sharedVMs(t, 4)
	var wg sync.WaitGroup
	errs := make(chan error, len(vms))
	for i, vm := range vms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- vm.L.DoString(fmt.Sprintf(`
for j = 1, 500 do
  local cur
  repeat
    cur = shared.get("count") -- nil: absent, which cas takes as the old value too
  until shared.cas("count", cur, (cur or 0) + 1)
  shared.sadd("members", "w%d-" .. j)
end`, i))
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := vms[0].L.DoString(`assert(shared.get("count") == 2000, "count " .. tostring(shared.get("count"))) assert(shared.scard("members") == 2000, "members")`); err != nil {
		t.Fatal(err)
	}
}
