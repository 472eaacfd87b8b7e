package engine_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mqttlua/broker/codec"
	"github.com/mqttlua/broker/engine"
	"github.com/mqttlua/broker/engine/enginetest"
	"github.com/mqttlua/broker/engine/store"
)

// TestRetainedSurvivesRestart: retained messages set, cleared and expiring
// before a restart are, after it, as they were (the expired one gone); a
// second broker on the same data folder is refused.
func TestRetainedSurvivesRestart(t *testing.T) {
	for _, eng := range []string{"pebble", "bbolt"} {
		t.Run(eng, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			scripts := enginetest.CopyScripts(t, nil)
			cfg := engine.Config{Scripts: scripts, DataDir: dir, StoreEngine: eng}
			srv, addr, logs := startServer(t, cfg)
			pub := dialRaw(t, addr, codec.V5)
			pub.Connect("pub")
			send := func(id uint16, topic, payload string, expiry uint32) {
				p := &codec.Packet{Type: codec.PUBLISH, Topic: topic, Payload: []byte(payload), QoS: 1, PacketID: id, Retain: true}
				if expiry > 0 {
					p.Properties.Set(codec.PropMessageExpiry)
					p.Properties.MessageExpiry = expiry
				}
				pub.Send(p)
				if ack := pub.Expect(codec.PUBACK); ack.PacketID != id {
					t.Fatalf("PUBACK %d for %d", ack.PacketID, id)
				}
			}
			send(1, "keep/a", "1", 0)
			send(2, "keep/b", "2", 0)
			send(3, "keep/b", "", 0) // cleared
			send(4, "keep/c", "3", 1)
			if !strings.Contains(logs.String(), "persistence on") {
				t.Fatalf("not logged:\n%s", logs)
			}
			if _, err := engine.New(cfg); err == nil || !strings.Contains(err.Error(), "is in use by process") {
				t.Fatalf("a second broker on the folder: %v", err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			srv.Shutdown(ctx)
			cancel()
			time.Sleep(1100 * time.Millisecond) // keep/c expires while the broker is down

			_, addr, logs = startServer(t, cfg)
			if !strings.Contains(logs.String(), "retained=1") {
				t.Errorf("loaded:\n%s", logs)
			}
			sub := dialRaw(t, addr, codec.V311)
			sub.Connect("sub")
			sub.Send(&codec.Packet{Type: codec.SUBSCRIBE, PacketID: 1, Subscriptions: []codec.Subscription{{Topic: "keep/#", QoS: 1}}})
			sub.Expect(codec.SUBACK)
			p := sub.Expect(codec.PUBLISH)
			if p.Topic != "keep/a" || string(p.Payload) != "1" || !p.Retain {
				t.Fatalf("after the restart: %v", p)
			}
			sub.ExpectNothing(200 * time.Millisecond)
		})
	}
}

// TestDurableAcksInOrder: acknowledgements that wait for the store and
// those that need not keep the order of the PUBLISHes ([MQTT-4.6.0-2]).
func TestDurableAcksInOrder(t *testing.T) {
	_, addr, _ := startServer(t, engine.Config{Scripts: enginetest.CopyScripts(t, nil), DataDir: t.TempDir()})
	pub := dialRaw(t, addr, codec.V311)
	pub.Connect("pub")
	const n = 200
	for i := 1; i <= n; i++ {
		pub.Send(&codec.Packet{Type: codec.PUBLISH, Topic: "t/" + string(rune('a'+i%26)), Payload: []byte("x"), QoS: 1, PacketID: uint16(i), Retain: i%3 == 0})
	}
	for i := 1; i <= n; i++ {
		if ack := pub.Expect(codec.PUBACK); ack.PacketID != uint16(i) {
			t.Fatalf("PUBACK %d where %d was due", ack.PacketID, i)
		}
	}
}

// failingKV is a store whose writes fail while broken is set (a full
// disk).
type failingKV struct {
	store.KV
	mu     sync.Mutex
	broken bool
}

func (f *failingKV) Apply(b *store.Batch, sync bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.broken {
		return errors.New("write /data/000123.log: no space left on device")
	}
	return f.KV.Apply(b, sync)
}

// TestStoreFailureRefuses: while the store cannot be written, a retained
// QoS 1 message is not acknowledged: a 5.0 client gets PUBACK 0x80, a
// 3.1.1 client is disconnected; the failure is logged once; once the
// store can be written again, publishes are acknowledged again.
func TestStoreFailureRefuses(t *testing.T) {
	kv, err := store.Open(t.TempDir(), store.Pebble)
	if err != nil {
		t.Fatal(err)
	}
	f := &failingKV{KV: kv, broken: true}
	_, addr, logs := startServer(t, engine.Config{Scripts: enginetest.CopyScripts(t, nil), Store: f})
	v5 := dialRaw(t, addr, codec.V5)
	v5.Connect("v5")
	v5.Send(&codec.Packet{Type: codec.PUBLISH, Topic: "r/x", Payload: []byte("x"), QoS: 1, PacketID: 7, Retain: true})
	if ack := v5.Expect(codec.PUBACK); ack.ReasonCode != codec.UnspecifiedError {
		t.Fatalf("5.0 PUBACK %#x, want 0x80", byte(ack.ReasonCode))
	}
	v3 := dialRaw(t, addr, codec.V311)
	v3.Connect("v3")
	v3.Send(&codec.Packet{Type: codec.PUBLISH, Topic: "r/y", Payload: []byte("y"), QoS: 1, PacketID: 8, Retain: true})
	v3.ExpectClosed()
	if got := strings.Count(logs.String(), "the data folder cannot be written"); got != 1 {
		t.Errorf("failure logged %d times:\n%s", got, logs)
	}
	f.mu.Lock()
	f.broken = false
	f.mu.Unlock()
	v5.Send(&codec.Packet{Type: codec.PUBLISH, Topic: "r/x", Payload: []byte("x"), QoS: 1, PacketID: 9, Retain: true})
	if ack := v5.Expect(codec.PUBACK); ack.ReasonCode.IsError() {
		t.Fatalf("after recovery: PUBACK %#x", byte(ack.ReasonCode))
	}
}
