package script

import (
	"sort"
	"strings"
	"sync"
	"time"

	lua "github.com/yuin/gopher-lua"
)

// SharedStore is the key-value store every VM sees as `shared`, like
// OpenResty's lua_shared_dict or Swoole\Table: state shared across VMs
// lives here, not in Lua globals. Values are strings, numbers, booleans,
// tables (stored by value, as plain data) and sets of strings; keys may
// expire. Every operation is atomic across the VMs (one lock).
type SharedStore struct {
	mu sync.Mutex
	m  map[string]*sharedEntry // pointers: incr updates in place, one hash per call
}

// sharedEntry holds one value unboxed, so that shared.incr on a hot path
// (a counter per message) allocates nothing: a float64 in an interface
// would be a heap allocation per increment.
type sharedEntry struct {
	kind    byte // sharedString, sharedNumber, sharedBool, sharedTable or sharedSet
	b       bool
	n       float64
	s       string
	t       any                 // sharedTable: plain data (FromLua)
	set     map[string]struct{} // sharedSet
	expires int64               // UnixNano; 0 never
}

const (
	sharedString byte = iota + 1
	sharedNumber
	sharedBool
	sharedTable
	sharedSet
)

func (e sharedEntry) value() any {
	switch e.kind {
	case sharedString:
		return e.s
	case sharedNumber:
		return e.n
	case sharedBool:
		return e.b
	case sharedTable:
		return e.t
	case sharedSet:
		members := make([]string, 0, len(e.set))
		for m := range e.set {
			members = append(members, m)
		}
		sort.Strings(members)
		return members
	}
	return nil
}

// sameScalar reports whether an entry holds the scalar Lua value v
// (compare-and-set compares scalars only).
func (e *sharedEntry) sameScalar(v lua.LValue) bool {
	switch x := v.(type) {
	case lua.LString:
		return e.kind == sharedString && e.s == string(x)
	case lua.LNumber:
		return e.kind == sharedNumber && e.n == float64(x)
	case lua.LBool:
		return e.kind == sharedBool && e.b == bool(x)
	}
	return false
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
	s.putLocked(k, e, ttl)
}

