package engine

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/mqttlua/broker/codec"
	"github.com/mqttlua/broker/engine/script"
	"github.com/mqttlua/broker/engine/script/iolib"
	"github.com/mqttlua/broker/engine/transport"
)

// FileConfig is what scripts/config.lua returns, the counterpart of Simps'
// config/servers.php:
//
//	return {
//	  ip = "0.0.0.0", port = 1883,
//	  listeners = {
//	    "mqtt://0.0.0.0:1883",
//	    { url = "mqtts://:8883", cert = "server.pem", key = "server.key" },
//	    { url = "ws://:8083/mqtt", origins = { "example.com" } },
//	  },
//	  receiveCallbacks = { [mqtt.CONNECT] = "onMqConnect", ... },
//	  settings = { worker_num = 2, package_max_length = 1048576 },
//	  -- the servers scripts call (script/iolib):
//	  http  = { timeout = 2, max_conns_per_host = 64, ca = "ca.pem", max_body = 8388608 },
//	  redis = { default = { url = "redis://:${REDIS_PASSWORD}@127.0.0.1:6379/0", pool_size = 10, timeout = 1 } },
//	  pg    = { default = { url = "postgres://broker@127.0.0.1/auth", pool_size = 10, timeout = 2 } },
//	}
//
// Fields left out keep the defaults; command-line flags override it.
type FileConfig struct {
	Listen    []string
	Listeners []transport.ListenerConfig
	Callbacks map[codec.Type]string
	Settings  map[string]any
	IO        iolib.Config
}

// LoadConfigFile evaluates config.lua in a sandboxed VM. A missing file is
// not an error (nil, nil).
func LoadConfigFile(path string) (*FileConfig, error) {
	m, err := script.EvalFile(path)
	if m == nil || err != nil {
		return nil, err
	}
	fc := &FileConfig{Callbacks: map[codec.Type]string{}, Settings: map[string]any{}}
	bad := func(format string, a ...any) error {
		return &script.ScriptError{File: path, Msg: fmt.Sprintf(format, a...)}
	}
	// Simps' config/servers.php keeps each server under its name:
	// `return { mqtt = { ip = ..., port = ..., receiveCallbacks = ... } }`.
	if inner, ok := m["mqtt"].(map[string]any); ok {
		for k := range m {
			if k != "mqtt" {
				return nil, bad("%q beside mqtt: the file configures the MQTT server only (keys go inside mqtt = { ... })", k)
			}
		}
		m = inner
	}
	for k, v := range m {
		switch k {
		case "ip", "port", "listeners", "receiveCallbacks", "settings", "mode", "sock_type", "http", "redis", "pg":
			// mode and sock_type are Swoole's process mode and socket
			// type: one process, TCP, here; accepted as Simps writes them.
		case "callbacks":
			// Swoole's server events; Simps' MQTT example leaves them empty.
			if t, ok := v.(map[string]any); !ok || len(t) > 0 {
				if l, isList := v.([]any); !isList || len(l) > 0 {
					return nil, bad("callbacks (Swoole server events) are not supported: use onWorkerStart and onClose in main.lua")
				}
			}
		default:
			return nil, bad("%q is not a known key (ip, port, listeners, receiveCallbacks, settings, http, redis, pg, mode, sock_type, callbacks)", k)
		}
	}
	if err := ioFromFile(m, &fc.IO); err != nil {
		return nil, bad("%v", err)
	}
	if ip, port := m["ip"], m["port"]; ip != nil || port != nil {
		host, _ := ip.(string)
		p, ok := port.(int64)
		if port != nil && !ok {
			return nil, bad("port must be a number")
		}
		if port == nil {
			p = 1883
		}
		fc.Listen = []string{net.JoinHostPort(host, strconv.Itoa(int(p)))}
	}
	if ls, ok := m["listeners"]; ok {
		list, ok := ls.([]any)
		if !ok {
			return nil, bad("listeners must be a list of URLs or tables with a url")
		}
		for i, v := range list {
			lc, err := listenerFromFile(v)
			if err != nil {
				return nil, bad("listeners[%d]: %v", i+1, err)
			}
			fc.Listeners = append(fc.Listeners, lc)
		}
	}
	cbs, ok := m["receiveCallbacks"].(map[string]any)
	if list, isList := m["receiveCallbacks"].([]any); isList {
		// Keys 1..n only ({ [mqtt.CONNECT] = ... } alone is one): a list
		// to the reader, whose index is the packet type.
		cbs, ok = map[string]any{}, true
		for i, v := range list {
			cbs[strconv.Itoa(i+1)] = v
		}
	}
	if ok {
		for k, v := range cbs {
			t, ok := codec.TypeByName(k)
			if !ok {
				n, err := strconv.Atoi(k)
				if err != nil || n < 1 || n > 15 {
					return nil, bad("receiveCallbacks: %q is not a packet type", k)
				}
				t = codec.Type(n)
			}
			name, err := callbackName(v)
			if err != nil {
				return nil, bad("receiveCallbacks[%s]: %v", t, err)
			}
			fc.Callbacks[t] = name
		}
	} else if m["receiveCallbacks"] != nil {
		return nil, bad("receiveCallbacks must be a table")
	}
	if s, ok := m["settings"].(map[string]any); ok {
		fc.Settings = s
	} else if m["settings"] != nil {
		return nil, bad("settings must be a table")
	}
	return fc, nil
}

