// Package iolib gives scripts the outside world: the http, redis and pg
// Lua modules, whose calls wait for the network without stalling their
// worker.
//
// A Lib is made once per server from config.lua's http, redis and pg
// tables (Config): an HTTP client (Go's net/http, connections reused), a
// go-redis client with its pool per named Redis server, a pgx pool per
// named PostgreSQL database. Its Modules are script.Modules, opened in
// every VM.
//
// A binding reads its Lua arguments on the VM, then hands the request to
// script.VM.Await: the VM's lock is released, the request runs on the
// calling goroutine with a context bounded by the call's timeout and the
// handler's deadline, and once it returns the binding turns the answer
// into Lua values on the VM again. Failures are answers, not errors: a
// call returns nil and a message, as OpenResty's do.
//
// For script tests (broker test), a Lib made with Stubs answers from what
// the tests declared (stubs.go) instead of the network, after the delay
// they name, so tests need no servers and can show what other clients
// see while one waits.
package iolib
