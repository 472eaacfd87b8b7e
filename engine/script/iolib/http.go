package iolib

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/mqttlua/broker/engine/script"
	lua "github.com/yuin/gopher-lua"
)

// The http module:
//
//	http.request{ method = "POST", url = "https://...", headers = {...},
//	              body = "...", timeout = 2 }  -> res | nil, err
//	http.get(url [, opts])                     -> res | nil, err
//	http.post(url, body [, opts])              -> res | nil, err
//
// res is { status = 200, headers = { ["content-type"] = "..." }, body =
// "..." }: any status is an answer (a 500 too); err is for no answer
// (refused, timed out, reset, a body over the limit). Header names are
// lowercase; repeated headers are joined with ", ".
type httpModule struct{ l *Lib }

func (m *httpModule) Name() string { return "http" }

func (m *httpModule) Open(vm *script.VM) *lua.LTable {
	L := vm.L
	do := func(L *lua.LState, opts *lua.LTable, method, rawURL, body string, hasBody bool) int {
		return m.request(vm, L, opts, method, rawURL, body, hasBody)
	}
	return L.SetFuncs(L.NewTable(), map[string]lua.LGFunction{
		"request": func(L *lua.LState) int {
			opts := L.CheckTable(1)
			body, hasBody := opts.RawGetString("body").(lua.LString)
			method, _ := opts.RawGetString("method").(lua.LString)
			u, ok := opts.RawGetString("url").(lua.LString)
			if !ok {
				L.ArgError(1, "url missing")
			}
			return do(L, opts, string(method), string(u), string(body), hasBody)
		},
		"get": func(L *lua.LState) int {
			return do(L, L.OptTable(2, nil), "GET", L.CheckString(1), "", false)
		},
		"post": func(L *lua.LState) int {
			return do(L, L.OptTable(3, nil), "POST", L.CheckString(1), L.CheckString(2), true)
		},
	})
}

func (m *httpModule) request(vm *script.VM, L *lua.LState, opts *lua.LTable, method, rawURL, body string, hasBody bool) int {
	if method == "" {
		method = "GET"
		if hasBody {
			method = "POST"
		}
	}
	method = strings.ToUpper(method)
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		L.ArgError(1, fmt.Sprintf("url %q: want http:// or https:// and a host", rawURL))
	}
	timeout := m.l.cfg.HTTP.Timeout
	header := http.Header{}
	if opts != nil {
		if t, ok := opts.RawGetString("timeout").(lua.LNumber); ok && t > 0 {
			timeout = time.Duration(float64(t) * float64(time.Second))
		}
		if h, ok := opts.RawGetString("headers").(*lua.LTable); ok {
			h.ForEach(func(k, v lua.LValue) {
				header.Set(k.String(), v.String())
			})
		}
	}
	maxBody := m.l.cfg.HTTP.MaxBody
	var status int
	var respHeader http.Header
	var respBody []byte
	err = vm.Await(L, "http.request", timeout, func(ctx context.Context) error {
		var rd io.Reader
		if hasBody {
			rd = strings.NewReader(body)
		}
		req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
		if err != nil {
			return err
		}
		req.Header = header
		resp, err := m.l.http.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		respBody, err = io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
		if err != nil {
			return err
		}
		if int64(len(respBody)) > maxBody {
			return fmt.Errorf("response body over %d bytes", maxBody)
		}
		status, respHeader = resp.StatusCode, resp.Header
		return nil
	})
	if err != nil {
		return fail(L, httpError(err))
	}
	res := L.CreateTable(0, 3)
	res.RawSetString("status", lua.LNumber(status))
	h := L.CreateTable(0, len(respHeader))
	for k, v := range respHeader {
		h.RawSetString(strings.ToLower(k), lua.LString(strings.Join(v, ", ")))
	}
	res.RawSetString("headers", h)
	res.RawSetString("body", lua.LString(respBody))
	L.Push(res)
	return 1
}

// httpError is an error as scripts see it: what went wrong, without Go's
// `Get "url":` prefix.
func httpError(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "timeout"
	}
	return err.Error()
}

// fail returns nil, msg to Lua.
func fail(L *lua.LState, msg string) int {
	L.Push(lua.LNil)
	L.Push(lua.LString(msg))
	return 2
}
