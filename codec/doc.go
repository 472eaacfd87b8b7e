// Package codec encodes and decodes MQTT control packets for protocol
// levels 3 (MQTT 3.1, protocol name "MQIsdp"), 4 (MQTT 3.1.1) and 5 (MQTT 5.0).
//
// It is pure Go: no networking beyond an io.Reader, no Lua. Every other part
// of the broker (the engine, the Lua bindings, the script test runner, the
// benchmarks) goes through it.
//
// # Layout
//
// Each packet's decode, encode and validation sit side by side in one file:
// connect.go, connack.go, publish.go, subscribe.go, unsubscribe.go, and one
// file per family that shares a layout: ack.go (PUBACK, PUBREC, PUBREL,
// PUBCOMP), suback.go (SUBACK, UNSUBACK), disconnect.go (DISCONNECT, AUTH).
// PINGREQ and PINGRESP have no body and live in packet.go, which holds the
// fixed header and dispatches by type. properties.go holds the single table
// of MQTT 5 properties that drives their decode, encode and data mapping;
// reason.go holds the single table of reason codes. reader.go is the
// streaming reader, fanout.go the encode-once cache for PUBLISH fan-out, and
// data.go the mapping between packets and plain data with Simps' field names.
//
// # Ownership of decoded bytes
//
// Decode and Reader.ReadPacket do not copy byte-valued fields: Packet.Payload,
// Packet.Password, Will.Payload and the binary properties (correlation data,
// authentication data) alias the input buffer. For a Reader they are valid
// only until the next call to ReadPacket; a caller that keeps them longer
// (a retained message, a queued delivery) must copy them. String fields
// (topics, client identifiers, string properties) are always copied.
//
// # Errors
//
// Every rejection is an *Error naming the offending field and carrying the
// MQTT 5 reason code a server sends before closing (0x81 malformed packet,
// 0x82 protocol error, 0x95 packet too large, ...). Code that enforces a
// normative statement of the specification carries its id in a comment, for
// example [MQTT-3.3.2-2]. Ids without a version prefix are those of MQTT 3.1.1;
// ids prefixed "5.0:" are from MQTT 5.0, and section numbers ("5.0 §3.1.2.11")
// are used where the 5.0 text is not numbered.
package codec
