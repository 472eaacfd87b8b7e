package engine

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/mqttlua/broker/codec"
	"github.com/mqttlua/broker/engine/broker"
	"github.com/mqttlua/broker/engine/cluster"
	"github.com/mqttlua/broker/engine/observe"
	"github.com/mqttlua/broker/engine/script"
	"github.com/mqttlua/broker/engine/script/iolib"
	"github.com/mqttlua/broker/engine/store"
	"github.com/mqttlua/broker/engine/transport"
	"github.com/sirupsen/logrus"
)

// Server is a running broker: the three layers wired together.
type Server struct {
	cfg    Config
	tr     *transport.Transport
	broker *broker.Broker
	pool   *script.Pool
	io     *iolib.Lib       // the clients of the http, redis and pg modules
	store  *store.Committer // the data folder, nil: memory only
	nodes  *cluster.Cluster // the cluster this node is in, nil: none

	// Shared is the key-value store every VM sees as `shared`.
	Shared *script.SharedStore
	// Stats are the broker's counters.
	Stats Stats

	shut atomic.Bool

	http    *observe.Server
	stopSys func()
}

// Version is the broker's version, for $SYS/broker/version (set at
// build time with -ldflags "-X github.com/mqttlua/broker/engine.Version=...").
var Version = "dev"

// Stats are counters, safe to read at any time: the transport's, and the
// scripts' errors.
type Stats struct {
	transport.Stats
	ScriptErrors atomic.Int64
}

// New loads the scripts and starts the VMs. A script that does not load is
// reported as a *script.ScriptError naming its file and line.
func New(cfg Config) (*Server, error) {
	s := &Server{cfg: cfg.withDefaults()}
	var required []codec.Type
	for t := range cfg.Callbacks { // the ones the user named, before the defaults
		required = append(required, t)
	}
	c := &s.cfg
	listeners, err := c.listeners()
	if err != nil {
		return nil, err
	}
	if err := observe.CheckHTTP(observe.HTTPConfig{Addr: c.HTTPAddr, Token: c.HTTPToken}); err != nil {
		return nil, err
	}
	s.broker = broker.New(broker.Config{
		TopicAliasMaximum: c.TopicAliasMaximum, ReceiveMaximum: c.ReceiveMaximum,
		MaxKeepAlive: c.MaxKeepAlive, MaxPacketSize: c.MaxPacketSize, MaxTopicLevels: c.MaxTopicLevels, Log: c.Log,
	})
	// The servers scripts call (http, redis, pg): stubbed in script tests.
	if c.IOStubs != nil {
		s.io = iolib.NewStubbed(c.IO, c.IOStubs)
	} else if s.io, err = iolib.New(c.IO, c.Log); err != nil {
		return nil, &script.ScriptError{File: filepath.Join(c.Scripts, "config.lua"), Msg: err.Error()}
	}
	// The data folder before any script runs: its errors stand alone.
	// In a cluster it holds JetStream's files instead (started below).
	var kv store.KV
	if c.Cluster == nil {
		kv, err = s.openKV()
	}
	if err != nil {
		s.io.Close()
		return nil, err
	}
	modules := append(append([]script.Module(nil), c.Modules...), s.io.Modules()...)
	pool, err := script.New(script.Config{
		Scripts: c.Scripts, LuaLib: c.LuaLib, Workers: c.Workers, HandlerTimeout: c.HandlerTimeout,
		WaitTimeout: c.IOTimeout, HandlerDeadline: c.HandlerDeadline,
		Callbacks: c.Callbacks, Log: c.Log, Modules: modules, Setup: c.Setup, SetupName: c.SetupName,
		Errors: &s.Stats.ScriptErrors, MemoryBudget: c.ScriptMemory, Required: required, EnvPrefix: c.ScriptEnvPrefix,
	}, s.broker)
	if err != nil {
		s.io.Close()
		if kv != nil && c.Store == nil {
			kv.Close()
		}
		return nil, err
	}
	s.pool, s.Shared = pool, pool.Shared
	s.broker.SetHooks(pool)
	// Loaded once the hooks are set (an expiring session tells the
	// scripts), before anything is served.
	if c.Cluster != nil {
		err = s.joinCluster()
	} else {
		err = s.openStore(kv)
	}
	if err != nil {
		pool.Close()
		s.io.Close()
		return nil, err
	}
	s.tr = transport.New(transport.Config{
		Listeners: listeners, Loops: c.Workers, GoroutinePerConn: c.GoroutinePerConn,
		MaxPacketSize: c.MaxPacketSize, MaxConnections: c.MaxConnections,
		ConnectTimeout: c.ConnectTimeout, MaxOutbound: c.MaxOutbound,
		Log: c.Log, Open: s.broker.Open, Stats: &s.Stats.Stats,
		Listening: func(url string, addr net.Addr) {
			workers := fmt.Sprintf("%d Lua workers", c.Workers)
			if c.Workers == 1 {
				workers = "1 Lua worker"
			}
			c.Log.WithField("listener", url).Infof("listening on %s with %s, scripts from %s", url, workers, c.Scripts)
		},
	})
	s.broker.SetTransport(s.tr)
	return s, nil
}

