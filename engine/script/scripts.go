package script

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/mqttlua/broker/lualib"
	lua "github.com/yuin/gopher-lua"
	"github.com/yuin/gopher-lua/parse"
)

// ScriptError is a script that failed to load: its file, its line (0 when
// unknown) and the message. Its Error is one line, "file:line: message".
type ScriptError struct {
	File string
	Line int
	Msg  string
}

func (e *ScriptError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

// scripts is the compiled form of a scripts folder, shared by every VM:
// each file is compiled once and instantiated per VM.
type scripts struct {
	dir, lib string
	main     *lua.FunctionProto
	mainPath string
	// setup runs in every VM after main.lua (Config.Setup).
	setup *lua.FunctionProto

	mu     sync.Mutex
	protos map[string]*lua.FunctionProto // by file path
}

// loadScripts compiles every .lua file under dir so that a syntax error
// anywhere is reported at start, and checks that main.lua exists.
func loadScripts(dir, lib string) (*scripts, error) {
	st, err := os.Stat(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, &ScriptError{File: dir, Msg: "scripts folder does not exist"}
		}
		return nil, &ScriptError{File: dir, Msg: err.Error()}
	}
	if !st.IsDir() {
		return nil, &ScriptError{File: dir, Msg: "not a folder"}
	}
	s := &scripts{dir: dir, lib: lib, protos: map[string]*lua.FunctionProto{}}
	s.mainPath = filepath.Join(dir, "main.lua")
	if _, err := os.Stat(s.mainPath); err != nil {
		return nil, &ScriptError{File: s.mainPath, Msg: "missing: the scripts folder needs a main.lua with the handlers"}
	}
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !strings.HasSuffix(path, ".lua") {
			return nil
		}
		_, err = s.proto(path)
		return err
	})
	if err != nil {
		return nil, err
	}
	s.main, _ = s.proto(s.mainPath)
	return s, nil
}

// proto returns the compiled chunk of a file, compiling it on first use.
func (s *scripts) proto(path string) (*lua.FunctionProto, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p, ok := s.protos[path]; ok {
		return p, nil
	}
	p, err := compileFile(path)
	if err != nil {
		return nil, err
	}
	s.protos[path] = p
	return p, nil
}

// compileFile parses and compiles one Lua file, turning gopher-lua's
// multi-line errors into a one-line ScriptError.
func compileFile(path string) (*lua.FunctionProto, error) {
	var src []byte
	var err error
	if rel, ok := strings.CutPrefix(path, embeddedPrefix); ok {
		src, err = lualib.FS.ReadFile(rel)
	} else {
		src, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, &ScriptError{File: path, Msg: err.Error()}
	}
	return compileSource(string(src), path)
}

// compileSource compiles Lua source named path in errors.
func compileSource(src, path string) (*lua.FunctionProto, error) {
	chunk, err := parse.Parse(strings.NewReader(src), path)
	if err != nil {
		var pe *parse.Error
		if errors.As(err, &pe) {
			msg := strings.TrimSpace(pe.Message)
			if pe.Token != "" {
				msg += fmt.Sprintf(" near '%s'", pe.Token)
			}
			line := pe.Pos.Line
			if line < 0 {
				line = 0
				msg += " at end of file"
			}
			return nil, &ScriptError{File: path, Line: line, Msg: msg}
		}
		return nil, &ScriptError{File: path, Msg: oneLine(err.Error())}
	}
	proto, err := lua.Compile(chunk, path)
	if err != nil {
		var ce *lua.CompileError
		if errors.As(err, &ce) {
			return nil, &ScriptError{File: path, Line: ce.Line, Msg: oneLine(ce.Message)}
		}
		return nil, &ScriptError{File: path, Msg: oneLine(err.Error())}
	}
	return proto, nil
}

// embeddedPrefix starts the path of a module found in the binary's own
// copy of lualib (lualib.FS), as errors and tracebacks show it.
const embeddedPrefix = "(built-in)/lualib/"

// find resolves a module name ("auth", "lib.util") to a file on the
// module path: the scripts folder, then the lualib folder, then the
// lualib built into the binary.
func (s *scripts) find(name string) (string, bool) {
	rel := strings.ReplaceAll(name, ".", string(filepath.Separator))
	for _, dir := range []string{s.dir, s.lib} {
		if dir == "" {
			continue
		}
		for _, cand := range []string{rel + ".lua", filepath.Join(rel, "init.lua")} {
			p := filepath.Join(dir, cand)
			if st, err := os.Stat(p); err == nil && !st.IsDir() {
				return p, true
			}
		}
	}
	rel = strings.ReplaceAll(name, ".", "/") + ".lua"
	if _, err := fs.Stat(lualib.FS, rel); err == nil {
		return embeddedPrefix + rel, true
	}
	return "", false
}

func oneLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}
