package engine_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mqttlua/broker/codec"
	"github.com/mqttlua/broker/engine"
)

// TestConfigFile: the Simps document's config/servers.php, transcribed
// to Lua as written (the mqtt wrapper, [class, method] callbacks as
// { module, function }, Swoole's keys), renames handlers and sets
// limits, and the renamed handlers are the ones that run.
func TestConfigFile(t *testing.T) {
	dir := t.TempDir()
	osWriteFile(filepath.Join(dir, "config.lua"), `
return {
  mqtt = {
    ip = "127.0.0.1",
    port = 0,
    mode = 2, sock_type = 1,
    callbacks = {},
    receiveCallbacks = {
      [mqtt.CONNECT] = "myConnect",
      [mqtt.PINGREQ] = { "handlers", "myPing" },
    },
    settings = { worker_num = 3, package_max_length = 4096, handler_timeout = 0.5, open_mqtt_protocol = true },
  },
}
`)
	osWriteFile(filepath.Join(dir, "main.lua"), `
function myConnect(server, fd, fromId, data)
  server:send(fd, { type = mqtt.CONNACK, code = 0 })
end
`)
	osWriteFile(filepath.Join(dir, "handlers.lua"), `
local M = {}
function M.myPing(server, fd, fromId, data)
  server:send(fd, { type = mqtt.PUBLISH, topic = "pong/" .. fromId, message = "" })
  return true
end
return M
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
		cfg.Listen[0] != "127.0.0.1:0" || cfg.Callbacks[codec.CONNECT] != "myConnect" || cfg.Callbacks[codec.PINGREQ] != "handlers:myPing" {
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

// TestConfigFileSimpsMistakes: what a ported Simps config gets wrong is
// an error naming config.lua at start, not silent defaults.
func TestConfigFileSimpsMistakes(t *testing.T) {
	dir := t.TempDir()
	osWriteFile(filepath.Join(dir, "main.lua"), "function onMqConnect(server, fd) server:send(fd, { type = mqtt.CONNACK }) end\n")
	for _, tc := range []struct{ config, want string }{
		// Only key 1: read as a list, still receiveCallbacks.
		{`return { receiveCallbacks = { [mqtt.CONNECT] = "onMqConect" } }`, "receiveCallbacks[CONNECT] names onMqConect, which the scripts do not define"},
		{`return { mqtt = { receiveCallbacks = { [mqtt.PUBLISH] = { "App\\Events\\MqttServer", "onMqPublish" } } } }`, `receiveCallbacks[PUBLISH]: module "App\\Events\\MqttServer"`},
		{`return { receiveCallbacks = { [mqtt.PUBLISH] = { "nomod" } } }`, `want a function name, or { "module", "function" }`},
		{`return { mqtt = { port = 1883 }, http = { port = 80 } }`, `"http" beside mqtt`},
		{`return { colour = "blue" }`, `"colour" is not a known key`},
		{`return { callbacks = { start = "x" } }`, "callbacks (Swoole server events) are not supported"},
	} {
		osWriteFile(filepath.Join(dir, "config.lua"), tc.config)
		fc, err := engine.LoadConfigFile(filepath.Join(dir, "config.lua"))
		if err == nil {
			cfg := engine.Config{Scripts: dir, Listen: []string{"127.0.0.1:0"}}
			if err = fc.Apply(&cfg, "config.lua"); err == nil {
				_, err = engine.New(cfg)
			}
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "config.lua") {
			t.Errorf("%s:\n want an error naming config.lua with %q, got %v", tc.config, tc.want, err)
		}
	}
	// The one-key receiveCallbacks that names a defined handler works.
	osWriteFile(filepath.Join(dir, "config.lua"), `return { receiveCallbacks = { [mqtt.CONNECT] = "onMqConnect" } }`)
	fc, err := engine.LoadConfigFile(filepath.Join(dir, "config.lua"))
	if err != nil || fc.Callbacks[codec.CONNECT] != "onMqConnect" {
		t.Fatalf("one-key receiveCallbacks: %v %+v", err, fc)
	}
}

// TestConfigFileListeners: config.lua's listeners list, URLs or tables
// with options, and its mistakes reported with the file's name.
func TestConfigFileListeners(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.lua")
	osWriteFile(path, `
return {
  listeners = {
    "mqtt://127.0.0.1:0",
    { url = "ws://127.0.0.1:0/ws", origins = { "a.example", "b.example" }, max_connections = 7 },
    { url = "mqtt://127.0.0.1:0", proxy_protocol = true },
  },
}
`)
	fc, err := engine.LoadConfigFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg := engine.Config{}
	if err := fc.Apply(&cfg, path); err != nil {
		t.Fatal(err)
	}
	if len(cfg.Listeners) != 3 {
		t.Fatalf("listeners: %+v", cfg.Listeners)
	}
	ws := cfg.Listeners[1]
	if ws.Scheme != "ws" || ws.Path != "/ws" || ws.MaxConnections != 7 || strings.Join(ws.AllowedOrigins, ",") != "a.example,b.example" {
		t.Fatalf("the ws listener: %+v", ws)
	}
	if !cfg.Listeners[2].ProxyProtocol {
		t.Fatalf("proxy_protocol not set: %+v", cfg.Listeners[2])
	}
	for _, bad := range []struct{ src, want string }{
		{`return { listeners = "mqtt://:1883" }`, "listeners must be a list"},
		{`return { listeners = { { port = 1883 } } }`, "listeners[1]: the url is missing"},
		{`return { listeners = { { url = "mqtt://:1883", colour = "blue" } } }`, `listeners[1]: unknown option "colour"`},
		{`return { listeners = { "gopher://:70" } }`, `unknown scheme "gopher"`},
	} {
		osWriteFile(path, bad.src)
		_, err := engine.LoadConfigFile(path)
		if err == nil || !strings.Contains(err.Error(), bad.want) || !strings.Contains(err.Error(), "config.lua") {
			t.Errorf("%s: want an error naming config.lua with %q, got %v", bad.src, bad.want, err)
		}
	}
}

// TestConfigFileIO: config.lua's http, redis and pg tables, ${ENV}
// secrets, and their mistakes reported as one line naming config.lua.
func TestConfigFileIO(t *testing.T) {
	dir := t.TempDir()
	osWriteFile(filepath.Join(dir, "main.lua"), "function onMqConnect(server, fd) server:send(fd, { type = mqtt.CONNACK }) end\n")
	path := filepath.Join(dir, "config.lua")
	osWriteFile(path, `return {
  http = { timeout = 1.5, max_conns_per_host = 8, max_body = 1024 },
  redis = { cache = { url = "redis://:${TEST_REDIS_PW}@127.0.0.1:6379/2", pool_size = 4, timeout = 0.5 } },
  pg = { default = { url = "postgres://broker@127.0.0.1/mqtt", pool_size = 3 } },
}`)
	fc, err := engine.LoadConfigFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if fc.IO.HTTP.Timeout != 1500*time.Millisecond || fc.IO.HTTP.MaxConnsPerHost != 8 || fc.IO.HTTP.MaxBody != 1024 ||
		fc.IO.Redis["cache"].PoolSize != 4 || fc.IO.Redis["cache"].Timeout != 500*time.Millisecond || fc.IO.PG["default"].PoolSize != 3 {
		t.Fatalf("read %+v", fc.IO)
	}
	t.Setenv("TEST_REDIS_PW", "pw")
	cfg := engine.Config{Scripts: dir, Listen: []string{"127.0.0.1:0"}}
	if err := fc.Apply(&cfg, path); err != nil {
		t.Fatal(err)
	}
	srv, err := engine.New(cfg) // nothing connects yet: no servers needed
	if err != nil {
		t.Fatal(err)
	}
	srv.Shutdown(context.Background())

	for _, tc := range []struct{ config, want string }{
		{`return { http = { timeout = "soon" } }`, "http.timeout must be a number"},
		{`return { http = { proxy = "x" } }`, "http.proxy is not a known option"},
		{`return { redis = { url = "redis://x" } }`, "redis.url must be a table"},
		{`return { redis = { cache = { pool_size = 2 } } }`, "redis.cache.url must be set"},
		{`return { redis = { cache = { url = "http://x" } } }`, "redis.cache.url"},
		{`return { pg = { main = { url = "postgres://u:${TEST_UNSET_PW}@h/db" } } }`, "pg.main.url: the environment variable TEST_UNSET_PW is not set"},
		{`return { pg = { main = { url = "postgres://u:secretpw@h:notaport/db" } } }`, "pg.main.url"},
		{`return { http = { ca = "missing.pem" } }`, "http.ca: open missing.pem"},
	} {
		osWriteFile(path, tc.config)
		fc, err := engine.LoadConfigFile(path)
		if err == nil {
			cfg := engine.Config{Scripts: dir, Listen: []string{"127.0.0.1:0"}}
			if err = fc.Apply(&cfg, path); err == nil {
				var srv *engine.Server
				if srv, err = engine.New(cfg); err == nil {
					srv.Shutdown(context.Background())
				}
			}
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "config.lua") || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s:\n want one line naming config.lua with %q, got %v", tc.config, tc.want, err)
		}
		if err != nil && strings.Contains(err.Error(), "secretpw") {
			t.Errorf("the password is in the error: %v", err)
		}
	}
}
