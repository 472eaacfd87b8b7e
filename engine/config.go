package engine

import (
	"fmt"
	"runtime"
	"time"

	"github.com/mqttlua/broker/codec"
	"github.com/mqttlua/broker/engine/cluster"
	"github.com/mqttlua/broker/engine/script"
	"github.com/mqttlua/broker/engine/script/iolib"
	"github.com/mqttlua/broker/engine/store"
	"github.com/mqttlua/broker/engine/transport"
	"github.com/sirupsen/logrus"
)

// Config configures a Server. Zero values take the defaults below.
type Config struct {
	// Scripts is the folder holding main.lua and the user's modules.
	Scripts string
	// LuaLib is the folder of Lua modules shipped with the broker
	// (lualib/); it is on the module path after Scripts.
	LuaLib string
	// Listen lists listener URLs (mqtt://host:port, mqtts://, ws://,
	// wss://, unix://path; see transport.ParseListenURL) or bare
	// host:port addresses (mqtt).
	Listen []string
	// Listeners are listeners described field by field (config.lua's
	// listeners list); they open after those of Listen.
	Listeners []transport.ListenerConfig
	// TLS are the certificate files of TLS listeners that name none of
	// their own (the --tls-* flags).
	TLS transport.TLSFiles
	// Workers is the number of Lua VMs (default: number of CPUs).
	Workers int
	// MaxPacketSize is the largest packet accepted, fixed header included
	// (default 1 MiB).
	MaxPacketSize int
	// MaxConnections refuses connections past this many (0: no limit).
	MaxConnections int
	// ConnectTimeout is how long a new connection has to send CONNECT
	// (default 10 s).
	ConnectTimeout time.Duration
	// HandlerTimeout bounds the CPU time of one handler or timer call
	// (default 1 s). IOTimeout bounds one wait of a call for I/O when the
	// call names none (default 5 s); HandlerDeadline bounds a call as a
	// whole, waits included (default 30 s).
	HandlerTimeout, IOTimeout, HandlerDeadline time.Duration
	// HTTPAddr is the operators' HTTP listener (/metrics, /healthz,
	// /readyz), host:port; empty: none. HTTPToken is the bearer token it
	// requires (needed off loopback).
	HTTPAddr, HTTPToken string
	// SysInterval is how often the $SYS topics are published (default
	// 10 s; negative: never).
	SysInterval time.Duration
	// ScriptEnvPrefix starts the names of the environment variables
	// scripts read with os.getenv (default "SCRIPT_").
	ScriptEnvPrefix string
	// ScriptMemory is each Lua worker's memory budget in bytes: what a
	// call may allocate and what a worker may keep between calls
	// (default 256 MiB; negative: none). See script/membudget.go.
	ScriptMemory int64
	// DataDir is the folder the broker keeps its state in across
	// restarts (engine/store); empty: memory only. Durability is
	// "sync" (default: a QoS 1/2 PUBLISH is acknowledged once what it
	// wrote is on disk) or "periodic" (synced every SyncEvery, default
	// 1 s). StoreEngine is "pebble" (default) or "bbolt".
	DataDir, Durability, StoreEngine string
	SyncEvery                        time.Duration
	// Store, if set, is used instead of opening DataDir (an embedder's
	// own store, or a test's that fails on purpose).
	Store store.KV
	// MaxOutbound bounds a connection's queued outbound bytes (default
	// 4 MiB); past it the connection is closed as a slow consumer.
	MaxOutbound int
	// TopicAliasMaximum is the highest topic alias MQTT 5 clients may use
	// towards the server (0: the default of 10; negative: no aliases).
	TopicAliasMaximum int
	// ReceiveMaximum is how many QoS 2 PUBLISHes an MQTT 5 client may have
	// unreleased at once (default 1024); more is DISCONNECT 0x93.
	ReceiveMaximum int
	// MaxTopicLevels is the most levels a topic name or filter may have
	// (default 200, as Mosquitto; negative: no limit).
	MaxTopicLevels int
	// MaxKeepAlive caps the keep alive of MQTT 5 clients; the cap is
	// announced as Server Keep Alive (0: no cap).
	MaxKeepAlive int
	// GoroutinePerConn serves TCP connections with a reader goroutine
	// each, as ServeConn serves other transports, instead of the event
	// loops (Linux only; elsewhere it is always so).
	GoroutinePerConn bool
	// Callbacks maps packet types to the names of their handlers; types
	// not listed use the Simps names (onMqConnect, ...).
	Callbacks map[codec.Type]string
	// Log receives the broker's and the scripts' log lines.
	Log *logrus.Logger
	// Modules are extra Go-backed Lua modules, such as GoModule makes.
	Modules []script.Module
	// IO configures the servers scripts call: the http, redis and pg
	// modules (config.lua's http, redis and pg tables). With IOStubs set
	// they answer from the stubs instead (script tests).
	IO      iolib.Config
	IOStubs *iolib.Stubs
	// Cluster, if set, makes this broker one node of a cluster
	// (engine/cluster); nil: a single node, with no NATS in its path.
	// Its DataDir defaults to DataDir's "cluster" folder; in a cluster
	// the data folder holds the cluster's JetStream files, not the
	// single-node store (see docs/cluster.md).
	Cluster *cluster.Config
	// Setup is Lua run in every VM after main.lua, e.g. the setup block of
	// a script test; SetupName names it in errors (a fixture file).
	Setup, SetupName string
}

