package observe

import (
	"context"
	"encoding/json"
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/mqttlua/broker/codec"
	"github.com/mqttlua/broker/engine/broker"
	"github.com/mqttlua/broker/engine/cluster"
	"github.com/mqttlua/broker/engine/transport"
)

// The admin API, JSON on the operators' HTTP listener, behind the same
// token as the metrics. `broker ctl` is its command-line client.
//
//	GET  /api/clients?prefix=P&user=U&limit=N&after=ID   sessions, sorted by client id, paged
//	GET  /api/clients/{id}                               one session
//	POST /api/clients/{id}/kick?code=0x98&reason=TEXT    disconnect it (5.0 clients get the code)
//	GET  /api/subscriptions?prefix=P&limit=N&after=ID    subscriptions, by client id
//	GET  /api/stats                                      the counters
//	GET  /api/handlers                                   Lua handlers by total time, most first
//	POST /api/reload                                     reload the scripts
//	POST /api/backup?dir=DIR                             a consistent copy of the data folder into DIR (new, on the broker's machine)
//	GET  /api/cluster                                    this node's name and the cluster's members, with their heartbeats (404 for a single node)

func (h *api) routes(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/clients", h.clients)
	mux.HandleFunc("GET /api/clients/{id}", h.client)
	mux.HandleFunc("POST /api/clients/{id}/kick", h.kick)
	mux.HandleFunc("GET /api/subscriptions", h.subscriptions)
	mux.HandleFunc("GET /api/stats", h.stats)
	mux.HandleFunc("GET /api/handlers", h.handlers)
	mux.HandleFunc("POST /api/reload", h.reload)
	mux.HandleFunc("POST /api/backup", h.backup)
	mux.HandleFunc("GET /api/cluster", h.cluster)
}

func (h *api) cluster(w http.ResponseWriter, r *http.Request) {
	cl := h.src.Cluster
	if cl == nil {
		writeJSON(w, http.StatusNotFound, apiError{"not in a cluster"})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	members, err := cl.Members(ctx)
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, apiError{"the cluster's registry does not answer: " + err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Node     string           `json:"node"`
		Members  []cluster.Member `json:"members"`
		Counters map[string]int64 `json:"counters"`
	}{cl.Node(), members, cl.Counters()})
}

type api struct{ src Sources }

// apiError is every error's body.
type apiError struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// page reads limit (default 100, at most 1000) and after.
func page(r *http.Request) (limit int, after string, ok bool) {
	limit = 100
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 1000 {
			return 0, "", false
		}
		limit = n
	}
	return limit, r.URL.Query().Get("after"), true
}

func (h *api) clients(w http.ResponseWriter, r *http.Request) {
	limit, after, ok := page(r)
	if !ok {
		writeJSON(w, http.StatusBadRequest, apiError{"limit must be 1 to 1000"})
		return
	}
	var keep func(broker.ClientInfo) bool
	if user := r.URL.Query().Get("user"); user != "" {
		keep = func(ci broker.ClientInfo) bool { return ci.UserName == user }
	}
	list, next := h.src.Broker.ClientsPage(r.URL.Query().Get("prefix"), after, limit, keep)
	out := struct {
		Clients []broker.ClientInfo `json:"clients"`
		Next    string              `json:"next,omitempty"` // the after= of the next page
	}{Clients: list, Next: next}
	if out.Clients == nil {
		out.Clients = []broker.ClientInfo{}
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *api) client(w http.ResponseWriter, r *http.Request) {
	ci, ok := h.src.Broker.Info(r.PathValue("id"))
	if !ok {
		writeJSON(w, http.StatusNotFound, apiError{"no session with client id " + strconv.Quote(r.PathValue("id"))})
		return
	}
	writeJSON(w, http.StatusOK, ci)
}

func (h *api) kick(w http.ResponseWriter, r *http.Request) {
	code := codec.AdministrativeAction
	if s := r.URL.Query().Get("code"); s != "" {
		n, err := strconv.ParseUint(s, 0, 8)
		if err != nil || !codec.ReasonCode(n).ValidFor(codec.DISCONNECT) {
			writeJSON(w, http.StatusBadRequest, apiError{"code must be a DISCONNECT reason code, e.g. 0x98"})
			return
		}
		code = codec.ReasonCode(n)
	}
	id := r.PathValue("id")
	if !h.src.Broker.Kick(id, code, r.URL.Query().Get("reason")) {
		writeJSON(w, http.StatusNotFound, apiError{"no connected client with client id " + strconv.Quote(id)})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"kicked": id, "code": int(code)})
}

type subscriptionJSON struct {
	ClientID string `json:"client_id"`
	Filter   string `json:"filter"`
	QoS      byte   `json:"qos"`
}

