package iolib

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mqttlua/broker/engine/script"
	"github.com/redis/go-redis/v9"
	"github.com/sirupsen/logrus"
	lua "github.com/yuin/gopher-lua"
)

// Lib holds the clients the modules use.
type Lib struct {
	cfg   Config
	http  *http.Client
	redis map[string]redisBackend
	pg    map[string]pgBackend
	stubs *Stubs
}

// redisBackend runs one Redis command: go-redis' client, or the stubs.
type redisBackend interface {
	do(ctx context.Context, args []any) (any, error)
	close()
}

// pgBackend runs one statement: a pgx pool, or the stubs. rows is nil for
// a statement that returns none; affected is what its command tag says.
type pgBackend interface {
	query(ctx context.Context, sql string, args []any) (cols []string, rows [][]any, affected int64, err error)
	close()
}

// redisLog sends go-redis' own messages (a pool that cannot dial, ...)
// to the log of the server that made the last Lib: go-redis has one
// logger for the process.
type redisLog struct{}

var redisLogger atomic.Pointer[logrus.Logger]

func (redisLog) Printf(_ context.Context, format string, v ...any) {
	if l := redisLogger.Load(); l != nil {
		l.WithField("module", "redis").Warnf(format, v...)
	}
}

var setRedisLogger sync.Once

