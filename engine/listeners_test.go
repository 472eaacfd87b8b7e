package engine_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	paho3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/mqttlua/broker/codec"
	"github.com/mqttlua/broker/engine"
	"github.com/mqttlua/broker/engine/enginetest"
	"github.com/mqttlua/broker/engine/transport"
	proxyproto "github.com/pires/go-proxyproto"
)

// startListeners runs the listener tests' broker (testdata/listeners) on
// the given listeners and returns their addresses, in order.
func startListeners(t *testing.T, lcs ...transport.ListenerConfig) (*engine.Server, []string, *enginetest.LogBuffer) {
	t.Helper()
	srv, _, logs := startServer(t, engine.Config{Scripts: filepath.Join("testdata", "listeners"), Listeners: lcs})
	var addrs []string
	for _, a := range srv.Addrs() {
		addrs = append(addrs, a.String())
	}
	return srv, addrs, logs
}

// whoami asks the test broker what it knows of c's connection: listener,
// cert CN, fingerprint, remote address, SANs, the table's cert CN, the
// table's listener and the user name, "|"-separated ("-" for none).
func whoami(t *testing.T, c *rawClient) []string {
	t.Helper()
	c.Send(&codec.Packet{Type: codec.PUBLISH, Topic: "whoami"})
	p := c.Expect(codec.PUBLISH)
	return strings.Split(string(p.Payload), "|")
}

func dialTLS(t *testing.T, addr string, cfg *tls.Config) (*tls.Conn, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	return tls.DialWithDialer(d, "tcp", addr, cfg)
}

func fingerprint(t *testing.T, certFile string) string {
	b, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	sum := sha256.Sum256(blk.Bytes)
	return hex.EncodeToString(sum[:])
}

// TestTLSListener: MQTT over TLS with optional client certificates. A
// verified certificate reaches the script (CN, SANs, fingerprint); a
// client without one connects too; one signed by an unknown CA, plain
// MQTT and garbage sent to the TLS port each lose only their own
// connection, with a debug line saying why.
func TestTLSListener(t *testing.T) {
	certs := enginetest.MakeCerts(t, "broker")
	_, addrs, logs := startListeners(t, transport.ListenerConfig{Scheme: "mqtts", Addr: "127.0.0.1:0",
		TLS: transport.TLSFiles{Cert: certs.ServerCert, Key: certs.ServerKey, CA: certs.CA, ClientAuth: "optional"}})
	addr := addrs[0]

	tc, err := dialTLS(t, addr, certs.ClientTLS(t, certs.ClientCert, certs.ClientKey))
	if err != nil {
		t.Fatal(err)
	}
	c := enginetest.Wrap(t, tc, codec.V311)
	c.Connect("with-cert")
	got := whoami(t, c)
	want := []string{"mqtts://" + addr, "alice", fingerprint(t, certs.ClientCert), tc.LocalAddr().String(), "alice.example,alice@example.com", "alice", "mqtts://" + addr, "-"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("with a client certificate:\n got %q\nwant %q", got, want)
	}

	tc2, err := dialTLS(t, addr, certs.ClientTLS(t, "", ""))
	if err != nil {
		t.Fatal(err)
	}
	c2 := enginetest.Wrap(t, tc2, codec.V5)
	c2.Connect("without-cert")
	if got := whoami(t, c2); got[1] != "-" || got[2] != "-" || got[5] != "-" {
		t.Fatalf("without a client certificate: %q", got)
	}

	// A client whose certificate no trusted CA signed does not offer it
	// (Go's client sends only certificates the server's CAs issued):
	// connected, it has no certificate.
	tc3, err := dialTLS(t, addr, certs.ClientTLS(t, certs.RogueCert, certs.RogueKey))
	if err != nil {
		t.Fatal(err)
	}
	c3 := enginetest.Wrap(t, tc3, codec.V311)
	c3.Connect("rogue-unsent")
	if got := whoami(t, c3); got[1] != "-" {
		t.Fatalf("an unsent rogue certificate: %q", got)
	}
	// Forced on the server, it fails the handshake (TLS 1.3 reports
	// that on the client's first read).
	rogue := certs.ClientTLS(t, certs.RogueCert, certs.RogueKey)
	forced := rogue.Certificates[0]
	rogue.Certificates = nil
	rogue.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &forced, nil }
	if tc4, err := dialTLS(t, addr, rogue); err == nil {
		c4 := enginetest.Wrap(t, tc4, codec.V311)
		c4.Send(&codec.Packet{Type: codec.CONNECT, ProtocolLevel: codec.V311, ClientID: "rogue", CleanSession: true})
		if p, err := c4.Next(5 * time.Second); err == nil {
			t.Fatalf("a rogue certificate got %v", p)
		}
	}
	// Plain MQTT and garbage on the TLS port.
	for name, b := range map[string][]byte{
		"plain CONNECT": encode(t, &codec.Packet{Type: codec.CONNECT, ProtocolLevel: codec.V311, ClientID: "plain", CleanSession: true}, codec.V311),
		"garbage":       bytes.Repeat([]byte{0x16, 0x03, 0x01, 0xff, 0xff, 0x00}, 20),
	} {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		nc.Write(b)
		nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 512)
		for {
			if _, err := nc.Read(buf); err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					t.Fatalf("%s: the connection stayed open", name)
				}
				break
			}
		}
		nc.Close()
	}
	waitFor(t, "handshake failures logged", func() bool { return strings.Count(logs.String(), "TLS handshake failed") >= 3 })
	// The clients that did connect are unharmed.
	whoami(t, c)
	whoami(t, c2)
}

