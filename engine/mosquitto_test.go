package engine_test

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/mqttlua/broker/engine/enginetest"
)

// TestMosquittoClients: mosquitto_sub receives what mosquitto_pub sends
// through the Simps raw script, at every QoS and protocol version.
func TestMosquittoClients(t *testing.T) {
	sub := enginetest.MosquittoTool(t, "mosquitto_sub")
	pub := enginetest.MosquittoTool(t, "mosquitto_pub")
	_, addr, _ := startServer(t, simpsConfig())
	host, port, _ := strings.Cut(addr, ":")
	for _, v := range []string{"mqttv31", "mqttv311", "mqttv5"} {
		t.Run(v, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var out bytes.Buffer
			s := exec.CommandContext(ctx, sub, "-h", host, "-p", port, "-V", v, "-t", "m/#", "-q", "2", "-C", "3", "-v", "-i", "sub-"+v)
			s.Stdout = &out
			s.Stderr = &out
			if err := s.Start(); err != nil {
				t.Fatal(err)
			}
			// mosquitto_sub has subscribed once the broker lists it.
			time.Sleep(300 * time.Millisecond)
			for q := 0; q < 3; q++ {
				p := exec.CommandContext(ctx, pub, "-h", host, "-p", port, "-V", v, "-t", "m/"+v, "-m", "q"+string(rune('0'+q)), "-q", string(rune('0'+q)), "-i", "pub-"+v)
				if o, err := p.CombinedOutput(); err != nil {
					t.Fatalf("mosquitto_pub -q %d: %v %s", q, err, o)
				}
			}
			if err := s.Wait(); err != nil {
				t.Fatalf("mosquitto_sub: %v %s", err, out.String())
			}
			want := "m/" + v + " q0\nm/" + v + " q1\nm/" + v + " q2\n"
			if out.String() != want {
				t.Fatalf("want %q, got %q", want, out.String())
			}
		})
	}
}
