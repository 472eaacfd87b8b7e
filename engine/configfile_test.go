package engine_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/mqttlua/broker/codec"
	"github.com/mqttlua/broker/engine"
)

// TestConfigFile: a Simps-style config.lua renames handlers and sets
// limits, and the renamed handler is the one that runs.
func TestConfigFile(t *testing.T) {
	dir := t.TempDir()
	osWriteFile(filepath.Join(dir, "config.lua"), `
return {
  ip = "127.0.0.1", port = 0,
  receiveCallbacks = {
    [mqtt.CONNECT] = "myConnect",
    [mqtt.PINGREQ] = { "App\\Events\\MqttServer", "myPing" },
  },
  settings = { worker_num = 3, package_max_length = 4096, handler_timeout = 0.5, open_mqtt_protocol = true },
}
`)
	osWriteFile(filepath.Join(dir, "main.lua"), `
function myConnect(server, fd, fromId, data)
  server:send(fd, { type = mqtt.CONNACK, code = 0 })
end
function myPing(server, fd, fromId, data)
  server:send(fd, { type = mqtt.PUBLISH, topic = "pong/" .. fromId, message = "" })
  return true
end
`)
	fc, err := engine.LoadConfigFile(filepath.Join(dir, "config.lua"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := engine.Config{Scripts: dir}
	if err := fc.Apply(&cfg, "config.lua"); err != nil {
		t.Fatal(err)
	}
	if cfg.Workers != 3 || cfg.MaxPacketSize != 4096 || cfg.HandlerTimeout != 500*time.Millisecond ||
		cfg.Listen[0] != "127.0.0.1:0" || cfg.Callbacks[codec.CONNECT] != "myConnect" || cfg.Callbacks[codec.PINGREQ] != "myPing" {
		t.Fatalf("config: %+v", cfg)
	}
	_, addr, _ := startServer(t, cfg)
	c := dialRaw(t, addr, codec.V311)
	c.Connect("cfg")
	c.Send(&codec.Packet{Type: codec.PINGREQ})
	if p := c.Expect(codec.PUBLISH); p.Topic != "pong/1" { // fd 1 on VM 1 % 3
		t.Fatalf("got %s", p.Topic)
	}
	c.Expect(codec.PINGRESP)
}
