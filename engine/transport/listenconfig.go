package transport

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// ListenerConfig is one listener: the address, the protocol stack in
// front of MQTT, and the listener's own limits.
type ListenerConfig struct {
	// Scheme is "mqtt" (TCP), "mqtts" (TLS), "ws" (WebSocket), "wss"
	// (WebSocket over TLS) or "unix" (a Unix domain socket).
	Scheme string
	// Addr is host:port, or the socket's path for "unix".
	Addr string
	// Path is the HTTP path WebSocket clients connect to (default /mqtt).
	Path string
	// MaxConnections refuses connections past this many on this listener
	// (0: only the transport's own limit applies).
	MaxConnections int
	// ProxyProtocol expects a PROXY protocol header (v1 or v2) before
	// anything else on each connection, and takes the client's address
	// from it; a connection without one is closed.
	ProxyProtocol bool
	// TLS holds the certificate files of "mqtts" and "wss".
	TLS TLSFiles
	// AllowedOrigins are the Origin header patterns (host or host:port,
	// with * wildcards) WebSocket upgrades are accepted from; empty: any.
	AllowedOrigins []string
}

// TLSFiles are the files and choices of a TLS listener.
type TLSFiles struct {
	Cert, Key string // PEM certificate chain and private key
	// CA is a PEM bundle of the authorities client certificates must be
	// signed by; empty: client certificates are not asked for.
	CA string
	// ClientAuth is "optional" (a certificate, if sent, must verify) or
	// "required" (no certificate, no connection); used with CA. Default:
	// "required" when CA is set.
	ClientAuth string
	// MinVersion is "1.2" (default) or "1.3".
	MinVersion string
}

// defaultPorts are the IANA and customary ports of each scheme.
var defaultPorts = map[string]string{"mqtt": "1883", "mqtts": "8883", "ws": "8083", "wss": "8084"}

// URL is the listener's canonical URL, which logs and scripts name it by.
func (lc *ListenerConfig) URL() string {
	switch lc.Scheme {
	case "unix":
		return "unix://" + lc.Addr
	case "ws", "wss":
		return lc.Scheme + "://" + lc.Addr + lc.Path
	}
	return lc.Scheme + "://" + lc.Addr
}

// TLSEnabled reports whether the scheme runs over TLS.
func (lc *ListenerConfig) TLSEnabled() bool { return lc.Scheme == "mqtts" || lc.Scheme == "wss" }

// ParseListenURL parses a --listen value: a URL (mqtt://0.0.0.0:1883,
// mqtts://:8883, ws://:8083/mqtt, wss://:8084/mqtt, unix:///run/b.sock)
// or a bare host:port, which is mqtt. Query parameters set the options
// config.lua's listeners take: max_connections, proxy_protocol, cert,
// key, ca, client_auth, min_tls, origins (comma-separated).
func ParseListenURL(s string) (ListenerConfig, error) {
	if !strings.Contains(s, "://") {
		if _, port, err := net.SplitHostPort(s); err != nil || !validPort(port) {
			return ListenerConfig{}, fmt.Errorf("listener %q: want a URL (mqtt://host:port, mqtts://, ws://, wss://, unix://) or host:port", s)
		}
		return ListenerConfig{Scheme: "mqtt", Addr: s}, nil
	}
	u, err := url.Parse(s)
	if err != nil {
		return ListenerConfig{}, fmt.Errorf("listener %q: %v", s, err)
	}
	lc := ListenerConfig{Scheme: u.Scheme}
	switch u.Scheme {
	case "unix":
		lc.Addr = u.Host + u.Path
		if lc.Addr == "" {
			return lc, fmt.Errorf("listener %q: a unix listener needs a socket path (unix:///run/broker.sock)", s)
		}
	case "mqtt", "mqtts", "ws", "wss", "tcp":
		if lc.Scheme == "tcp" {
			lc.Scheme = "mqtt"
		}
		host, port := u.Hostname(), u.Port()
		if port == "" {
			port = defaultPorts[lc.Scheme]
		}
		if !validPort(port) {
			return lc, fmt.Errorf("listener %q: %q is not a port number", s, port)
		}
		lc.Addr = net.JoinHostPort(host, port)
		if lc.Scheme == "ws" || lc.Scheme == "wss" {
			lc.Path = u.Path
			if lc.Path == "" {
				lc.Path = "/mqtt"
			}
		} else if u.Path != "" && u.Path != "/" {
			return lc, fmt.Errorf("listener %q: only ws:// and wss:// listeners have a path", s)
		}
	default:
		return lc, fmt.Errorf("listener %q: unknown scheme %q (mqtt, mqtts, ws, wss or unix)", s, u.Scheme)
	}
	for k, vs := range u.Query() {
		if err := lc.Set(k, vs[len(vs)-1]); err != nil {
			return lc, fmt.Errorf("listener %q: %v", s, err)
		}
	}
	return lc, nil
}

