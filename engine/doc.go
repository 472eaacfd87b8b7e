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
// slows only its own connection and the others pinned to the same VM. New
// connections start on pooled reader goroutines and move to a fresh one
// when idle, so an idle connection keeps a 2 KiB stack (see readFrom).
//
// Anything may queue bytes for a connection (its handler, another
// connection's handler fanning out a message, a timer). Output produced
// while a reader handles one read is collected in its Batch and released
// when the read is handled: the connection's own replies are written by
// its reader before it reads again, others by a writer goroutine that runs
// only while there is something to write and takes the whole queue in one
// write, so a burst of packets costs a few syscalls, not one per packet.
// A queue past its high-water mark makes the publishers that fill it wait
// before reading more (backpressure); past its hard limit the connection
// is closed as a slow consumer and counted.
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