// Apply copies the file's values into cfg. Settings understood:
// worker_num, package_max_length, max_connections, connect_timeout and
// handler_timeout, io_timeout and handler_deadline (seconds: see
// script/await.go), max_outbound (bytes), script_memory (MiB
// per Lua worker, 0: no budget), sys_interval (seconds, 0: no $SYS
// topics), and for MQTT 5
// topic_alias_maximum, receive_maximum, max_keep_alive (seconds), and
// max_topic_levels (0: no limit).
func (fc *FileConfig) Apply(cfg *Config, file string) error {
	if fc == nil {
		return nil
	}
	if len(fc.Listen) > 0 || len(fc.Listeners) > 0 {
		cfg.Listen = fc.Listen
		cfg.Listeners = fc.Listeners
	}
	cfg.IO = fc.IO
	if cfg.Callbacks == nil {
		cfg.Callbacks = map[codec.Type]string{}
	}
	for t, n := range fc.Callbacks {
		cfg.Callbacks[t] = n
	}
	for k, v := range fc.Settings {
		if k == "open_mqtt_protocol" {
			continue // a Swoole setting Simps configs carry; always on here
		}
		if k == "env_prefix" {
			p, ok := v.(string)
			if !ok || p == "" {
				return &script.ScriptError{File: file, Msg: "settings.env_prefix must be a non-empty string (a prefix of environment variable names)"}
			}
			cfg.ScriptEnvPrefix = p
			continue
		}
		var n float64
		switch x := v.(type) {
		case int64:
			n = float64(x)
		case float64:
			n = x
		default:
			return &script.ScriptError{File: file, Msg: fmt.Sprintf("settings.%s must be a number", k)}
		}
		switch k {
		case "worker_num":
			cfg.Workers = int(n)
		case "package_max_length":
			cfg.MaxPacketSize = int(n)
		case "max_connections":
			cfg.MaxConnections = int(n)
		case "connect_timeout":
			cfg.ConnectTimeout = time.Duration(n * float64(time.Second))
		case "handler_timeout":
			cfg.HandlerTimeout = time.Duration(n * float64(time.Second))
		case "io_timeout":
			cfg.IOTimeout = time.Duration(n * float64(time.Second))
		case "handler_deadline":
			cfg.HandlerDeadline = time.Duration(n * float64(time.Second))
		case "max_outbound":
			cfg.MaxOutbound = int(n)
		case "topic_alias_maximum":
			cfg.TopicAliasMaximum = int(n)
			if n == 0 {
				cfg.TopicAliasMaximum = -1
			}
		case "receive_maximum":
			cfg.ReceiveMaximum = int(n)
		case "max_keep_alive":
			cfg.MaxKeepAlive = int(n)
		case "sys_interval":
			// seconds; 0: no $SYS topics.
			cfg.SysInterval = time.Duration(n * float64(time.Second))
			if n == 0 {
				cfg.SysInterval = -1
			}
		case "script_memory":
			// MiB; 0: no budget.
			cfg.ScriptMemory = int64(n * (1 << 20))
			if n == 0 {
				cfg.ScriptMemory = -1
			}
		case "max_topic_levels":
			cfg.MaxTopicLevels = int(n)
			if n == 0 {
				cfg.MaxTopicLevels = -1
			}
		default:
			return &script.ScriptError{File: file, Msg: fmt.Sprintf("settings.%s is not a known setting", k)}
		}
	}
	return nil
}