func validPort(p string) bool {
	n, err := strconv.Atoi(p)
	return err == nil && n >= 0 && n <= 65535
}

// Set sets one option by the name config.lua and URL queries use.
func (lc *ListenerConfig) Set(name, value string) error {
	switch name {
	case "max_connections":
		n, err := strconv.Atoi(value)
		if err != nil || n < 0 {
			return fmt.Errorf("max_connections: %q is not a count", value)
		}
		lc.MaxConnections = n
	case "proxy_protocol":
		b, err := strconv.ParseBool(value)
		if err != nil {
			return fmt.Errorf("proxy_protocol: %q is not true or false", value)
		}
		lc.ProxyProtocol = b
	case "cert":
		lc.TLS.Cert = value
	case "key":
		lc.TLS.Key = value
	case "ca":
		lc.TLS.CA = value
	case "client_auth":
		lc.TLS.ClientAuth = value
	case "min_tls":
		lc.TLS.MinVersion = value
	case "origins":
		lc.AllowedOrigins = nil
		for _, o := range strings.Split(value, ",") {
			if o = strings.TrimSpace(o); o != "" {
				lc.AllowedOrigins = append(lc.AllowedOrigins, o)
			}
		}
	case "path":
		lc.Path = value
	default:
		return fmt.Errorf("unknown option %q (max_connections, proxy_protocol, cert, key, ca, client_auth, min_tls, origins, path)", name)
	}
	return nil
}

// Check reports what is missing or contradictory, before anything is
// opened.
func (lc *ListenerConfig) Check() error {
	name := lc.URL()
	if lc.TLSEnabled() {
		if lc.TLS.Cert == "" || lc.TLS.Key == "" {
			return fmt.Errorf("listener %s: TLS needs a certificate and a key (--tls-cert and --tls-key, or cert= and key=)", name)
		}
		switch lc.TLS.ClientAuth {
		case "", "optional", "required":
		case "none":
			if lc.TLS.CA != "" {
				return fmt.Errorf("listener %s: client_auth none contradicts a CA for client certificates", name)
			}
		default:
			return fmt.Errorf("listener %s: client_auth %q is not optional, required or none", name, lc.TLS.ClientAuth)
		}
		if (lc.TLS.ClientAuth == "optional" || lc.TLS.ClientAuth == "required") && lc.TLS.CA == "" {
			return fmt.Errorf("listener %s: client_auth %s needs a CA bundle (--tls-ca or ca=)", name, lc.TLS.ClientAuth)
		}
		switch lc.TLS.MinVersion {
		case "", "1.2", "1.3":
		default:
			return fmt.Errorf("listener %s: min_tls %q is not 1.2 or 1.3", name, lc.TLS.MinVersion)
		}
	} else if lc.TLS != (TLSFiles{}) {
		return fmt.Errorf("listener %s: TLS options on a listener without TLS (use mqtts:// or wss://)", name)
	}
	if (lc.Scheme == "ws" || lc.Scheme == "wss") && !strings.HasPrefix(lc.Path, "/") {
		return fmt.Errorf("listener %s: the WebSocket path must start with /", name)
	}
	if lc.Scheme != "ws" && lc.Scheme != "wss" && len(lc.AllowedOrigins) > 0 {
		return fmt.Errorf("listener %s: origins apply to WebSocket listeners only", name)
	}
	if lc.Scheme == "unix" && lc.ProxyProtocol {
		return fmt.Errorf("listener %s: PROXY protocol on a Unix socket is not supported", name)
	}
	return nil
}