// DefaultCallbacks are the Simps handler names.
var DefaultCallbacks = map[codec.Type]string{
	codec.CONNECT:     "onMqConnect",
	codec.PINGREQ:     "onMqPingreq",
	codec.DISCONNECT:  "onMqDisconnect",
	codec.PUBLISH:     "onMqPublish",
	codec.SUBSCRIBE:   "onMqSubscribe",
	codec.UNSUBSCRIBE: "onMqUnsubscribe",
	codec.PUBACK:      "onMqPuback",
	codec.PUBREC:      "onMqPubrec",
	codec.PUBREL:      "onMqPubrel",
	codec.PUBCOMP:     "onMqPubcomp",
	codec.AUTH:        "onMqAuth",
}

func (c *Config) withDefaults() Config {
	out := *c
	if out.Scripts == "" {
		out.Scripts = "./scripts"
	}
	if len(out.Listen) == 0 && len(out.Listeners) == 0 {
		out.Listen = []string{":1883"}
	}
	if out.Workers <= 0 {
		out.Workers = runtime.NumCPU()
	}
	if out.MaxPacketSize <= 0 {
		out.MaxPacketSize = 1 << 20
	}
	if out.ConnectTimeout <= 0 {
		out.ConnectTimeout = 10 * time.Second
	}
	if out.HandlerTimeout <= 0 {
		out.HandlerTimeout = time.Second
	}
	if out.SysInterval == 0 {
		out.SysInterval = 10 * time.Second
	}
	if out.ScriptMemory == 0 {
		out.ScriptMemory = 256 << 20
	}
	if out.Durability == "" {
		out.Durability = "sync"
	}
	if out.StoreEngine == "" {
		out.StoreEngine = "pebble"
	}
	if out.SyncEvery <= 0 {
		out.SyncEvery = time.Second
	}
	if out.MaxOutbound <= 0 {
		out.MaxOutbound = 4 << 20
	}
	if out.TopicAliasMaximum == 0 {
		out.TopicAliasMaximum = 10
	} else if out.TopicAliasMaximum < 0 {
		out.TopicAliasMaximum = 0
	}
	if out.MaxTopicLevels == 0 {
		out.MaxTopicLevels = 200
	} else if out.MaxTopicLevels < 0 {
		out.MaxTopicLevels = 0
	}
	if out.ReceiveMaximum <= 0 {
		out.ReceiveMaximum = 1024
	}
	cb := map[codec.Type]string{}
	for t, n := range DefaultCallbacks {
		cb[t] = n
	}
	for t, n := range c.Callbacks {
		cb[t] = n
	}
	out.Callbacks = cb
	if out.Log == nil {
		out.Log = logrus.New()
	}
	return out
}

// listeners returns every listener the configuration names, with the TLS
// defaults applied, each checked (its certificate files read) so that a
// bad one is reported before anything opens.
func (c *Config) listeners() ([]transport.ListenerConfig, error) {
	var out []transport.ListenerConfig
	for _, u := range c.Listen {
		lc, err := transport.ParseListenURL(u)
		if err != nil {
			return nil, err
		}
		out = append(out, lc)
	}
	out = append(out, c.Listeners...)
	for i := range out {
		lc := &out[i]
		if lc.TLSEnabled() {
			if lc.TLS.Cert == "" && lc.TLS.Key == "" {
				lc.TLS.Cert, lc.TLS.Key = c.TLS.Cert, c.TLS.Key
			}
			if lc.TLS.CA == "" {
				lc.TLS.CA = c.TLS.CA
			}
			if lc.TLS.ClientAuth == "" {
				lc.TLS.ClientAuth = c.TLS.ClientAuth
			}
			if lc.TLS.MinVersion == "" {
				lc.TLS.MinVersion = c.TLS.MinVersion
			}
		}
		if err := lc.Check(); err != nil {
			return nil, err
		}
		if lc.TLSEnabled() {
			if err := transport.CheckTLS(lc.TLS); err != nil {
				return nil, fmt.Errorf("listener %s: %w", lc.URL(), err)
			}
		}
	}
	return out, nil
}
