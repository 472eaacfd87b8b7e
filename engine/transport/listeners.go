package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coder/websocket"
	proxyproto "github.com/pires/go-proxyproto"
	"github.com/sirupsen/logrus"
)

// listenerState is what a listener's connections share: its
// configuration, its URL and its count of connections.
type listenerState struct {
	t     *Transport
	cfg   ListenerConfig
	url   string
	conns atomic.Int64
	tls   *tlsHolder // mqtts, wss
}

// debug logs why a connection of this listener was dropped before it
// became a Conn.
func (ls *listenerState) debug(nc net.Conn, msg string, err error) {
	if log := ls.t.cfg.Log; log.IsLevelEnabled(logrus.DebugLevel) {
		log.WithFields(logrus.Fields{"listener": ls.url, "remote": nc.RemoteAddr().String()}).WithError(err).Debug(msg)
	}
}

var noDeadline time.Time

// connectDeadline bounds what a connection does before its CONNECT (a
// TLS handshake, a WebSocket upgrade, a PROXY header).
func connectDeadline(t *Transport) time.Time { return time.Now().Add(t.cfg.ConnectTimeout) }

// opened is a listener and the state its connections share.
type opened struct {
	ln Listener
	ls *listenerState
}

// open opens the listener a configuration describes.
func (t *Transport) open(lc ListenerConfig) (opened, error) {
	ls := &listenerState{t: t, cfg: lc, url: lc.URL()}
	if lc.TLSEnabled() {
		h, err := newTLSHolder(ls.url, lc.TLS)
		if err != nil {
			return opened{}, err
		}
		ls.tls = h
	}
	network := "tcp"
	if lc.Scheme == "unix" {
		network = "unix"
		removeStaleSocket(lc.Addr)
	}
	// MQTT has its own keep alive: TCP keep-alive probes would only cost
	// three setsockopt calls per accepted connection.
	lcfg := net.ListenConfig{KeepAlive: -1}
	ln, err := lcfg.Listen(context.Background(), network, lc.Addr)
	if err != nil {
		return opened{}, fmt.Errorf("listen on %s: %w", ls.url, err)
	}
	if network == "tcp" {
		// Named by the address it got (port 0 is a real port now).
		ls.cfg.Addr = ln.Addr().String()
		ls.url = ls.cfg.URL()
		if ls.tls != nil {
			ls.tls.url = ls.url
		}
	}
	if lc.ProxyProtocol {
		// REQUIRE: on a listener that expects the header, a connection
		// without one is refused rather than taken at the proxy's
		// address.
		ln = &proxyproto.Listener{Listener: ln, ReadHeaderTimeout: t.cfg.ConnectTimeout,
			ConnPolicy: func(proxyproto.ConnPolicyOptions) (proxyproto.Policy, error) { return proxyproto.REQUIRE, nil }}
	}
	var l Listener = &tcpListener{ls: ls, ln: ln, raw: !lc.ProxyProtocol}
	switch lc.Scheme {
	case "mqtts":
		l = &tlsListener{ls: ls, ln: ln}
	case "ws", "wss":
		l = newWSListener(ls, ln)
	case "unix":
		l = &plainListener{ls: ls, ln: ln}
	}
	return opened{l, ls}, nil
}

// removeStaleSocket removes a Unix socket file that nothing listens on
// any more (left by a broker that did not stop cleanly), so that listening
// on its path works; a live socket or any other file is left alone and
// the listen fails with "address already in use".
func removeStaleSocket(path string) {
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode()&os.ModeSocket == 0 {
		return
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		os.Remove(path)
	}
}

// acceptLoop accepts connections from ln and hands each to handle until
// ln is closed.
func acceptLoop(ls *listenerState, ln net.Listener, handle func(net.Conn)) {
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if ls.t.closing.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off as
			// net/http does rather than spin.
			if delay == 0 {
				delay = 5 * time.Millisecond
			} else if delay *= 2; delay > time.Second {
				delay = time.Second
			}
			ls.t.cfg.Log.WithError(err).WithField("listener", ls.url).Warn("accept failed")
			time.Sleep(delay)
			continue
		}
		delay = 0
		handle(nc)
	}
}

// plainListener serves each connection as accepted (Unix sockets).
type plainListener struct {
	ls *listenerState
	ln net.Listener
}

func (l *plainListener) Addr() net.Addr                 { return l.ln.Addr() }
func (l *plainListener) Close() error                   { return l.ln.Close() }
func (l *plainListener) Serve(establish func(net.Conn)) { acceptLoop(l.ls, l.ln, establish) }

