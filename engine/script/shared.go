package script

import (
	"hash/maphash"
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
// expire. Every operation on a key is atomic across the VMs.
//
// The keys are spread over shards, each with its own lock: a counter per
// message from every worker (the compare.sh "busy" scripts) would
// otherwise serialize all the workers on one lock, which on 16 cores
// is the broker's limit. Only shared.keys and Len visit every shard.
type SharedStore struct {
	seed   maphash.Seed
	shards [sharedShards]sharedShard
}

// sharedShards: enough that workers rarely meet on one lock.
const sharedShards = 64

type sharedShard struct {
	mu sync.Mutex
	m  map[string]*sharedEntry // pointers: incr updates in place, one hash per call
	_  [48]byte                // with mu and m, 64 bytes: a cache line each, so that shards do not share one
}

func (s *SharedStore) shard(k string) *sharedShard {
	return &s.shards[maphash.String(s.seed, k)%sharedShards]
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
func NewSharedStore() *SharedStore {
	s := &SharedStore{seed: maphash.MakeSeed()}
	for i := range s.shards {
		s.shards[i].m = map[string]*sharedEntry{}
	}
	return s
}

// getLocked returns a live entry. The clock is read only for entries that
// can expire: most keys never do, and time.Now is a measurable share of a
// counter increment.
func (s *sharedShard) getLocked(k string) *sharedEntry {
	e := s.m[k]
	if e != nil && e.expires != 0 && time.Now().UnixNano() >= e.expires {
		delete(s.m, k)
		return nil
	}
	return e
}

// Get returns a value (a string, float64 or bool) and whether it is present.
func (s *SharedStore) Get(k string) (any, bool) {
	sh := s.shard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.getLocked(k)
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
	sh := s.shard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.putLocked(k, e, ttl)
}

// putLocked stores an entry with its expiry (ttl > 0) from now.
func (s *sharedShard) putLocked(k string, e sharedEntry, ttl time.Duration) {
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
	sh := s.shard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.getLocked(k)
	if e == nil {
		e = &sharedEntry{kind: sharedNumber, n: init}
		if ttl > 0 {
			e.expires = time.Now().Add(ttl).UnixNano()
		}
		sh.m[k] = e
	}
	if e.kind != sharedNumber {
		return 0, false
	}
	e.n += delta
	return e.n, true
}

// Delete removes a key.
func (s *SharedStore) Delete(k string) {
	sh := s.shard(k)
	sh.mu.Lock()
	delete(sh.m, k)
	sh.mu.Unlock()
}

// Len returns the number of keys, expired ones included until swept.
func (s *SharedStore) Len() int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}

// sweepLocked drops a few expired keys on each write so that keys nobody
// reads again do not accumulate.
func (s *sharedShard) sweepLocked() {
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
			sh := st.shard(k)
			sh.mu.Lock()
			var e sharedEntry
			if p := sh.getLocked(k); p != nil {
				e = *p
			}
			sh.mu.Unlock()
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
			sh := st.shard(k)
			sh.mu.Lock()
			defer sh.mu.Unlock()
			if sh.getLocked(k) != nil {
				L.Push(lua.LFalse)
				return 1
			}
			sh.putLocked(k, e, d)
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
			sh := st.shard(k)
			sh.mu.Lock()
			defer sh.mu.Unlock()
			cur := sh.getLocked(k)
			if (cur == nil && old == lua.LNil) || (cur != nil && cur.sameScalar(old)) {
				sh.putLocked(k, e, d)
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
			var keys []string
			for i := range st.shards {
				sh := &st.shards[i]
				sh.mu.Lock()
				for k, e := range sh.m {
					if strings.HasPrefix(k, prefix) && (e.expires == 0 || now < e.expires) {
						keys = append(keys, k)
					}
				}
				sh.mu.Unlock()
			}
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
			sh := st.shard(k)
			sh.mu.Lock()
			defer sh.mu.Unlock()
			e := sh.getLocked(k)
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
			sh := st.shard(k)
			sh.mu.Lock()
			var members []string
			if e := sh.getLocked(k); e != nil && e.kind == sharedSet {
				members = e.value().([]string)
			}
			sh.mu.Unlock()
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
			sh := st.shard(k)
			sh.mu.Lock()
			n := 0
			if e := sh.getLocked(k); e != nil && e.kind == sharedSet {
				n = len(e.set)
			}
			sh.mu.Unlock()
			L.Push(lua.LNumber(n))
			return 1
		},
		// shared.sismember(key, member) -> bool
		"sismember": func(L *lua.LState) int {
			k, m := L.CheckString(1), L.CheckString(2)
			sh := st.shard(k)
			sh.mu.Lock()
			ok := false
			if e := sh.getLocked(k); e != nil && e.kind == sharedSet {
				_, ok = e.set[m]
			}
			sh.mu.Unlock()
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
	sh := st.shard(k)
	sh.mu.Lock()
	e := sh.getLocked(k)
	if e != nil && e.kind != sharedSet {
		sh.mu.Unlock()
		L.RaiseError("shared: %s holds a %s, not a set", k, kindName(e.kind))
	}
	if e == nil && add {
		e = &sharedEntry{kind: sharedSet, set: map[string]struct{}{}}
		sh.m[k] = e
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
		delete(sh.m, k) // an empty set is no key
	}
	sh.mu.Unlock()
	L.Push(lua.LNumber(n))
	return 1
}

func kindName(k byte) string {
	return [...]string{"nothing", "string", "number", "boolean", "table", "set"}[k]
}
