// Command broker runs the scriptable MQTT broker:
//
//	broker --scripts ./scripts
//
// It loads scripts/config.lua if present, then the handlers in
// scripts/main.lua, and serves MQTT 3.1, 3.1.1 and 5.0 until SIGINT or
// SIGTERM. Bad flags, a missing scripts folder or a broken script print one
// line naming the problem and exit with status 2.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/mqttlua/broker/engine"
	"github.com/mqttlua/broker/engine/cluster"
	"github.com/mqttlua/broker/engine/scripttest"
	"github.com/mqttlua/broker/engine/transport"
	"github.com/sirupsen/logrus"
	"github.com/spf13/pflag"
	"gopkg.in/natefinch/lumberjack.v2"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

// stdout is where --help, --version and the subcommands' answers go
// (errors go to stderr); a variable for the tests.
var stdout io.Writer = os.Stdout

// exitError carries an exit status with a one-line message.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

func run(args []string, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "passwd" {
		return passwd(args[1:], os.Stdin, stdout, stderr)
	}
	if len(args) > 0 && args[0] == "ctl" {
		return ctl(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "test" {
		return runTests(args[1:], os.Stdout, stderr)
	}
	srv, log, opts, err := setup(args, stderr)
	if err != nil {
		var ee *exitError
		if errors.As(err, &ee) {
			if ee.msg != "" {
				fmt.Fprintln(stderr, "broker:", ee.msg)
			}
			return ee.code
		}
		fmt.Fprintln(stderr, "broker:", err)
		return 1
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	log.WithFields(logrus.Fields{"pid": os.Getpid(), "version": engine.Version}).Info("broker started; SIGHUP reloads the scripts and certificates, SIGINT or SIGTERM stops it")
	go srv.Serve()
	if opts.watch {
		go watch(opts.scripts, time.Second, func() { reload(srv, log, opts) })
	}
	var sig os.Signal
	for sig = range sigs {
		if sig != syscall.SIGHUP {
			break
		}
		reload(srv, log, opts)
		// Certificate rotation: new handshakes use the files as they are
		// now; a listener whose files do not load keeps its old ones.
		if err := srv.ReloadTLS(); err != nil {
			log.WithError(err).Error("TLS certificates not reloaded; the listener keeps its current ones")
		}
	}
	log.WithField("signal", sig.String()).Info("shutting down")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		log.WithError(err).Warn("some connections did not close in time")
	}
	log.Info("stopped")
	return 0
}

// runOpts are the flags that matter after start.
type runOpts struct {
	scripts, lualib  string
	watch            bool
	testBeforeReload bool
}

// setup parses flags, reads config.lua, loads the scripts and opens the
// listeners.
func setup(args []string, stderr io.Writer) (*engine.Server, *logrus.Logger, runOpts, error) {
	fs := pflag.NewFlagSet("broker", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	scripts := fs.String("scripts", "./scripts", "folder with main.lua, config.lua and the script modules")
	lualib := fs.String("lualib", "", "folder of Lua modules shipped with the broker (default: lualib beside the scripts folder, if present)")
	listen := fs.StringArray("listen", []string{":1883"}, "listener URL, repeatable: mqtt://host:port (or host:port), mqtts://host:port, ws://host:port/mqtt, wss://host:port/mqtt, unix:///path; options as a query, e.g. ?max_connections=1000&proxy_protocol=true")
	tlsCert := fs.String("tls-cert", "", "PEM certificate chain of the TLS listeners (mqtts://, wss://)")
	tlsKey := fs.String("tls-key", "", "PEM private key of --tls-cert")
	tlsCA := fs.String("tls-ca", "", "PEM bundle of the CAs client certificates must be signed by; clients must then present one (see --tls-client-auth)")
	tlsClientAuth := fs.String("tls-client-auth", "", "with --tls-ca: required (default) or optional client certificates")
	tlsMin := fs.String("tls-min-version", "1.2", "lowest TLS version accepted: 1.2 or 1.3")
	workers := fs.Int("workers", runtime.NumCPU(), "number of Lua VMs; a connection is pinned to VM fd % workers")
	maxPacket := fs.Int("max-packet-size", 1<<20, "largest packet accepted, in bytes")
	maxConns := fs.Int("max-connections", 0, "refuse connections past this many (0: no limit)")
	connectTimeout := fs.Duration("connect-timeout", 10*time.Second, "time a new connection has to send CONNECT")
	handlerTimeout := fs.Duration("handler-timeout", time.Second, "CPU time one Lua handler call may use (its waits for I/O not counted)")
	ioTimeout := fs.Duration("io-timeout", 5*time.Second, "default bound of one wait of a handler for I/O (http, redis, pg, sleep), when the call names none")
	dataDir := fs.String("data-dir", "./data", "folder the broker keeps its state in across restarts (persistent sessions, their queued messages, retained messages); --data-dir= (empty): memory only")
	durability := fs.String("durability", "sync", "sync: a QoS 1/2 PUBLISH that writes to the data folder is acknowledged once on disk; periodic: synced every --sync-every (a crash loses at most that)")
	syncEvery := fs.Duration("sync-every", time.Second, "with --durability periodic, how often the data folder is synced")
	storeEngine := fs.String("store-engine", "pebble", "the data folder's engine: pebble or bbolt (see docs/persistence.md)")
	handlerDeadline := fs.Duration("handler-deadline", 30*time.Second, "bound of one Lua handler call as a whole, its waits for I/O included")
	scriptMemory := fs.Int("script-memory", 256, "memory budget of each Lua worker in MiB: a call allocating more fails (its client is closed), a worker keeping more is rebuilt from the scripts; 0: no budget")
	maxOutbound := fs.Int("max-outbound", 4<<20, "bytes queued for one connection before it is cut off as a slow consumer")
	httpAddr := fs.String("http", "", "operators' HTTP listener, host:port (e.g. 127.0.0.1:8080): Prometheus /metrics, /healthz, /readyz; off by default")
	httpTokenFile := fs.String("http-token-file", "", "file holding the bearer token --http requires (or the MQTTLUA_HTTP_TOKEN environment variable); needed when --http is not on loopback")
	sysInterval := fs.Duration("sys-interval", 10*time.Second, "how often the $SYS/broker/... topics are published; 0: never")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	logFile := fs.String("log-file", "", "also write the log to this file, rotated at --log-max-size MiB (keeping --log-max-backups old files, gzipped)")
	logMaxSize := fs.Int("log-max-size", 100, "size in MiB at which --log-file is rotated")
	logMaxBackups := fs.Int("log-max-backups", 5, "rotated --log-file files kept")
	pprofAddr := fs.String("pprof", "", "serve Go's pprof profiles (CPU, heap, and sampled mutex and block) on this address (e.g. 127.0.0.1:6060); off by default")
	watchFlag := fs.Bool("watch", false, "reload the scripts when a file under --scripts changes (as on SIGHUP)")
	testFirst := fs.Bool("test-before-reload", false, "on reload, run the script tests against the new scripts and keep the old ones if any fails")
	gcPercent := fs.Int("gc-percent", 0, "fixed Go garbage collection target (as GOGC): the heap grows by this percentage of the live heap between collections; 0 (the default) adapts it to the live heap, unless the GOGC environment variable is set")
	goroutines := fs.Bool("goroutine-per-conn", false, "serve each TCP connection with a reader goroutine instead of the epoll event loops (Linux), as other platforms do")
	nodeName := fs.String("node-name", "", "this node's name in a cluster, unique among its nodes (default: the host name)")
	clusterName := fs.String("cluster-name", "", "run as one node of a cluster of this name, embedding a NATS server (see docs/cluster.md); its JetStream files go under --data-dir")
	clusterListen := fs.String("cluster-listen", "", "with --cluster-name, host:port the embedded NATS server takes routes from the other nodes on")
	clusterPeers := fs.StringSlice("cluster-peers", nil, "with --cluster-name, the other nodes' --cluster-listen addresses, comma-separated")
	natsURL := fs.String("nats-url", "", "run as one node of a cluster over this existing NATS cluster (nats://host:port, comma-separated for several) instead of an embedded server")
	clusterReplicas := fs.Int("cluster-replicas", 0, "copies JetStream keeps of the cluster's message log, retained messages and session registry (0: 3, or fewer with fewer nodes)")
	help := fs.BoolP("help", "h", false, "show this help")
	version := fs.Bool("version", false, "print the version and exit")
	usage := func() string {
		return "Usage: broker [flags]\n       broker test [--scripts DIR] [PATH...]   (runs script tests)\n       broker ctl clients|client ID|kick ID|subs|stats|reload   (talks to --http)\n       broker passwd [-c|-b|-D|-U] [FILE] USER   (password files, as mosquitto_passwd; see broker passwd --help)\n\nRuns the MQTT broker with the Lua handlers in --scripts.\n\nEvery flag can also come from the environment as MQTTLUA_ and its name in\ncapitals with _ for - (MQTTLUA_LISTEN, MQTTLUA_LOG_LEVEL; several --listen\nURLs separated by spaces). A flag on the command line wins over the\nenvironment, which wins over scripts/config.lua, which wins over the default.\n\nFlags:\n" + fs.FlagUsages()
	}
	if err := fs.Parse(args); err != nil {
		return nil, nil, runOpts{}, &exitError{2, err.Error() + " (see broker --help)"}
	}
	if err := flagsFromEnv(fs, os.Getenv); err != nil {
		return nil, nil, runOpts{}, &exitError{2, err.Error()}
	}
	if *help {
		fmt.Fprint(stdout, usage())
		return nil, nil, runOpts{}, &exitError{0, ""}
	}
	if *version {
		fmt.Fprintf(stdout, "mqttlua %s (%s)\n", engine.Version, runtime.Version())
		return nil, nil, runOpts{}, &exitError{0, ""}
	}
	if fs.NArg() > 0 {
		return nil, nil, runOpts{}, &exitError{2, fmt.Sprintf("unexpected argument %q (see broker --help)", fs.Arg(0))}
	}

	log := logrus.New()
	log.SetOutput(stderr)
	if *logFile != "" {
		// Checked here, so that an unwritable path is a one-line error at
		// start rather than lost log lines.
		f, err := os.OpenFile(*logFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return nil, nil, runOpts{}, &exitError{2, "--log-file: " + err.Error()}
		}
		f.Close()
		log.SetOutput(io.MultiWriter(stderr, &lumberjack.Logger{Filename: *logFile, MaxSize: *logMaxSize, MaxBackups: *logMaxBackups, Compress: true}))
	}
	level, err := logrus.ParseLevel(*logLevel)
	if err != nil {
		return nil, nil, runOpts{}, &exitError{2, fmt.Sprintf("--log-level: %q is not debug, info, warn or error", *logLevel)}
	}
	log.SetLevel(level)
	switch *logFormat {
	case "text":
		log.SetFormatter(&logrus.TextFormatter{FullTimestamp: true})
	case "json":
		log.SetFormatter(&logrus.JSONFormatter{})
	default:
		return nil, nil, runOpts{}, &exitError{2, fmt.Sprintf("--log-format: %q is not text or json", *logFormat)}
	}

	cfg := engine.Config{Scripts: *scripts, LuaLib: *lualib, Log: log}
	if cfg.LuaLib == "" {
		cfg.LuaLib = scripttest.DefaultLuaLib(*scripts)
	}
	cfgFile := filepath.Join(*scripts, "config.lua")
	fc, err := engine.LoadConfigFile(cfgFile)
	if err != nil {
		return nil, nil, runOpts{}, &exitError{2, err.Error()}
	}
	if err := fc.Apply(&cfg, cfgFile); err != nil {
		return nil, nil, runOpts{}, &exitError{2, err.Error()}
	}
	// Flags given on the command line override config.lua.
	if fs.Changed("listen") || (len(cfg.Listen) == 0 && len(cfg.Listeners) == 0) {
		cfg.Listen, cfg.Listeners = *listen, nil
	}
	cfg.TLS = transport.TLSFiles{Cert: *tlsCert, Key: *tlsKey, CA: *tlsCA, ClientAuth: *tlsClientAuth, MinVersion: *tlsMin}
	if fs.Changed("workers") || cfg.Workers == 0 {
		cfg.Workers = *workers
	}
	if fs.Changed("max-packet-size") || cfg.MaxPacketSize == 0 {
		cfg.MaxPacketSize = *maxPacket
	}
	if fs.Changed("max-connections") {
		cfg.MaxConnections = *maxConns
	}
	if fs.Changed("connect-timeout") || cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = *connectTimeout
	}
	if fs.Changed("handler-timeout") || cfg.HandlerTimeout == 0 {
		cfg.HandlerTimeout = *handlerTimeout
	}
	if fs.Changed("io-timeout") || cfg.IOTimeout == 0 {
		cfg.IOTimeout = *ioTimeout
	}
	if fs.Changed("handler-deadline") || cfg.HandlerDeadline == 0 {
		cfg.HandlerDeadline = *handlerDeadline
	}
	// Default on: ./data unless --data-dir says otherwise ("" keeps
	// everything in memory, which the start logs).
	if fs.Changed("data-dir") || cfg.DataDir == "" {
		cfg.DataDir = *dataDir
	}
	if fs.Changed("durability") || cfg.Durability == "" {
		cfg.Durability = *durability
	}
	if cfg.Durability != "sync" && cfg.Durability != "periodic" {
		return nil, nil, runOpts{}, &exitError{2, fmt.Sprintf("--durability %q: want sync or periodic", cfg.Durability)}
	}
	if fs.Changed("sync-every") || cfg.SyncEvery == 0 {
		cfg.SyncEvery = *syncEvery
	}
	if fs.Changed("store-engine") || cfg.StoreEngine == "" {
		cfg.StoreEngine = *storeEngine
	}
	if cfg.StoreEngine != "pebble" && cfg.StoreEngine != "bbolt" {
		return nil, nil, runOpts{}, &exitError{2, fmt.Sprintf("--store-engine %q: want pebble or bbolt", cfg.StoreEngine)}
	}
	if fs.Changed("script-memory") || cfg.ScriptMemory == 0 {
		cfg.ScriptMemory = int64(*scriptMemory) << 20
		if *scriptMemory <= 0 {
			cfg.ScriptMemory = -1
		}
	}
	if fs.Changed("max-outbound") || cfg.MaxOutbound == 0 {
		cfg.MaxOutbound = *maxOutbound
	}
	if *goroutines {
		cfg.GoroutinePerConn = true
	}
	cfg.HTTPAddr = *httpAddr
	cfg.HTTPToken = os.Getenv("MQTTLUA_HTTP_TOKEN")
	if *httpTokenFile != "" {
		b, err := os.ReadFile(*httpTokenFile)
		if err != nil {
			return nil, nil, runOpts{}, &exitError{2, "--http-token-file: " + err.Error()}
		}
		cfg.HTTPToken = strings.TrimSpace(string(b))
		if cfg.HTTPToken == "" {
			return nil, nil, runOpts{}, &exitError{2, "--http-token-file: " + *httpTokenFile + " is empty"}
		}
	}
	if fs.Changed("sys-interval") || cfg.SysInterval == 0 {
		cfg.SysInterval = *sysInterval
		if *sysInterval <= 0 {
			cfg.SysInterval = -1
		}
	}
	for name, v := range map[string]int{"workers": cfg.Workers, "max-packet-size": cfg.MaxPacketSize, "max-outbound": cfg.MaxOutbound} {
		if v <= 0 {
			return nil, nil, runOpts{}, &exitError{2, fmt.Sprintf("--%s must be positive", name)}
		}
	}
	switch {
	case *gcPercent < 0:
		return nil, nil, runOpts{}, &exitError{2, "--gc-percent must be positive, or 0 for automatic"}
	case *gcPercent > 0:
		gcAuto.Store(false)
		debug.SetGCPercent(*gcPercent)
	case os.Getenv("GOGC") != "":
		gcAuto.Store(false) // the runtime applied it
	default:
		startGCTuner() // see gc.go
	}
	if cfg.MaxPacketSize > 268435460 {
		return nil, nil, runOpts{}, &exitError{2, "--max-packet-size: the protocol maximum is 268435460"}
	}

	if cc, err := clusterConfig(fs, *nodeName, *clusterName, *clusterListen, *clusterPeers, *natsURL, *clusterReplicas); err != nil {
		return nil, nil, runOpts{}, &exitError{2, err.Error()}
	} else if cc != nil {
		cfg.Cluster = cc
		if cfg.DataDir == "" && cc.URL == "" {
			return nil, nil, runOpts{}, &exitError{2, "--cluster-name: the embedded NATS server keeps its JetStream files under --data-dir, which is empty"}
		}
	}

	srv, err := engine.New(cfg)
	if err != nil {
		return nil, nil, runOpts{}, &exitError{2, err.Error()}
	}
	if *pprofAddr != "" {
		ln, err := net.Listen("tcp", *pprofAddr)
		if err != nil {
			return nil, nil, runOpts{}, &exitError{1, "--pprof: " + err.Error()}
		}
		log.WithField("addr", ln.Addr().String()).Info("pprof profiles at /debug/pprof/")
		// Sampled, so that they cost little: one contended lock in 100,
		// and blocking (channels, conditions, locks) about once per 100 us
		// of it. /debug/pprof/mutex and /debug/pprof/block show where
		// goroutines wait for each other.
		runtime.SetMutexProfileFraction(100)
		runtime.SetBlockProfileRate(100_000)
		go http.Serve(ln, nil) // net/http/pprof registers on the default mux
	}
	if err := srv.Listen(); err != nil {
		srv.Shutdown(context.Background())
		return nil, nil, runOpts{}, &exitError{1, err.Error()}
	}
	return srv, log, runOpts{scripts: *scripts, lualib: cfg.LuaLib, watch: *watchFlag, testBeforeReload: *testFirst}, nil
}

// clusterConfig checks the cluster flags: nil when none is given (a
// single node).
func clusterConfig(fs *pflag.FlagSet, node, name, listen string, peers []string, url string, replicas int) (*cluster.Config, error) {
	if name == "" && url == "" {
		for _, f := range []string{"cluster-listen", "cluster-peers", "cluster-replicas", "node-name"} {
			if fs.Changed(f) {
				return nil, fmt.Errorf("--%s needs --cluster-name or --nats-url", f)
			}
		}
		return nil, nil
	}
	if name != "" && url != "" {
		return nil, errors.New("--cluster-name and --nats-url: one or the other (an embedded NATS server, or an existing NATS cluster)")
	}
	if url != "" && (listen != "" || len(peers) > 0) {
		return nil, errors.New("--cluster-listen and --cluster-peers are for the embedded NATS server (--cluster-name), not --nats-url")
	}
	if replicas < 0 || replicas > 5 {
		return nil, fmt.Errorf("--cluster-replicas %d: want 1 to 5 (0: automatic)", replicas)
	}
	if node == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			return nil, errors.New("--node-name: the host name is unknown; name the node")
		}
		node = h
	}
	for _, a := range append([]string{listen}, peers...) {
		if a == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(strings.TrimPrefix(a, "nats-route://")); err != nil {
			return nil, fmt.Errorf("cluster address %q: want host:port", a)
		}
	}
	return &cluster.Config{Node: node, Name: name, Listen: listen, Peers: peers, URL: url, Replicas: replicas}, nil
}

