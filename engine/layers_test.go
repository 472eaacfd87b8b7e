package engine_test

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// TestLayers: imports point down only. Each package may import (directly
// or through others) only the module's packages listed for it, and only
// the script layer and the wiring above it may reach Lua.
func TestLayers(t *testing.T) {
	const mod = "github.com/mqttlua/broker/"
	allowed := map[string][]string{
		"codec":               {},
		"engine/topic":        {},
		"engine/transport":    {"codec"},
		"engine/store":        {},
		"engine/broker":       {"codec", "engine/topic", "engine/transport", "engine/store"},
		"engine/script":       {"codec", "engine/topic", "engine/transport", "engine/broker", "lualib", "engine/store"},
		"engine/script/iolib": {"codec", "engine/topic", "engine/transport", "engine/broker", "engine/script", "lualib", "engine/store"},
		"engine/cluster":      {"codec", "engine/topic", "engine/transport", "engine/broker", "engine/store"},
		"engine/observe":      {"codec", "engine/topic", "engine/transport", "engine/broker", "engine/script", "lualib", "engine/store", "engine/cluster"},
		"engine":              {"codec", "engine/topic", "engine/transport", "engine/broker", "engine/script", "engine/script/iolib", "engine/observe", "lualib", "engine/store", "engine/cluster"},
		"lualib":              {},
	}
	noLua := map[string]bool{"codec": true, "engine/topic": true, "engine/store": true, "engine/transport": true, "engine/broker": true, "engine/cluster": true}
	root := filepath.Join("..")
	direct := map[string][]string{}
	var load func(pkg string) []string
	load = func(pkg string) []string {
		if imps, ok := direct[pkg]; ok {
			return imps
		}
		direct[pkg] = nil
		files, err := filepath.Glob(filepath.Join(root, pkg, "*.go"))
		if err != nil || len(files) == 0 {
			t.Fatalf("%s: no Go files", pkg)
		}
		seen := map[string]bool{}
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			src, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			af, err := parser.ParseFile(token.NewFileSet(), f, src, parser.ImportsOnly)
			if err != nil {
				t.Fatal(err)
			}
			for _, imp := range af.Imports {
				p, _ := strconv.Unquote(imp.Path.Value)
				seen[p] = true
			}
		}
		var imps []string
		for p := range seen {
			imps = append(imps, p)
		}
		sort.Strings(imps)
		direct[pkg] = imps
		return imps
	}
	// closure returns every import reachable from pkg, through the module's
	// own packages.
	var closure func(pkg string, into map[string]string, via string)
	closure = func(pkg string, into map[string]string, via string) {
		for _, imp := range load(pkg) {
			if _, done := into[imp]; done {
				continue
			}
			into[imp] = via + " -> " + imp
			if strings.HasPrefix(imp, mod) {
				closure(strings.TrimPrefix(imp, mod), into, into[imp])
			}
		}
	}
	for pkg, ok := range allowed {
		may := map[string]bool{}
		for _, p := range ok {
			may[mod+p] = true
		}
		reach := map[string]string{}
		closure(pkg, reach, pkg)
		for imp, path := range reach {
			if strings.HasPrefix(imp, mod) && !may[imp] && !strings.HasPrefix(imp, mod+pkg+"/") {
				t.Errorf("%s imports %s, a layer above it or beside it: %s", pkg, strings.TrimPrefix(imp, mod), path)
			}
			if noLua[pkg] && strings.Contains(imp, "gopher-lua") {
				t.Errorf("%s reaches Lua: %s", pkg, path)
			}
		}
	}
}
