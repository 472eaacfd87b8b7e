//go:build linux

package transport

import (
	"encoding/binary"
	"syscall"
	"unsafe"
)

// The event loops' system calls, made with RawSyscall: every one of them
// is non-blocking (reads and writes of O_NONBLOCK sockets, accept4 of a
// non-blocking listener, epoll_wait with no timeout, close of a socket
// without SO_LINGER), so there is no point in telling the scheduler the
// thread may block. With Syscall the runtime's monitor takes the P away
// from a thread whose call runs past 20 us (a TCP close can) and wakes
// another thread to run it: on two cores that hand-off cost more than
// the calls.

func rawRead(fd int, p []byte) (int, syscall.Errno) {
	n, _, e := syscall.RawSyscall(syscall.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	if e != 0 {
		return 0, e
	}
	return int(n), 0
}

func rawWrite(fd int, p []byte) (int, syscall.Errno) {
	n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	if e != 0 {
		return 0, e
	}
	return int(n), 0
}

func rawClose(fd int) {
	syscall.RawSyscall(syscall.SYS_CLOSE, uintptr(fd), 0, 0)
}

func rawShutdownWrite(fd int) {
	syscall.RawSyscall(syscall.SYS_SHUTDOWN, uintptr(fd), syscall.SHUT_WR, 0)
}

func rawShutdown(fd int) {
	syscall.RawSyscall(syscall.SYS_SHUTDOWN, uintptr(fd), syscall.SHUT_RDWR, 0)
}

func rawEpollCtl(epfd, op, fd int, ev *syscall.EpollEvent) syscall.Errno {
	_, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_CTL, uintptr(epfd), uintptr(op), uintptr(fd), uintptr(unsafe.Pointer(ev)), 0, 0)
	return e
}

// rawEpollPoll is epoll_wait with a zero timeout.
func rawEpollPoll(epfd int, events []syscall.EpollEvent) (int, syscall.Errno) {
	n, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(unsafe.SliceData(events))), uintptr(len(events)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), 0
}

// rawAccept accepts a connection as non-blocking and close-on-exec, and
// returns the peer's address as a raw sockaddr.
func rawAccept(lfd int, sa *syscall.RawSockaddrAny) (int, syscall.Errno) {
	l := uint32(syscall.SizeofSockaddrAny)
	fd, _, e := syscall.RawSyscall6(syscall.SYS_ACCEPT4, uintptr(lfd), uintptr(unsafe.Pointer(sa)), uintptr(unsafe.Pointer(&l)), syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0, 0)
	if e != 0 {
		return -1, e
	}
	return int(fd), 0
}

// peerAddr keeps a peer's address as accept4 returned it: 16 bytes of
// address (IPv4 in its first 4) and the port, turned into a net.Addr only
// when asked for.
type peerAddr struct {
	ip   [16]byte
	v4   bool
	port uint16
}

func peerAddrOf(sa *syscall.RawSockaddrAny) peerAddr {
	var a peerAddr
	switch sa.Addr.Family {
	case syscall.AF_INET:
		in := (*syscall.RawSockaddrInet4)(unsafe.Pointer(sa))
		copy(a.ip[:], in.Addr[:])
		a.v4 = true
		a.port = binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&in.Port))[:])
	case syscall.AF_INET6:
		in := (*syscall.RawSockaddrInet6)(unsafe.Pointer(sa))
		a.ip = in.Addr
		a.port = binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&in.Port))[:])
	}
	return a
}
