package broker

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/mqttlua/broker/engine/store"
)

// TestFigureRestart measures, for docs/persistence.md, how long loading
// takes with 10,000 persistent sessions of 100 queued QoS 1 messages each
// and 100,000 retained messages (64-byte payloads). It runs when
// MQTTLUA_FIGURES is set.
func TestFigureRestart(t *testing.T) {
	if os.Getenv("MQTTLUA_FIGURES") == "" {
		t.Skip("set MQTTLUA_FIGURES=1 to measure")
	}
	for _, e := range []store.Engine{store.Pebble, store.Bolt} {
		dir := t.TempDir()
		kv, err := store.Open(dir, e)
		if err != nil {
			t.Fatal(err)
		}
		payload := make([]byte, 64)
		var b store.Batch
		flush := func() {
			if err := kv.Apply(&b, false); err != nil {
				t.Fatal(err)
			}
			b = store.Batch{}
		}
		for i := range 100000 {
			b.Put(retainedKey(fmt.Sprintf("sensors/%06d/temp", i)), encodeMessage(&Message{Topic: fmt.Sprintf("sensors/%06d/temp", i), Payload: payload, QoS: 1, Retain: true}))
			if b.Len() == 10000 {
				flush()
			}
		}
		flush()
		for s := range 10000 {
			id := fmt.Sprintf("device-%05d", s)
			b.Put(sessionKey(id), []byte(`{"expiry":-1,"subs":[{"f":"cmd/`+id+`/#","q":1}]}`))
			for q := range 100 {
				d := delivery{msg: &Message{Topic: "cmd/" + id + "/x", Payload: payload, QoS: 1}, qos: 1}
				b.Put(seqKey(deliveryPrefix, id, uint64(q+1), 8), encodeDelivery(&d, 0, false))
			}
			if b.Len() >= 10000 {
				flush()
			}
		}
		flush()
		kv.Sync()
		kv.Close()

		start := time.Now()
		kv, err = store.Open(dir, e)
		if err != nil {
			t.Fatal(err)
		}
		k := New(Config{})
		nr, err := k.LoadRetained(kv)
		if err != nil {
			t.Fatal(err)
		}
		ns, nd, err := k.LoadSessions(kv)
		if err != nil {
			t.Fatal(err)
		}
		took := time.Since(start)
		kv.Close()
		t.Logf("%s: %d sessions, %d queued messages, %d retained loaded in %s", e, ns, nd, nr, took.Round(time.Millisecond))
	}
}
