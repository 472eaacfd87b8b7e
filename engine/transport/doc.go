// Package transport is the bottom layer of the engine: listeners, the
// connections they accept, reading and writing. It knows MQTT only as far
// as framing (codec.Reader decodes whole packets); it holds no Lua and no
// MQTT policy, and may import codec only.
//
// A Listener (listeners.go, from a ListenerConfig or a URL:
// listenconfig.go) accepts net.Conns: TCP, TLS (tls.go: the handshake on
// its own goroutine before the connection is served, certificates
// reloadable), WebSocket (an HTTP server upgrading one path, through
// github.com/coder/websocket) or a Unix socket, each optionally behind a
// PROXY protocol header; every one becomes the same Conn. On Linux, plain
// TCP connections are read by event loops (epoll, one loop per worker:
// eventloop_linux.go); elsewhere, and for the other listeners, each
// connection has a reader goroutine (readloop.go).
//
// When the broker ends a connection, its socket lingers (linger.go): the
// last packet written, the write side shut down, input discarded for a
// bounded time, then closed, so that the peer reads the last packet
// rather than a reset.
//
// Data flows up through the connection's Receiver, which the layer above
// makes for each new connection (Config.Open): Packet for each decoded
// packet, Malformed for what the codec refused, TimedOut when the read
// timeout passes, Closed once the socket is closed. Data flows down
// through Conn.Append (an encoder appends straight into the outbound
// queue), Conn.Write and Conn.CloseWith (a last packet, then close).
//
// Output queued while a reader handles one read is collected in the
// reader's Batch and released when the read is handled: the connection's
// own replies are written by its reader before it reads again, others by
// a writer goroutine that runs only while there is something to write and
// takes the whole queue in one write (writer.go). A queue past its
// high-water mark makes the publishers that fill it wait before reading
// more (backpressure, through Pressure); past its hard limit the
// connection is closed as a slow consumer and counted.
package transport
