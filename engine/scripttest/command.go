package scripttest

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"

	"github.com/mqttlua/broker/engine/script"
	"github.com/spf13/pflag"
)

// Command is `broker test [--scripts DIR] [PATH...]`: it runs the script
// tests (*.t conversations and *_test.lua files) against the scripts with
// in-memory connections, prints one line per failure (every test with
// -v) and "N passed, N failed", and returns the exit status: 0 only when
// all pass, 2 for bad arguments. A program that embeds the engine with Go
// modules gives them here too, so its own binary's `test` subcommand runs
// its scripts as they run in production.
func Command(args []string, stdout, stderr io.Writer, modules []script.Module) int {
	fs := pflag.NewFlagSet("broker test", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	scripts := fs.String("scripts", "./scripts", "folder of the scripts under test")
	lualib := fs.String("lualib", "", "folder of the shipped Lua modules (default: lualib beside the scripts folder, if present)")
	verbose := fs.BoolP("verbose", "v", false, "report passing tests too")
	parallel := fs.Int("parallel", runtime.NumCPU(), "tests run at once")
	help := fs.BoolP("help", "h", false, "show this help")
	if err := fs.Parse(args); err != nil {
		fmt.Fprintf(stderr, "broker: test: %v (see broker test --help)\n", err)
		return 2
	}
	if !fs.Changed("scripts") && fs.NArg() > 0 {
		// A test file runs against the scripts beside it (a folder with a
		// main.lua), not silently against ./scripts.
		dir := ""
		for _, p := range fs.Args() {
			d := p
			if st, err := os.Stat(p); err == nil && !st.IsDir() {
				d = filepath.Dir(p)
			}
			if _, err := os.Stat(filepath.Join(d, "main.lua")); err != nil {
				continue
			}
			if dir != "" && filepath.Clean(dir) != filepath.Clean(d) {
				fmt.Fprintf(stderr, "broker: test: the files are beside two scripts folders (%s, %s): name one with --scripts\n", dir, d)
				return 2
			}
			dir = d
		}
		if dir != "" {
			*scripts = dir
		}
	}
	if *help {
		fmt.Fprint(stdout, "Usage: broker test [flags] [PATH...]\n\nRuns *.t and *_test.lua script tests; with no PATH, those in the scripts\nfolder and in testdata/scripts beside it. A PATH beside a main.lua runs\nagainst the scripts of that folder unless --scripts says otherwise.\n\nFlags:\n"+fs.FlagUsages())
		return 0
	}
	if st, err := os.Stat(*scripts); err != nil || !st.IsDir() {
		fmt.Fprintf(stderr, "broker: test: %s: scripts folder does not exist\n", *scripts)
		return 2
	}
	lib := *lualib
	if lib == "" {
		lib = DefaultLuaLib(*scripts)
	}
	files, err := Discover(*scripts, fs.Args())
	if err != nil {
		fmt.Fprintf(stderr, "broker: test: %v\n", err)
		return 2
	}
	if len(files) == 0 {
		fmt.Fprintf(stderr, "broker: test: no *.t or *_test.lua files found\n")
		return 2
	}
	_, failed, _ := Run(Options{Scripts: *scripts, LuaLib: lib, Out: stdout, Verbose: *verbose, Parallel: *parallel, Modules: modules}, files)
	if failed > 0 {
		return 1
	}
	return 0
}

// DefaultLuaLib finds a lualib folder beside the scripts folder (or up to
// two levels above it), then in the working directory; "" when there is
// none, and the modules built into the binary serve.
func DefaultLuaLib(scripts string) string {
	for _, cand := range []string{
		filepath.Join(filepath.Dir(filepath.Clean(scripts)), "lualib"),
		filepath.Join(filepath.Dir(filepath.Clean(scripts)), "..", "lualib"),
		filepath.Join(filepath.Dir(filepath.Clean(scripts)), "..", "..", "lualib"),
		"lualib",
	} {
		if st, err := os.Stat(cand); err == nil && st.IsDir() {
			return cand
		}
	}
	return ""
}
