// Package scripttest runs script tests: the `broker test` command and the
// Go tests that guard the shipped scripts. A test starts a real server
// (engine and broker) on the scripts under test, with in-memory
// connections instead of sockets, and checks what clients receive.
//
// Two kinds of test files are run:
//
//   - Conversation fixtures (*.t), blocks in the spirit of Test::Nginx:
//
//     === TEST 1: a subscriber gets what a publisher sends
//     --- setup
//     require("acl").rules = { { action = "deny", topic = "secret/#" } }
//     --- steps
//     sub: connect
//     sub: send {"type": "SUBSCRIBE", "message_id": 1, "filters": [{"topic": "a/#", "qos": 1}]}
//     sub: expect {"type": "SUBACK", "codes": [1]}
//     pub: connect {"protocol_level": 5}
//     pub: send {"type": "PUBLISH", "topic": "a/b", "message": "hi"}
//     sub: expect {"type": "PUBLISH", "topic": "a/b", "message": "hi"}
//     sub: expect nothing
//     --- log
//     unlike: level=error
//
//   - Lua test files (*_test.lua) using the `testing` module of lualib/.
//
// See docs/testing.md for the step language.
package scripttest

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/mqttlua/broker/engine"
	"github.com/mqttlua/broker/engine/script"
	"github.com/mqttlua/broker/engine/script/iolib"
	"github.com/sirupsen/logrus"
)

// Options configure a run.
type Options struct {
	// Scripts is the folder of the scripts under test; LuaLib the shipped
	// Lua modules (lualib/, which holds the testing module).
	Scripts, LuaLib string
	// Workers is the number of Lua VMs of each test's server (default:
	// config.lua's worker_num, or 2).
	Workers    int
	workersSet bool
	// Parallel is how many tests run at once (default: number of CPUs).
	Parallel int
	// Out receives the report; nil discards it.
	Out io.Writer
	// Verbose also reports passing tests.
	Verbose bool
	// Modules are the Go modules the scripts are given, as an embedding
	// program gives them to engine.New.
	Modules []script.Module
}

// Result is the outcome of one test.
type Result struct {
	Name  string
	File  string
	Line  int
	Err   error // nil when it passed
	Took  time.Duration
	Where string // file:line of the failing step
}

// Discover lists the test files to run: those named in paths (files, or
// folders searched for *.t and *_test.lua), or by default the scripts
// folder itself (not its subfolders) and testdata/scripts beside it.
func Discover(scripts string, paths []string) ([]string, error) {
	var out []string
	add := func(dir string, recursive bool) error {
		return filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				if p != dir && !recursive {
					return filepath.SkipDir
				}
				return nil
			}
			if strings.HasSuffix(p, ".t") || strings.HasSuffix(p, "_test.lua") {
				out = append(out, p)
			}
			return nil
		})
	}
	if len(paths) == 0 {
		if err := add(scripts, false); err != nil {
			return nil, err
		}
		td := filepath.Join(filepath.Dir(filepath.Clean(scripts)), "testdata", "scripts")
		if st, err := os.Stat(td); err == nil && st.IsDir() {
			if err := add(td, true); err != nil {
				return nil, err
			}
		}
	}
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if st.IsDir() {
			if err := add(p, true); err != nil {
				return nil, err
			}
		} else {
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out, nil
}

// test is one runnable test: a fixture block or a Lua test function.
type test struct {
	name string
	file string
	line int
	// setup is Lua run in every VM of the test's server after main.lua;
	// setupName names it in errors.
	setup, setupName string
	run              func(env *env) error
}

// Run runs the tests in files and reports them to opts.Out, ending with
// the line "N passed, N failed".
func Run(opts Options, files []string) (passed, failed int, results []Result) {
	opts.workersSet = opts.Workers != 0
	if opts.Workers == 0 {
		opts.Workers = 2
	}
	if opts.Parallel <= 0 {
		opts.Parallel = 4
	}
	out := opts.Out
	if out == nil {
		out = io.Discard
	}
	var tests []test
	for _, f := range files {
		ts, err := load(opts, f)
		if err != nil {
			results = append(results, Result{Name: filepath.Base(f), File: f, Err: err})
			continue
		}
		tests = append(tests, ts...)
	}
	res := make([]Result, len(tests))
	sem := make(chan struct{}, opts.Parallel)
	var wg sync.WaitGroup
	for i, t := range tests {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int, t test) {
			defer wg.Done()
			defer func() { <-sem }()
			res[i] = runOne(opts, t)
		}(i, t)
	}
	wg.Wait()
	results = append(results, res...)
	for _, r := range results {
		switch {
		case r.Err == nil:
			passed++
			if opts.Verbose {
				fmt.Fprintf(out, "ok   %s:%d  %s (%s)\n", r.File, r.Line, r.Name, r.Took.Round(time.Millisecond))
			}
		default:
			failed++
			fmt.Fprintf(out, "FAIL %s:%d  %s\n", r.File, r.Line, r.Name)
			for _, l := range strings.Split(strings.TrimRight(r.Err.Error(), "\n"), "\n") {
				fmt.Fprintf(out, "     %s\n", l)
			}
		}
	}
	fmt.Fprintf(out, "%d passed, %d failed\n", passed, failed)
	return passed, failed, results
}

