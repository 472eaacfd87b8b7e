package engine_test

import (
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mqttlua/broker/codec"
	"github.com/mqttlua/broker/engine"
)

// TestMemoryBudgetStopsAllocatingCall: a handler allocating without end
// is stopped once it is past the worker's memory budget, long before its
// deadline; its client is closed with the reason logged, and the worker
// goes on serving the others.
func TestMemoryBudgetStopsAllocatingCall(t *testing.T) {
	_, addr, logs := startServer(t, engine.Config{Scripts: filepath.Join("testdata", "memory"), Workers: 1,
		ScriptMemory: 64 << 20, HandlerTimeout: 10 * time.Second})
	eater := dialRaw(t, addr, codec.V311)
	eater.Connect("eater")
	other := dialRaw(t, addr, codec.V311)
	other.Connect("other")
	start := time.Now()
	eater.Send(&codec.Packet{Type: codec.PUBLISH, Topic: "eat"})
	eater.ExpectClosed()
	if d := time.Since(start); d >= 10*time.Second {
		t.Fatalf("the allocating call ran %s: not stopped by its budget before the 10 s deadline", d)
	}
	waitFor(t, "the budget logged", func() bool { return strings.Contains(logs.String(), "exceeded the Lua memory budget of 64 MiB") })
	if strings.Contains(logs.String(), "ran past its deadline") {
		t.Fatal("stopped by the deadline, not the budget")
	}
	other.Send(&codec.Packet{Type: codec.PUBLISH, Topic: "count"})
	if p := other.Expect(codec.PUBLISH); string(p.Payload) != "0" {
		t.Fatalf("the other client got %q", p.Payload)
	}
}

// TestMemoryBudgetRebuildsHoardingWorker: a script that keeps 4 MiB per
// call in a global grows its worker past the budget across calls; the
// worker is rebuilt from the scripts (the global starts afresh), and the
// broker keeps serving.
func TestMemoryBudgetRebuildsHoardingWorker(t *testing.T) {
	_, addr, logs := startServer(t, engine.Config{Scripts: filepath.Join("testdata", "memory"), Workers: 1, ScriptMemory: 64 << 20})
	c := dialRaw(t, addr, codec.V311)
	c.Connect("hoarder")
	for i := 1; i <= 24; i++ {
		c.Send(&codec.Packet{Type: codec.PUBLISH, Topic: "keep"})
		c.Expect(codec.PUBLISH)
	}
	waitFor(t, "the worker rebuilt", func() bool { return strings.Contains(logs.String(), "over its memory budget of 64 MiB: rebuilt") })
	c.Send(&codec.Packet{Type: codec.PUBLISH, Topic: "count"})
	p := c.Expect(codec.PUBLISH)
	if n, _ := strconv.Atoi(string(p.Payload)); n >= 24 {
		t.Fatalf("after the rebuild the worker still keeps %d strings", n)
	}
}
