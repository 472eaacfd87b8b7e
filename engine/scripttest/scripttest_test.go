package scripttest_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mqttlua/broker/engine/enginetest"
	"github.com/mqttlua/broker/engine/script"
	"github.com/mqttlua/broker/engine/scripttest"
)

// TestShippedScripts runs the tests of the default scripts and of every
// example, as `broker test` does.
func TestShippedScripts(t *testing.T) {
	root := enginetest.RepoDir()
	dirs := []string{filepath.Join(root, "scripts")}
	examples, _ := filepath.Glob(filepath.Join(root, "scripts", "examples", "*"))
	dirs = append(dirs, examples...)
	for _, dir := range dirs {
		name, _ := filepath.Rel(root, dir)
		t.Run(name, func(t *testing.T) {
			files, err := scripttest.Discover(dir, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(files) == 0 {
				t.Fatalf("%s has no tests", name)
			}
			var out strings.Builder
			passed, failed, _ := scripttest.Run(scripttest.Options{Scripts: dir, LuaLib: filepath.Join(root, "lualib"), Out: &out}, files)
			if failed > 0 || passed == 0 {
				t.Fatalf("%d passed, %d failed:\n%s", passed, failed, out.String())
			}
			t.Logf("%s: %d passed", name, passed)
		})
	}
}

// TestRunnerReportsFailures checks the runner itself: a mismatch names the
// fixture line and shows both packets; the summary counts exactly.
func TestRunnerReportsFailures(t *testing.T) {
	root := enginetest.RepoDir()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "x.t"), []byte(`=== TEST 1: passes
--- steps
a: connect
a: send {"type": "PINGREQ"}
a: expect {"type": "PINGRESP"}

=== TEST 2: wrong packet
--- steps
a: connect
a: send {"type": "PINGREQ"}
a: expect {"type": "PUBLISH", "topic": "t"}

=== TEST 3: log check
--- steps
a: connect
--- log
like: no such line
`), 0o644)
	os.WriteFile(filepath.Join(dir, "y_test.lua"), []byte(`local testing = require "testing"
testing.test("eq", function()
  testing.eq(1 + 1, 3, "sum")
end)
testing.test("handler called directly", function()
  local c = testing.client("c")
  c:connect()
  onMqPingreq(server, c:fd(), 0, {})
  testing.ok(server:exist(c:fd()))
end)
`), 0o644)
	files, err := scripttest.Discover(filepath.Join(root, "scripts"), []string{dir})
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	passed, failed, _ := scripttest.Run(scripttest.Options{Scripts: filepath.Join(root, "scripts"), LuaLib: filepath.Join(root, "lualib"), Out: &out}, files)
	report := out.String()
	if passed != 2 || failed != 3 {
		t.Fatalf("%d passed, %d failed:\n%s", passed, failed, report)
	}
	for _, want := range []string{
		"x.t:11: a: expect",
		`expected: {"topic": "t", "type": "PUBLISH"}`,
		`received: {"type": "PINGRESP"}`,
		"x.t:17: the log has no line like no such line",
		"sum: expected 3, got 2",
		"y_test.lua:3",
		"2 passed, 3 failed\n",
	} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q:\n%s", want, report)
		}
	}
}

// TestDocExamples runs every example of docs/lua-api.md: each ```lua block
// is a main.lua and the ```t block after it a conversation against it.
func TestDocExamples(t *testing.T) {
	root := enginetest.RepoDir()
	doc, err := os.ReadFile(filepath.Join(root, "docs", "lua-api.md"))
	if err != nil {
		t.Fatal(err)
	}
	type block struct {
		lang, body string
		line       int
	}
	var blocks []block
	lines := strings.Split(string(doc), "\n")
	for i := 0; i < len(lines); i++ {
		if lang, ok := strings.CutPrefix(lines[i], "```"); ok && lang != "" {
			start := i + 1
			j := start
			for j < len(lines) && lines[j] != "```" {
				j++
			}
			blocks = append(blocks, block{lang, strings.Join(lines[start:j], "\n"), start})
			i = j
		}
	}
	examples := 0
	for i, b := range blocks {
		if b.lang != "lua" {
			continue
		}
		if i+1 >= len(blocks) || blocks[i+1].lang != "t" {
			t.Errorf("docs/lua-api.md:%d: a lua example without a ```t test after it", b.line)
			continue
		}
		examples++
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "main.lua"), []byte(b.body+"\n"), 0o644)
		tfile := filepath.Join(dir, "example.t")
		os.WriteFile(tfile, []byte(blocks[i+1].body+"\n"), 0o644)
		var out strings.Builder
		_, failed, _ := scripttest.Run(scripttest.Options{Scripts: dir, LuaLib: filepath.Join(root, "lualib"), Out: &out}, []string{tfile})
		if failed > 0 {
			t.Errorf("docs/lua-api.md:%d: example fails:\n%s", b.line, out.String())
		}
	}
	if examples < 10 {
		t.Fatalf("only %d tested examples", examples)
	}
}