// listenerFromFile reads one entry of config.lua's listeners: a URL, or a
// table with a url and the options transport.ListenerConfig.Set knows.
func listenerFromFile(v any) (transport.ListenerConfig, error) {
	if u, ok := v.(string); ok {
		return transport.ParseListenURL(u)
	}
	t, ok := v.(map[string]any)
	if !ok {
		return transport.ListenerConfig{}, fmt.Errorf("want a URL or a table with a url")
	}
	u, ok := t["url"].(string)
	if !ok {
		return transport.ListenerConfig{}, fmt.Errorf("the url is missing")
	}
	lc, err := transport.ParseListenURL(u)
	if err != nil {
		return lc, err
	}
	for k, v := range t {
		if k == "url" {
			continue
		}
		var s string
		switch x := v.(type) {
		case string:
			s = x
		case bool:
			s = strconv.FormatBool(x)
		case int64:
			s = strconv.FormatInt(x, 10)
		case []any:
			// origins = { "a.example", "b.example" }
			parts := make([]string, len(x))
			for i, p := range x {
				ps, ok := p.(string)
				if !ok {
					return lc, fmt.Errorf("%s: want a list of strings", k)
				}
				parts[i] = ps
			}
			s = strings.Join(parts, ",")
		default:
			return lc, fmt.Errorf("%s: want a string, number or boolean", k)
		}
		if err := lc.Set(k, s); err != nil {
			return lc, err
		}
	}
	return lc, nil
}

// callbackName reads a receiveCallbacks entry: the name of a global
// function ("onMqConnect"), or, as Simps' [Class::class, 'method'], a
// module and one of its functions ({ "handlers", "onConnect" }: the
// function is require("handlers").onConnect), named "module:function"
// for the script layer.
func callbackName(v any) (string, error) {
	switch x := v.(type) {
	case string:
		if x == "" {
			return "", fmt.Errorf("an empty handler name")
		}
		return x, nil
	case []any:
		if len(x) == 2 {
			mod, ok1 := x[0].(string)
			fn, ok2 := x[1].(string)
			if ok1 && ok2 && mod != "" && fn != "" {
				return mod + ":" + fn, nil
			}
		}
	}
	return "", fmt.Errorf(`want a function name, or { "module", "function" }`)
}

// ioFromFile reads config.lua's http, redis and pg tables.
func ioFromFile(m map[string]any, out *iolib.Config) error {
	opts := func(where string, v any, known ...string) (map[string]any, error) {
		t, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%s must be a table", where)
		}
		for k := range t {
			found := false
			for _, n := range known {
				found = found || k == n
			}
			if !found {
				return nil, fmt.Errorf("%s.%s is not a known option (%s)", where, k, strings.Join(known, ", "))
			}
		}
		return t, nil
	}
	num := func(where string, t map[string]any, k string) (float64, error) {
		switch x := t[k].(type) {
		case nil:
			return 0, nil
		case int64:
			return float64(x), nil
		case float64:
			return x, nil
		}
		return 0, fmt.Errorf("%s.%s must be a number", where, k)
	}
	secs := func(f float64) time.Duration { return time.Duration(f * float64(time.Second)) }
	if v, ok := m["http"]; ok {
		t, err := opts("http", v, "timeout", "max_conns_per_host", "ca", "max_body")
		if err != nil {
			return err
		}
		for _, k := range []string{"timeout", "max_conns_per_host", "max_body"} {
			n, err := num("http", t, k)
			if err != nil {
				return err
			}
			switch k {
			case "timeout":
				out.HTTP.Timeout = secs(n)
			case "max_conns_per_host":
				out.HTTP.MaxConnsPerHost = int(n)
			case "max_body":
				out.HTTP.MaxBody = int64(n)
			}
		}
		if ca, ok := t["ca"].(string); ok {
			out.HTTP.CAFile = ca
		} else if t["ca"] != nil {
			return fmt.Errorf("http.ca must be a file name")
		}
	}
	servers := func(kind string, add func(name, url string, pool int, timeout time.Duration)) error {
		v, ok := m[kind]
		if !ok {
			return nil
		}
		all, ok := v.(map[string]any)
		if !ok {
			return fmt.Errorf("%s must be a table of servers by name: %s = { default = { url = ... } }", kind, kind)
		}
		for name, sv := range all {
			where := kind + "." + name
			t, err := opts(where, sv, "url", "pool_size", "timeout")
			if err != nil {
				return err
			}
			u, ok := t["url"].(string)
			if !ok || u == "" {
				return fmt.Errorf("%s.url must be set", where)
			}
			pool, err := num(where, t, "pool_size")
			if err != nil {
				return err
			}
			timeout, err := num(where, t, "timeout")
			if err != nil {
				return err
			}
			add(name, u, int(pool), secs(timeout))
		}
		return nil
	}
	if err := servers("redis", func(name, url string, pool int, timeout time.Duration) {
		if out.Redis == nil {
			out.Redis = map[string]iolib.RedisConfig{}
		}
		out.Redis[name] = iolib.RedisConfig{URL: url, PoolSize: pool, Timeout: timeout}
	}); err != nil {
		return err
	}
	return servers("pg", func(name, url string, pool int, timeout time.Duration) {
		if out.PG == nil {
			out.PG = map[string]iolib.PGConfig{}
		}
		out.PG[name] = iolib.PGConfig{URL: url, PoolSize: pool, Timeout: timeout}
	})
}