func encode(t *testing.T, p *codec.Packet, v byte) []byte {
	b, err := codec.Encode(p, v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestTLSReload: certificates re-read (SIGHUP calls ReloadTLS) serve the
// next handshakes; files that do not load keep the current ones.
func TestTLSReload(t *testing.T) {
	certs := enginetest.MakeCerts(t, "first")
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key")
	cp := func(from, to string) {
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cp(certs.ServerCert, certFile)
	cp(certs.ServerKey, keyFile)
	srv, addrs, _ := startListeners(t, transport.ListenerConfig{Scheme: "mqtts", Addr: "127.0.0.1:0",
		TLS: transport.TLSFiles{Cert: certFile, Key: keyFile}})
	serverCN := func() string {
		tc, err := dialTLS(t, addrs[0], certs.ClientTLS(t, "", ""))
		if err != nil {
			t.Fatal(err)
		}
		defer tc.Close()
		return tc.ConnectionState().PeerCertificates[0].Subject.CommonName
	}
	if cn := serverCN(); cn != "first" {
		t.Fatalf("server CN %q", cn)
	}
	second := enginetest.MakeCerts(t, "second")
	cp(second.ServerCert, certFile)
	cp(second.ServerKey, keyFile)
	if err := srv.ReloadTLS(); err != nil {
		t.Fatal(err)
	}
	// The client trusts the first CA only: check the new certificate
	// without verifying it.
	tc, err := tls.Dial("tcp", addrs[0], &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	if cn := tc.ConnectionState().PeerCertificates[0].Subject.CommonName; cn != "second" {
		t.Fatalf("after reload, server CN %q", cn)
	}
	tc.Close()
	os.WriteFile(certFile, []byte("not a certificate"), 0o600)
	err = srv.ReloadTLS()
	if err == nil || !strings.Contains(err.Error(), certFile) {
		t.Fatalf("reload of a broken certificate: %v", err)
	}
	tc, err = tls.Dial("tcp", addrs[0], &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("after a failed reload: %v", err)
	}
	if cn := tc.ConnectionState().PeerCertificates[0].Subject.CommonName; cn != "second" {
		t.Fatalf("after a failed reload, server CN %q", cn)
	}
	tc.Close()
}

// TestListenerConfigErrors: a bad listener or certificate file is
// reported by New, naming the listener and the file.
func TestListenerConfigErrors(t *testing.T) {
	certs := enginetest.MakeCerts(t, "broker")
	for _, tc := range []struct {
		listen []string
		want   string
	}{
		{[]string{"ftp://:21"}, `unknown scheme "ftp"`},
		{[]string{"mqtts://127.0.0.1:0"}, "needs a certificate and a key"},
		{[]string{"mqtts://127.0.0.1:0?cert=/nonexistent.pem&key=/nonexistent.key"}, "/nonexistent.pem"},
		{[]string{"mqtts://127.0.0.1:0?cert=" + certs.ServerCert + "&key=" + certs.ServerKey + "&ca=/missing-ca.pem"}, "/missing-ca.pem"},
		{[]string{"mqtts://127.0.0.1:0?cert=" + certs.ServerCert + "&key=" + certs.ServerKey + "&client_auth=required"}, "needs a CA bundle"},
		{[]string{"mqtt://127.0.0.1:0?cert=" + certs.ServerCert}, "TLS options on a listener without TLS"},
		{[]string{"mqtt://127.0.0.1:0?colour=blue"}, `unknown option "colour"`},
		{[]string{"ws://127.0.0.1:0/mqtt?min_tls=1.3"}, "TLS options on a listener without TLS"},
		{[]string{"mqtt://127.0.0.1:0?origins=example.com"}, "origins apply to WebSocket listeners only"},
		{[]string{"unix://"}, "needs a socket path"},
	} {
		_, err := engine.New(engine.Config{Scripts: filepath.Join("testdata", "listeners"), Listen: tc.listen})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: want an error with %q, got %v", tc.listen, tc.want, err)
		}
	}
}

// TestUnixListener: MQTT over a Unix socket; its clients are local
// ("unix:" addresses, which auth.lua's loopback rule accepts), and a
// stale socket file left by a crash does not stop the next start.
func TestUnixListener(t *testing.T) {
	path := filepath.Join(t.TempDir(), "broker.sock")
	// A stale socket: bound, then abandoned without removing the file.
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stale.SetUnlinkOnClose(false)
	stale.Close()
	_, _, _ = startListeners(t, transport.ListenerConfig{Scheme: "unix", Addr: path})
	nc, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	c := enginetest.Wrap(t, nc, codec.V5)
	c.Connect("over-unix")
	got := whoami(t, c)
	if got[0] != "unix://"+path || got[3] != "unix:"+path {
		t.Fatalf("whoami over a Unix socket: %q", got)
	}
}

// TestUnixListenerDefaultScripts: the default scripts accept an
// anonymous client on a Unix socket, as from loopback.
func TestUnixListenerDefaultScripts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "broker.sock")
	startServer(t, engine.Config{Scripts: filepath.Join(repoDir(), "scripts"), Listen: []string{"unix://" + path}})
	nc, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	c := enginetest.Wrap(t, nc, codec.V311)
	c.Connect("anonymous-local")
}

// TestProxyProtocol: behind a PROXY header (v1 and v2) the client's
// address is the one the proxy saw; without the header, or with one on a
// listener that does not expect it, the connection is closed.
func TestProxyProtocol(t *testing.T) {
	_, addrs, logs := startListeners(t,
		transport.ListenerConfig{Scheme: "mqtt", Addr: "127.0.0.1:0", ProxyProtocol: true},
		transport.ListenerConfig{Scheme: "mqtt", Addr: "127.0.0.1:0"})
	proxied, plain := addrs[0], addrs[1]
	for _, version := range []byte{1, 2} {
		nc, err := net.Dial("tcp", proxied)
		if err != nil {
			t.Fatal(err)
		}
		h := proxyproto.HeaderProxyFromAddrs(version, &net.TCPAddr{IP: net.ParseIP("203.0.113.7"), Port: 5555}, nc.RemoteAddr())
		if _, err := h.WriteTo(nc); err != nil {
			t.Fatal(err)
		}
		c := enginetest.Wrap(t, nc, codec.V311)
		c.Connect(fmt.Sprintf("proxied-v%d", version))
		if got := whoami(t, c); got[3] != "203.0.113.7:5555" {
			t.Fatalf("PROXY v%d: remote address %q", version, got[3])
		}
	}
	// No header where one is required.
	nc, err := net.Dial("tcp", proxied)
	if err != nil {
		t.Fatal(err)
	}
	c := enginetest.Wrap(t, nc, codec.V311)
	c.Send(&codec.Packet{Type: codec.CONNECT, ProtocolLevel: codec.V311, ClientID: "no-header", CleanSession: true})
	c.ExpectClosed()
	// A header where none is expected.
	nc, err = net.Dial("tcp", plain)
	if err != nil {
		t.Fatal(err)
	}
	proxyproto.HeaderProxyFromAddrs(1, &net.TCPAddr{IP: net.ParseIP("203.0.113.7"), Port: 5555}, nc.RemoteAddr()).WriteTo(nc)
	c = enginetest.Wrap(t, nc, codec.V311)
	c.Send(&codec.Packet{Type: codec.CONNECT, ProtocolLevel: codec.V311, ClientID: "spoofer", CleanSession: true})
	c.ExpectClosed()
	waitFor(t, "the refusal logged", func() bool { return strings.Contains(logs.String(), "but a PROXY protocol header") })
}

// TestListenerMaxConnections: a listener's own limit refuses connections
// past it, while another listener still takes them.
func TestListenerMaxConnections(t *testing.T) {
	_, addrs, logs := startListeners(t,
		transport.ListenerConfig{Scheme: "mqtt", Addr: "127.0.0.1:0", MaxConnections: 1},
		transport.ListenerConfig{Scheme: "mqtt", Addr: "127.0.0.1:0"})
	first := dialRaw(t, addrs[0], codec.V311)
	first.Connect("first")
	second := dialRaw(t, addrs[0], codec.V311)
	second.ExpectClosed()
	if !strings.Contains(logs.String(), "this listener's maximum") {
		t.Fatalf("no log line for the refusal:\n%s", logs)
	}
	other := dialRaw(t, addrs[1], codec.V311)
	other.Connect("other")
	whoami(t, first)
}

// wsDial opens a WebSocket to url offering subprotocols; it returns the
// connection and the HTTP status of the answer.
func wsDial(t *testing.T, url string, subprotocols []string, header http.Header, tlsCfg *tls.Config) (*websocket.Conn, int, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	opts := &websocket.DialOptions{Subprotocols: subprotocols, HTTPHeader: header}
	if tlsCfg != nil {
		opts.HTTPClient = &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg}}
	}
	c, resp, err := websocket.Dial(ctx, url, opts)
	status := 0
	if resp != nil {
		status = resp.StatusCode
	}
	if c != nil {
		t.Cleanup(func() { c.CloseNow() })
	}
	return c, status, err
}