// wsListener is an HTTP server that upgrades requests for its path to
// WebSocket connections carrying MQTT (MQTT 5.0 §6, 3.1.1 §6).
type wsListener struct {
	ls        *listenerState
	ln        net.Listener
	srv       *http.Server
	establish atomic.Pointer[func(net.Conn)]
}

func newWSListener(ls *listenerState, ln net.Listener) *wsListener {
	l := &wsListener{ls: ls, ln: ln}
	l.srv = &http.Server{
		Handler:           l,
		ReadHeaderTimeout: ls.t.cfg.ConnectTimeout,
		MaxHeaderBytes:    16 << 10,
		// net/http's own complaints (bad TLS handshakes, malformed
		// requests) are about single connections: debug lines.
		ErrorLog: log.New(debugWriter{ls}, "", 0),
	}
	if ls.tls != nil {
		l.srv.TLSConfig = ls.tls.config()
	}
	return l
}

type debugWriter struct{ ls *listenerState }

func (w debugWriter) Write(b []byte) (int, error) {
	w.ls.t.cfg.Log.WithField("listener", w.ls.url).Debug(string(b))
	return len(b), nil
}

func (l *wsListener) Addr() net.Addr { return l.ln.Addr() }
func (l *wsListener) Close() error   { return l.srv.Close() }

func (l *wsListener) Serve(establish func(net.Conn)) {
	l.establish.Store(&establish)
	var err error
	if l.ls.tls != nil {
		err = l.srv.ServeTLS(l.ln, "", "")
	} else {
		err = l.srv.Serve(l.ln)
	}
	if err != nil && !errors.Is(err, http.ErrServerClosed) && !l.ls.t.closing.Load() {
		l.ls.t.cfg.Log.WithError(err).WithField("listener", l.ls.url).Error("WebSocket listener stopped")
	}
}

// wsSubprotocols are the subprotocols offered: "mqtt" (3.1.1 and 5.0,
// [MQTT-6.0.0-3], [MQTT-6.0.0-4]) and "mqttv3.1", which 3.1 clients ask
// for.
var wsSubprotocols = []string{"mqtt", "mqttv3.1"}

func (l *wsListener) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ls := l.ls
	if r.URL.Path != ls.cfg.Path {
		ls.t.cfg.Log.WithFields(logrus.Fields{"listener": ls.url, "remote": r.RemoteAddr, "path": r.URL.Path}).Debug("WebSocket request for another path refused")
		http.NotFound(w, r)
		return
	}
	opts := &websocket.AcceptOptions{Subprotocols: wsSubprotocols}
	if len(ls.cfg.AllowedOrigins) == 0 {
		opts.InsecureSkipVerify = true // any origin, as Mosquitto
	} else {
		opts.OriginPatterns = ls.cfg.AllowedOrigins
	}
	c, err := websocket.Accept(w, r, opts)
	if err != nil {
		// Accept has answered (400, 403, 426).
		ls.t.cfg.Log.WithFields(logrus.Fields{"listener": ls.url, "remote": r.RemoteAddr}).WithError(err).Debug("WebSocket upgrade refused")
		return
	}
	if c.Subprotocol() == "" {
		// [MQTT-6.0.0-3] the client must offer "mqtt".
		ls.t.cfg.Log.WithFields(logrus.Fields{"listener": ls.url, "remote": r.RemoteAddr}).Debug("WebSocket client offered no MQTT subprotocol")
		c.Close(websocket.StatusProtocolError, "the mqtt subprotocol is required")
		return
	}
	// [MQTT-6.0.0-1] binary frames only: NetConn closes the connection
	// (1003) on any other.
	nc := websocket.NetConn(context.Background(), c, websocket.MessageBinary)
	// A message may hold several packets or part of one; one larger than
	// the largest packet is refused and the connection closed (1009,
	// message too big). Set after NetConn, which lifts the limit.
	c.SetReadLimit(int64(ls.t.cfg.MaxPacketSize))
	if est := l.establish.Load(); est != nil {
		(*est)(&wsConn{Conn: nc, state: r.TLS})
	}
}

// wsConn is a WebSocket connection as a net.Conn. A read deadline that
// passes during a read ends it (the library cancels the read), so the
// transport serves it without the short deadlines of pooled readers.
type wsConn struct {
	net.Conn
	state *tls.ConnectionState // wss: the handshake, for the client certificate
}

// fragileDeadlines marks connections that a passed read deadline breaks.
func (*wsConn) fragileDeadlines() {}
