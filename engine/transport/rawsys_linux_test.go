package transport

import (
	"encoding/binary"
	"net"
	"strings"
	"syscall"
	"testing"
	"unsafe"
)

// TestPeerAddrString: the text the loops make for a peer's address is
// what net.TCPAddr prints (scripts compare it, e.g. auth.lua's loopback
// check), for IPv4, IPv6 and IPv4-mapped IPv6 peers.
func TestPeerAddrString(t *testing.T) {
	for _, tc := range []struct {
		ip   string
		port int
	}{
		{"127.0.0.1", 40000},
		{"10.1.2.3", 1},
		{"::1", 65535},
		{"fe80::1", 1883},
		{"2001:db8::1:0:0:1", 8883},
		{"2001:db8:0:1:1:1:1:1", 80},
		{"::ffff:127.0.0.1", 5000},
		{"::", 0},
	} {
		var sa syscall.RawSockaddrAny
		ip := net.ParseIP(tc.ip)
		if v4 := ip.To4(); v4 != nil && !strings.Contains(tc.ip, ":") {
			in := (*syscall.RawSockaddrInet4)(unsafe.Pointer(&sa))
			in.Family = syscall.AF_INET
			copy(in.Addr[:], v4)
			setPort(&in.Port, tc.port)
		} else {
			in := (*syscall.RawSockaddrInet6)(unsafe.Pointer(&sa))
			in.Family = syscall.AF_INET6
			copy(in.Addr[:], ip.To16())
			setPort(&in.Port, tc.port)
		}
		a := peerAddrOf(&sa)
		want := (&net.TCPAddr{IP: ip, Port: tc.port}).String()
		if got := a.String(); got != want {
			t.Errorf("%s port %d: got %q, want %q", tc.ip, tc.port, got, want)
		}
		if got := a.tcpAddr().String(); got != want {
			t.Errorf("%s port %d: tcpAddr %q, want %q", tc.ip, tc.port, got, want)
		}
	}
}

// setPort stores a port in network byte order, as the kernel fills it in
// (peerAddrOf reads it back the same way).
func setPort(port *uint16, p int) {
	binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(port))[:], uint16(p))
}
