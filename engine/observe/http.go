package observe

import (
	"crypto/subtle"
	_ "embed"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

//go:embed dashboard/index.html
var dashboardHTML []byte

// HTTPConfig configures the operators' HTTP listener.
type HTTPConfig struct {
	// Addr is host:port; empty: no listener.
	Addr string
	// Token, when set, is the bearer token every request but /healthz
	// and /readyz must carry. A listener outside loopback needs one.
	Token string
	// Ready reports whether the broker takes connections (for /readyz).
	Ready func() bool
}

// CheckHTTP reports a configuration that must not start: an address
// that is not host:port, or one outside loopback without a token (the
// metrics name clients and topics' traffic).
func CheckHTTP(cfg HTTPConfig) error {
	if cfg.Addr == "" {
		return nil
	}
	host, _, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		return fmt.Errorf("--http %q: want host:port (e.g. 127.0.0.1:8080)", cfg.Addr)
	}
	if cfg.Token == "" && !isLoopback(host) {
		return fmt.Errorf("--http %s: not a loopback address, so a token is required (--http-token-file, or MQTTLUA_HTTP_TOKEN)", cfg.Addr)
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Handler is the HTTP API: the dashboard at /, /metrics (Prometheus),
// /healthz, /readyz, and the admin API under /api/ (admin.go).
func Handler(src Sources, cfg HTTPConfig) http.Handler {
	reg := prometheus.NewRegistry()
	var r prometheus.Registerer = reg
	if src.Cluster != nil {
		// In a cluster every node's metrics say which node they are.
		r = prometheus.WrapRegistererWith(prometheus.Labels{"node": src.Cluster.Node()}, reg)
	}
	r.MustRegister(NewCollector(src))
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	(&api{src: src}).routes(mux)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		// The dashboard is a static page: it asks for the token itself
		// when the API wants one.
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'")
		w.Write(dashboardHTML)
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if cfg.Ready != nil && !cfg.Ready() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	if cfg.Token == "" {
		return mux
	}
	want := []byte("Bearer " + cfg.Token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" && r.URL.Path != "/readyz" && r.URL.Path != "/" &&
			subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="mqttlua"`)
			http.Error(w, "a bearer token is required", http.StatusUnauthorized)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// Server is the running HTTP listener.
type Server struct {
	srv *http.Server
	ln  net.Listener
}

// Listen opens the HTTP listener (nil, nil when cfg.Addr is empty) and
// serves it until Close.
func Listen(src Sources, cfg HTTPConfig) (*Server, error) {
	if cfg.Addr == "" {
		return nil, nil
	}
	if err := CheckHTTP(cfg); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("--http: %w", err)
	}
	s := &Server{ln: ln, srv: &http.Server{Handler: Handler(src, cfg), ReadHeaderTimeout: 10 * time.Second}}
	go s.srv.Serve(ln) // returns ErrServerClosed at Close

	return s, nil
}

// Addr is the listener's address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// URL is the listener's base URL.
func (s *Server) URL() string { return "http://" + strings.Replace(s.Addr(), "[::]", "127.0.0.1", 1) }

// Close stops the listener.
func (s *Server) Close() error { return s.srv.Close() }
