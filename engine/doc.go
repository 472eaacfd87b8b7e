// Package engine is the running broker: listeners, connections, the pool of
// Lua VMs that run the user's scripts, and the bindings scripts call.
//
// # Request path
//
// Each connection has a reader goroutine that decodes packets with
// codec.Reader, enforces the protocol rules that are not the script's to
// decide (first packet CONNECT, no second CONNECT, keep alive, sizes), and
// runs the packet's handler on the connection's VM (fd % workers) itself,
// holding that VM's lock. There is no hand-off to another goroutine per
// packet, a connection's packets are handled in order, and a slow handler
// slows only its own connection and the others pinned to the same VM.
//
// Each connection also has a writer goroutine. Anything may queue bytes for
// a connection (its handler, another connection's handler fanning out a
// message, a timer); the writer swaps the queue out and writes it in one
// call, so a burst of packets costs one syscall, not one per packet. The
// queue is bounded in bytes: a connection that cannot keep up is closed
// as a slow consumer and counted.
//
// # Locks
//
//   - VM.mu guards a Lua state. It is held for the whole of a handler or
//     timer call and never while waiting for the network.
//   - Conn.mu guards the connection's outbound queue and closing state. It
//     is never held during I/O or while taking VM.mu.
//   - Server.mu guards the listener list; the connection registry is a
//     sync.Map.
//
// Lock order: VM.mu, then Conn.mu.
package engine