// wsClient is a hand-built MQTT client over a WebSocket, one binary
// message per write.
func wsClient(t *testing.T, c *websocket.Conn, level byte) *rawClient {
	return enginetest.Wrap(t, websocket.NetConn(context.Background(), c, websocket.MessageBinary), level)
}

// TestWebSocketListener: MQTT over WebSocket at the frame level: several
// packets in one message and one packet over several, the subprotocol,
// the path, text frames, oversized frames and origins.
func TestWebSocketListener(t *testing.T) {
	_, addrs, logs := startListeners(t,
		transport.ListenerConfig{Scheme: "ws", Addr: "127.0.0.1:0", Path: "/mqtt"},
		transport.ListenerConfig{Scheme: "ws", Addr: "127.0.0.1:0", Path: "/mqtt", AllowedOrigins: []string{"app.example.com"}})
	url := "ws://" + addrs[0] + "/mqtt"

	t.Run("packets and frames", func(t *testing.T) {
		ws, _, err := wsDial(t, url, []string{"mqtt"}, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if ws.Subprotocol() != "mqtt" {
			t.Fatalf("subprotocol %q, want mqtt [MQTT-6.0.0-4]", ws.Subprotocol())
		}
		ctx := context.Background()
		// CONNECT and SUBSCRIBE in one message.
		both := append(encode(t, &codec.Packet{Type: codec.CONNECT, ProtocolLevel: codec.V5, ClientID: "ws-frames", CleanSession: true, KeepAlive: 30}, codec.V5),
			encode(t, &codec.Packet{Type: codec.SUBSCRIBE, PacketID: 1, Subscriptions: []codec.Subscription{{Topic: "ws/#", QoS: 1}}}, codec.V5)...)
		if err := ws.Write(ctx, websocket.MessageBinary, both); err != nil {
			t.Fatal(err)
		}
		c := wsClient(t, ws, codec.V5)
		c.Expect(codec.CONNACK)
		c.Expect(codec.SUBACK)
		// A PUBLISH over three messages.
		pub := encode(t, &codec.Packet{Type: codec.PUBLISH, Topic: "ws/x", QoS: 1, PacketID: 2, Payload: []byte("split across frames")}, codec.V5)
		for _, part := range [][]byte{pub[:1], pub[1:7], pub[7:]} {
			if err := ws.Write(ctx, websocket.MessageBinary, part); err != nil {
				t.Fatal(err)
			}
		}
		got := map[codec.Type]*codec.Packet{}
		for range 2 {
			p := c.Expect(0)
			got[p.Type] = p
		}
		if got[codec.PUBACK] == nil || got[codec.PUBLISH] == nil || string(got[codec.PUBLISH].Payload) != "split across frames" {
			t.Fatalf("want PUBACK and the PUBLISH back, got %v", got)
		}
		// A ping from the client is answered while MQTT goes on (the
		// pong arrives while the client reads the whoami answer).
		pinged := make(chan error, 1)
		go func() {
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			pinged <- ws.Ping(pctx)
		}()
		time.Sleep(50 * time.Millisecond)
		if w := whoami(t, c); w[0] != url || !strings.HasPrefix(w[3], "127.0.0.1:") {
			t.Fatalf("whoami over WebSocket: %q", w)
		}
		if err := <-pinged; err != nil {
			t.Fatalf("ping: %v", err)
		}
	})

	t.Run("mqttv3.1 subprotocol", func(t *testing.T) {
		ws, _, err := wsDial(t, url, []string{"mqttv3.1"}, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		c := wsClient(t, ws, codec.V31)
		c.Connect("ws-31")
	})

	t.Run("no subprotocol", func(t *testing.T) {
		ws, _, err := wsDial(t, url, nil, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = ws.Read(context.Background())
		if websocket.CloseStatus(err) != websocket.StatusProtocolError {
			t.Fatalf("want close 1002, got %v", err)
		}
	})

	t.Run("text frame", func(t *testing.T) {
		ws, _, err := wsDial(t, url, []string{"mqtt"}, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		ws.Write(context.Background(), websocket.MessageText, encode(t, &codec.Packet{Type: codec.CONNECT, ProtocolLevel: codec.V311, ClientID: "text", CleanSession: true}, codec.V311))
		_, _, err = ws.Read(context.Background())
		if websocket.CloseStatus(err) != websocket.StatusUnsupportedData {
			t.Fatalf("want close 1003 [MQTT-6.0.0-1], got %v", err)
		}
	})

	t.Run("oversized frame", func(t *testing.T) {
		ws, _, err := wsDial(t, url, []string{"mqtt"}, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		c := wsClient(t, ws, codec.V311)
		c.Connect("big")
		// Two PUBLISHes of 600 KiB in one message: each packet is under the
		// 1 MiB maximum, the message is not.
		big := encode(t, &codec.Packet{Type: codec.PUBLISH, Topic: "big", Payload: make([]byte, 600<<10)}, codec.V311)
		ws.Write(context.Background(), websocket.MessageBinary, append(big, big...))
		// Closed (1009, or the broker's own close after the read failed).
		if _, _, err = ws.Read(context.Background()); err == nil {
			t.Fatal("the connection stayed open")
		}
		waitFor(t, "the reason logged", func() bool { return strings.Contains(logs.String(), "read limited at") })
	})

	t.Run("wrong path and plain HTTP", func(t *testing.T) {
		if _, status, err := wsDial(t, "ws://"+addrs[0]+"/other", []string{"mqtt"}, nil, nil); err == nil || status != http.StatusNotFound {
			t.Fatalf("another path: status %d, %v", status, err)
		}
		resp, err := http.Get("http://" + addrs[0] + "/mqtt")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode < 400 {
			t.Fatalf("a plain GET: status %d", resp.StatusCode)
		}
	})

	t.Run("origins", func(t *testing.T) {
		url := "ws://" + addrs[1] + "/mqtt"
		if _, status, err := wsDial(t, url, []string{"mqtt"}, http.Header{"Origin": {"https://evil.example.net"}}, nil); err == nil || status != http.StatusForbidden {
			t.Fatalf("a foreign origin: status %d, %v", status, err)
		}
		ws, _, err := wsDial(t, url, []string{"mqtt"}, http.Header{"Origin": {"https://app.example.com"}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		wsClient(t, ws, codec.V311).Connect("allowed-origin")
	})
	if !strings.Contains(logs.String(), "WebSocket client offered no MQTT subprotocol") {
		t.Errorf("no debug line for the missing subprotocol")
	}
}

// TestPahoOverWebSocketAndTLS: the paho Go client over ws://, wss:// and
// mqtts:// against the default scripts.
func TestPahoOverWebSocketAndTLS(t *testing.T) {
	certs := enginetest.MakeCerts(t, "broker")
	tlsFiles := transport.TLSFiles{Cert: certs.ServerCert, Key: certs.ServerKey}
	srv, _, _ := startServer(t, engine.Config{Scripts: filepath.Join(repoDir(), "scripts"), Listeners: []transport.ListenerConfig{
		{Scheme: "ws", Addr: "127.0.0.1:0", Path: "/mqtt"},
		{Scheme: "wss", Addr: "127.0.0.1:0", Path: "/mqtt", TLS: tlsFiles},
		{Scheme: "mqtts", Addr: "127.0.0.1:0", TLS: tlsFiles},
	}})
	a := srv.Addrs()
	for _, url := range []string{"ws://" + a[0].String() + "/mqtt", "wss://" + a[1].String() + "/mqtt", "ssl://" + a[2].String()} {
		t.Run(strings.Split(url, ":")[0], func(t *testing.T) {
			opts := func(id string) *paho3.ClientOptions {
				return paho3.NewClientOptions().AddBroker(url).SetClientID(id).SetTLSConfig(certs.ClientTLS(t, "", "")).SetConnectTimeout(5 * time.Second)
			}
			sub := paho3.NewClient(opts("paho-sub"))
			if tok := sub.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
				t.Fatalf("connect: %v", tok.Error())
			}
			defer sub.Disconnect(100)
			got := make(chan string, 10)
			if tok := sub.Subscribe("paho/#", 1, func(_ paho3.Client, m paho3.Message) { got <- string(m.Payload()) }); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
				t.Fatalf("subscribe: %v", tok.Error())
			}
			pub := paho3.NewClient(opts("paho-pub"))
			if tok := pub.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
				t.Fatalf("connect: %v", tok.Error())
			}
			defer pub.Disconnect(100)
			for i := range 3 {
				if tok := pub.Publish("paho/t", byte(i%2), false, fmt.Sprint("m", i)); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
					t.Fatalf("publish: %v", tok.Error())
				}
			}
			for i := range 3 {
				select {
				case m := <-got:
					if m != fmt.Sprint("m", i) {
						t.Fatalf("got %q, want m%d", m, i)
					}
				case <-time.After(5 * time.Second):
					t.Fatalf("message %d not received", i)
				}
			}
		})
	}
}

// editScripts copies the default scripts, applying edits (old -> new,
// each must match) to the named files.
func editScripts(t *testing.T, edits map[string][][2]string) string {
	t.Helper()
	return enginetest.CopyScripts(t, func(name, src string) string {
		for _, ed := range edits[name] {
			if !strings.Contains(src, ed[0]) {
				t.Fatalf("%s has no %q", name, ed[0])
			}
			src = strings.Replace(src, ed[0], ed[1], 1)
		}
		return src
	})
}

// TestMosquittoTLS: mosquitto_pub and mosquitto_sub over TLS with client
// certificates required, the default scripts using the certificate's CN
// as the user name (auth.use_identity_as_username) and an ACL that lets
// only alice in; without a certificate the handshake is refused.
func TestMosquittoTLS(t *testing.T) {
	sub := enginetest.MosquittoTool(t, "mosquitto_sub")
	pub := enginetest.MosquittoTool(t, "mosquitto_pub")
	certs := enginetest.MakeCerts(t, "broker")
	scripts := editScripts(t, map[string][][2]string{
		"auth.lua": {{"auth.use_identity_as_username = false", "auth.use_identity_as_username = true"}},
		"acl.lua":  {{`acl.default = "allow"`, `acl.default = "deny"`}, {"acl.rules = {", `acl.rules = { { action = "allow", user = "alice", topic = "tls/#" },`}},
	})
	srv, _, _ := startServer(t, engine.Config{Scripts: scripts, Listeners: []transport.ListenerConfig{{Scheme: "mqtts", Addr: "127.0.0.1:0",
		TLS: transport.TLSFiles{Cert: certs.ServerCert, Key: certs.ServerKey, CA: certs.CA, ClientAuth: "required"}}}})
	_, port, _ := net.SplitHostPort(srv.Addrs()[0].String())
	tlsArgs := []string{"-h", "127.0.0.1", "-p", port, "--cafile", certs.CA, "-V", "mqttv5"}
	withCert := append(append([]string{}, tlsArgs...), "--cert", certs.ClientCert, "--key", certs.ClientKey)

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var out bytes.Buffer
	s := exec.CommandContext(ctx, sub, append(withCert, "-t", "tls/#", "-C", "2", "-v", "-q", "1", "-i", "tls-sub")...)
	s.Stdout, s.Stderr = &out, &out
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // mosquitto_sub subscribes
	for i, q := range []string{"0", "1"} {
		o, err := exec.CommandContext(ctx, pub, append(withCert, "-t", "tls/t", "-m", "m"+q, "-q", q, "-i", fmt.Sprint("tls-pub", i))...).CombinedOutput()
		if err != nil {
			t.Fatalf("mosquitto_pub with a certificate: %v %s", err, o)
		}
	}
	if err := s.Wait(); err != nil {
		t.Fatalf("mosquitto_sub: %v %s", err, out.String())
	}
	if out.String() != "tls/t m0\ntls/t m1\n" {
		t.Fatalf("mosquitto_sub got %q", out.String())
	}
	// Without a certificate: no connection.
	if o, err := exec.CommandContext(ctx, pub, append(tlsArgs, "-t", "tls/t", "-m", "nope")...).CombinedOutput(); err == nil {
		t.Fatalf("mosquitto_pub without a certificate connected: %s", o)
	}
}

// mqttjsDir returns the node_modules folder with MQTT.js (.ci/run sets
// MQTTJS_NODE_PATH), skipping the test elsewhere and failing it in CI.
func mqttjsDir(t *testing.T) string {
	dir := os.Getenv("MQTTJS_NODE_PATH")
	if dir == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("MQTTJS_NODE_PATH is needed in CI (see .ci/run)")
		}
		t.Skip("set MQTTJS_NODE_PATH to a node_modules folder with mqtt installed")
	}
	return dir
}

// TestMQTTjsWebSocket runs the MQTT.js interop checks (3.1.1 and 5.0,
// QoS 0-2, properties, retained messages) over ws:// and wss://.
func TestMQTTjsWebSocket(t *testing.T) {
	dir := mqttjsDir(t)
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is needed with MQTTJS_NODE_PATH")
	}
	certs := enginetest.MakeCerts(t, "broker")
	srv, _, _ := startServer(t, engine.Config{Scripts: filepath.Join(repoDir(), "scripts"), Listeners: []transport.ListenerConfig{
		{Scheme: "ws", Addr: "127.0.0.1:0", Path: "/mqtt"},
		{Scheme: "wss", Addr: "127.0.0.1:0", Path: "/mqtt", TLS: transport.TLSFiles{Cert: certs.ServerCert, Key: certs.ServerKey}},
	}})
	script := filepath.Join(repoDir(), "engine", "broker", "testdata", "mqttjs", "interop.js")
	for i, scheme := range []string{"ws", "wss"} {
		url := scheme + "://" + srv.Addrs()[i].String() + "/mqtt"
		t.Run(scheme, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, node, script, url)
			cmd.Env = append(os.Environ(), "NODE_PATH="+dir, "NODE_EXTRA_CA_CERTS="+certs.CA)
			out, err := cmd.CombinedOutput()
			if err != nil || strings.TrimSpace(string(out)) != "ok" {
				t.Fatalf("MQTT.js over %s: %v\n%s", url, err, out)
			}
		})
	}
}

