package cluster

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/sirupsen/logrus"
)

// startServer starts the NATS server this node embeds: no client port
// (the broker talks to it over an in-process pipe), JetStream in
// DataDir, and a route listener and routes to the peers when there are
// any. The server's own log lines go to the broker's log at debug level,
// its warnings and errors as they are.
func startServer(cfg *Config) (*server.Server, error) {
	var conf strings.Builder
	fmt.Fprintf(&conf, "server_name: %q\n", cfg.Node)
	// A client port on loopback, closed to anyone without this start's
	// random token: the broker itself connects in-process. (With
	// DontListen, nats-server 2.15 never starts its routes: StartRouting
	// waits for the client listener.)
	fmt.Fprintf(&conf, "listen: \"127.0.0.1:-1\"\nauthorization {\n  token: %q\n}\n", cfg.token)
	// Room for the largest MQTT packets and the longest escaped topics.
	fmt.Fprintf(&conf, "max_payload: %d\nmax_pending: %d\nmax_control_line: %d\n", maxPayload, 2*maxPayload, maxSubject+4096)
	fmt.Fprintf(&conf, "jetstream {\n  store_dir: %q\n}\n", filepath.Join(cfg.DataDir, "jetstream"))
	if cfg.Listen != "" || len(cfg.Peers) > 0 {
		listen := cfg.Listen
		if listen == "" {
			listen = "127.0.0.1:-1"
		}
		if _, _, err := net.SplitHostPort(listen); err != nil {
			return nil, fmt.Errorf("--cluster-listen %q: %v", listen, err)
		}
		fmt.Fprintf(&conf, "cluster {\n  name: %q\n  listen: %q\n  routes: [\n", cfg.Name, listen)
		for _, p := range cfg.Peers {
			if !strings.Contains(p, "://") {
				p = "nats-route://" + p
			}
			fmt.Fprintf(&conf, "    %q\n", p)
		}
		conf.WriteString("  ]\n}\n")
	}
	opts := &server.Options{}
	if err := opts.ProcessConfigString(conf.String()); err != nil {
		return nil, fmt.Errorf("cluster configuration: %v", err)
	}
	opts.NoSigs = true
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("cluster: %v", err)
	}
	ns.SetLoggerV2(natsLogger{cfg.Log.WithField("nats", cfg.Node)}, false, false, false)
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, errors.New("cluster: the embedded NATS server did not start in 10 s")
	}
	return ns, nil
}

// connect opens a NATS connection of the node, in-process to the
// embedded server or to the --nats-url cluster. With noEcho (the
// connection messages are published and subscribed on) a message this
// node publishes never comes back to it.
func connect(cfg *Config, ns *server.Server, noEcho bool) (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name("mqtt-broker " + cfg.Node),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			f := cfg.Log.WithError(err)
			if sub != nil {
				f = f.WithField("subject", sub.Subject)
			}
			f.Warn("cluster: NATS error")
		}),
	}
	if noEcho {
		opts = append(opts, nats.NoEcho())
	}
	url := cfg.URL
	if ns != nil {
		opts = append(opts, nats.InProcessServer(ns), nats.Token(cfg.token))
		url = ""
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("cluster: connecting to NATS: %v", err)
	}
	return nc, nil
}

// natsLogger writes the embedded server's lines to the broker's log.
type natsLogger struct{ e *logrus.Entry }

func (l natsLogger) Noticef(format string, v ...any) { l.e.Debugf(format, v...) }
func (l natsLogger) Warnf(format string, v ...any)   { l.e.Warnf(format, v...) }
func (l natsLogger) Fatalf(format string, v ...any)  { l.e.Errorf(format, v...) }
func (l natsLogger) Errorf(format string, v ...any)  { l.e.Errorf(format, v...) }
func (l natsLogger) Debugf(format string, v ...any)  { l.e.Tracef(format, v...) }
func (l natsLogger) Tracef(format string, v ...any)  { l.e.Tracef(format, v...) }
