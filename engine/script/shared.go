package script

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
	m  map[string]*sharedEntry // pointers: incr updates in place, one hash per call
}

// sharedEntry holds one value unboxed, so that shared.incr on a hot path
// (a counter per message) allocates nothing: a float64 in an interface
// would be a heap allocation per increment.
type sharedEntry struct {
	kind    byte // sharedString, sharedNumber or sharedBool
	b       bool
	n       float64
	s       string
	expires int64 // UnixNano; 0 never
}

const (
	sharedString byte = iota + 1
	sharedNumber
	sharedBool
)

func (e sharedEntry) value() any {
	switch e.kind {
	case sharedString:
		return e.s
	case sharedNumber:
		return e.n
	case sharedBool:
		return e.b
	}
	return nil
}

func entryOf(v any) sharedEntry {
	switch x := v.(type) {
	case string:
		return sharedEntry{kind: sharedString, s: x}
	case float64:
		return sharedEntry{kind: sharedNumber, n: x}
	case bool:
		return sharedEntry{kind: sharedBool, b: x}
	}
	panic("shared: unsupported value type")
}

// NewSharedStore returns an empty store.
func NewSharedStore() *SharedStore { return &SharedStore{m: map[string]*sharedEntry{}} }

// getLocked returns a live entry. The clock is read only for entries that
// can expire: most keys never do, and time.Now is a measurable share of a
// counter increment.
func (s *SharedStore) getLocked(k string) *sharedEntry {
	e := s.m[k]
	if e != nil && e.expires != 0 && time.Now().UnixNano() >= e.expires {
		delete(s.m, k)
		return nil
	}
	return e
}

// Get returns a value (a string, float64 or bool) and whether it is present.
func (s *SharedStore) Get(k string) (any, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.getLocked(k)
	if e == nil {
		return nil, false
	}
	return e.value(), true
}

// Set stores a string, float64 or bool; ttl > 0 makes it expire.
func (s *SharedStore) Set(k string, v any, ttl time.Duration) {
	s.set(k, entryOf(v), ttl)
}

func (s *SharedStore) set(k string, e sharedEntry, ttl time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ttl > 0 {
		e.expires = time.Now().Add(ttl).UnixNano()
	}
	s.m[k] = &e
	s.sweepLocked()
}

// Incr adds delta to a numeric value atomically, starting from init when the
// key is absent, and returns the new value. ttl > 0 sets the expiry when the
// key is created. ok is false when the key holds a non-number.
func (s *SharedStore) Incr(k string, delta, init float64, ttl time.Duration) (float64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.getLocked(k)
	if e == nil {
		e = &sharedEntry{kind: sharedNumber, n: init}
		if ttl > 0 {
			e.expires = time.Now().Add(ttl).UnixNano()
		}
		s.m[k] = e
	}
	if e.kind != sharedNumber {
		return 0, false
	}
	e.n += delta
	return e.n, true
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
	st := vm.pool.Shared
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
			k := L.CheckString(1) // may raise: not under the lock
			st.mu.Lock()
			var e sharedEntry
			if p := st.getLocked(k); p != nil {
				e = *p
			}
			st.mu.Unlock()
			switch e.kind {
			case sharedString:
				L.Push(lua.LString(e.s))
			case sharedNumber:
				L.Push(lua.LNumber(e.n))
			case sharedBool:
				L.Push(lua.LBool(e.b))
			default:
				L.Push(lua.LNil)
			}
			return 1
		},
		// shared.set(key, value [, ttl_seconds]); value nil deletes
		"set": func(L *lua.LState) int {
			k := L.CheckString(1)
			switch v := L.Get(2).(type) {
			case *lua.LNilType:
				st.Delete(k)
			case lua.LString:
				st.set(k, sharedEntry{kind: sharedString, s: string(v)}, ttl(L, 3))
			case lua.LNumber:
				st.set(k, sharedEntry{kind: sharedNumber, n: float64(v)}, ttl(L, 3))
			case lua.LBool:
				st.set(k, sharedEntry{kind: sharedBool, b: bool(v)}, ttl(L, 3))
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