func (h *api) subscriptions(w http.ResponseWriter, r *http.Request) {
	limit, after, ok := page(r)
	if !ok {
		writeJSON(w, http.StatusBadRequest, apiError{"limit must be 1 to 1000"})
		return
	}
	// A page of clients with subscriptions, each with all its filters.
	list, next := h.src.Broker.ClientsPage(r.URL.Query().Get("prefix"), after, limit,
		func(ci broker.ClientInfo) bool { return len(ci.Subscriptions) > 0 })
	out := struct {
		Subscriptions []subscriptionJSON `json:"subscriptions"`
		Next          string             `json:"next,omitempty"`
	}{Subscriptions: []subscriptionJSON{}, Next: next}
	for _, ci := range list {
		filters := make([]string, 0, len(ci.Subscriptions))
		for f := range ci.Subscriptions {
			filters = append(filters, f)
		}
		sort.Strings(filters)
		for _, f := range filters {
			out.Subscriptions = append(out.Subscriptions, subscriptionJSON{ci.ClientID, f, ci.Subscriptions[f]})
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// Stats is /api/stats: the counters an operator asks for first.
type Stats struct {
	Connections      int64            `json:"connections"`
	ConnectionsTotal int64            `json:"connections_total"`
	ConnectionsPeak  int64            `json:"connections_peak"`
	SessionsOnline   int              `json:"sessions_online"`
	SessionsOffline  int              `json:"sessions_offline"`
	Inflight         int              `json:"inflight"`
	Queued           int              `json:"queued"`
	Subscriptions    int              `json:"subscriptions"`
	Retained         int              `json:"retained"`
	Published        int64            `json:"messages_published"`
	Delivered        int64            `json:"messages_delivered"`
	Dropped          int64            `json:"messages_dropped"`
	BytesIn          int64            `json:"bytes_received"`
	BytesOut         int64            `json:"bytes_sent"`
	ScriptErrors     int64            `json:"script_errors"`
	Closes           map[string]int64 `json:"closes"`
	UptimeSeconds    int64            `json:"uptime_seconds"`
	Version          string           `json:"version"`
}

func (h *api) stats(w http.ResponseWriter, r *http.Request) {
	ts, k := h.src.Transport.Stats, h.src.Broker
	sc := k.Sessions()
	st := Stats{
		Connections: ts.Connections.Load(), ConnectionsTotal: ts.ConnectionsTotal.Load(), ConnectionsPeak: ts.ConnectionsPeak.Load(),
		SessionsOnline: sc.Online, SessionsOffline: sc.Offline, Inflight: sc.Inflight, Queued: sc.Queued,
		Subscriptions: k.SubscriptionCount(), Retained: k.RetainedCount(),
		Published: k.Stats.Published.Load(), Delivered: k.Stats.Delivered.Load(),
		Dropped: h.src.dropped(),
		BytesIn: ts.BytesIn.Load(), BytesOut: ts.BytesOut.Load(), ScriptErrors: h.src.ScriptErrors.Load(),
		Closes: map[string]int64{}, UptimeSeconds: int64(time.Since(h.src.Started).Seconds()), Version: h.src.Version,
	}
	for r := range transport.NumCloseReasons {
		if v := ts.Closes[r].Load(); v > 0 {
			st.Closes[transport.CloseReason(r).String()] = v
		}
	}
	writeJSON(w, http.StatusOK, st)
}

func (h *api) handlers(w http.ResponseWriter, r *http.Request) {
	type handlerJSON struct {
		Name     string  `json:"name"`
		Calls    uint64  `json:"calls"`
		Errors   uint64  `json:"errors"`
		Timeouts uint64  `json:"timeouts"`
		Seconds  float64 `json:"seconds"`
	}
	out := struct {
		Handlers []handlerJSON `json:"handlers"`
	}{Handlers: []handlerJSON{}}
	for _, hs := range h.src.Scripts.HandlerStats() {
		out.Handlers = append(out.Handlers, handlerJSON{hs.Name, hs.Calls, hs.Errors, hs.Timeouts, hs.Seconds})
	}
	sort.Slice(out.Handlers, func(i, j int) bool { return out.Handlers[i].Seconds > out.Handlers[j].Seconds })
	writeJSON(w, http.StatusOK, out)
}

func (h *api) backup(w http.ResponseWriter, r *http.Request) {
	dir := r.FormValue("dir")
	if h.src.Backup == nil || dir == "" {
		writeJSON(w, http.StatusBadRequest, apiError{"want ?dir=DIR, a folder that does not exist yet"})
		return
	}
	if err := h.src.Backup(dir); err != nil {
		writeJSON(w, http.StatusConflict, apiError{err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"backup": dir})
}

func (h *api) reload(w http.ResponseWriter, r *http.Request) {
	if h.src.Reload == nil {
		writeJSON(w, http.StatusNotImplemented, apiError{"reload is not available"})
		return
	}
	if err := h.src.Reload(); err != nil {
		// The running scripts keep serving; the error names file:line.
		writeJSON(w, http.StatusUnprocessableEntity, apiError{err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]bool{"reloaded": true})
}
