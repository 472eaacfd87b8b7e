package scripttest

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/mqttlua/broker/codec"
	"github.com/mqttlua/broker/codec/fixture"
	"github.com/mqttlua/broker/engine/transport"
)

// block is one "=== TEST" of a conversation fixture.
type block struct {
	file   string
	line   int
	name   string
	setup  string
	steps  []step
	like   []logCheck
	unlike []logCheck
}

type step struct {
	line   int
	client string // empty for "wait"
	verb   string
	arg    string
}

type logCheck struct {
	line int
	re   *regexp.Regexp
}

// loadFixture parses a .t file into tests.
func loadFixture(file string) ([]test, error) {
	data, err := readFile(file)
	if err != nil {
		return nil, err
	}
	var blocks []*block
	var cur *block
	section := ""
	var setup []string
	for i, raw := range strings.Split(string(data), "\n") {
		n := i + 1
		line := strings.TrimRight(raw, "\r")
		where := fmt.Sprintf("%s:%d", file, n)
		switch {
		case strings.HasPrefix(line, "=== TEST"):
			if cur != nil {
				cur.setup = strings.Join(setup, "\n")
			}
			name := strings.TrimSpace(strings.TrimPrefix(line, "=== TEST"))
			if _, after, ok := strings.Cut(name, ":"); ok {
				name = strings.TrimSpace(after)
			}
			cur = &block{file: file, line: n, name: name}
			blocks = append(blocks, cur)
			section, setup = "", nil
			continue
		case strings.HasPrefix(line, "--- "):
			if cur == nil {
				return nil, fmt.Errorf("%s: section before the first === TEST", where)
			}
			section = strings.TrimSpace(strings.TrimPrefix(line, "--- "))
			switch section {
			case "setup":
				// Pad so that Lua's line numbers are the file's.
				setup = make([]string, n)
			case "steps", "log":
			default:
				return nil, fmt.Errorf("%s: unknown section %q (setup, steps or log)", where, section)
			}
			continue
		}
		if cur == nil {
			continue // a file comment
		}
		if section == "setup" {
			setup = append(setup, line)
			continue
		}
		t := strings.TrimSpace(line)
		if t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		switch section {
		case "steps":
			st, err := parseStep(t, n)
			if err != nil {
				return nil, fmt.Errorf("%s: %v", where, err)
			}
			cur.steps = append(cur.steps, st)
		case "log":
			kind, pat, ok := strings.Cut(t, ":")
			re, err := regexp.Compile(strings.TrimSpace(pat))
			if !ok || err != nil || (kind != "like" && kind != "unlike") {
				return nil, fmt.Errorf("%s: want \"like: regexp\" or \"unlike: regexp\"", where)
			}
			if kind == "like" {
				cur.like = append(cur.like, logCheck{n, re})
			} else {
				cur.unlike = append(cur.unlike, logCheck{n, re})
			}
		default:
			return nil, fmt.Errorf("%s: text outside a section", where)
		}
	}
	if cur != nil {
		cur.setup = strings.Join(setup, "\n")
	}
	if len(blocks) == 0 {
		return nil, fmt.Errorf("%s: no === TEST blocks", file)
	}
	tests := make([]test, len(blocks))
	for i, b := range blocks {
		b := b
		tests[i] = test{name: b.name, file: file, line: b.line, setup: b.setup, setupName: file, run: b.run}
	}
	return tests, nil
}

var verbs = map[string]bool{"connect": true, "send": true, "expect": true, "close": true, "from": true, "level": true}

func parseStep(t string, n int) (step, error) {
	if rest, ok := strings.CutPrefix(t, "wait "); ok {
		return step{line: n, verb: "wait", arg: strings.TrimSpace(rest)}, nil
	}
	name, rest, ok := strings.Cut(t, ":")
	if !ok || strings.ContainsAny(name, " \t{") {
		return step{}, fmt.Errorf("want \"client: verb ...\" or \"wait DURATION\"")
	}
	rest = strings.TrimSpace(rest)
	verb, arg, _ := strings.Cut(rest, " ")
	if !verbs[verb] {
		return step{}, fmt.Errorf("unknown verb %q (connect, send, expect, close, from, level)", verb)
	}
	return step{line: n, client: name, verb: verb, arg: strings.TrimSpace(arg)}, nil
}

// stepError is a failed step: where it is, what was expected and what came.
type stepError struct {
	where    string
	what     string
	expected string
	received string
}

func (e *stepError) Error() string {
	s := e.where + ": " + e.what
	if e.expected != "" || e.received != "" {
		s += fmt.Sprintf("\n  expected: %s\n  received: %s", e.expected, e.received)
	}
	return s
}

const (
	expectTimeout  = 2 * time.Second
	nothingTimeout = 100 * time.Millisecond
)

func (b *block) run(e *env) error {
	for _, st := range b.steps {
		if err := b.do(e, st); err != nil {
			return err
		}
	}
	logs := e.logs.String()
	for _, l := range b.like {
		if !l.re.MatchString(logs) {
			return &stepError{where: fmt.Sprintf("%s:%d", b.file, l.line), what: "the log has no line like " + l.re.String(), received: "\n" + indent(logs)}
		}
	}
	for _, l := range b.unlike {
		if m := l.re.FindString(logs); m != "" {
			return &stepError{where: fmt.Sprintf("%s:%d", b.file, l.line), what: "the log has a line like " + l.re.String(), received: lineOf(logs, m)}
		}
	}
	return nil
}

