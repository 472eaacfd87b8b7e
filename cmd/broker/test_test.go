package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBrokerTestAnywhere: `broker test --scripts DIR` works on a scripts
// folder with no lualib anywhere near it (the testing module is built
// into the binary), run from another working directory.
func TestBrokerTestAnywhere(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "deep", "scripts")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	src, _ := filepath.Abs(filepath.Join("..", "..", "scripts", "examples", "ratelimit"))
	for _, f := range []string{"main.lua", "ratelimit.t", "ratelimit_test.lua"} {
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	wd, _ := os.Getwd()
	if err := os.Chdir(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	defer os.Chdir(wd)
	var out, errOut bytes.Buffer
	if code := runTests([]string{"--scripts", dir}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out.String(), errOut.String())
	}
	if !strings.Contains(out.String(), "0 failed") {
		t.Errorf("report: %s", out.String())
	}
}