// putLocked stores an entry with its expiry (ttl > 0) from now.
func (s *SharedStore) putLocked(k string, e sharedEntry, ttl time.Duration) {
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
			L.Push(entryValue(L, &e))
			return 1
		},
		// shared.set(key, value [, ttl_seconds]); value nil deletes
		"set": func(L *lua.LState) int {
			k := L.CheckString(1)
			if L.Get(2) == lua.LNil {
				st.Delete(k)
				return 0
			}
			st.set(k, entryArg(L, 2), ttl(L, 3))
			return 0
		},
		// shared.add(key, value [, ttl_seconds]) -> true | false (the key
		// exists): insert if absent.
		"add": func(L *lua.LState) int {
			k := L.CheckString(1)
			e, d := entryArg(L, 2), ttl(L, 3)
			st.mu.Lock()
			defer st.mu.Unlock()
			if st.getLocked(k) != nil {
				L.Push(lua.LFalse)
				return 1
			}
			st.putLocked(k, e, d)
			L.Push(lua.LTrue)
			return 1
		},
		// shared.cas(key, old, new [, ttl_seconds]) -> true | false, current:
		// sets new only if the value is old (a string, number or boolean;
		// nil: absent).
		"cas": func(L *lua.LState) int {
			k := L.CheckString(1)
			old := L.Get(2)
			e, d := entryArg(L, 3), ttl(L, 4)
			st.mu.Lock()
			defer st.mu.Unlock()
			cur := st.getLocked(k)
			if (cur == nil && old == lua.LNil) || (cur != nil && cur.sameScalar(old)) {
				st.putLocked(k, e, d)
				L.Push(lua.LTrue)
				return 1
			}
			L.Push(lua.LFalse)
			if cur == nil {
				L.Push(lua.LNil)
			} else {
				L.Push(entryValue(L, cur))
			}
			return 2
		},
		// shared.keys(prefix [, limit]) -> the live keys starting with
		// prefix, sorted
		"keys": func(L *lua.LState) int {
			prefix, limit := L.CheckString(1), L.OptInt(2, 0)
			now := time.Now().UnixNano()
			st.mu.Lock()
			var keys []string
			for k, e := range st.m {
				if strings.HasPrefix(k, prefix) && (e.expires == 0 || now < e.expires) {
					keys = append(keys, k)
				}
			}
			st.mu.Unlock()
			sort.Strings(keys)
			if limit > 0 && len(keys) > limit {
				keys = keys[:limit]
			}
			t := L.CreateTable(len(keys), 0)
			for _, k := range keys {
				t.Append(lua.LString(k))
			}
			L.Push(t)
			return 1
		},
		// shared.expire(key, ttl_seconds) -> whether the key exists: sets
		// (0: clears) its expiry from now.
		"expire": func(L *lua.LState) int {
			k, d := L.CheckString(1), ttl(L, 2)
			st.mu.Lock()
			defer st.mu.Unlock()
			e := st.getLocked(k)
			if e != nil {
				e.expires = 0
				if d > 0 {
					e.expires = time.Now().Add(d).UnixNano()
				}
			}
			L.Push(lua.LBool(e != nil))
			return 1
		},
		// shared.sadd(key, member...) -> how many were new
		"sadd": func(L *lua.LState) int { return setOp(L, st, true) },
		// shared.srem(key, member...) -> how many were there
		"srem": func(L *lua.LState) int { return setOp(L, st, false) },
		// shared.smembers(key) -> sorted list (empty for no set)
		"smembers": func(L *lua.LState) int {
			k := L.CheckString(1)
			st.mu.Lock()
			var members []string
			if e := st.getLocked(k); e != nil && e.kind == sharedSet {
				members = e.value().([]string)
			}
			st.mu.Unlock()
			t := L.CreateTable(len(members), 0)
			for _, m := range members {
				t.Append(lua.LString(m))
			}
			L.Push(t)
			return 1
		},
		// shared.scard(key) -> members
		"scard": func(L *lua.LState) int {
			k := L.CheckString(1)
			st.mu.Lock()
			n := 0
			if e := st.getLocked(k); e != nil && e.kind == sharedSet {
				n = len(e.set)
			}
			st.mu.Unlock()
			L.Push(lua.LNumber(n))
			return 1
		},
		// shared.sismember(key, member) -> bool
		"sismember": func(L *lua.LState) int {
			k, m := L.CheckString(1), L.CheckString(2)
			st.mu.Lock()
			ok := false
			if e := st.getLocked(k); e != nil && e.kind == sharedSet {
				_, ok = e.set[m]
			}
			st.mu.Unlock()
			L.Push(lua.LBool(ok))
			return 1
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

// entryArg reads argument n as a value to store: a string, number,
// boolean, or a table (copied as plain data: later changes to the Lua
// table do not reach the store).
func entryArg(L *lua.LState, n int) sharedEntry {
	switch v := L.Get(n).(type) {
	case lua.LString:
		return sharedEntry{kind: sharedString, s: string(v)}
	case lua.LNumber:
		return sharedEntry{kind: sharedNumber, n: float64(v)}
	case lua.LBool:
		return sharedEntry{kind: sharedBool, b: bool(v)}
	case *lua.LTable:
		data, err := FromLua(v)
		if err != nil {
			L.ArgError(n, err.Error())
		}
		return sharedEntry{kind: sharedTable, t: data}
	default:
		L.ArgError(n, "string, number, boolean or table expected, got "+v.Type().String())
	}
	return sharedEntry{}
}

// entryValue is an entry as a Lua value (a fresh table for tables and
// sets); nil for none.
func entryValue(L *lua.LState, e *sharedEntry) lua.LValue {
	switch e.kind {
	case sharedString:
		return lua.LString(e.s)
	case sharedNumber:
		return lua.LNumber(e.n)
	case sharedBool:
		return lua.LBool(e.b)
	case sharedTable:
		return ToLua(L, e.t)
	case sharedSet:
		members := e.value().([]string)
		t := L.CreateTable(len(members), 0)
		for _, m := range members {
			t.Append(lua.LString(m))
		}
		return t
	}
	return lua.LNil
}

// setOp adds (add) or removes the members after the key to or from the
// set at the key, and pushes how many changed. A key holding another
// kind of value raises.
func setOp(L *lua.LState, st *SharedStore, add bool) int {
	k := L.CheckString(1)
	members := make([]string, 0, L.GetTop()-1)
	for i := 2; i <= L.GetTop(); i++ {
		members = append(members, L.CheckString(i))
	}
	st.mu.Lock()
	e := st.getLocked(k)
	if e != nil && e.kind != sharedSet {
		st.mu.Unlock()
		L.RaiseError("shared: %s holds a %s, not a set", k, kindName(e.kind))
	}
	if e == nil && add {
		e = &sharedEntry{kind: sharedSet, set: map[string]struct{}{}}
		st.m[k] = e
	}
	n := 0
	for _, m := range members {
		if e == nil {
			break
		}
		_, there := e.set[m]
		switch {
		case add && !there:
			e.set[m] = struct{}{}
			n++
		case !add && there:
			delete(e.set, m)
			n++
		}
	}
	if e != nil && len(e.set) == 0 {
		delete(st.m, k) // an empty set is no key
	}
	st.mu.Unlock()
	L.Push(lua.LNumber(n))
	return 1
}

func kindName(k byte) string {
	return [...]string{"nothing", "string", "number", "boolean", "table", "set"}[k]
}
