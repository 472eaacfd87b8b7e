package script

import (
	"strings"

	lua "github.com/yuin/gopher-lua"
)

// string.find, match, gmatch and gsub on the matcher of pattern.go, with
// Lua 5.1's semantics (the manual's §5.4), checked against gopher-lua's
// by strlib_test.go. They replace gopher-lua's in the sandbox's string
// table, so every path to them is covered. gsub also builds its result in
// one pass (gopher-lua's copied the whole string once per match).

// errPatternDeadline stops a match whose VM ran past its deadline.
type errPatternDeadline struct{}

// newMatcher returns a matcher whose steps stop when the VM's context is
// done (the handler deadline).
func newMatcher(L *lua.LState, src, pat string) *matcher {
	m := &matcher{src: src, pat: pat}
	if ctx := L.Context(); ctx != nil {
		done := ctx.Done()
		m.check = func() {
			select {
			case <-done:
				panic(errPatternDeadline{})
			default:
			}
		}
	}
	return m
}

// protect runs f, turning a malformed pattern or a deadline into a Lua
// error.
func protect(L *lua.LState, f func() int) (n int) {
	defer func() {
		switch e := recover().(type) {
		case nil:
		case patternError:
			L.RaiseError("%s", string(e))
		case errPatternDeadline:
			L.RaiseError("pattern matching ran past the handler deadline")
		default:
			panic(e)
		}
	}()
	return f()
}

// specials are the characters that make a pattern more than a plain
// string.
const specials = "^$*+?.([%-"

// startIndex turns a Lua string position (1-based, negative from the end)
// into an offset in [0, n], or -1 past the end (where, as in Lua 5.2 and
// gopher-lua, nothing is found).
func startIndex(i, n int) int {
	if i < 0 {
		i = n + i + 1
	}
	i--
	if i < 0 {
		return 0
	}
	if i > n {
		return -1
	}
	return i
}

// pushCaptures pushes the captures of a match from s to e (the whole
// match when it has none and whole is set) and returns their count.
func pushCaptures(L *lua.LState, m *matcher, s, e int, whole bool) int {
	n := m.captureCount(whole)
	for i := 0; i < n; i++ {
		text, pos, isPos := m.captureAt(i, s, e)
		if isPos {
			L.Push(lua.LNumber(pos))
		} else {
			L.Push(lua.LString(text))
		}
	}
	return n
}

// strFind is string.find(s, pattern [, init [, plain]]).
func strFind(L *lua.LState) int { return findAux(L, true) }

// strMatch is string.match(s, pattern [, init]).
func strMatch(L *lua.LState) int { return findAux(L, false) }

func findAux(L *lua.LState, find bool) int {
	src := L.CheckString(1)
	pat := L.CheckString(2)
	init := startIndex(L.OptInt(3, 1), len(src))
	if init < 0 {
		L.Push(lua.LNil)
		return 1
	}
	if find && (lua.LVAsBool(L.Get(4)) || !strings.ContainsAny(pat, specials)) {
		if i := strings.Index(src[init:], pat); i >= 0 {
			L.Push(lua.LNumber(init + i + 1))
			L.Push(lua.LNumber(init + i + len(pat)))
			return 2
		}
		L.Push(lua.LNil)
		return 1
	}
	return protect(L, func() int {
		m := newMatcher(L, src, pat)
		s, e := m.find(init, true)
		if s < 0 {
			L.Push(lua.LNil)
			return 1
		}
		if find {
			L.Push(lua.LNumber(s + 1))
			L.Push(lua.LNumber(e))
			return 2 + pushCaptures(L, m, s, e, false)
		}
		return pushCaptures(L, m, s, e, true)
	})
}

// strGmatch is string.gmatch(s, pattern): an iterator over the matches,
// found one at a time as it is called.
func strGmatch(L *lua.LState) int {
	src := L.CheckString(1)
	pat := L.CheckString(2)
	// A leading '^' anchors the iteration at the start, as in gopher-lua:
	// it yields one match at most.
	p, anchored := 0, len(pat) > 0 && pat[0] == '^'
	if anchored {
		p = 1
	}
	next := 0
	L.Push(L.NewFunction(func(L *lua.LState) int {
		return protect(L, func() int {
			m := newMatcher(L, src, pat)
			for s := next; s <= len(src) && !(anchored && s > 0); s++ {
				m.level, m.depth = 0, 0
				if e := m.match(s, p); e != -1 {
					next = e
					if e == s {
						next++ // an empty match: go on from the next position
					}
					return pushCaptures(L, m, s, e, true)
				}
			}
			next = len(src) + 1
			return 0
		})
	}))
	return 1
}

