package transport

import (
	"crypto/tls"
	"io"
	"net"
	"os"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
)

// A lingering close, as nginx's: when the broker ends a connection (a
// refusing CONNACK, a DISCONNECT with a reason code, a protocol error),
// the peer may still be sending. Closing a socket with unread input makes
// the kernel answer with a reset, and a reset can make the peer's stack
// drop what it had not read yet: the very packet that says why. So the
// last packet is written, the write side shut down (FIN), and input read
// and discarded until the peer closes too, lingerTime passes or
// lingerBytes arrived; only then is the socket closed. The connection
// has left the transport (Receiver.Closed ran) by then.
const (
	lingerTime  = 2 * time.Second
	lingerBytes = 1 << 20
)

// lingers reports whether a close for reason lingers: those the broker
// decides while the peer may be sending. A peer that closed, broke or
// said goodbye needs no wait; a slow consumer is cut off at once.
func lingers(reason CloseReason) bool {
	switch reason {
	case CloseNone, CloseClientDisconnect, CloseClientDisconnectWithWill, CloseNetworkError, CloseSlowConsumer:
		return false
	}
	return true
}

// closeWriter returns the half-closable connection under nc, or nil
// (WebSocket has its own closing handshake).
func closeWriter(nc net.Conn) interface{ CloseWrite() error } {
	if pc, ok := nc.(*proxyproto.Conn); ok {
		nc = pc.Raw()
	}
	switch c := nc.(type) {
	case *net.TCPConn:
		return c
	case *net.UnixConn:
		return c
	case *tls.Conn:
		return c // sends close_notify, then shuts the write side down
	}
	return nil
}

// linger discards what the peer still sends, then closes the socket; it
// runs on the connection's reader once it is done.
func (c *Conn) linger() {
	defer c.t.lingerWG.Done()
	drainAndClose(c.nc)
}

// lingerFd is linger for a socket an event loop served, once the loop has
// let it go: Go's poller waits for its input from here on.
func (t *Transport) lingerFd(fd int) {
	defer t.lingerWG.Done()
	drainAndClose(os.NewFile(uintptr(fd), ""))
}

// drainAndClose reads and drops input until the peer closes, lingerTime
// passes or lingerBytes arrived, then closes.
func drainAndClose(s interface {
	io.ReadCloser
	SetReadDeadline(time.Time) error
}) {
	s.SetReadDeadline(time.Now().Add(lingerTime))
	io.CopyN(io.Discard, s, lingerBytes)
	s.Close()
}
