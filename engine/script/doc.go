// Package script is the top layer of the engine: the Lua side. It may
// import engine/broker, engine/transport, engine/topic and codec, never
// engine.
//
// A Pool compiles the scripts folder once (scripts.go) and runs one VM per
// worker (vm.go), each a gopher-lua state in the sandbox of sandbox.go
// with the Lua modules registered: server.go (the `server` userdata),
// mqtt.go, log.go, json.go, shared.go, timer.go and broker.go (the
// `broker` module over broker.Broker), plus the embedder's Go modules
// (gomodule.go). Reload swaps in a new pool of VMs without touching
// connections or sessions.
//
// The Pool implements broker.Hooks (dispatch.go): for each packet the
// broker layer passes up, the connection's VM (fd % workers) is locked,
// the packet becomes the `data` table (luaconv.go) and the handler runs
// under the handler deadline (a watchdog cancels the VM's context); its
// return value goes back to the broker as a Verdict. The bindings call
// down into the broker (sessions, routing) and the transport (send,
// close). A handler that fails is logged with its script position and
// closes only its own connection.
//
// A binding that does I/O (iolib's http, redis and pg, sleep, bcrypt)
// waits through VM.await with the VM's lock released (await.go): the VM
// runs other handlers meanwhile, on its main Lua state or a spare thread,
// and the waiting call goes on where it was.
package script