// New makes the clients cfg names. Nothing connects yet: a server that is
// down is an error of the calls that need it, not of the start. An
// invalid URL, a missing environment variable or an unreadable CA file is
// an error naming the entry.
func New(cfg Config, log *logrus.Logger) (*Lib, error) {
	if log != nil {
		redisLogger.Store(log)
	}
	setRedisLogger.Do(func() { redis.SetLogger(redisLog{}) })
	l := &Lib{cfg: cfg, redis: map[string]redisBackend{}, pg: map[string]pgBackend{}}
	if cfg.HTTP.MaxBody <= 0 {
		l.cfg.HTTP.MaxBody = 8 << 20
	}
	if cfg.HTTP.MaxConnsPerHost <= 0 {
		l.cfg.HTTP.MaxConnsPerHost = 64
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxConnsPerHost = l.cfg.HTTP.MaxConnsPerHost
	tr.MaxIdleConnsPerHost = l.cfg.HTTP.MaxConnsPerHost
	tr.Proxy = nil // a broker's auth calls do not follow the environment's proxy
	if cfg.HTTP.CAFile != "" {
		pem, err := os.ReadFile(cfg.HTTP.CAFile)
		if err != nil {
			return nil, fmt.Errorf("http.ca: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("http.ca: %s holds no PEM certificate", cfg.HTTP.CAFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	l.http = &http.Client{Transport: tr}
	for _, name := range sortedKeys(cfg.Redis) {
		rc := cfg.Redis[name]
		u, err := expand(rc.URL)
		if err != nil {
			l.Close()
			return nil, fmt.Errorf("redis.%s.url: %w", name, err)
		}
		opts, err := redis.ParseURL(u)
		if err != nil {
			l.Close()
			return nil, fmt.Errorf("redis.%s.url: %v", name, redactErr(err, u))
		}
		if rc.PoolSize > 0 {
			opts.PoolSize = rc.PoolSize
		}
		// RESP2: replies are strings, integers and arrays, which map to
		// Lua plainly (HGETALL is made a table by the binding).
		opts.Protocol = 2
		// The call's context bounds each command; go-redis' own read
		// and write timeouts would cut a slow command shorter.
		opts.ContextTimeoutEnabled = true
		opts.DisableIdentity = true
		l.redis[name] = &goRedis{c: redis.NewClient(opts)}
	}
	for _, name := range sortedKeys(cfg.PG) {
		pc := cfg.PG[name]
		u, err := expand(pc.URL)
		if err != nil {
			l.Close()
			return nil, fmt.Errorf("pg.%s.url: %w", name, err)
		}
		pcfg, err := pgxpool.ParseConfig(u)
		if err != nil {
			l.Close()
			return nil, fmt.Errorf("pg.%s.url: %v", name, redactErr(err, u))
		}
		if pc.PoolSize > 0 {
			pcfg.MaxConns = int32(pc.PoolSize)
		}
		pool, err := pgxpool.NewWithConfig(context.Background(), pcfg)
		if err != nil {
			l.Close()
			return nil, fmt.Errorf("pg.%s: %v", name, err)
		}
		l.pg[name] = &pgxPool{p: pool}
	}
	return l, nil
}

// NewStubbed makes a Lib that answers from stubs instead of the network,
// for script tests: every Redis and PostgreSQL name is served by them.
func NewStubbed(cfg Config, stubs *Stubs) *Lib {
	l, err := New(Config{HTTP: HTTPConfig{Timeout: cfg.HTTP.Timeout, MaxBody: cfg.HTTP.MaxBody}}, nil)
	if err != nil {
		panic(err) // no files or URLs to fail on
	}
	l.cfg.Redis, l.cfg.PG = cfg.Redis, cfg.PG
	l.stubs = stubs
	l.http = &http.Client{Transport: stubs}
	return l
}

// Modules returns the http, redis and pg modules (and, with stubs, the
// stub module tests declare them with).
func (l *Lib) Modules() []script.Module {
	mods := []script.Module{&httpModule{l}, &redisModule{l}, &pgModule{l}}
	if l.stubs != nil {
		mods = append(mods, &stubModule{l.stubs})
	}
	return mods
}

// Close closes the pools.
func (l *Lib) Close() {
	for _, r := range l.redis {
		r.close()
	}
	for _, p := range l.pg {
		p.close()
	}
	if t, ok := l.http.Transport.(*http.Transport); ok {
		t.CloseIdleConnections()
	}
}

func (l *Lib) redisFor(name string) (redisBackend, time.Duration, bool) {
	if l.stubs != nil {
		return l.stubs, l.cfg.Redis[name].Timeout, true
	}
	r, ok := l.redis[name]
	return r, l.cfg.Redis[name].Timeout, ok
}

func (l *Lib) pgFor(name string) (pgBackend, time.Duration, bool) {
	if l.stubs != nil {
		return l.stubs, l.cfg.PG[name].Timeout, true
	}
	p, ok := l.pg[name]
	return p, l.cfg.PG[name].Timeout, ok
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// redactErr keeps a URL's password out of an error message.
func redactErr(err error, u string) string {
	msg := err.Error()
	if i := strings.Index(u, "://"); i >= 0 {
		if at := strings.LastIndex(u, "@"); at > i {
			if colon := strings.Index(u[i+3:at], ":"); colon >= 0 {
				pw := u[i+3+colon+1 : at]
				if pw != "" {
					msg = strings.ReplaceAll(msg, pw, "xxxxx")
				}
			}
		}
	}
	return msg
}

// handles makes redis.client and pg.pool: the function that returns the
// userdata for a named server (name "default" when none is given), one
// per name and VM, with meta as its metatable. find looks the server up;
// kind and table name it in the error for a name config.lua lacks.
func handles(meta *lua.LTable, kind, table string, find func(name string) (any, bool)) lua.LGFunction {
	made := map[string]*lua.LUserData{}
	return func(L *lua.LState) int {
		name := L.OptString(1, "default")
		ud, ok := made[name]
		if !ok {
			v, found := find(name)
			if !found {
				L.RaiseError("%s: no %s named %q in config.lua's %s table", table, kind, name, table)
			}
			ud = L.NewUserData()
			ud.Value, ud.Metatable = v, meta
			made[name] = ud
		}
		L.Push(ud)
		return 1
	}
}

// checkHandle returns the value of the userdata handles made, as the
// first argument of a method call, or raises.
func checkHandle[T any](L *lua.LState, what, example string) T {
	v, ok := L.CheckUserData(1).Value.(T)
	if !ok {
		L.ArgError(1, what+" expected (call it with a colon: "+example+")")
	}
	return v
}
