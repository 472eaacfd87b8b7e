package iolib

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mqttlua/broker/engine/script"
	"github.com/redis/go-redis/v9"
	lua "github.com/yuin/gopher-lua"
)

// The redis module:
//
//	local r = redis.client("cache")   -- a server named in config.lua ("default" if no name)
//	r:cmd("HGET", "user:alice", "password") -> reply | nil, err
//	r:get(k), r:hget(k, f), r:sismember(k, m), r:incr(k), ...
//	r:set(k, v [, ttl_seconds])
//	r:hgetall(k)                             -> { field = value, ... }
//
// Any method is the command of that name (r:hget(...) is
// r:cmd("HGET", ...)). Replies: a string, an integer (a number), a list
// (a table), or nil for Redis' nil reply; a Redis error reply or a
// network failure is nil, err.
type redisModule struct{ l *Lib }

func (m *redisModule) Name() string { return "redis" }

// redisClient is what redis.client returns.
type redisClient struct {
	backend redisBackend
	timeout time.Duration
}

func (m *redisModule) Open(vm *script.VM) *lua.LTable {
	L := vm.L
	meta := L.NewTable()
	methods := L.NewTable()
	run := func(L *lua.LState, rc *redisClient, cmd string, args []any) int {
		var reply any
		err := vm.Await(L, "redis "+cmd, rc.timeout, func(ctx context.Context) error {
			var err error
			reply, err = rc.backend.do(ctx, args)
			return err
		})
		if errors.Is(err, redis.Nil) {
			L.Push(lua.LNil)
			return 1
		}
		if err != nil {
			return fail(L, redisError(err))
		}
		if strings.EqualFold(cmd, "HGETALL") {
			if list, ok := reply.([]any); ok {
				t := L.CreateTable(0, len(list)/2)
				for i := 0; i+1 < len(list); i += 2 {
					t.RawSetString(fmt.Sprint(list[i]), script.ToLua(L, list[i+1]))
				}
				L.Push(t)
				return 1
			}
		}
		L.Push(redisToLua(L, reply))
		return 1
	}
	check := func(L *lua.LState) *redisClient { return checkHandle[*redisClient](L, "redis client", "r:get(k)") }
	argsFrom := func(L *lua.LState, from int) []any {
		args := make([]any, 0, L.GetTop()-from+1)
		for i := from; i <= L.GetTop(); i++ {
			switch v := L.Get(i).(type) {
			case lua.LString:
				args = append(args, string(v))
			case lua.LNumber:
				args = append(args, luaNumber(v))
			case lua.LBool:
				args = append(args, bool(v))
			default:
				L.ArgError(i, "string or number expected, got "+v.Type().String())
			}
		}
		return args
	}
	methods.RawSetString("cmd", L.NewFunction(func(L *lua.LState) int {
		rc := check(L)
		cmd := L.CheckString(2)
		return run(L, rc, cmd, argsFrom(L, 2))
	}))
	methods.RawSetString("set", L.NewFunction(func(L *lua.LState) int {
		rc := check(L)
		args := []any{"SET", L.CheckString(2), L.CheckAny(3).String()}
		if ttl, ok := L.Get(4).(lua.LNumber); ok && ttl > 0 {
			args = append(args, "PX", int64(float64(ttl)*1000))
		}
		return run(L, rc, "SET", args)
	}))
	meta.RawSetString("__index", L.NewFunction(func(L *lua.LState) int {
		name := L.CheckString(2)
		if f := methods.RawGetString(name); f != lua.LNil {
			L.Push(f)
			return 1
		}
		// Any other method is the command of that name.
		cmd := strings.ToUpper(name)
		L.Push(L.NewFunction(func(L *lua.LState) int {
			rc := check(L)
			args := append([]any{cmd}, argsFrom(L, 2)...)
			return run(L, rc, cmd, args)
		}))
		return 1
	}))
	return L.SetFuncs(L.NewTable(), map[string]lua.LGFunction{
		"client": handles(meta, "server", "redis", func(name string) (any, bool) {
			backend, timeout, ok := m.l.redisFor(name)
			return &redisClient{backend: backend, timeout: timeout}, ok
		}),
	})
}

// luaNumber is a Lua number as Redis and SQL take it: an integer when it
// is one.
func luaNumber(v lua.LNumber) any {
	f := float64(v)
	if f == float64(int64(f)) {
		return int64(f)
	}
	return f
}

func redisToLua(L *lua.LState, v any) lua.LValue {
	switch x := v.(type) {
	case []any:
		t := L.CreateTable(len(x), 0)
		for _, e := range x {
			if e == nil {
				// A nil inside a list (MGET of a missing key): false,
				// as a Lua list cannot hold nil.
				t.Append(lua.LFalse)
				continue
			}
			t.Append(redisToLua(L, e))
		}
		return t
	case redis.Error:
		return lua.LString(x.Error())
	}
	return script.ToLua(L, v)
}

func redisError(err error) string {
	if errors.Is(err, context.DeadlineExceeded) {
		return "timeout"
	}
	return err.Error()
}

// goRedis is a go-redis client.
type goRedis struct{ c *redis.Client }

func (g *goRedis) do(ctx context.Context, args []any) (any, error) {
	return g.c.Do(ctx, args...).Result()
}

func (g *goRedis) close() { g.c.Close() }
