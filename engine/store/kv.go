package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// KV is an ordered key-value store.
type KV interface {
	// Scan calls fn for each key with prefix, in key order. The slices
	// are valid only during the call.
	Scan(prefix []byte, fn func(key, value []byte) error) error
	// Apply writes b atomically; with sync, durably before it returns.
	Apply(b *Batch, sync bool) error
	// Sync makes every write applied so far durable.
	Sync() error
	// Backup writes a consistent copy of the store, as it is now, into
	// dir (which must not exist yet), as a data folder of its own.
	Backup(dir string) error
	Close() error
}

// Batch is a list of writes applied together.
type Batch struct {
	ops []op
}

type op struct {
	del        bool
	key, value []byte
}

// Put records key = value. The slices are copied.
func (b *Batch) Put(key, value []byte) {
	b.ops = append(b.ops, op{key: append([]byte(nil), key...), value: append([]byte(nil), value...)})
}

// Delete records the removal of key.
func (b *Batch) Delete(key []byte) {
	b.ops = append(b.ops, op{del: true, key: append([]byte(nil), key...)})
}

// Len is the number of writes.
func (b *Batch) Len() int { return len(b.ops) }

func (b *Batch) reset() { b.ops = b.ops[:0] }

// Format is the on-disk format this broker reads and writes; a folder
// with another is refused, so that a new version never misreads an old
// folder (docs/persistence.md says how to move between versions).
const Format = "mqttlua-store-1"

var formatKey = []byte("\x00format")

// Engine names a KV implementation.
type Engine string

// The engines.
const (
	Pebble Engine = "pebble"
	Bolt   Engine = "bbolt"
)

// Open opens (creating it if needed) the data folder dir with engine e:
// it takes the folder's lock, opens the store and checks its format. Its
// errors name the folder and what is wrong with it, in one line.
func Open(dir string, e Engine) (KV, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("data folder %s: %w", dir, err)
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	var kv KV
	switch e {
	case Pebble, "":
		kv, err = openPebble(filepath.Join(dir, "pebble"))
	case Bolt:
		kv, err = openBolt(filepath.Join(dir, "store.bolt"))
	default:
		err = fmt.Errorf("unknown store engine %q (pebble or bbolt)", e)
	}
	if err != nil {
		unlock()
		return nil, fmt.Errorf("data folder %s: %v", dir, oneLine(err))
	}
	if err := checkFormat(kv); err != nil {
		kv.Close()
		unlock()
		return nil, fmt.Errorf("data folder %s: %v", dir, err)
	}
	return &locked{KV: kv, unlock: unlock}, nil
}

// locked releases the folder's lock when the store closes.
type locked struct {
	KV
	unlock func()
}

func (l *locked) Close() error {
	err := l.KV.Close()
	l.unlock()
	return err
}

func checkFormat(kv KV) error {
	var found []byte
	err := kv.Scan(formatKey, func(k, v []byte) error {
		if string(k) == string(formatKey) {
			found = append([]byte(nil), v...)
		}
		return nil
	})
	if err != nil {
		return oneLineErr(err)
	}
	switch {
	case found == nil:
		empty := true
		kv.Scan(nil, func(k, v []byte) error { empty = false; return errStop })
		if !empty {
			return errors.New("holds data but no format mark: not a data folder of this broker")
		}
		var b Batch
		b.Put(formatKey, []byte(Format))
		return kv.Apply(&b, true)
	case string(found) != Format:
		return fmt.Errorf("holds format %q; this broker reads %q (see docs/persistence.md, moving between versions)", found, Format)
	}
	return nil
}

var errStop = errors.New("stop")

// lockDir takes the folder's lock file, or says which process holds it.
func lockDir(dir string) (func(), error) {
	path := filepath.Join(dir, "broker.lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("data folder %s: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		b := make([]byte, 32)
		n, _ := f.ReadAt(b, 0)
		f.Close()
		holder := strings.TrimSpace(string(b[:n]))
		if holder == "" {
			holder = "another process"
		} else {
			holder = "process " + holder
		}
		return nil, fmt.Errorf("data folder %s is in use by %s (another broker?): %s is locked", dir, holder, path)
	}
	f.Truncate(0)
	f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

func oneLine(err error) string { return strings.Join(strings.Fields(err.Error()), " ") }

func oneLineErr(err error) error { return errors.New(oneLine(err)) }