// Reload loads the scripts again and swaps in new VMs running them, keeping
// every connection, session, subscription, retained message and shared
// value (see script.Pool.Reload). If check is not nil it must approve the
// new scripts first. On error the old scripts keep serving.
func (s *Server) Reload(check func() error) error { return s.pool.Reload(check) }

// ReloadTLS reads the TLS listeners' certificate files again (SIGHUP);
// a listener whose files do not load keeps serving with its current ones.
func (s *Server) ReloadTLS() error { return s.tr.ReloadTLS() }

// NewVM builds a VM outside the worker pool, with the scripts loaded, for
// tools that drive the scripts themselves (the `broker test` runner).
func (s *Server) NewVM(id int) (*script.VM, error) { return s.pool.NewVM(id) }

// Config returns the server's configuration with defaults applied.
func (s *Server) Config() Config { return s.cfg }

// Listen opens every configured listener (one log line each), the
// operators' HTTP listener if configured, and starts publishing $SYS.
func (s *Server) Listen() error {
	if err := s.tr.Listen(); err != nil {
		return err
	}
	src := observe.Sources{Transport: s.tr, Broker: s.broker, Scripts: s.pool, ScriptErrors: &s.Stats.ScriptErrors,
		Version: Version, Started: time.Now(), Reload: func() error { return s.Reload(nil) }, Backup: s.Backup, Cluster: s.nodes}
	h, err := observe.Listen(src, observe.HTTPConfig{Addr: s.cfg.HTTPAddr, Token: s.cfg.HTTPToken, Ready: func() bool { return !s.shut.Load() }})
	if err != nil {
		return err
	}
	if h != nil {
		s.http = h
		s.cfg.Log.WithField("addr", h.Addr()).Infof("metrics at %s/metrics", h.URL())
	}
	if s.cfg.SysInterval > 0 {
		s.stopSys = observe.StartSys(src, s.cfg.SysInterval)
	}
	return nil
}

// HTTPAddr returns the address of the operators' HTTP listener, or "".
func (s *Server) HTTPAddr() string {
	if s.http == nil {
		return ""
	}
	return s.http.Addr()
}

// Addrs returns the addresses the server listens on.
func (s *Server) Addrs() []net.Addr { return s.tr.Addrs() }

// Serve accepts connections on every listener until Shutdown.
func (s *Server) Serve() { s.tr.Serve() }

// ServeConn serves one connection from any transport (TCP, TLS, an
// in-memory pipe). It returns at once, with the connection (nil if
// refused); the connection runs on its own goroutines.
func (s *Server) ServeConn(nc net.Conn) *broker.Client {
	if t := s.tr.ServeConn(nc); t != nil {
		return t.Receiver().(*broker.Client)
	}
	return nil
}

// Broker returns the broker layer: sessions, routing, retained messages.
func (s *Server) Broker() *broker.Broker { return s.broker }

// Shutdown stops accepting, tells MQTT 5 clients with DISCONNECT 0x8B,
// closes every connection and waits for them until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	if s.shut.Swap(true) {
		return nil
	}
	if s.stopSys != nil {
		s.stopSys()
	}
	if s.http != nil {
		s.http.Close()
	}
	err := s.tr.Shutdown(ctx, func(t *transport.Conn) {
		t.Receiver().(*broker.Client).Close(transport.CloseServerShutdown)
	})
	s.pool.Close()
	s.io.Close()
	s.closeStore()
	if s.nodes != nil {
		s.nodes.Close()
	}
	return err
}

