//go:build !linux

package engine

import "net"

// Event loops are Linux-only (epoll); elsewhere every connection has a
// reader goroutine.
const eventLoopsAvailable = false

type eventLoops struct{}

// rawConn is never made off Linux.
type rawConn struct{}

func (*rawConn) tryWrite([]byte) (int, error) { panic("unreachable") }
func (*rawConn) abort()                       {}

func (s *Server) startEventLoops() error      { return nil }
func (s *Server) stopEventLoops()             {}
func (s *Server) closeRawListeners()          {}
func (s *Server) acceptRaw(net.Listener) bool { return false }
