// Package broker is the MQTT broker layer: the protocol state of each
// connection (first packet, keep alive, topic aliases both ways, MQTT 5
// limits, CONNACK properties, the protocol's defaults for packets no
// script handles) and everything shared across VMs (sessions,
// subscriptions, retained messages, QoS flows, wills, routing). It holds
// no Lua: the decisions it asks of scripts go through Hooks, which the
// script layer implements.
//
// It may import engine/transport, engine/topic and codec. It sits on
// engine/transport: each transport.Conn's Receiver is a
// Client. A PUBLISH arrives in Client.Packet, passes the protocol rules,
// goes to the script's handler through ClientHooks, and, when the script
// routes it, is matched against the subscription tree and encoded once
// into each subscriber's transport queue (Broker.route).
//
// # Locks
//
//   - Broker.mu guards the session map. Taken before Session.mu, never
//     while holding it.
//   - Session.mu guards a session's subscriptions, in-flight window, queue
//     and packet ids. Held while encoding into a connection's queue
//     (transport Conn.mu), never during network I/O.
//   - The subscription tree and the retained store have their own RW
//     locks; their callbacks take no other lock but Session.mu.
//   - Broker.shareMu guards the shared-subscription groups, taken before
//     a group's own lock.
//
// Lock order: Broker.mu, Session.mu, transport Conn.mu.
package broker
