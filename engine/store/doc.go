// Package store keeps the broker's durable state on disk: an ordered
// key-value store (KV) in a data folder, and a Committer that makes
// writes durable in groups.
//
// The broker layer encodes what it keeps (retained messages today) as
// keys and values and hands batches of writes to the Committer with a
// callback; the Committer's goroutine takes everything submitted since
// its last commit, applies it as one atomic batch and, in Sync mode,
// syncs it to disk once for all of them before calling the callbacks:
// many publishers share one fsync, and none of them holds up a
// connection that writes nothing. In Periodic mode writes are applied at
// once and synced on a timer, a bounded loss window traded for speed.
//
// Two engines implement KV: github.com/cockroachdb/pebble/v2 (an LSM
// tree with a write-ahead log: the default) and go.etcd.io/bbolt (a
// copy-on-write B+tree in one file). docs/persistence.md has the numbers
// that chose between them. Open checks the folder's format version and
// holds a lock file, so a second broker on the same folder is refused.
//
// The package knows nothing of MQTT; it imports nothing of the broker.
package store
