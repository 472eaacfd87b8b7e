package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"
)

// ctl is `broker ctl`: the admin API's command-line client.
//
//	broker ctl [--http ADDR] [--token-file F] [--json] clients [--prefix P] [--user U]
//	broker ctl client ID | kick ID [--code 0x98] [--reason TEXT] | subs | stats | reload | backup DIR
func ctl(args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("broker ctl", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	addr := fs.String("http", envOr("MQTTLUA_HTTP", "127.0.0.1:8080"), "the broker's --http address (or MQTTLUA_HTTP)")
	tokenFile := fs.String("token-file", "", "file holding the bearer token (or MQTTLUA_HTTP_TOKEN)")
	asJSON := fs.Bool("json", false, "print the API's JSON instead of tables")
	prefix := fs.String("prefix", "", "clients, subs: only client ids starting with this")
	user := fs.String("user", "", "clients: only this user's")
	code := fs.String("code", "0x98", "kick: the DISCONNECT reason code 5.0 clients get")
	reason := fs.String("reason", "", "kick: the reason string 5.0 clients get")
	usage := "Usage: broker ctl [--http ADDR] [--token-file F] [--json] clients [--prefix P] [--user U] | client ID | kick ID [--code C] [--reason R] | subs [--prefix P] | stats | reload | backup DIR\n\nFlags:\n" + fs.FlagUsages()
	if err := fs.Parse(args); err != nil {
		fmt.Fprintln(stderr, "broker ctl:", err, "(see broker ctl --help)")
		return 2
	}
	if fs.NArg() == 0 || fs.Arg(0) == "help" {
		fmt.Fprint(stdout, usage)
		return 0
	}
	token := os.Getenv("MQTTLUA_HTTP_TOKEN")
	if *tokenFile != "" {
		b, err := os.ReadFile(*tokenFile)
		if err != nil {
			fmt.Fprintln(stderr, "broker ctl: --token-file:", err)
			return 2
		}
		token = strings.TrimSpace(string(b))
	}
	c := &ctlClient{base: "http://" + *addr, token: token, http: &http.Client{Timeout: 30 * time.Second}}
	cmd, rest := fs.Arg(0), fs.Args()[1:]
	need := map[string]int{"clients": 0, "client": 1, "kick": 1, "subs": 0, "stats": 0, "reload": 0, "backup": 1}
	n, known := need[cmd]
	if !known || len(rest) != n {
		fmt.Fprintf(stderr, "broker ctl: %q: want clients, client ID, kick ID, subs, stats, reload or backup DIR\n", strings.Join(fs.Args(), " "))
		return 2
	}
	var v map[string]any
	var err error
	switch cmd {
	case "clients":
		v, err = c.pages("/api/clients", url.Values{"prefix": {*prefix}, "user": {*user}}, "clients")
	case "client":
		v, err = c.do("GET", "/api/clients/"+url.PathEscape(rest[0]), nil)
	case "kick":
		v, err = c.do("POST", "/api/clients/"+url.PathEscape(rest[0])+"/kick", url.Values{"code": {*code}, "reason": {*reason}})
	case "subs":
		v, err = c.pages("/api/subscriptions", url.Values{"prefix": {*prefix}}, "subscriptions")
	case "stats":
		v, err = c.do("GET", "/api/stats", nil)
	case "reload":
		v, err = c.do("POST", "/api/reload", nil)
	case "backup":
		// The folder is the broker's: relative to where it runs.
		v, err = c.do("POST", "/api/backup", url.Values{"dir": {rest[0]}})
	}
	if err != nil {
		fmt.Fprintln(stderr, "broker ctl:", err)
		return 1
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(v)
		return 0
	}
	printTable(stdout, cmd, v)
	return 0
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

type ctlClient struct {
	base, token string
	http        *http.Client
}

// do calls the API and decodes its JSON; an error status is an error
// with the API's message.
func (c *ctlClient) do(method, path string, q url.Values) (map[string]any, error) {
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		return nil, err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var v map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		return nil, fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s (%s)", v["error"], resp.Status)
	}
	return v, nil
}

// pages follows an API's pages and returns every item of key.
func (c *ctlClient) pages(path string, q url.Values, key string) (map[string]any, error) {
	var all []any
	for {
		v, err := c.do("GET", path, q)
		if err != nil {
			return nil, err
		}
		items, _ := v[key].([]any)
		all = append(all, items...)
		next, _ := v["next"].(string)
		if next == "" {
			return map[string]any{key: all}, nil
		}
		q.Set("after", next)
	}
}

func printTable(w io.Writer, cmd string, v map[string]any) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	defer tw.Flush()
	str := func(m map[string]any, k string) string {
		switch x := m[k].(type) {
		case nil:
			return "-"
		case float64:
			return fmt.Sprint(int64(x))
		default:
			return fmt.Sprint(x)
		}
	}
	switch cmd {
	case "clients":
		fmt.Fprintln(tw, "CLIENT ID\tCONNECTED\tUSER\tREMOTE\tPROTOCOL\tSUBS\tINFLIGHT\tQUEUED")
		for _, it := range v["clients"].([]any) {
			m := it.(map[string]any)
			subs, _ := m["subscriptions"].(map[string]any)
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", str(m, "client_id"), str(m, "connected"), str(m, "user_name"), str(m, "remote"),
				str(m, "protocol"), len(subs), str(m, "inflight"), str(m, "queued"))
		}
	case "subs":
		fmt.Fprintln(tw, "CLIENT ID\tFILTER\tQOS")
		for _, it := range v["subscriptions"].([]any) {
			m := it.(map[string]any)
			fmt.Fprintf(tw, "%s\t%s\t%s\n", str(m, "client_id"), str(m, "filter"), str(m, "qos"))
		}
	default:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if sub, ok := v[k].(map[string]any); ok {
				for _, sk := range sortedKeys(sub) {
					fmt.Fprintf(tw, "%s.%s\t%s\n", k, sk, str(sub, sk))
				}
				continue
			}
			fmt.Fprintf(tw, "%s\t%s\n", k, str(v, k))
		}
	}
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
