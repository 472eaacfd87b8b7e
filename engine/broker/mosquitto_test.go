package broker_test

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/mqttlua/broker/engine/enginetest"
)

// TestMosquittoClientsWithDefaultScripts: mosquitto_pub/mosquitto_sub
// through the default scripts: QoS 0-2 on every protocol version, a
// retained message for a late subscriber, and its clearing.
func TestMosquittoClientsWithDefaultScripts(t *testing.T) {
	subBin := enginetest.MosquittoTool(t, "mosquitto_sub")
	pubBin := enginetest.MosquittoTool(t, "mosquitto_pub")
	_, k, addr := startBroker(t, nil)
	host, port, _ := strings.Cut(addr, ":")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	run := func(bin string, args ...string) string {
		t.Helper()
		out, err := exec.CommandContext(ctx, bin, append([]string{"-h", host, "-p", port}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v: %v %s", bin, args, err, out)
		}
		return string(out)
	}
	for _, v := range []string{"mqttv31", "mqttv311", "mqttv5"} {
		sub := exec.CommandContext(ctx, subBin, "-h", host, "-p", port, "-V", v, "-t", "m/"+v+"/#", "-q", "2", "-C", "3", "-v", "-i", "sub-"+v)
		var out strings.Builder
		sub.Stdout, sub.Stderr = &out, &out
		if err := sub.Start(); err != nil {
			t.Fatal(err)
		}
		enginetest.WaitFor(t, v+" subscription", func() bool {
			ci, ok := k.Info("sub-" + v)
			return ok && len(ci.Subscriptions) == 1
		})
		for q := 0; q < 3; q++ {
			run(pubBin, "-V", v, "-t", "m/"+v+"/x", "-m", "q"+string(rune('0'+q)), "-q", string(rune('0'+q)))
		}
		if err := sub.Wait(); err != nil {
			t.Fatalf("%s: mosquitto_sub: %v %s", v, err, out.String())
		}
		want := "m/" + v + "/x q0\nm/" + v + "/x q1\nm/" + v + "/x q2\n"
		if out.String() != want {
			t.Fatalf("%s: want %q, got %q", v, want, out.String())
		}
	}
	run(pubBin, "-t", "status/a", "-m", "on", "-r", "-q", "1")
	if got := run(subBin, "-t", "status/#", "-v", "-C", "1", "-W", "5"); got != "status/a on\n" {
		t.Fatalf("retained: got %q", got)
	}
	run(pubBin, "-t", "status/a", "-n", "-r")
	enginetest.WaitFor(t, "retained message cleared", func() bool { return k.RetainedCount() == 0 })
}
