// Package engine is the running broker: it wires the layers together
// and owns nothing else (config, New, Reload, Shutdown). Imports point
// down only; layers_test.go checks it.
//
//	engine            wiring: Config, Server (New, Listen, Serve, Reload, Shutdown)
//	  |
//	engine/script/iolib  the http, redis and pg modules (and their test stubs):
//	  |                  Lua calls that wait for other systems through script.VM.Await
//	engine/script     the Lua side: VM pool, compile/reload, dispatch, sandbox,
//	  |               one file per Lua module (server, mqtt, log, json, shared,
//	  |               timer, broker), handlers that wait (await.go);
//	  |               it implements broker.Hooks
//	engine/observe    metrics, admin API, dashboard, $SYS: reads the layers' counters
//	  |
//	engine/cluster    several nodes as one broker over NATS (only with the cluster
//	  |               flags): it implements broker.Bridge, forwards what the
//	  |               broker routes and brings other nodes' messages and sessions in
//	engine/broker     MQTT: each connection's protocol state (a Client), sessions,
//	  |               QoS flows, retained messages, wills, routing; no Lua
//	engine/transport  listeners (mqtt, mqtts, ws, wss, unix; PROXY headers),
//	                  event loops and read loops, outbound queues and their
//	                  writers, backpressure, close reasons and the lingering
//	                  close; no Lua, no MQTT policy
//	engine/topic and codec are leaves every layer may use.
//
// # The path of a PUBLISH
//
// Both transports take the same path; they differ only in who reads.
//
//  1. transport: an event loop (Linux, plain TCP: epoll, one loop per
//     worker, connection fd goes to loop fd % workers) or the
//     connection's reader goroutine (TLS, WebSocket, Unix sockets and
//     PROXY-header listeners, other platforms, Config.GoroutinePerConn)
//     reads the socket (for TLS and WebSocket: the plaintext stream the
//     tls or websocket library unwraps) and decodes every whole
//     packet with codec.Reader, handing each to the connection's
//     transport.Receiver, which is its broker.Client.
//  2. broker: Client.Packet applies the protocol rules (first packet
//     CONNECT, no second CONNECT, a topic alias resolved) and calls the
//     script hooks.
//  3. script: the hooks lock VM fd % workers, build the `data` table and
//     run onMqPublish(server, fd, fromId, data).
//  4. The handler calls broker.route (script/broker.go), which calls
//     broker.Publish: the message is matched against the subscription
//     tree and encoded once into each subscriber's transport queue
//     (transport.Conn.Append), waking writers through the reader's
//     transport.Batch.
//  5. transport: when the read is handled, the reader writes its own
//     connection's replies itself, flushes the batch (one wake-up per
//     receiving connection, however many packets it got), and waits for
//     receivers past their high-water mark (backpressure) before reading
//     more. Each connection's writer sends its whole queue in one write.
//
// A handler that waits (an http, redis or pg call, sleep, bcrypt) takes
// a side road at step 3: script.VM.await lets go of the VM, so it runs
// other connections' handlers meanwhile, and calls Conn.Blocking, which
// on an event loop hands the loop's other connections to a new goroutine
// (the waiting one finishes this connection's read and puts it back in
// the loop). The connection reads nothing more until its handler returns.
//
// Nothing climbs back up: transport calls the broker only through
// transport.Receiver, the broker calls scripts only through
// broker.Hooks, and calls down are plain method calls.
//
// # Locks
//
// Each lock, by layer, with what it guards:
//
//   - script.Pool.reloadMu serialises Reload.
//   - script.VM.mu guards a Lua state: held for a handler or timer call,
//     but not while the call waits for I/O (await), nor ever while
//     waiting for the network. VM.ctxMu guards the
//     deadline's cancel function (the watchdog takes it without VM.mu).
//   - script's timerSet.mu (a VM's timers), the shard locks of
//     SharedStore (the shared dictionary; one per shard, never two at
//     once) and scripts.mu (compiled modules) are leaves.
//   - broker.Broker.mu guards the session map.
//   - broker.Broker.shareMu guards the shared-subscription groups; a
//     group's own mu is taken after it.
//   - topic.Tree and topic.Retained have RW locks; their callbacks take no
//     lock but Session.mu.
//   - broker.Session.mu guards a session's subscriptions, in-flight
//     window, queue and packet ids; it is held while encoding into a
//     connection's queue.
//   - transport.Conn.mu guards a connection's outbound queue, its closing
//     state and the writer role. Never held during I/O.
//   - transport.rawConn.mu (event loops) guards a loop-served socket's
//     state (reading, paused, shut, closed); loop.mu guards a loop's
//     connection table and is taken with rawConn.mu held when a socket
//     closes. eventLoops.mu guards the listener list; a rawListener's RW
//     lock keeps its descriptor open while a loop accepts on it.
//   - transport.Transport.mu guards the listener list; the connection
//     table is a sync.Map.
//   - cluster.Cluster (only in a cluster): claimMu, revMu, dirtyMu,
//     subMu, pendMu and recMu are leaves; routeMu is held while its log
//     consumer routes one message (so taken before Broker.mu and
//     Session.mu), and for a moment when a session from a dead node is
//     in place. Routings of local messages are counted by atomics
//     (BeginLocal), not locked.
//
// Lock order: Pool.reloadMu, VM.mu, Broker.mu, shareMu, group mu,
// topic.Tree / topic.Retained, Session.mu, transport.Conn.mu,
// rawConn.mu, loop.mu. Leaves take nothing after them.
package engine
