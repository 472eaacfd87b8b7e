package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// TestPasswdModes: mosquitto_passwd's modes on a file: create, add,
// update, batch, delete, convert plain text; comments kept; errors exit 2.
func TestPasswdModes(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "passwd")
	run := func(stdin string, args ...string) (int, string) {
		var out, errOut bytes.Buffer
		code := passwd(args, strings.NewReader(stdin), &out, &errOut)
		return code, out.String() + errOut.String()
	}
	users := func() map[string]string {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]string{}
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if u, h, ok := strings.Cut(l, ":"); ok && !strings.HasPrefix(l, "#") {
				m[u] = h
			}
		}
		return m
	}
	check := func(user, password string) {
		t.Helper()
		if err := bcrypt.CompareHashAndPassword([]byte(users()[user]), []byte(password)); err != nil {
			t.Fatalf("%s's hash does not match %q: %v", user, password, err)
		}
	}
	if code, out := run("pw-alice\n", "-c", f, "alice"); code != 0 {
		t.Fatalf("-c: %d %s", code, out)
	}
	check("alice", "pw-alice")
	if code, out := run("", "-b", f, "bob", "pw-bob"); code != 0 {
		t.Fatalf("-b: %d %s", code, out)
	}
	if code, out := run("pw-alice-2\n", f, "alice"); code != 0 {
		t.Fatalf("update: %d %s", code, out)
	}
	check("alice", "pw-alice-2")
	check("bob", "pw-bob")
	if fi, _ := os.Stat(f); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", fi.Mode().Perm())
	}
	if code, out := run("", "-D", f, "bob"); code != 0 || users()["bob"] != "" {
		t.Fatalf("-D: %d %s %v", code, out, users())
	}
	if code, _ := run("", "-D", f, "nobody"); code != 2 {
		t.Fatalf("-D of an unknown user: %d", code)
	}
	// -U hashes plain-text lines, keeps hashed ones and comments.
	b, _ := os.ReadFile(f)
	os.WriteFile(f, append([]byte("# users\n"), append(b, []byte("carol:plain-carol\n")...)...), 0o600)
	if code, out := run("", "-U", f); code != 0 {
		t.Fatalf("-U: %d %s", code, out)
	}
	check("carol", "plain-carol")
	check("alice", "pw-alice-2")
	if b, _ := os.ReadFile(f); !strings.HasPrefix(string(b), "# users\n") {
		t.Fatalf("comment lost:\n%s", b)
	}
	// The one-argument form prints a line; errors are exit 2.
	if code, out := run("x\n", "dave"); code != 0 || !strings.HasPrefix(out, "dave:$2a$") {
		t.Fatalf("print: %d %s", code, out)
	}
	for _, args := range [][]string{{}, {"-c", "-D", f, "x"}, {"-b", f, "x"}, {"-U"}} {
		if code, _ := run("", args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
	if code, out := run("", "--help"); code != 0 || !strings.Contains(out, "mosquitto_passwd") {
		t.Fatalf("--help: %d %s", code, out)
	}
}