// TestCommandWithGoModules: an embedding program's Go modules reach the
// scripts under test, as they reach them in engine.New.
func TestCommandWithGoModules(t *testing.T) {
	dir := t.TempDir()
	main := `function onMqPublish(server, fd, fromId, data)
  server:send(fd, { type = mqtt.PUBLISH, topic = "sum", message = tostring(devices.add(20, 22)) })
end
`
	conv := `=== TEST 1: the Go module answers
--- steps
c: connect
c: send {"type": "PUBLISH", "topic": "x"}
c: expect {"type": "PUBLISH", "topic": "sum", "message": "42"}
`
	if err := os.WriteFile(filepath.Join(dir, "main.lua"), []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "sum.t"), []byte(conv), 0o644); err != nil {
		t.Fatal(err)
	}
	mod := script.GoModule("devices", map[string]any{"add": func(a, b int) int { return a + b }})
	var out, errOut strings.Builder
	if code := scripttest.Command([]string{"--scripts", dir}, &out, &errOut, []script.Module{mod}); code != 0 {
		t.Fatalf("exit %d:\n%s%s", code, out.String(), errOut.String())
	}
	// Without the module the same test fails.
	out.Reset()
	if code := scripttest.Command([]string{"--scripts", dir}, &out, &errOut, nil); code != 1 {
		t.Fatalf("without the module: exit %d:\n%s", code, out.String())
	}
}

// TestRunsConfigFile: script tests run what production runs: the
// handler names and worker count of config.lua.
func TestRunsConfigFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, src string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("config.lua", `return { receiveCallbacks = { [mqtt.CONNECT] = "myConnect" }, settings = { worker_num = 3 } }`)
	write("main.lua", `
local workers = 0
function onWorkerStart(server, id) shared.incr("workers", 1) end
function myConnect(server, fd, fromId, data)
  server:send(fd, { type = mqtt.CONNACK, code = 0 })
  server:send(fd, { type = mqtt.PUBLISH, topic = "workers", message = tostring(shared.get("workers")) })
end
`)
	write("config_test.lua", `
local testing = require "testing"
testing.test("the renamed handler runs on config.lua's workers", function()
  local c = testing.client("c")
  c:connect()
  c:expect({ type = "PUBLISH", topic = "workers", message = "3" })
end)
`)
	var out bytes.Buffer
	root := enginetest.RepoDir()
	passed, failed, _ := scripttest.Run(scripttest.Options{Scripts: dir, LuaLib: filepath.Join(root, "lualib"), Out: &out}, []string{filepath.Join(dir, "config_test.lua")})
	if passed != 1 || failed != 0 {
		t.Fatalf("passed %d, failed %d:\n%s", passed, failed, out.String())
	}
}

// TestCommandFileBesideScripts: `broker test DIR/x_test.lua` runs against
// DIR's scripts (it has a main.lua), not ./scripts.
func TestCommandFileBesideScripts(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "main.lua"), []byte(`function onMqConnect(server, fd) server:send(fd, { type = mqtt.CONNACK }); server:send(fd, { type = mqtt.PUBLISH, topic = "here", message = "x" }) end`), 0o644)
	test := filepath.Join(dir, "here_test.lua")
	os.WriteFile(test, []byte(`
local testing = require "testing"
testing.test("runs against its own folder", function()
  local c = testing.client("c")
  c:connect()
  c:expect({ type = "PUBLISH", topic = "here" })
end)
`), 0o644)
	var out, errOut bytes.Buffer
	if code := scripttest.Command([]string{"--lualib", filepath.Join(enginetest.RepoDir(), "lualib"), test}, &out, &errOut, nil); code != 0 {
		t.Fatalf("exit %d:\n%s%s", code, out.String(), errOut.String())
	}
}
