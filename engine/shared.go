package engine

import (
	"sync"
	"time"

	lua "github.com/yuin/gopher-lua"
)

// SharedStore is the key-value store every VM sees as `shared`, like
// OpenResty's lua_shared_dict or Swoole\Table: state shared across VMs
// lives here, not in Lua globals. Values are strings, numbers or booleans;
// keys may expire.
type SharedStore struct {
	mu sync.Mutex
	m  map[string]sharedEntry
}

type sharedEntry struct {
	v       any // string, float64 or bool
	expires int64
}

// NewSharedStore returns an empty store.
func NewSharedStore() *SharedStore { return &SharedStore{m: map[string]sharedEntry{}} }

func (s *SharedStore) getLocked(k string, now int64) (sharedEntry, bool) {
	e, ok := s.m[k]
	if ok && e.expires != 0 && now >= e.expires {
		delete(s.m, k)
		return sharedEntry{}, false
	}
	return e, ok
}

// Get returns a value and whether it is present.
func (s *SharedStore) Get(k string) (any, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.getLocked(k, time.Now().UnixNano())
	return e.v, ok
}

// Set stores a value; ttl > 0 makes it expire.
func (s *SharedStore) Set(k string, v any, ttl time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := sharedEntry{v: v}
	if ttl > 0 {
		e.expires = time.Now().Add(ttl).UnixNano()
	}
	s.m[k] = e
	s.sweepLocked()
}

// Incr adds delta to a numeric value atomically, starting from init when the
// key is absent, and returns the new value. ttl > 0 sets the expiry when the
// key is created. ok is false when the key holds a non-number.
func (s *SharedStore) Incr(k string, delta, init float64, ttl time.Duration) (float64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now().UnixNano()
	e, found := s.getLocked(k, now)
	if !found {
		e = sharedEntry{v: init}
		if ttl > 0 {
			e.expires = now + int64(ttl)
		}
	}
	n, ok := e.v.(float64)
	if !ok {
		return 0, false
	}
	e.v = n + delta
	s.m[k] = e
	return n + delta, true
}

// Delete removes a key.
func (s *SharedStore) Delete(k string) {
	s.mu.Lock()
	delete(s.m, k)
	s.mu.Unlock()
}

// Len returns the number of keys, expired ones included until swept.
func (s *SharedStore) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

// sweepLocked drops a few expired keys on each write so that keys nobody
// reads again do not accumulate.
func (s *SharedStore) sweepLocked() {
	now := time.Now().UnixNano()
	n := 0
	for k, e := range s.m {
		if e.expires != 0 && now >= e.expires {
			delete(s.m, k)
		}
		if n++; n >= 8 {
			return
		}
	}
}

func (vm *VM) openShared() *lua.LTable {
	L := vm.L
	st := vm.srv.Shared
	ttl := func(L *lua.LState, n int) time.Duration {
		sec := float64(L.OptNumber(n, 0))
		if sec < 0 {
			L.ArgError(n, "expiry must be >= 0 seconds")
		}
		return time.Duration(sec * float64(time.Second))
	}
	return L.SetFuncs(L.NewTable(), map[string]lua.LGFunction{
		// shared.get(key) -> value | nil
		"get": func(L *lua.LState) int {
			v, ok := st.Get(L.CheckString(1))
			if !ok {
				L.Push(lua.LNil)
				return 1
			}
			L.Push(ToLua(L, v))
			return 1
		},
		// shared.set(key, value [, ttl_seconds]); value nil deletes
		"set": func(L *lua.LState) int {
			k := L.CheckString(1)
			switch v := L.Get(2).(type) {
			case *lua.LNilType:
				st.Delete(k)
			case lua.LString:
				st.Set(k, string(v), ttl(L, 3))
			case lua.LNumber:
				st.Set(k, float64(v), ttl(L, 3))
			case lua.LBool:
				st.Set(k, bool(v), ttl(L, 3))
			default:
				L.ArgError(2, "string, number, boolean or nil expected, got "+v.Type().String())
			}
			return 0
		},
		// shared.incr(key, delta [, init [, ttl_seconds]]) -> n | nil, "not a number"
		"incr": func(L *lua.LState) int {
			k := L.CheckString(1)
			delta := float64(L.OptNumber(2, 1))
			init := float64(L.OptNumber(3, 0))
			n, ok := st.Incr(k, delta, init, ttl(L, 4))
			if !ok {
				L.Push(lua.LNil)
				L.Push(lua.LString("not a number"))
				return 2
			}
			L.Push(lua.LNumber(n))
			return 1
		},
		// shared.delete(key)
		"delete": func(L *lua.LState) int {
			st.Delete(L.CheckString(1))
			return 0
		},
	})
}