func (b *block) do(e *env, st step) error {
	where := fmt.Sprintf("%s:%d", b.file, st.line)
	fail := func(format string, a ...any) error {
		return &stepError{where: where, what: st.client + ": " + fmt.Sprintf(format, a...)}
	}
	if st.verb == "wait" {
		d, err := time.ParseDuration(st.arg)
		if err != nil {
			return fail("bad duration %q", st.arg)
		}
		time.Sleep(d)
		return nil
	}
	c := e.client(st.client)
	switch st.verb {
	case "from":
		if c.conn != nil {
			return fail("from must come before the client's first packet")
		}
		c.from = st.arg
	case "level":
		n, err := strconv.Atoi(st.arg)
		if err != nil || n < 3 || n > 5 {
			return fail("level must be 3, 4 or 5")
		}
		c.setLevel(byte(n))
	case "close":
		if c.conn != nil {
			c.conn.Close()
		}
	case "connect":
		m := codec.Map{"type": int(codec.CONNECT), "client_id": st.client, "clean_session": true, "keep_alive": 60, "protocol_level": int(c.level)}
		if st.arg != "" {
			over, err := expectedData(st.arg)
			if err != nil {
				return fail("%v", err)
			}
			for k, v := range over {
				m[k] = v
			}
		}
		e.dial(c)
		if err := c.sendData(m); err != nil {
			return fail("%v", err)
		}
		got, _, err := c.next(expectTimeout)
		if err != nil {
			return &stepError{where: where, what: st.client + ": connect", expected: "CONNACK with code 0", received: describe(err)}
		}
		if got["type"] != int(codec.CONNACK) || got["code"] != 0 {
			return &stepError{where: where, what: st.client + ": connect", expected: "CONNACK with code 0", received: show(got)}
		}
	case "send":
		e.dial(c)
		kind, rest, _ := strings.Cut(st.arg, " ")
		switch kind {
		case "fixture":
			f, err := fixture.ByName(strings.TrimSpace(rest))
			if err != nil {
				return fail("%v", err)
			}
			if f.Packet != nil && f.Packet["type"] == int(codec.CONNECT) {
				c.setLevel(f.Level)
			}
			if err := c.write(f.Bytes); err != nil {
				return fail("%v", err)
			}
		case "hex":
			raw, err := fixture.ParseHex(rest)
			if err != nil {
				return fail("%v", err)
			}
			if err := c.write(raw); err != nil {
				return fail("%v", err)
			}
		default:
			m, err := expectedData(st.arg)
			if err != nil {
				return fail("%v", err)
			}
			if err := c.sendData(m); err != nil {
				return fail("%v", err)
			}
		}
	case "expect":
		return b.expect(c, st, where)
	}
	return nil
}

func (b *block) expect(c *client, st step, where string) error {
	kind, rest, _ := strings.Cut(st.arg, " ")
	rest = strings.TrimSpace(rest)
	mismatch := func(expected string, got codec.Map, err error) error {
		received := show(got)
		if err != nil {
			received = describe(err)
		}
		return &stepError{where: where, what: st.client + ": expect", expected: expected, received: received}
	}
	switch kind {
	case "nothing":
		d := nothingTimeout
		if rest != "" {
			var err error
			if d, err = time.ParseDuration(rest); err != nil {
				return mismatch("a duration after nothing", nil, nil)
			}
		}
		if got, _, err := c.next(d); err == nil {
			return mismatch("nothing", got, nil)
		}
		return nil
	case "closed":
		got, err := c.expectClosed(expectTimeout)
		if err != nil || got != nil {
			return mismatch("the connection closed", got, err)
		}
		if rest != "" && c.srvConn != nil {
			deadline := time.Now().Add(expectTimeout)
			for c.srvConn.Reason() == transport.CloseNone && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			if r := c.srvConn.Reason().String(); r != rest {
				return &stepError{where: where, what: st.client + ": expect closed", expected: "close reason " + rest, received: "close reason " + r}
			}
		}
		return nil
	case "fixture":
		f, err := fixture.ByName(rest)
		if err != nil || f.Packet == nil {
			return mismatch("fixture "+rest+" (a valid packet)", nil, err)
		}
		got, _, err := c.next(expectTimeout)
		if err != nil || !subset(f.Packet, got) || !subset(got, f.Packet) {
			return mismatch(show(f.Packet)+"  (fixture "+f.Path+")", got, err)
		}
		return nil
	case "hex":
		want, err := fixture.ParseHex(rest)
		if err != nil {
			return mismatch("hex bytes", nil, err)
		}
		got, raw, err := c.next(expectTimeout)
		if err != nil || string(raw) != string(want) {
			return mismatch(fmt.Sprintf("% x", want), got, err)
		}
		return nil
	}
	want, err := expectedData(st.arg)
	if err != nil {
		return &stepError{where: where, what: st.client + ": expect: " + err.Error()}
	}
	got, _, err := c.next(expectTimeout)
	if err != nil || !subset(want, got) {
		return mismatch(show(want), got, err)
	}
	return nil
}

func describe(err error) string {
	if ne, ok := err.(interface{ Timeout() bool }); ok && ne.Timeout() {
		return "nothing within the timeout"
	}
	return "error: " + err.Error()
}

func indent(s string) string {
	var out []string
	for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		out = append(out, "    "+l)
	}
	return strings.Join(out, "\n")
}

func lineOf(logs, match string) string {
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, match) {
			return l
		}
	}
	return match
}
