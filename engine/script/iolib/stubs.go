package iolib

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/mqttlua/broker/engine/script"
	"github.com/redis/go-redis/v9"
	lua "github.com/yuin/gopher-lua"
)

// Stubs answer the http, redis and pg modules in script tests, as the
// tests declared with the stub module:
//
//	stub.http{ url = "http://auth/check", method = "POST", status = 200,
//	           headers = {...}, body = '{"result":"allow"}', delay = 0.05 }
//	stub.http{ url = "http://auth/check", error = "connection refused" }
//	stub.http{ url = "http://auth/check", match = '"username":"bob"', status = 200, body = ... }
//	stub.redis{ command = { "HGET", "user:alice", "password" }, reply = "..." }
//	stub.pg{ sql = "SELECT ...", rows = { { id = 1 } }, affected = 1 }
//	stub.calls("http")   -- what was asked, in order: { "POST http://auth/check", ... }
//
// An HTTP stub with match answers only requests whose body contains it,
// before the stubs without one. delay (seconds) is how long the answer takes: the handler waits, and
// its worker serves others meanwhile; a delay past the call's timeout is
// a timeout. A call nothing declared fails with "no stub for ...". The
// setup block runs in every worker, so declaring the same stub again
// replaces it.
type Stubs struct {
	mu    sync.Mutex
	http  []*httpStub
	redis map[string]*stubAnswer
	pg    map[string]*stubAnswer
	calls map[string][]string
}

type httpStub struct {
	method, url, match string
	answer             *stubAnswer
}

type stubAnswer struct {
	delay time.Duration
	err   string
	// http
	status  int
	headers map[string]string
	body    string
	// redis
	reply any
	// pg
	cols     []string
	rows     [][]any
	affected int64
}

// NewStubs returns an empty set of stubs.
func NewStubs() *Stubs {
	return &Stubs{redis: map[string]*stubAnswer{}, pg: map[string]*stubAnswer{}, calls: map[string][]string{}}
}

// Calls returns what was asked of kind ("http", "redis", "pg"), in order.
func (s *Stubs) Calls(kind string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.calls[kind]...)
}

func (s *Stubs) find(kind string, table map[string]*stubAnswer, keys ...string) (*stubAnswer, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[kind] = append(s.calls[kind], keys[0])
	for _, k := range keys {
		if a, ok := table[k]; ok {
			return a, nil
		}
	}
	return nil, fmt.Errorf("no stub for %s %s", kind, keys[0])
}

