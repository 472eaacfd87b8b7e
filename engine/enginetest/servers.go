package enginetest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Real servers for the tests of the scripts' http, redis and pg modules:
// each is started on loopback with a temporary data folder and stopped
// when the test ends. Outside CI a missing program skips the test; in CI
// (.ci/run installs redis-server and postgresql) it fails it.

func needProgram(t testing.TB, path, pkg string) string {
	t.Helper()
	if p, err := exec.LookPath(path); err == nil {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s not installed in CI", path)
	}
	t.Skipf("%s not installed (apt-get install %s)", path, pkg)
	return ""
}

// FreePort returns a loopback port nothing listens on now (servers that
// cannot be told to pick one themselves need a number).
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// Redis is a redis-server the test started.
type Redis struct {
	t    testing.TB
	Port int
	dir  string
	cmd  *exec.Cmd
}

// Addr is host:port.
func (r *Redis) Addr() string { return "127.0.0.1:" + strconv.Itoa(r.Port) }

// StartRedis starts redis-server on a free loopback port, without
// persistence.
func StartRedis(t testing.TB) *Redis {
	t.Helper()
	r := &Redis{t: t, Port: FreePort(t), dir: t.TempDir()}
	r.Start()
	t.Cleanup(r.Stop)
	return r
}

// Start starts the server (again, after Stop) on the same port.
func (r *Redis) Start() {
	r.t.Helper()
	bin := needProgram(r.t, "redis-server", "redis-server")
	r.cmd = exec.Command(bin, "--port", strconv.Itoa(r.Port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", r.dir, "--protected-mode", "no")
	var out bytes.Buffer
	r.cmd.Stdout, r.cmd.Stderr = &out, &out
	if err := r.cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	waitListening(r.t, r.Addr(), "redis-server", &out)
}

// Stop stops the server.
func (r *Redis) Stop() {
	if r.cmd == nil {
		return
	}
	r.cmd.Process.Kill()
	r.cmd.Wait()
	r.cmd = nil
}

// Postgres is a PostgreSQL server the test started, with a database
// "mqtt" owned by the user "broker" (trust authentication on loopback).
type Postgres struct {
	Port int
	URL  string // postgres://broker@127.0.0.1:PORT/mqtt?sslmode=disable
	bin  string
	dir  string
	cred *syscall.Credential
	t    testing.TB
}

// StartPostgres initialises a cluster in a temporary folder and starts
// it on a free loopback port. As root, the server runs as the postgres
// user (it refuses to run as root).
func StartPostgres(t testing.TB) *Postgres {
	t.Helper()
	initdb := postgresProgram(t, "initdb")
	p := &Postgres{Port: FreePort(t), bin: filepath.Dir(initdb), t: t}
	// Not t.TempDir: its parent is private to this user, and the
	// server may run as another.
	dir, err := os.MkdirTemp("", "mqttlua-pg-")
	if err != nil {
		t.Fatal(err)
	}
	p.dir = dir
	t.Cleanup(func() { os.RemoveAll(dir) })
	data := filepath.Join(p.dir, "data")
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("running as root, and no postgres user to run PostgreSQL as: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		p.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		os.Chmod(p.dir, 0o755)
		os.Chown(p.dir, uid, gid)
	}
	p.run("initdb", "-D", data, "-U", "broker", "--auth=trust", "-E", "UTF8", "--no-sync")
	p.run("pg_ctl", "-D", data, "-w", "-l", filepath.Join(p.dir, "log"), "-o",
		fmt.Sprintf("-p %d -c listen_addresses=127.0.0.1 -k %s -c fsync=off", p.Port, p.dir), "start")
	t.Cleanup(func() { p.run("pg_ctl", "-D", data, "-w", "-m", "immediate", "stop") })
	p.run("createdb", "-h", "127.0.0.1", "-p", strconv.Itoa(p.Port), "-U", "broker", "mqtt")
	p.URL = fmt.Sprintf("postgres://broker@127.0.0.1:%d/mqtt?sslmode=disable", p.Port)
	return p
}

// Stop stops the server at once (as a crash would).
func (p *Postgres) Stop() {
	p.run("pg_ctl", "-D", filepath.Join(p.dir, "data"), "-w", "-m", "immediate", "stop")
}

// SQL runs statements with psql, failing the test on an error.
func (p *Postgres) SQL(sql string) {
	p.t.Helper()
	p.run("psql", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", strconv.Itoa(p.Port), "-U", "broker", "-d", "mqtt", "-c", sql)
}

func (p *Postgres) run(name string, args ...string) {
	p.t.Helper()
	cmd := exec.Command(filepath.Join(p.bin, name), args...)
	cmd.Dir = p.dir
	if p.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred}
	}
	cmd.Env = append(os.Environ(), "PGDATA=")
	if out, err := cmd.CombinedOutput(); err != nil {
		if name == "pg_ctl" && len(args) > 0 && args[len(args)-1] == "stop" {
			return // already stopped
		}
		p.t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// postgresProgram finds a PostgreSQL server program: on PATH, or in
// Debian's /usr/lib/postgresql/VERSION/bin.
func postgresProgram(t testing.TB, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		if _, err := os.Stat(filepath.Join(filepath.Dir(p), "pg_ctl")); err == nil {
			if _, err := os.Stat(filepath.Join(filepath.Dir(p), "psql")); err == nil {
				return p
			}
		}
	}
	if m, _ := filepath.Glob("/usr/lib/postgresql/*/bin/" + name); len(m) > 0 {
		return m[len(m)-1]
	}
	return needProgram(t, name, "postgresql")
}

func waitListening(t testing.TB, addr, what string, out *bytes.Buffer) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not start on %s: %s", what, addr, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
