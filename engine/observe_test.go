package engine_test

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mqttlua/broker/codec"
	"github.com/mqttlua/broker/engine"
)

// scrape fetches /metrics and returns its sample lines by series
// ("name{labels}" -> value text).
func scrape(t *testing.T, base, token string) map[string]string {
	t.Helper()
	code, body := request(t, "GET", base+"/metrics", token)
	if code != 200 {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	out := map[string]string{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		out[line[:i]] = line[i+1:]
	}
	return out
}

// waitMetrics scrapes until every series in want has its value (the
// counters catch up with the traffic within moments), failing with the
// differences after 5 s; it returns the last scrape.
func waitMetrics(t *testing.T, base string, want map[string]string) map[string]string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := scrape(t, base, "")
		var wrong []string
		for k, v := range want {
			if got[k] != v {
				wrong = append(wrong, fmt.Sprintf("%s = %q, want %q", k, got[k], v))
			}
		}
		if len(wrong) == 0 {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics:\n%s", strings.Join(wrong, "\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestMetrics: the Prometheus metrics count real traffic exactly:
// packets by type, messages routed and delivered, handler calls and
// their durations, connections per listener, sessions, retained
// messages and close reasons.
func TestMetrics(t *testing.T) {
	srv, addr, _ := startServer(t, engine.Config{Scripts: filepath.Join(repoDir(), "scripts"), HTTPAddr: "127.0.0.1:0"})
	base := "http://" + srv.HTTPAddr()
	sub := dialRaw(t, addr, codec.V311)
	sub.Connect("metrics-sub")
	sub.Send(&codec.Packet{Type: codec.SUBSCRIBE, PacketID: 1, Subscriptions: []codec.Subscription{{Topic: "m/#", QoS: 1}}})
	sub.Expect(codec.SUBACK)
	pub := dialRaw(t, addr, codec.V5)
	pub.Connect("metrics-pub")
	for i := range 5 {
		pub.Send(&codec.Packet{Type: codec.PUBLISH, Topic: "m/x", Payload: []byte(fmt.Sprint(i))})
	}
	for i := range 3 {
		pub.Send(&codec.Packet{Type: codec.PUBLISH, Topic: "m/y", QoS: 1, PacketID: uint16(i + 1), Payload: []byte("q")})
		pub.Expect(codec.PUBACK)
	}
	pub.Send(&codec.Packet{Type: codec.PUBLISH, Topic: "m/retained", Retain: true, Payload: []byte("kept")})
	for range 9 {
		if p := sub.Expect(codec.PUBLISH); p.QoS == 1 {
			sub.Send(&codec.Packet{Type: codec.PUBACK, PacketID: p.PacketID})
		}
	}
	listener := srv.Addrs()[0].String()
	want := map[string]string{
		`mqttlua_packets_received_total{type="CONNECT"}`:                               "2",
		`mqttlua_packets_received_total{type="SUBSCRIBE"}`:                             "1",
		`mqttlua_packets_received_total{type="PUBLISH"}`:                               "9",
		`mqttlua_packets_received_total{type="PUBACK"}`:                                "3",
		`mqttlua_messages_published_total`:                                             "9",
		`mqttlua_messages_delivered_total`:                                             "9",
		`mqttlua_lua_handler_calls_total{handler="onMqConnect"}`:                       "2",
		`mqttlua_lua_handler_calls_total{handler="onMqSubscribe"}`:                     "1",
		`mqttlua_lua_handler_calls_total{handler="onMqPublish"}`:                       "9",
		`mqttlua_lua_handler_errors_total{handler="onMqPublish"}`:                      "0",
		`mqttlua_lua_handler_duration_seconds_count{handler="onMqPublish"}`:            "9",
		`mqttlua_lua_handler_duration_seconds_bucket{handler="onMqPublish",le="+Inf"}`: "9",
		`mqttlua_connections{listener="mqtt://` + listener + `"}`:                      "2",
		`mqttlua_connections_total`:                                                    "2",
		`mqttlua_sessions{state="online"}`:                                             "2",
		`mqttlua_retained_messages`:                                                    "1",
		`mqttlua_subscriptions`:                                                        "1",
	}
	got := waitMetrics(t, base, want)
	// A clean DISCONNECT is counted by its reason.
	pub.Send(&codec.Packet{Type: codec.DISCONNECT})
	waitFor(t, "the close counted", func() bool {
		got = scrape(t, base, "")
		return got[`mqttlua_closes_total{reason="client_disconnect"}`] == "1" && got[`mqttlua_connections{listener="mqtt://`+listener+`"}`] == "1"
	})
	if got[`mqttlua_lua_worker_busy_seconds_total{worker="0"}`] == "" || got["mqttlua_uptime_seconds"] == "" {
		t.Fatalf("worker and uptime metrics missing: %v", got)
	}

	// Sessions: a persistent one goes offline with a QoS 1 message
	// queued and a QoS 0 one not kept; a client id connects twice (a
	// takeover).
	p := dialRaw(t, addr, codec.V311)
	p.ConnectWith(&codec.Packet{Type: codec.CONNECT, ClientID: "persist", CleanSession: false, KeepAlive: 60})
	p.Send(&codec.Packet{Type: codec.SUBSCRIBE, PacketID: 1, Subscriptions: []codec.Subscription{{Topic: "p/#", QoS: 1}}})
	p.Expect(codec.SUBACK)
	p.Send(&codec.Packet{Type: codec.DISCONNECT})
	p.ExpectClosed()
	waitFor(t, "persist offline", func() bool { return scrape(t, base, "")[`mqttlua_sessions{state="offline"}`] == "1" })
	sub.Send(&codec.Packet{Type: codec.PUBLISH, Topic: "p/a", QoS: 1, PacketID: 9, Payload: []byte("kept")})
	sub.Expect(codec.PUBACK)
	sub.Send(&codec.Packet{Type: codec.PUBLISH, Topic: "p/b", Payload: []byte("not kept")})
	d1 := dialRaw(t, addr, codec.V311)
	d1.Connect("twice")
	d2 := dialRaw(t, addr, codec.V311)
	d2.Connect("twice")
	d1.ExpectClosed()
	more := map[string]string{
		`mqttlua_sessions_persistent`:                           "1",
		`mqttlua_sessions{state="offline"}`:                     "1",
		`mqttlua_session_messages{state="queued"}`:              "1",
		`mqttlua_messages_dropped_total{reason="offline_qos0"}`: "1",
		`mqttlua_takeovers_total`:                               "1",
		`mqttlua_closes_total{reason="session_taken_over"}`:     "1",
		`mqttlua_connections_peak`:                              "3",
		`mqttlua_connections_total`:                             "5",
		`mqttlua_subscriptions`:                                 "2",
	}
	waitMetrics(t, base, more)
}

// TestMetricsToken: with a token, /metrics wants it (401 without, or
// with a wrong one); the health checks do not. Off loopback a token is
// required to start.
func TestMetricsToken(t *testing.T) {
	srv, _, _ := startServer(t, engine.Config{Scripts: filepath.Join(repoDir(), "scripts"), HTTPAddr: "127.0.0.1:0", HTTPToken: "s3cret"})
	base := "http://" + srv.HTTPAddr()
	for _, tc := range []struct {
		path, token string
		want        int
	}{
		{"/metrics", "", 401},
		{"/metrics", "wrong", 401},
		{"/metrics", "s3cret", 200},
		{"/healthz", "", 200},
		{"/readyz", "", 200},
	} {
		if code, _ := request(t, "GET", base+tc.path, tc.token); code != tc.want {
			t.Errorf("%s with token %q: %d, want %d", tc.path, tc.token, code, tc.want)
		}
	}
	_, err := engine.New(engine.Config{Scripts: filepath.Join(repoDir(), "scripts"), HTTPAddr: "0.0.0.0:0"})
	if err == nil || !strings.Contains(err.Error(), "token is required") {
		t.Fatalf("a non-loopback --http without a token: %v", err)
	}
}

// TestSysTopics: $SYS/broker/... carries Mosquitto's topics, retained,
// with exact values for the traffic, refreshed every interval; a "#"
// subscriber does not get them [MQTT-4.7.2-1].
func TestSysTopics(t *testing.T) {
	_, addr, _ := startServer(t, engine.Config{Scripts: filepath.Join(repoDir(), "scripts"), SysInterval: 100 * time.Millisecond})
	all := dialRaw(t, addr, codec.V311)
	all.Connect("hash-sub")
	all.Send(&codec.Packet{Type: codec.SUBSCRIBE, PacketID: 1, Subscriptions: []codec.Subscription{{Topic: "#"}}})
	all.Expect(codec.SUBACK)
	pub := dialRaw(t, addr, codec.V311)
	pub.Connect("sys-pub")
	for range 4 {
		pub.Send(&codec.Packet{Type: codec.PUBLISH, Topic: "t", Payload: []byte("x")})
	}
	for range 4 {
		if p := all.Expect(codec.PUBLISH); p.Topic != "t" {
			t.Fatalf("the # subscriber got %s", p.Topic)
		}
	}
	time.Sleep(250 * time.Millisecond) // two ticks with the traffic in
	sys := dialRaw(t, addr, codec.V311)
	sys.Connect("sys-sub")
	sys.Send(&codec.Packet{Type: codec.SUBSCRIBE, PacketID: 1, Subscriptions: []codec.Subscription{{Topic: "$SYS/broker/#"}}})
	sys.Expect(codec.SUBACK)
	// The retained snapshot comes first, with RETAIN set; later ticks'
	// messages (RETAIN 0) are not read.
	got := map[string]string{}
	for {
		p, err := sys.Next(time.Second)
		if err != nil {
			t.Fatalf("after %d $SYS topics: %v", len(got), err)
		}
		if !p.Retain {
			break
		}
		got[strings.TrimPrefix(p.Topic, "$SYS/broker/")] = string(p.Payload)
	}
	want := map[string]string{
		"version":                   "mqttlua " + engine.Version,
		"publish/messages/received": "4",
		"publish/messages/sent":     "4",
		"subscriptions/count":       "1",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("$SYS/broker/%s = %q, want %q", k, got[k], v)
		}
	}
	// The snapshot is the last tick's before the SUBSCRIBE: taken before
	// sys-sub connected (2), or, rarely, just after (3).
	if c := got["clients/connected"]; (c != "2" && c != "3") || got["clients/maximum"] != c || got["clients/total"] != c {
		t.Errorf("clients connected/maximum/total = %q/%q/%q, want 2 or 3 each", c, got["clients/maximum"], got["clients/total"])
	}
	for _, k := range []string{"uptime", "bytes/received", "bytes/sent", "messages/received", "retained messages/count", "load/publish/received/1min"} {
		if got[k] == "" {
			t.Errorf("$SYS/broker/%s missing", k)
		}
	}
	all.ExpectNothing(300 * time.Millisecond) // no $SYS for "#"
}

// TestConnectionLogLines: connects and disconnects are logged at info,
// as Mosquitto logs them: who (client id, address, protocol, user) and
// why it ended.
func TestConnectionLogLines(t *testing.T) {
	_, addr, logs := startServer(t, engine.Config{Scripts: filepath.Join(repoDir(), "scripts")})
	c := dialRaw(t, addr, codec.V5)
	c.ConnectWith(&codec.Packet{Type: codec.CONNECT, ClientID: "logged", CleanSession: true, KeepAlive: 30})
	c.Send(&codec.Packet{Type: codec.DISCONNECT})
	c.ExpectClosed()
	for _, want := range []string{
		`level=info msg="client connected" client_id=logged fd=1 keep_alive=30 listener="mqtt://` + addr + `" protocol=5.0 remote="127.0.0.1:`,
		`level=info msg="connection closed" client_id=logged fd=1 reason=client_disconnect remote="127.0.0.1:`,
	} {
		waitFor(t, want, func() bool { return strings.Contains(logs.String(), want) })
	}
}

// TestDashboardInBrowser: headless Chromium loads the dashboard of a
// broker with live traffic; its DOM shows the connections, a chart with
// the message rate, the busiest handlers and the client list with kick
// buttons.
func TestDashboardInBrowser(t *testing.T) {
	browser := chromium(t)
	srv, addr, _ := startServer(t, engine.Config{Scripts: filepath.Join(repoDir(), "scripts"), HTTPAddr: "127.0.0.1:0"})
	sub := dialRaw(t, addr, codec.V311)
	sub.Connect("dash-sub")
	sub.Send(&codec.Packet{Type: codec.SUBSCRIBE, PacketID: 1, Subscriptions: []codec.Subscription{{Topic: "dash/#"}}})
	sub.Expect(codec.SUBACK)
	go func() { // the subscriber reads everything
		for {
			if _, err := sub.Next(30 * time.Second); err != nil {
				return
			}
		}
	}()
	pub := dialRaw(t, addr, codec.V311)
	pub.Connect("dash-pub")
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
			b, _ := codec.Encode(&codec.Packet{Type: codec.PUBLISH, Topic: "dash/x", Payload: []byte(fmt.Sprint(i))}, codec.V311)
			if _, err := pub.Conn.Write(b); err != nil {
				return
			}
		}
	}()
	defer func() { close(stop); <-done }()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var dom, stderr bytes.Buffer
	// Virtual time runs the page's one-second polling five times without
	// waiting five seconds (its fetches pause the virtual clock).
	cmd := exec.CommandContext(ctx, browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--no-first-run", "--user-data-dir="+t.TempDir(), "--virtual-time-budget=5000", "--dump-dom", "http://"+srv.HTTPAddr()+"/")
	cmd.Stdout, cmd.Stderr = &dom, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium: %v\n%s", err, stderr.String())
	}
	page := dom.String()
	for _, want := range []string{
		`<b id="connections">2</b>`,
		`data-client-id="dash-sub"`, `<td>dash/#</td>`, `data-client-id="dash-pub"`, `<button>kick</button>`,
		`<td>onMqPublish</td>`,
	} {
		if !strings.Contains(page, want) {
			t.Fatalf("the dashboard has no %s:\n%s", want, page)
		}
	}
	// The message-rate line rises off the bottom of the chart (y 155 is
	// a rate of 0).
	i := strings.Index(page, `id="line-rate"`)
	j := strings.Index(page[i:], `points="`) + i + len(`points="`)
	points := strings.Fields(page[j : j+strings.IndexByte(page[j:], '"')])
	rose := false
	for _, p := range points {
		if _, y, ok := strings.Cut(p, ","); ok && y != "155.0" {
			rose = true
		}
	}
	if len(points) < 2 || !rose {
		t.Fatalf("the chart shows no traffic: %v", points)
	}
}
