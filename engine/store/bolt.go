package store

import (
	"bytes"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// boltKV is a KV on bbolt: one bucket, keys in order.
type boltKV struct{ db *bolt.DB }

var boltBucket = []byte("mqttlua")

func openBolt(path string) (KV, error) {
	// The folder's lock file already keeps a second broker out; the
	// timeout only bounds a wait on a stale flock.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return nil, err
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(boltBucket)
		return err
	}); err != nil {
		db.Close()
		return nil, err
	}
	return &boltKV{db: db}, nil
}

func (b *boltKV) Scan(prefix []byte, fn func(key, value []byte) error) error {
	return b.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(boltBucket).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			if err := fn(k, v); err != nil {
				if err == errStop {
					return nil
				}
				return err
			}
		}
		return nil
	})
}

// Apply runs b in one transaction. bbolt syncs every commit unless
// NoSync is set; a periodic store sets it and calls Sync on its timer.
func (b *boltKV) Apply(batch *Batch, sync bool) error {
	b.db.NoSync = !sync
	return b.db.Update(func(tx *bolt.Tx) error {
		bk := tx.Bucket(boltBucket)
		for _, o := range batch.ops {
			var err error
			if o.del {
				err = bk.Delete(o.key)
			} else {
				err = bk.Put(o.key, o.value)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
}

func (b *boltKV) Sync() error { return b.db.Sync() }

// Backup copies the file within one read transaction: consistent, while
// writes go on.
func (b *boltKV) Backup(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return b.db.View(func(tx *bolt.Tx) error { return tx.CopyFile(filepath.Join(dir, "store.bolt"), 0o600) })
}
func (b *boltKV) Close() error { return b.db.Close() }
