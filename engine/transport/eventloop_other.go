//go:build !linux

package transport

import "net"

// Event loops are Linux-only (epoll); elsewhere every connection has a
// reader goroutine.
const eventLoopsAvailable = false

type eventLoops struct{}

// rawConn is never made off Linux.
type rawConn struct{}

func (*rawConn) tryWrite([]byte) (int, error) { panic("unreachable") }
func (*rawConn) abort()                       {}
func (*rawConn) blocking(*Conn)               {}
func (*rawConn) finishingOffLoop()            {}

func (s *Transport) startEventLoops() error                      { return nil }
func (s *Transport) stopEventLoops()                             {}
func (s *Transport) closeRawListeners()                          {}
func (s *Transport) acceptRaw(net.Listener, *listenerState) bool { return false }
