package broker_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mqttlua/broker/engine/enginetest"
)

// TestMQTTjs runs MQTT.js (3.1.1 and 5.0 clients) against the default
// scripts: QoS 0-2 round trips, 5.0 properties, retained messages. It
// needs node and the mqtt package: .ci/run installs it and sets
// MQTTJS_NODE_PATH; elsewhere the test is skipped without them.
func TestMQTTjs(t *testing.T) {
	node, dir := enginetest.MQTTjs(t)
	_, _, addr := startBroker(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	script, _ := filepath.Abs(filepath.Join("testdata", "mqttjs", "interop.js"))
	cmd := exec.CommandContext(ctx, node, script, "mqtt://"+addr)
	cmd.Env = append(os.Environ(), "NODE_PATH="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Fatalf("MQTT.js: %v\n%s", err, out)
	}
}