// TestLingeringClose: a 5.0 client that overruns its receive maximum
// and keeps sending gets to read the DISCONNECT 0x93 that ends it, over
// TCP and TLS: the broker half-closes and drains its input instead of
// closing at once (which makes the kernel answer the client's data with a
// reset that can destroy the DISCONNECT unread).
func TestLingeringClose(t *testing.T) {
	certs := enginetest.MakeCerts(t, "broker")
	srv, _, _ := startServer(t, engine.Config{Scripts: filepath.Join("testdata", "listeners"), ReceiveMaximum: 2, Listeners: []transport.ListenerConfig{
		{Scheme: "mqtt", Addr: "127.0.0.1:0"},
		{Scheme: "mqtts", Addr: "127.0.0.1:0", TLS: transport.TLSFiles{Cert: certs.ServerCert, Key: certs.ServerKey}},
	}})
	for i, name := range []string{"tcp", "tls"} {
		t.Run(name, func(t *testing.T) {
			for round := range 5 {
				var nc net.Conn
				var err error
				if name == "tls" {
					nc, err = dialTLS(t, srv.Addrs()[i].String(), certs.ClientTLS(t, "", ""))
				} else {
					nc, err = net.Dial("tcp", srv.Addrs()[i].String())
				}
				if err != nil {
					t.Fatal(err)
				}
				c := enginetest.Wrap(t, nc, codec.V5)
				c.Connect(fmt.Sprint("overrun-", round))
				// QoS 2 PUBLISHes never released, sent on and on: the
				// third is one too many.
				stop := make(chan struct{})
				sent := make(chan struct{})
				go func() {
					defer close(sent)
					var batch []byte
					for id := 1; id <= 64; id++ {
						batch = append(batch, encode(t, &codec.Packet{Type: codec.PUBLISH, Topic: "flood", QoS: 2, PacketID: uint16(id), Payload: make([]byte, 1024)}, codec.V5)...)
					}
					for {
						select {
						case <-stop:
							return
						default:
						}
						nc.SetWriteDeadline(time.Now().Add(time.Second))
						if _, err := nc.Write(batch); err != nil {
							return
						}
					}
				}()
				var last *codec.Packet
				for {
					p, err := c.Next(5 * time.Second)
					if err != nil {
						if last == nil || last.Type != codec.DISCONNECT {
							t.Fatalf("round %d: the connection ended with %v before a DISCONNECT (last packet %v)", round, err, last)
						}
						break
					}
					last = p
					if p.Type == codec.DISCONNECT {
						break
					}
				}
				close(stop)
				<-sent
				if last.ReasonCode != codec.ReceiveMaximumExceeded {
					t.Fatalf("DISCONNECT reason %#x, want 0x93", byte(last.ReasonCode))
				}
				nc.Close()
			}
		})
	}
}

