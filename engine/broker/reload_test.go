package broker_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mqttlua/broker/codec"
	"github.com/mqttlua/broker/engine"
	"github.com/mqttlua/broker/engine/broker"
	"github.com/mqttlua/broker/engine/enginetest"
)

// TestReloadKeepsEverything swaps the scripts while a publisher streams
// QoS 1 messages: connections, sessions, subscriptions, retained messages
// and shared values survive, every message is acknowledged and delivered
// exactly once, and the new scripts take over.
func TestReloadKeepsEverything(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"main.lua", "auth.lua", "acl.lua"} {
		b, _ := os.ReadFile(filepath.Join(enginetest.RepoDir(), "scripts", name))
		os.WriteFile(filepath.Join(dir, name), b, 0o644)
	}
	main := filepath.Join(dir, "main.lua")
	orig, _ := os.ReadFile(main)
	srv, addr, logs := enginetest.Start(t, engine.Config{Scripts: dir})
	k := srv.Broker()
	srv.Shared.Set("kept", "yes", 0)

	sub := enginetest.Dial(t, addr, codec.V311)
	sub.Connect("sub")
	sub.Send(&codec.Packet{Type: codec.SUBSCRIBE, PacketID: 1, Subscriptions: []codec.Subscription{{Topic: "s/#", QoS: 1}}})
	sub.Expect(codec.SUBACK)
	k.Inject(&broker.Message{Topic: "r/kept", Payload: []byte("retained"), Retain: true}, nil)
	pub := enginetest.Dial(t, addr, codec.V311)
	pub.Connect("pub")

	const n = 400
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 1; i <= n; i++ {
			pub.Send(&codec.Packet{Type: codec.PUBLISH, QoS: 1, PacketID: uint16(i), Topic: "s/x", Payload: []byte(fmt.Sprint(i))})
		}
	}()
	// The new scripts tag what they route.
	v2 := strings.Replace(string(orig), "  route(fd, data)", "  if data.topic == \"s/tag\" then data.message = \"v2\" end\n  route(fd, data)", 1)
	os.WriteFile(main, []byte(v2), 0o644)
	if err := srv.Reload(nil); err != nil {
		t.Fatal(err)
	}
	// The subscriber reads and acknowledges as it goes, as a client does:
	// one that stopped would be cut off as a slow consumer.
	got := map[string]int{}
	subDone := make(chan error, 1)
	go func() {
		for i := 0; i < n; i++ {
			p, err := sub.Next(5 * time.Second)
			if err != nil {
				subDone <- err
				return
			}
			got[string(p.Payload)]++
			b, _ := codec.Encode(&codec.Packet{Type: codec.PUBACK, PacketID: p.PacketID}, codec.V311)
			if _, err := sub.Conn.Write(b); err != nil {
				subDone <- err
				return
			}
		}
		subDone <- nil
	}()
	acks := map[uint16]int{}
	for len(acks) < n {
		p := pub.Expect(codec.PUBACK)
		acks[p.PacketID]++
	}
	if err := <-subDone; err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for i := 1; i <= n; i++ {
		if acks[uint16(i)] != 1 || got[fmt.Sprint(i)] != 1 {
			t.Fatalf("message %d: %d acks, %d deliveries", i, acks[uint16(i)], got[fmt.Sprint(i)])
		}
	}
	pub.ExpectNothing(50 * time.Millisecond)
	pub.Send(&codec.Packet{Type: codec.PUBLISH, Topic: "s/tag", Payload: []byte("v1")})
	if p := sub.Expect(codec.PUBLISH); string(p.Payload) != "v2" {
		t.Fatalf("new scripts not in use: %q", p.Payload)
	}
	// A broken script is refused with its position; the running ones stay.
	os.WriteFile(main, []byte(v2+"\nfunction broken(\n"), 0o644)
	err := srv.Reload(nil)
	if err == nil || !strings.Contains(err.Error(), "main.lua:") {
		t.Fatalf("broken reload: %v", err)
	}
	pub.Send(&codec.Packet{Type: codec.PUBLISH, Topic: "s/tag", Payload: []byte("v1")})
	if p := sub.Expect(codec.PUBLISH); string(p.Payload) != "v2" {
		t.Fatalf("after a refused reload: %q", p.Payload)
	}
	if v, _ := srv.Shared.Get("kept"); v != "yes" || k.RetainedCount() != 1 || k.SubscriptionCount() != 1 {
		t.Fatal("state lost across reload")
	}
	if strings.Contains(logs.String(), "level=error") {
		t.Fatalf("errors logged:\n%s", logs)
	}
}