// strGsub is string.gsub(s, pattern, repl [, n]).
func strGsub(L *lua.LState) int {
	src := L.CheckString(1)
	pat := L.CheckString(2)
	repl := L.CheckAny(3)
	switch repl.(type) {
	case lua.LString, lua.LNumber, *lua.LTable, *lua.LFunction:
	default:
		L.TypeError(3, lua.LTString)
	}
	max := L.OptInt(4, len(src)+1)
	return protect(L, func() int {
		m := newMatcher(L, src, pat)
		p := 0
		anchor := len(pat) > 0 && pat[0] == '^'
		if anchor {
			p = 1
		}
		var b strings.Builder
		s, n := 0, 0
		for n < max {
			m.level, m.depth = 0, 0
			e := m.match(s, p)
			if e != -1 {
				n++
				addValue(L, m, &b, s, e, repl)
			}
			switch {
			case e != -1 && e > s:
				s = e
			case s < len(src):
				b.WriteByte(src[s])
				s++
			default:
				goto done
			}
			if anchor {
				break
			}
		}
	done:
		b.WriteString(src[s:])
		L.Push(lua.LString(b.String()))
		L.Push(lua.LNumber(n))
		return 2
	})
}

// addValue appends the replacement of the match from s to e.
func addValue(L *lua.LState, m *matcher, b *strings.Builder, s, e int, repl lua.LValue) {
	var v lua.LValue
	switch r := repl.(type) {
	case lua.LString, lua.LNumber:
		addString(m, b, s, e, lua.LVAsString(r))
		return
	case *lua.LTable:
		v = L.GetTable(r, captureValue(m, 0, s, e))
	case *lua.LFunction:
		top := L.GetTop()
		L.Push(r)
		n := pushCaptures(L, m, s, e, true)
		L.Call(n, 1)
		v = L.Get(-1)
		L.SetTop(top)
	}
	switch x := v.(type) {
	case lua.LString:
		b.WriteString(string(x))
	case lua.LNumber:
		b.WriteString(x.String())
	default:
		if !lua.LVAsBool(v) {
			b.WriteString(m.src[s:e]) // nil or false: keep the match
			return
		}
		L.RaiseError("invalid replacement value (a %s)", v.Type().String())
	}
}

// captureValue is capture i (or the whole match) as a Lua value.
func captureValue(m *matcher, i, s, e int) lua.LValue {
	text, pos, isPos := m.captureAt(i, s, e)
	if isPos {
		return lua.LNumber(pos)
	}
	return lua.LString(text)
}

// addString appends a replacement string, with %0-%9 for the captures and
// %% for a percent sign; % before any other character is kept with it, as
// gopher-lua does.
func addString(m *matcher, b *strings.Builder, s, e int, repl string) {
	for i := 0; i < len(repl); i++ {
		c := repl[i]
		if c != '%' || i+1 == len(repl) {
			b.WriteByte(c)
			continue
		}
		i++
		d := repl[i]
		switch {
		case d == '%':
			b.WriteByte('%')
		case d == '0':
			b.WriteString(m.src[s:e])
		case '1' <= d && d <= '9':
			text, pos, isPos := m.captureAt(int(d-'1'), s, e)
			if isPos {
				b.WriteString(lua.LNumber(pos).String())
			} else {
				b.WriteString(text)
			}
		default:
			b.WriteByte('%')
			b.WriteByte(d)
		}
	}
}

// maxRepBytes bounds what string.rep makes: string.rep("x", 4e9) asked Go
// for 4 GB at once and got the broker killed for memory.
const maxRepBytes = 64 << 20

// strRep is string.rep(s, n), refusing a result over maxRepBytes.
func strRep(L *lua.LState) int {
	str := L.CheckString(1)
	n := L.CheckInt(2)
	if n <= 0 || len(str) == 0 {
		L.Push(lua.LString(""))
		return 1
	}
	if n > maxRepBytes/len(str) {
		L.RaiseError("string.rep: a result of %d bytes is over the limit of %d", int64(n)*int64(len(str)), maxRepBytes)
	}
	L.Push(lua.LString(strings.Repeat(str, n)))
	return 1
}