// chromium returns the path of a Chromium binary, skipping the test when
// there is none outside CI (.ci/run installs the Debian package).
func chromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is needed in CI (see .ci/run)")
	}
	t.Skip("chromium not installed (apt-get install chromium)")
	return ""
}

// TestBrowserWebSocket: a real browser. Headless Chromium opens a page
// that loads MQTT.js's browser bundle, connects over ws:// to the
// default scripts, subscribes, and answers what it receives; a Go client
// on plain TCP talks to it, and the page's DOM (--dump-dom) shows the
// exchange.
func TestBrowserWebSocket(t *testing.T) {
	bundle := filepath.Join(mqttjsDir(t), "mqtt", "dist", "mqtt.min.js")
	browser := chromium(t)
	srv, _, logs := startServer(t, engine.Config{Scripts: filepath.Join(repoDir(), "scripts"), Listeners: []transport.ListenerConfig{
		{Scheme: "ws", Addr: "127.0.0.1:0", Path: "/mqtt"},
		{Scheme: "mqtt", Addr: "127.0.0.1:0"},
	}})
	wsURL := "ws://" + srv.Addrs()[0].String() + "/mqtt"

	release := make(chan struct{})
	var releaseOnce sync.Once
	page := http.NewServeMux()
	html, err := os.ReadFile(filepath.Join("testdata", "browser", "index.html"))
	if err != nil {
		t.Fatal(err)
	}
	page.HandleFunc("/page", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write(html)
	})
	page.HandleFunc("/mqtt.min.js", func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, bundle) })
	page.HandleFunc("/hold", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-time.After(30 * time.Second):
		}
		w.WriteHeader(http.StatusNoContent)
	})
	web := httptest.NewServer(page)
	defer web.Close()
	defer releaseOnce.Do(func() { close(release) }) // before Close, which waits for /hold

	got := make(chan paho3.Message, 10)
	goc := paho3.NewClient(paho3.NewClientOptions().AddBroker("tcp://" + srv.Addrs()[1].String()).SetClientID("go-side"))
	if tok := goc.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer goc.Disconnect(100)
	answers := map[string]byte{"browser/ready": 1, "browser/out": 1}
	if tok := goc.SubscribeMultiple(answers, func(_ paho3.Client, m paho3.Message) { got <- m }); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var dom, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--no-first-run", "--user-data-dir="+t.TempDir(), "--enable-logging=stderr", "--log-level=0", "--dump-dom", web.URL+"/page?broker="+wsURL)
	cmd.Stdout, cmd.Stderr = &dom, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	expect := func(topic string) string {
		t.Helper()
		select {
		case m := <-got:
			if m.Topic() != topic {
				t.Fatalf("got %s %q, want %s", m.Topic(), m.Payload(), topic)
			}
			return string(m.Payload())
		case <-time.After(30 * time.Second):
			t.Fatalf("no %s from the browser; its stderr:\n%s\nthe broker's log:\n%s", topic, stderr.String(), logs)
		}
		return ""
	}
	ua := expect("browser/ready")
	if !strings.Contains(ua, "Chrome") {
		t.Fatalf("the page's user agent %q", ua)
	}
	if tok := goc.Publish("browser/in", 1, false, "hello from go"); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
	if answer := expect("browser/out"); answer != "got hello from go" {
		t.Fatalf("the browser answered %q", answer)
	}
	// The page marks the answer done when its PUBACK arrives.
	time.Sleep(300 * time.Millisecond)
	releaseOnce.Do(func() { close(release) })
	if err := cmd.Wait(); err != nil {
		t.Fatalf("chromium: %v\n%s", err, stderr.String())
	}
	for _, want := range []string{`<p id="status">answered hello from go</p>`, `<li>browser/in: hello from go</li>`} {
		if !strings.Contains(dom.String(), want) {
			t.Fatalf("the page's DOM has no %s:\n%s", want, dom.String())
		}
	}
}
