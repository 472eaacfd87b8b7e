package main

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"net"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/mqttlua/broker/codec"
)

// startBinary runs the broker binary with args and returns its MQTT
// address.
func startBinary(t *testing.T, bin string, args ...string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(bin, append(args, "--listen", "127.0.0.1:0")...)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stderr)
	re := regexp.MustCompile(`listening on mqtt://(127\.0\.0\.1:\d+)`)
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			go func() {
				for sc.Scan() {
				}
			}()
			return cmd, m[1]
		}
	}
	cmd.Process.Kill()
	t.Fatalf("no 'listening on' line: %v", lines)
	return nil, ""
}

// TestCrashKeepsAcknowledgedRetained runs the real binary with a data
// folder, publishes retained QoS 1 messages from several clients, kills
// the broker with SIGKILL at a random moment, restarts it on the folder,
// and checks that every retained message whose PUBACK a publisher
// received is there (a later value of the same topic may have replaced
// it only if that one was sent too). Three rounds.
func TestCrashKeepsAcknowledgedRetained(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "broker")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	data := filepath.Join(t.TempDir(), "data")
	args := []string{"--scripts", "../../scripts", "--data-dir", data}
	acked := map[string]int{} // topic -> highest value acknowledged
	sent := map[string]int{}  // topic -> highest value sent
	var mu sync.Mutex
	for round := range 3 {
		cmd, addr := startBinary(t, bin, args...)
		kill := time.Duration(100+rand.IntN(300)) * time.Millisecond
		var wg sync.WaitGroup
		for p := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				conn, err := net.Dial("tcp", addr)
				if err != nil {
					return
				}
				defer conn.Close()
				b, _ := codec.Encode(&codec.Packet{Type: codec.CONNECT, ProtocolLevel: 4, ClientID: fmt.Sprintf("pub-%d-%d", round, p), CleanSession: true, KeepAlive: 60}, codec.V311)
				conn.Write(b)
				r := codec.NewReader(conn, 0)
				var pk codec.Packet
				conn.SetReadDeadline(time.Now().Add(5 * time.Second))
				if r.ReadPacket(&pk) != nil {
					return
				}
				// Values grow per topic across rounds: round*100000 + i.
				for i := 1; ; i++ {
					topic := fmt.Sprintf("crash/%d/%d", p, i%20)
					val := round*100000 + i
					mu.Lock()
					sent[topic] = max(sent[topic], val)
					mu.Unlock()
					b, _ := codec.Encode(&codec.Packet{Type: codec.PUBLISH, Topic: topic, Payload: []byte(fmt.Sprint(val)), QoS: 1, PacketID: uint16(i%60000 + 1), Retain: true}, codec.V311)
					if _, err := conn.Write(b); err != nil {
						return
					}
					if err := r.ReadPacket(&pk); err != nil || pk.Type != codec.PUBACK {
						return // the broker died
					}
					mu.Lock()
					acked[topic] = max(acked[topic], val)
					mu.Unlock()
				}
			}()
		}
		time.Sleep(kill)
		cmd.Process.Kill()
		cmd.Wait()
		wg.Wait()
	}
	cmd, addr := startBinary(t, bin, args...)
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	b, _ := codec.Encode(&codec.Packet{Type: codec.CONNECT, ProtocolLevel: 4, ClientID: "checker", CleanSession: true, KeepAlive: 60}, codec.V311)
	conn.Write(b)
	b, _ = codec.Encode(&codec.Packet{Type: codec.SUBSCRIBE, PacketID: 1, Subscriptions: []codec.Subscription{{Topic: "crash/#"}}}, codec.V311)
	conn.Write(b)
	r := codec.NewReader(conn, 0)
	got := map[string]int{}
	for {
		conn.SetReadDeadline(time.Now().Add(time.Second))
		var pk codec.Packet
		if err := r.ReadPacket(&pk); err != nil {
			break
		}
		if pk.Type == codec.PUBLISH {
			var v int
			fmt.Sscan(string(pk.Payload), &v)
			got[pk.Topic] = v
		}
	}
	if len(acked) == 0 {
		t.Fatal("no PUBACK in three rounds")
	}
	lost := 0
	for topic, v := range acked {
		if got[topic] < v || got[topic] > sent[topic] {
			lost++
			t.Errorf("%s: acknowledged %d, sent up to %d, after the crashes %d", topic, v, sent[topic], got[topic])
		}
	}
	t.Logf("%d topics acknowledged across 3 kill -9s, %d lost", len(acked), lost)
}
