package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/mqttlua/broker/engine/broker"
	"github.com/spf13/pflag"
	"golang.org/x/crypto/bcrypt"
)

const passwdUsage = `Usage: broker passwd USER < password                 print a "user:hash" line
       broker passwd [-c] FILE USER < password          add or update USER in FILE (-c: create FILE anew)
       broker passwd -b FILE USER PASSWORD              the same, the password on the command line
       broker passwd -D FILE USER                       delete USER from FILE
       broker passwd -U FILE                            hash every plain-text "user:password" line of FILE

As mosquitto_passwd does, with bcrypt hashes. Passwords are read from the
first line of standard input so that they stay out of command lines and
shell histories (-b is for scripts that already have them). FILE is
written whole, mode 0600, replacing the old one at once.
`

// passwd is `broker passwd`: makes and edits Mosquitto-style password
// files (scripts/passwd).
func passwd(args []string, in io.Reader, out, stderr io.Writer) int {
	fs := pflag.NewFlagSet("broker passwd", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	create := fs.BoolP("create", "c", false, "create the file anew")
	batch := fs.BoolP("batch", "b", false, "the password is the last argument")
	del := fs.BoolP("delete", "D", false, "delete the user")
	update := fs.BoolP("update", "U", false, "hash the plain-text passwords of the file")
	help := fs.BoolP("help", "h", false, "show this help")
	fail := func(msg string) int {
		fmt.Fprintln(stderr, "broker: passwd: "+msg+" (see broker passwd --help)")
		return 2
	}
	if err := fs.Parse(args); err != nil {
		return fail(err.Error())
	}
	if *help {
		fmt.Fprint(out, passwdUsage)
		return 0
	}
	a := fs.Args()
	modes := 0
	for _, m := range []bool{*create, *del, *update} {
		if m {
			modes++
		}
	}
	if modes > 1 || (*batch && (*del || *update)) {
		return fail("-c, -D and -U go alone, and -b only with adding")
	}
	readPassword := func() (string, bool) {
		line, _ := bufio.NewReader(in).ReadString('\n')
		line = strings.TrimRight(line, "\r\n")
		return line, line != ""
	}
	switch {
	case *update:
		if len(a) != 1 {
			return fail("-U takes the file only")
		}
		lines, err := readPasswd(a[0])
		if err != nil {
			return fail(err.Error())
		}
		for i, l := range lines {
			if l.user == "" || isHash(l.hash) {
				continue
			}
			h, err := bcrypt.GenerateFromPassword([]byte(l.hash), bcrypt.DefaultCost)
			if err != nil {
				return fail(fmt.Sprintf("%s:%d: %v", a[0], i+1, err))
			}
			lines[i].hash = string(h)
		}
		return writeOrFail(a[0], lines, stderr)
	case *del:
		if len(a) != 2 {
			return fail("-D takes the file and the user")
		}
		lines, err := readPasswd(a[0])
		if err != nil {
			return fail(err.Error())
		}
		kept := lines[:0]
		found := false
		for _, l := range lines {
			if l.user == a[1] {
				found = true
				continue
			}
			kept = append(kept, l)
		}
		if !found {
			return fail(fmt.Sprintf("no user %q in %s", a[1], a[0]))
		}
		return writeOrFail(a[0], kept, stderr)
	}
	// Print a line, or add to a file.
	want := 1
	if *create || *batch || len(a) == 2 {
		want = 2
	}
	if *batch {
		want = 3
	}
	if len(a) != want {
		return fail("wrong number of arguments")
	}
	user := a[0] // USER, or FILE USER [PASSWORD]
	if want > 1 {
		user = a[1]
	}
	if user == "" || strings.ContainsAny(user, ":\n") {
		return fail("a user name without ':' or newlines is needed")
	}
	var password string
	if *batch {
		password = a[2]
	} else {
		var ok bool
		if password, ok = readPassword(); !ok {
			return fail("no password on standard input")
		}
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
	if err != nil {
		return fail(err.Error())
	}
	if want == 1 {
		fmt.Fprintf(out, "%s:%s\n", user, h)
		return 0
	}
	var lines []passwdLine
	if !*create {
		if lines, err = readPasswd(a[0]); err != nil && !os.IsNotExist(err) {
			return fail(err.Error())
		}
	}
	replaced := false
	for i := range lines {
		if lines[i].user == user {
			lines[i].hash, replaced = string(h), true
		}
	}
	if !replaced {
		lines = append(lines, passwdLine{user: user, hash: string(h)})
	}
	return writeOrFail(a[0], lines, stderr)
}

// passwdLine is a "user:hash" line, or (user "") a comment or blank line
// kept as it is in raw.
type passwdLine struct {
	user, hash, raw string
}

func readPasswd(path string) ([]passwdLine, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var lines []passwdLine
	for i, raw := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		t := strings.TrimSpace(raw)
		if t == "" || strings.HasPrefix(t, "#") {
			lines = append(lines, passwdLine{raw: raw})
			continue
		}
		user, hash, ok := strings.Cut(t, ":")
		if !ok || user == "" {
			return nil, fmt.Errorf("%s:%d: want user:hash", path, i+1)
		}
		lines = append(lines, passwdLine{user: user, hash: hash})
	}
	return lines, nil
}

// isHash reports whether h is in one of the hash formats the broker
// checks (a line -U must leave alone), by its prefix.
func isHash(h string) bool {
	return !errors.Is(broker.CheckHashFormat(h), broker.ErrHashFormat)
}

// writeOrFail replaces the file at once: a temporary file beside it,
// renamed over it.
func writeOrFail(path string, lines []passwdLine, stderr io.Writer) int {
	var b strings.Builder
	for _, l := range lines {
		if l.user == "" {
			b.WriteString(l.raw + "\n")
			continue
		}
		b.WriteString(l.user + ":" + l.hash + "\n")
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".passwd-*")
	if err == nil {
		_, err = tmp.WriteString(b.String())
		if cerr := tmp.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Chmod(tmp.Name(), 0o600)
		}
		if err == nil {
			err = os.Rename(tmp.Name(), path)
		}
		if err != nil {
			os.Remove(tmp.Name())
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, "broker: passwd:", err)
		return 1
	}
	return 0
}