// reload swaps in the scripts as they are now on disk. A script that does
// not load, or (with --test-before-reload) whose tests fail, is reported
// and the running scripts keep serving.
func reload(srv *engine.Server, log *logrus.Logger, opts runOpts) {
	var check func() error
	if opts.testBeforeReload {
		check = func() error {
			files, err := scripttest.Discover(opts.scripts, nil)
			if err != nil {
				return err
			}
			var out strings.Builder
			_, failed, _ := scripttest.Run(scripttest.Options{Scripts: opts.scripts, LuaLib: opts.lualib, Out: &out}, files)
			if failed > 0 {
				return fmt.Errorf("script tests failed:\n%s", out.String())
			}
			return nil
		}
	}
	if err := srv.Reload(check); err != nil {
		log.WithError(err).Error("reload rejected; the running scripts keep serving")
	}
}

// watch calls changed when the modification time, size or set of the files
// under dir changes, checking every period. Polling needs no platform
// support and a second of delay is fine for editing scripts.
func watch(dir string, period time.Duration, changed func()) {
	last := snapshot(dir)
	for range time.Tick(period) {
		if now := snapshot(dir); now != last {
			last = now
			changed()
		}
	}
}

func snapshot(dir string) string {
	var b strings.Builder
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if info, err := d.Info(); err == nil {
			fmt.Fprintf(&b, "%s %d %d\n", p, info.Size(), info.ModTime().UnixNano())
		}
		return nil
	})
	return b.String()
}

// envPrefix starts the environment variables flags can be set from.
const envPrefix = "MQTTLUA_"

// flagsFromEnv sets each flag not given on the command line from its
// environment variable, if set: MQTTLUA_ and the flag's name in capitals
// with _ for -. A flag set so counts as given, so it wins over
// config.lua. Repeatable flags take space-separated values.
func flagsFromEnv(fs *pflag.FlagSet, getenv func(string) string) error {
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed || f.Name == "help" {
			return
		}
		name := envPrefix + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		v := getenv(name)
		if v == "" {
			return
		}
		values := []string{v}
		if f.Value.Type() == "stringArray" {
			values = strings.Fields(v)
		}
		for _, one := range values {
			if e := fs.Set(f.Name, one); e != nil {
				err = fmt.Errorf("%s=%q: %v", name, v, e)
				return
			}
		}
	})
	return err
}
