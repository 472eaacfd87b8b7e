package engine_test

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mqttlua/broker/codec"
	"github.com/mqttlua/broker/engine"
	"github.com/mqttlua/broker/engine/enginetest"
)

// request makes one HTTP request with the bearer token (if any) and
// returns the status and body.
func request(t *testing.T, method, url, token string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

// call makes one admin API request and decodes the answer.
func call(t *testing.T, method, url, token string) (int, map[string]any) {
	t.Helper()
	code, body := request(t, method, url, token)
	var v map[string]any
	json.Unmarshal(body, &v)
	return code, v
}

// TestAdminAPI: clients (paged, filtered), one client, kick (the client
// reads DISCONNECT 0x98), subscriptions, stats, and the errors: no or a
// wrong token (401), an unknown client (404), a reload with a broken
// script (422 naming file:line, the old scripts still serving).
func TestAdminAPI(t *testing.T) {
	scripts := enginetest.CopyScripts(t, nil)
	srv, addr, _ := startServer(t, engine.Config{Scripts: scripts, HTTPAddr: "127.0.0.1:0", HTTPToken: "tok"})
	base := "http://" + srv.HTTPAddr() + "/api"
	var clients []*rawClient
	for _, id := range []string{"dev-1", "dev-2", "dev-3", "other"} {
		c := dialRaw(t, addr, codec.V5)
		c.Connect(id)
		clients = append(clients, c)
	}
	clients[0].Send(&codec.Packet{Type: codec.SUBSCRIBE, PacketID: 1, Subscriptions: []codec.Subscription{{Topic: "a/#", QoS: 1}, {Topic: "b", QoS: 0}}})
	clients[0].Expect(codec.SUBACK)

	if code, _ := call(t, "GET", base+"/clients", ""); code != 401 {
		t.Fatalf("no token: %d", code)
	}
	if code, _ := call(t, "GET", base+"/clients", "nope"); code != 401 {
		t.Fatalf("wrong token: %d", code)
	}
	code, v := call(t, "GET", base+"/clients?prefix=dev-&limit=2", "tok")
	list, _ := v["clients"].([]any)
	if code != 200 || len(list) != 2 || v["next"] != "dev-2" {
		t.Fatalf("page 1: %d %v", code, v)
	}
	_, v = call(t, "GET", base+"/clients?prefix=dev-&limit=2&after=dev-2", "tok")
	if list, _ := v["clients"].([]any); len(list) != 1 || list[0].(map[string]any)["client_id"] != "dev-3" || v["next"] != nil {
		t.Fatalf("page 2: %v", v)
	}
	code, v = call(t, "GET", base+"/clients/dev-1", "tok")
	if code != 200 || v["connected"] != true || v["protocol"] != "5.0" || !strings.HasPrefix(v["remote"].(string), "127.0.0.1:") ||
		v["subscriptions"].(map[string]any)["a/#"] != 1.0 || v["connected_at"] == nil {
		t.Fatalf("client dev-1: %d %v", code, v)
	}
	if code, _ := call(t, "GET", base+"/clients/nobody", "tok"); code != 404 {
		t.Fatalf("unknown client: %d", code)
	}
	_, v = call(t, "GET", base+"/subscriptions", "tok")
	if subs, _ := v["subscriptions"].([]any); len(subs) != 2 || subs[0].(map[string]any)["filter"] != "a/#" {
		t.Fatalf("subscriptions: %v", v)
	}
	_, v = call(t, "GET", base+"/stats", "tok")
	if v["connections"] != 4.0 || v["subscriptions"] != 2.0 || v["sessions_online"] != 4.0 {
		t.Fatalf("stats: %v", v)
	}
	if code, _ := call(t, "POST", base+"/clients/nobody/kick", "tok"); code != 404 {
		t.Fatalf("kick of an unknown client: %d", code)
	}
	if code, v := call(t, "POST", base+"/clients/other/kick?reason=maintenance", "tok"); code != 200 {
		t.Fatalf("kick: %d %v", code, v)
	}
	d := clients[3].Expect(codec.DISCONNECT)
	if d.ReasonCode != codec.AdministrativeAction || d.Properties.ReasonString != "maintenance" {
		t.Fatalf("kicked client got %+v", d)
	}
	// A broken script: refused with its file and line; the old scripts
	// go on serving.
	main := filepath.Join(scripts, "main.lua")
	good, _ := os.ReadFile(main)
	os.WriteFile(main, append(append([]byte{}, good...), []byte("\nfunction broken(\n")...), 0o644)
	code, v = call(t, "POST", base+"/reload", "tok")
	if msg, _ := v["error"].(string); code != 422 || !strings.Contains(msg, "main.lua:") {
		t.Fatalf("reload of a broken script: %d %v", code, v)
	}
	c := dialRaw(t, addr, codec.V311)
	c.Connect("after-bad-reload")
	os.WriteFile(main, good, 0o644)
	if code, v := call(t, "POST", base+"/reload", "tok"); code != 200 || v["reloaded"] != true {
		t.Fatalf("reload: %d %v", code, v)
	}
}