// joinCluster starts this node's link to its cluster: it returns once
// the cluster's streams answer and the retained messages are here.
func (s *Server) joinCluster() error {
	c := &s.cfg
	cc := *c.Cluster
	if cc.DataDir == "" && cc.URL == "" {
		if c.DataDir == "" {
			return errors.New("cluster: an embedded NATS server needs a data folder (--data-dir) for its JetStream files")
		}
		cc.DataDir = filepath.Join(c.DataDir, "cluster")
	}
	if cc.Log == nil {
		cc.Log = c.Log
	}
	start := time.Now()
	n, err := cluster.Start(cc, s.broker)
	if err != nil {
		return err
	}
	s.nodes = n
	how := "embedded NATS"
	if cc.URL != "" {
		how = "NATS at " + cc.URL
	}
	c.Log.WithFields(logrus.Fields{"node": cc.Node, "peers": len(cc.Peers), "retained": s.broker.RetainedCount(),
		"took": time.Since(start).Round(time.Millisecond).String()}).Infof("cluster: node %s joined over %s", cc.Node, how)
	return nil
}

// Cluster returns this node's link to its cluster, nil for a single node.
func (s *Server) Cluster() *cluster.Cluster { return s.nodes }

// Backup writes a consistent copy of the data folder, as it is now, into
// dir (a new folder, on the broker's machine), while the broker runs: a
// broker started with --data-dir dir has what this one had.
func (s *Server) Backup(dir string) error {
	if s.store == nil {
		return errors.New("backup: persistence is off (no data folder)")
	}
	return s.store.Backup(dir)
}

// openKV opens the data folder (taking its lock and checking its format)
// before any script runs, so that its errors stand alone; nil without
// one.
func (s *Server) openKV() (store.KV, error) {
	c := &s.cfg
	if c.Store != nil || c.DataDir == "" {
		return c.Store, nil
	}
	return store.Open(c.DataDir, store.Engine(c.StoreEngine))
}

// openStore loads what the data folder keeps into the broker
// and makes the broker write through it; without a data folder the broker
// keeps everything in memory, and says so.
func (s *Server) openStore(kv store.KV) error {
	c := &s.cfg
	if kv == nil {
		c.Log.Info("persistence off (no data folder): sessions and retained messages are lost when the broker stops")
		return nil
	}
	start := time.Now()
	n, err := s.broker.LoadRetained(kv)
	var sessions, deliveries int
	var wills int
	if err == nil {
		sessions, deliveries, err = s.broker.LoadSessions(kv)
	}
	if err == nil {
		wills, err = s.broker.LoadWills(kv)
	}
	if err != nil {
		kv.Close()
		return fmt.Errorf("data folder %s: %v", c.DataDir, err)
	}
	mode := store.Sync
	if c.Durability == "periodic" {
		mode = store.Periodic
	}
	s.store = store.NewCommitter(kv, mode, c.SyncEvery, func(err error) {
		c.Log.WithError(err).WithField("data_dir", c.DataDir).Error("the data folder cannot be written: QoS 1/2 publishes that write to it are refused until it can")
	})
	s.broker.SetStore(s.store)
	durability := "sync (acknowledged once on disk)"
	if mode == store.Periodic {
		durability = fmt.Sprintf("periodic (synced every %s: a crash loses at most that)", c.SyncEvery)
	}
	c.Log.WithFields(logrus.Fields{"data_dir": c.DataDir, "engine": c.StoreEngine, "retained": n, "sessions": sessions, "queued": deliveries, "wills": wills,
		"took": time.Since(start).Round(time.Millisecond).String()}).
		Infof("persistence on: sessions and retained messages kept in %s, durability %s", c.DataDir, durability)
	return nil
}

func (s *Server) closeStore() {
	if s.store != nil {
		if err := s.store.Close(); err != nil {
			s.cfg.Log.WithError(err).Error("closing the data folder")
		}
		s.store = nil
	}
}
