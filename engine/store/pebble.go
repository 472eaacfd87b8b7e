package store

import (
	"os"
	"path/filepath"

	"github.com/cockroachdb/pebble/v2"
)

// pebbleKV is a KV on Pebble.
type pebbleKV struct{ db *pebble.DB }

func openPebble(dir string) (KV, error) {
	db, err := pebble.Open(dir, &pebble.Options{Logger: quietLogger{}})
	if err != nil {
		return nil, err
	}
	return &pebbleKV{db: db}, nil
}

func (p *pebbleKV) Scan(prefix []byte, fn func(key, value []byte) error) error {
	opts := &pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)}
	it, err := p.db.NewIter(opts)
	if err != nil {
		return err
	}
	for it.First(); it.Valid(); it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			it.Close()
			return err
		}
		if err := fn(it.Key(), v); err != nil {
			it.Close()
			if err == errStop {
				return nil
			}
			return err
		}
	}
	if err := it.Error(); err != nil {
		it.Close()
		return err
	}
	return it.Close()
}

func (p *pebbleKV) Apply(b *Batch, sync bool) error {
	pb := p.db.NewBatch()
	defer pb.Close()
	for _, o := range b.ops {
		if o.del {
			pb.Delete(o.key, nil)
		} else {
			pb.Set(o.key, o.value, nil)
		}
	}
	opts := pebble.NoSync
	if sync {
		opts = pebble.Sync
	}
	return pb.Commit(opts)
}

// Sync syncs the write-ahead log: an empty synced record makes every
// record before it durable.
func (p *pebbleKV) Sync() error { return p.db.LogData(nil, pebble.Sync) }

func (p *pebbleKV) Close() error { return p.db.Close() }

// Backup is a Pebble checkpoint: hard links to the immutable tables and
// a copy of the rest, consistent at one point.
func (p *pebbleKV) Backup(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return p.db.Checkpoint(filepath.Join(dir, "pebble"), pebble.WithFlushedWAL())
}

// quietLogger keeps Pebble's routine messages (compactions, WAL
// recycling) out of the broker's log; a fatal error still stops it.
type quietLogger struct{}

func (quietLogger) Infof(string, ...any)           {}
func (quietLogger) Errorf(string, ...any)          {}
func (quietLogger) Fatalf(format string, a ...any) { pebble.DefaultLogger.Fatalf(format, a...) }

// prefixEnd is the first key after every key with prefix (nil: none).
func prefixEnd(prefix []byte) []byte {
	end := append([]byte(nil), prefix...)
	for i := len(end) - 1; i >= 0; i-- {
		end[i]++
		if end[i] != 0 {
			return end[:i+1]
		}
	}
	return nil
}
