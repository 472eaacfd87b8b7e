package main

import (
	"bufio"
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mqttlua/broker/codec"
)

func TestBadInputExitsTwoWithOneLine(t *testing.T) {
	dir := t.TempDir()
	broken := filepath.Join(dir, "broken")
	os.Mkdir(broken, 0o755)
	os.WriteFile(filepath.Join(broken, "main.lua"), []byte("function onMqConnect()\n\n  if then\nend\n"), 0o644)
	badCfg := filepath.Join(dir, "badcfg")
	os.Mkdir(badCfg, 0o755)
	os.WriteFile(filepath.Join(badCfg, "main.lua"), []byte(""), 0o644)
	os.WriteFile(filepath.Join(badCfg, "config.lua"), []byte("return { settings = { worker_num = 'two' } }\n"), 0o644)
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"unknown flag", []string{"--nope"}, "unknown flag: --nope"},
		{"bad value", []string{"--workers", "x"}, "--workers"},
		{"bad log level", []string{"--log-level", "loud"}, "--log-level"},
		{"missing scripts", []string{"--scripts", filepath.Join(dir, "none")}, "scripts folder does not exist"},
		{"syntax error", []string{"--scripts", broken}, "broken/main.lua:3: "},
		{"bad config", []string{"--scripts", badCfg}, "config.lua: settings.worker_num must be a number"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			code := run(tc.args, &stderr)
			out := stderr.String()
			if code != 2 {
				t.Fatalf("exit %d, want 2; stderr %q", code, out)
			}
			if strings.Count(out, "\n") != 1 || !strings.Contains(out, tc.want) {
				t.Fatalf("want one line containing %q, got %q", tc.want, out)
			}
		})
	}
	var stderr bytes.Buffer
	if code := run([]string{"--help"}, &stderr); code != 0 || !strings.Contains(stderr.String(), "--max-packet-size") {
		t.Fatalf("--help: exit %d, %q", code, stderr.String())
	}
}

// TestSignalShutdown runs the real binary, connects an MQTT 5 client and
// sends SIGTERM: the client gets DISCONNECT 0x8B and the broker exits 0.
func TestSignalShutdown(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "broker")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "--scripts", "../../scripts/examples/simps", "--listen", "127.0.0.1:0")
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	sc := bufio.NewScanner(stderr)
	var addr string
	re := regexp.MustCompile(`listening on (127\.0\.0\.1:\d+)`)
	for sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			addr = m[1]
			break
		}
	}
	if addr == "" {
		t.Fatal("no 'listening on' line")
	}
	go func() {
		for sc.Scan() {
		}
	}()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	b, _ := codec.Encode(&codec.Packet{Type: codec.CONNECT, ProtocolLevel: codec.V5, ClientID: "sig", CleanSession: true}, codec.V5)
	conn.Write(b)
	r := codec.NewReader(conn, 0)
	r.Version = codec.V5
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	var p codec.Packet
	if err := r.ReadPacket(&p); err != nil || p.Type != codec.CONNACK {
		t.Fatalf("CONNACK: %v %v", p.Type, err)
	}
	start := time.Now()
	cmd.Process.Signal(syscall.SIGTERM)
	if err := r.ReadPacket(&p); err != nil || p.Type != codec.DISCONNECT || p.ReasonCode != codec.ServerShuttingDown {
		t.Fatalf("want DISCONNECT 0x8B, got %v %v", &p, err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit: %v", err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("took %v to stop", el)
	}
}