// wait waits out an answer's delay, or the call's context.
func (a *stubAnswer) wait(ctx context.Context) error {
	if a.delay > 0 {
		t := time.NewTimer(a.delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if a.err != "" {
		return errors.New(a.err)
	}
	return nil
}

// RoundTrip answers the http module.
func (s *Stubs) RoundTrip(req *http.Request) (*http.Response, error) {
	u := req.URL.String()
	var body []byte
	if req.Body != nil {
		body, _ = io.ReadAll(req.Body)
	}
	s.mu.Lock()
	s.calls["http"] = append(s.calls["http"], req.Method+" "+u)
	var a *stubAnswer
	for _, pass := range []bool{true, false} {
		for _, h := range s.http {
			if a == nil && (h.match != "") == pass && (h.method == "*" || h.method == req.Method) && h.url == u &&
				bytes.Contains(body, []byte(h.match)) {
				a = h.answer
			}
		}
	}
	s.mu.Unlock()
	if a == nil {
		return nil, fmt.Errorf("no stub for http %s %s", req.Method, u)
	}
	if err := a.wait(req.Context()); err != nil {
		return nil, err
	}
	resp := &http.Response{StatusCode: a.status, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(a.body)), Request: req,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1}
	for k, v := range a.headers {
		resp.Header.Set(k, v)
	}
	return resp, nil
}

func redisKey(args []any) string {
	var b bytes.Buffer
	for i, a := range args {
		if i > 0 {
			b.WriteByte(' ')
		}
		s := fmt.Sprint(a)
		if i == 0 {
			s = strings.ToUpper(s)
		}
		b.WriteString(s)
	}
	return b.String()
}

func (s *Stubs) do(ctx context.Context, args []any) (any, error) {
	a, err := s.find("redis", s.redis, redisKey(args))
	if err != nil {
		return nil, err
	}
	if err := a.wait(ctx); err != nil {
		return nil, err
	}
	if a.reply == nil {
		return nil, redis.Nil
	}
	return a.reply, nil
}

func (s *Stubs) query(ctx context.Context, sql string, args []any) ([]string, [][]any, int64, error) {
	key := strings.Join(strings.Fields(sql), " ")
	a, err := s.find("pg", s.pg, key)
	if err != nil {
		return nil, nil, 0, err
	}
	if err := a.wait(ctx); err != nil {
		return nil, nil, 0, err
	}
	return a.cols, a.rows, a.affected, nil
}

func (s *Stubs) close() {}

// stubModule is the Lua side: stub.http, stub.redis, stub.pg, stub.calls.
type stubModule struct{ s *Stubs }

func (m *stubModule) Name() string { return "stub" }

func (m *stubModule) Open(vm *script.VM) *lua.LTable {
	L := vm.L
	s := m.s
	common := func(t *lua.LTable) *stubAnswer {
		a := &stubAnswer{}
		if d, ok := t.RawGetString("delay").(lua.LNumber); ok {
			a.delay = time.Duration(float64(d) * float64(time.Second))
		}
		if e, ok := t.RawGetString("error").(lua.LString); ok {
			a.err = string(e)
		}
		return a
	}
	return L.SetFuncs(L.NewTable(), map[string]lua.LGFunction{
		"http": func(L *lua.LState) int {
			t := L.CheckTable(1)
			a := common(t)
			u, ok := t.RawGetString("url").(lua.LString)
			if !ok {
				L.ArgError(1, "url missing")
			}
			method := "*"
			if m, ok := t.RawGetString("method").(lua.LString); ok {
				method = strings.ToUpper(string(m))
			}
			a.status = 200
			if st, ok := t.RawGetString("status").(lua.LNumber); ok {
				a.status = int(st)
			}
			if b, ok := t.RawGetString("body").(lua.LString); ok {
				a.body = string(b)
			}
			a.headers = map[string]string{}
			if h, ok := t.RawGetString("headers").(*lua.LTable); ok {
				h.ForEach(func(k, v lua.LValue) { a.headers[k.String()] = v.String() })
			}
			match, _ := t.RawGetString("match").(lua.LString)
			h := &httpStub{method: method, url: string(u), match: string(match), answer: a}
			s.mu.Lock()
			replaced := false
			for i, old := range s.http {
				if old.method == h.method && old.url == h.url && old.match == h.match {
					s.http[i], replaced = h, true
				}
			}
			if !replaced {
				s.http = append(s.http, h)
			}
			s.mu.Unlock()
			return 0
		},
		"redis": func(L *lua.LState) int {
			t := L.CheckTable(1)
			a := common(t)
			cmd, ok := t.RawGetString("command").(*lua.LTable)
			if !ok {
				L.ArgError(1, "command missing: a list such as { \"GET\", \"key\" }")
			}
			var args []any
			cmd.ForEach(func(_, v lua.LValue) { args = append(args, v.String()) })
			reply, err := script.FromLua(t.RawGetString("reply"))
			if err != nil {
				L.ArgError(1, "reply: "+err.Error())
			}
			a.reply = reply
			s.mu.Lock()
			s.redis[redisKey(args)] = a
			s.mu.Unlock()
			return 0
		},
		"pg": func(L *lua.LState) int {
			t := L.CheckTable(1)
			a := common(t)
			sql, ok := t.RawGetString("sql").(lua.LString)
			if !ok {
				L.ArgError(1, "sql missing")
			}
			if n, ok := t.RawGetString("affected").(lua.LNumber); ok {
				a.affected = int64(n)
			}
			if rows, ok := t.RawGetString("rows").(*lua.LTable); ok {
				seen := map[string]bool{}
				var maps []map[string]any
				rows.ForEach(func(_, v lua.LValue) {
					r, _ := script.FromLua(v)
					m, _ := r.(map[string]any)
					for k := range m {
						if !seen[k] {
							seen[k] = true
							a.cols = append(a.cols, k)
						}
					}
					maps = append(maps, m)
				})
				sort.Strings(a.cols)
				for _, m := range maps {
					row := make([]any, len(a.cols))
					for i, c := range a.cols {
						row[i] = m[c]
					}
					a.rows = append(a.rows, row)
				}
				if a.affected == 0 {
					a.affected = int64(len(a.rows))
				}
			}
			s.mu.Lock()
			s.pg[strings.Join(strings.Fields(string(sql)), " ")] = a
			s.mu.Unlock()
			return 0
		},
		"calls": func(L *lua.LState) int {
			t := L.NewTable()
			for _, c := range s.Calls(L.CheckString(1)) {
				t.Append(lua.LString(c))
			}
			L.Push(t)
			return 1
		},
	})
}
