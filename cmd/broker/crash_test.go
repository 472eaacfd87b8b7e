package main

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
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

// mqttConn is a minimal client for the crash test: it speaks 3.1.1 over a
// raw connection and does the receiver's side of QoS 1 and 2.
type mqttConn struct {
	c net.Conn
	r *codec.Reader
}

func dialMQTT(addr, id string, clean bool) (*mqttConn, bool, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, false, err
	}
	b, _ := codec.Encode(&codec.Packet{Type: codec.CONNECT, ProtocolLevel: 4, ClientID: id, CleanSession: clean, KeepAlive: 60}, codec.V311)
	c.Write(b)
	m := &mqttConn{c: c, r: codec.NewReader(c, 0)}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var p codec.Packet
	if err := m.r.ReadPacket(&p); err != nil || p.Type != codec.CONNACK || p.ReasonCode != 0 {
		c.Close()
		return nil, false, fmt.Errorf("CONNACK %v %v", p.ReasonCode, err)
	}
	return m, p.SessionPresent, nil
}

func (m *mqttConn) send(p *codec.Packet) error {
	b, _ := codec.Encode(p, codec.V311)
	_, err := m.c.Write(b)
	return err
}

// receiver records what a persistent subscriber receives: every QoS 1
// delivery (duplicates counted) and QoS 2 ones exactly once, by the
// receiver's rule: a PUBLISH with a packet id not yet released is new.
type receiver struct {
	mu       sync.Mutex
	got      map[string]int  // payload -> times recorded
	pending2 map[uint16]bool // QoS 2 ids received, not yet released
}

func (rc *receiver) read(m *mqttConn, until time.Time) {
	for {
		m.c.SetReadDeadline(until)
		var p codec.Packet
		if err := m.r.ReadPacket(&p); err != nil {
			return
		}
		switch p.Type {
		case codec.PUBLISH:
			rc.mu.Lock()
			switch p.QoS {
			case 1:
				rc.got[string(p.Payload)]++
				rc.mu.Unlock()
				m.send(&codec.Packet{Type: codec.PUBACK, PacketID: p.PacketID})
			case 2:
				if !rc.pending2[p.PacketID] {
					rc.pending2[p.PacketID] = true
					rc.got[string(p.Payload)]++
				}
				rc.mu.Unlock()
				m.send(&codec.Packet{Type: codec.PUBREC, PacketID: p.PacketID})
			default:
				rc.mu.Unlock()
			}
		case codec.PUBREL:
			rc.mu.Lock()
			delete(rc.pending2, p.PacketID)
			rc.mu.Unlock()
			m.send(&codec.Packet{Type: codec.PUBCOMP, PacketID: p.PacketID})
		}
	}
}