func load(opts Options, file string) ([]test, error) {
	if strings.HasSuffix(file, "_test.lua") {
		return loadLua(opts, file)
	}
	return loadFixture(file)
}

// env is one test's world: a fresh server and its clients.
type env struct {
	opts     Options
	srv      *engine.Server
	logs     *logBuffer
	clients  map[string]*client
	nextAddr int
}

// newEnv starts a server on the scripts with setup run in every VM.
func newEnv(opts Options, setup, setupName string) (*env, error) {
	logs := &logBuffer{}
	log := logrus.New()
	log.SetOutput(logs)
	log.SetLevel(logrus.DebugLevel)
	log.SetFormatter(&logrus.TextFormatter{DisableTimestamp: true})
	cfg := engine.Config{
		Scripts: opts.Scripts, LuaLib: opts.LuaLib, Workers: opts.Workers, Log: log,
		Modules: opts.Modules, Setup: setup, SetupName: setupName,
		// Generous: a bcrypt check (auth.lua) under the race detector,
		// with other test packages running beside it, took over 2 s.
		HandlerTimeout: 5 * time.Second, SysInterval: -1,
		// The http, redis and pg modules answer what the test declares
		// with the stub module: script tests need no servers.
		IOStubs: iolib.NewStubs(),
	}
	// Tests run what production runs: config.lua's handler names, worker
	// count and limits (its listeners do not matter: clients connect in
	// memory).
	configFile := filepath.Join(opts.Scripts, "config.lua")
	fc, err := engine.LoadConfigFile(configFile)
	if err != nil {
		return nil, err
	}
	if err := fc.Apply(&cfg, configFile); err != nil {
		return nil, err
	}
	if opts.workersSet {
		cfg.Workers = opts.Workers
	}
	cfg.Listen, cfg.Listeners = nil, nil
	srv, err := engine.New(cfg)
	if err != nil {
		return nil, err
	}
	return &env{opts: opts, srv: srv, logs: logs, clients: map[string]*client{}}, nil
}

func (e *env) close() {
	for _, c := range e.clients {
		c.conn.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	e.srv.Shutdown(ctx)
}

// client returns the named client, connecting it in memory on first use.
func (e *env) client(name string) *client {
	if c, ok := e.clients[name]; ok {
		return c
	}
	e.nextAddr++
	c := newClient(name, fmt.Sprintf("127.0.0.1:%d", 40000+e.nextAddr))
	e.clients[name] = c
	return c
}

// dial connects a client's in-memory connection to the server.
func (e *env) dial(c *client) {
	if c.conn != nil {
		return
	}
	cs, ss := net.Pipe()
	c.attach(cs)
	c.srvConn = e.srv.ServeConn(&addrConn{Conn: ss, remote: addr(c.from), local: addr("127.0.0.1:1883")})
}

func runOne(opts Options, t test) Result {
	start := time.Now()
	env, err := newEnv(opts, t.setup, t.setupName)
	if err == nil {
		err = t.run(env)
		env.close()
		if err != nil {
			// The script's own errors are often the explanation.
			var bad []string
			for _, l := range strings.Split(env.logs.String(), "\n") {
				if strings.Contains(l, "level=error") || strings.Contains(l, "level=warning") {
					bad = append(bad, "  log: "+l)
				}
			}
			if len(bad) > 5 {
				bad = bad[:5]
			}
			if len(bad) > 0 {
				err = fmt.Errorf("%w\n%s", err, strings.Join(bad, "\n"))
			}
		}
	}
	return Result{Name: t.name, File: t.file, Line: t.line, Err: err, Took: time.Since(start)}
}

// addrConn gives a pipe the addresses of a network connection, so that
// scripts see a remote address (auth.lua checks for loopback).
type addrConn struct {
	net.Conn
	remote, local net.Addr
}

func (a *addrConn) RemoteAddr() net.Addr { return a.remote }
func (a *addrConn) LocalAddr() net.Addr  { return a.local }

type addr string

func (a addr) Network() string { return "tcp" }
func (a addr) String() string  { return string(a) }

// logBuffer collects a test's log.
type logBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}