// TestCrashKeepsAcknowledgedMessages: QoS 1 and QoS 2 publishers, a
// persistent subscriber online and one offline, kill -9 at random moments
// three times, restart, reconnect: every message whose PUBACK or PUBCOMP
// its publisher received reaches both subscribers, QoS 2 ones exactly
// once (QoS 1 duplicates are counted and reported).
func TestCrashKeepsAcknowledgedMessages(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "broker")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	data := filepath.Join(t.TempDir(), "data")
	// The default scripts keep 1,000 messages for an offline client and
	// drop the oldest past that (by design): room for all of them here.
	scripts := t.TempDir()
	for _, name := range []string{"main.lua", "auth.lua", "acl.lua"} {
		b, err := os.ReadFile(filepath.Join("../../scripts", name))
		if err != nil {
			t.Fatal(err)
		}
		src := strings.Replace(string(b), "max_queued = 1000,", "max_queued = 1000000,", 1)
		os.WriteFile(filepath.Join(scripts, name), []byte(src), 0o644)
	}
	args := []string{"--scripts", scripts, "--data-dir", data}
	cmd, addr := startBinary(t, bin, args...)
	for _, id := range []string{"sub-on", "sub-off"} {
		m, _, err := dialMQTT(addr, id, false)
		if err != nil {
			t.Fatal(err)
		}
		m.send(&codec.Packet{Type: codec.SUBSCRIBE, PacketID: 1, Subscriptions: []codec.Subscription{{Topic: "msgs/#", QoS: 2}}})
		var p codec.Packet
		m.r.ReadPacket(&p)
		m.c.Close()
	}
	on := &receiver{got: map[string]int{}, pending2: map[uint16]bool{}}
	off := &receiver{got: map[string]int{}, pending2: map[uint16]bool{}}
	var mu sync.Mutex
	acked := map[string]byte{} // payload -> QoS, for those acknowledged
	for round := range 3 {
		if round > 0 {
			cmd, addr = startBinary(t, bin, args...)
		}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { // the online subscriber, reconnecting to its session
			defer wg.Done()
			m, present, err := dialMQTT(addr, "sub-on", false)
			if err != nil {
				return
			}
			defer m.c.Close()
			if !present {
				t.Errorf("round %d: sub-on's session not present", round)
			}
			on.read(m, time.Now().Add(10*time.Second))
		}()
		for p := range 3 {
			qos := byte(1)
			if p == 2 {
				qos = 2
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				m, _, err := dialMQTT(addr, fmt.Sprintf("pub-%d-%d", round, p), true)
				if err != nil {
					return
				}
				defer m.c.Close()
				for i := 1; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					payload := fmt.Sprintf("r%d-p%d-%d", round, p, i)
					id := uint16(i%60000 + 1)
					if m.send(&codec.Packet{Type: codec.PUBLISH, Topic: "msgs/" + payload, Payload: []byte(payload), QoS: qos, PacketID: id}) != nil {
						return
					}
					var pk codec.Packet
					m.c.SetReadDeadline(time.Now().Add(5 * time.Second))
					if m.r.ReadPacket(&pk) != nil {
						return
					}
					if qos == 2 {
						if pk.Type != codec.PUBREC || m.send(&codec.Packet{Type: codec.PUBREL, PacketID: id}) != nil || m.r.ReadPacket(&pk) != nil || pk.Type != codec.PUBCOMP {
							return
						}
					} else if pk.Type != codec.PUBACK {
						return
					}
					mu.Lock()
					acked[payload] = qos
					mu.Unlock()
				}
			}()
		}
		time.Sleep(time.Duration(150+rand.IntN(300)) * time.Millisecond)
		cmd.Process.Kill()
		cmd.Wait()
		close(stop)
		wg.Wait()
	}
	cmd, addr = startBinary(t, bin, args...)
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	for _, s := range []struct {
		id string
		rc *receiver
	}{{"sub-on", on}, {"sub-off", off}} {
		m, present, err := dialMQTT(addr, s.id, false)
		if err != nil {
			t.Fatal(err)
		}
		if !present {
			t.Errorf("%s: session not present after the crashes", s.id)
		}
		// Read until a second passes with nothing new.
		for {
			s.rc.mu.Lock()
			n := len(s.rc.got)
			s.rc.mu.Unlock()
			s.rc.read(m, time.Now().Add(time.Second))
			s.rc.mu.Lock()
			more := len(s.rc.got) > n
			s.rc.mu.Unlock()
			if !more {
				break
			}
			m.c.Close()
			if m, _, err = dialMQTT(addr, s.id, false); err != nil {
				t.Fatal(err)
			}
		}
		m.c.Close()
	}
	if len(acked) == 0 {
		t.Fatal("nothing acknowledged in three rounds")
	}
	for _, s := range []struct {
		id string
		rc *receiver
	}{{"sub-on", on}, {"sub-off", off}} {
		lost, dup1, dup2 := 0, 0, 0
		for payload, qos := range acked {
			n := s.rc.got[payload]
			switch {
			case n == 0:
				lost++
			case n > 1 && qos == 2:
				dup2++
			case n > 1:
				dup1++
			}
		}
		t.Logf("%s: %d acknowledged messages, %d lost, %d QoS 1 duplicates, %d QoS 2 duplicates", s.id, len(acked), lost, dup1, dup2)
		if lost > 0 || dup2 > 0 {
			t.Errorf("%s: %d lost, %d QoS 2 delivered more than once", s.id, lost, dup2)
		}
	}
}

// TestCrashPublishesWills: a client connected with a will when the broker
// is killed loses its connection abnormally: after the restart its will
// is published (here to a persistent subscriber that was offline).
func TestCrashPublishesWills(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "broker")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	args := []string{"--scripts", "../../scripts", "--data-dir", filepath.Join(t.TempDir(), "data")}
	cmd, addr := startBinary(t, bin, args...)
	sub, _, err := dialMQTT(addr, "watcher", false)
	if err != nil {
		t.Fatal(err)
	}
	sub.send(&codec.Packet{Type: codec.SUBSCRIBE, PacketID: 1, Subscriptions: []codec.Subscription{{Topic: "wills/#", QoS: 1}}})
	var p codec.Packet
	sub.r.ReadPacket(&p)
	sub.send(&codec.Packet{Type: codec.DISCONNECT})
	sub.c.Close()

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := codec.Encode(&codec.Packet{Type: codec.CONNECT, ProtocolLevel: 4, ClientID: "dev", CleanSession: true, KeepAlive: 60,
		Will: &codec.Will{Topic: "wills/dev", Payload: []byte("gone"), QoS: 1}}, codec.V311)
	c.Write(b)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if err := codec.NewReader(c, 0).ReadPacket(&p); err != nil || p.Type != codec.CONNACK {
		t.Fatalf("CONNACK: %v", err)
	}
	time.Sleep(100 * time.Millisecond) // the will written (nothing waits for it)
	cmd.Process.Kill()
	cmd.Wait()
	c.Close()

	cmd, addr = startBinary(t, bin, args...)
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	time.Sleep(200 * time.Millisecond) // the will goes out at start, queued for the watcher
	sub, present, err := dialMQTT(addr, "watcher", false)
	if err != nil || !present {
		t.Fatalf("watcher: %v, session present %v", err, present)
	}
	sub.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if err := sub.r.ReadPacket(&p); err != nil || p.Type != codec.PUBLISH || p.Topic != "wills/dev" || string(p.Payload) != "gone" {
		t.Fatalf("want the will, got %v %v", &p, err)
	}
}
