package store

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// Durability says when a write counts as done.
type Durability int

const (
	// Sync: a write is done once it is on disk (fsync), shared with every
	// write submitted meanwhile (group commit).
	Sync Durability = iota
	// Periodic: a write is done once applied; the disk is synced every
	// interval, so a crash loses at most that much.
	Periodic
)

// Committer applies the writes submitted to it in groups, on a goroutine
// of its own.
type Committer struct {
	kv    KV
	mode  Durability
	every time.Duration

	mu      sync.Mutex
	pending Batch
	waiters []func(error)
	wake    chan struct{}
	closed  bool
	done    chan struct{}
	healthy bool

	onError func(error) // told of a failed commit, once per run of failures
}

// NewCommitter starts committing to kv. every is Periodic's sync interval.
// onError (may be nil) hears of a commit that failed (a full disk), once
// until one succeeds again.
func NewCommitter(kv KV, mode Durability, every time.Duration, onError func(error)) *Committer {
	c := &Committer{kv: kv, mode: mode, every: every, wake: make(chan struct{}, 1), done: make(chan struct{}), healthy: true, onError: onError}
	go c.run()
	return c
}

// Submit adds writes (fill appends them to the pending batch; nil for
// none) and calls done (if not nil) once they and every write submitted
// before them are done, with the error if they could not be written.
// Callbacks run in submission order, on the committer's goroutine: they
// must not block.
func (c *Committer) Submit(fill func(b *Batch), done func(error)) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		if done != nil {
			done(errClosed)
		}
		return
	}
	if fill != nil {
		fill(&c.pending)
	}
	if done != nil {
		c.waiters = append(c.waiters, done)
	}
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Healthy reports whether the last commit succeeded.
func (c *Committer) Healthy() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.healthy
}

func (c *Committer) run() {
	defer close(c.done)
	var tick <-chan time.Time
	if c.mode == Periodic && c.every > 0 {
		t := time.NewTicker(c.every)
		defer t.Stop()
		tick = t.C
	}
	var batch Batch
	var waiters []func(error)
	dirty := false
	// failed is the error of the last write, nil once one succeeds: a
	// waiter that comes in a round with nothing to write (its writes
	// went in an earlier round, which failed) must hear of it too.
	var failed error
	for {
		select {
		case <-c.wake:
		case <-tick:
			if dirty {
				if err := c.kv.Sync(); err != nil {
					failed = err
				}
				c.report(failed)
				dirty = false
			}
			continue
		}
		c.mu.Lock()
		batch, c.pending = c.pending, batch
		waiters, c.waiters = c.waiters, waiters[:0]
		closed := c.closed
		c.mu.Unlock()
		if batch.Len() > 0 {
			failed = c.kv.Apply(&batch, c.mode == Sync)
			dirty = c.mode == Periodic
			c.report(failed)
		}
		err := failed
		for i, w := range waiters {
			w(err)
			waiters[i] = nil
		}
		batch.reset()
		if closed {
			c.mu.Lock()
			left := c.pending.Len() > 0 || len(c.waiters) > 0
			c.mu.Unlock()
			if !left {
				if dirty {
					c.kv.Sync()
				}
				return
			}
			select {
			case c.wake <- struct{}{}:
			default:
			}
		}
	}
}

func (c *Committer) report(err error) {
	c.mu.Lock()
	was := c.healthy
	c.healthy = err == nil
	c.mu.Unlock()
	if err != nil && was && c.onError != nil {
		c.onError(err)
	}
}

// Backup waits until everything submitted so far is written, then writes
// a consistent copy of the store into dir (a new folder), which a broker
// can be started on; writes go on meanwhile.
func (c *Committer) Backup(dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return fmt.Errorf("backup: %s exists already", dir)
	}
	done := make(chan error, 1)
	c.Submit(nil, func(err error) { done <- err })
	if err := <-done; err != nil {
		return fmt.Errorf("backup: %v", err)
	}
	if err := c.kv.Backup(dir); err != nil {
		return fmt.Errorf("backup into %s: %v", dir, err)
	}
	return nil
}

// Close commits what was submitted, stops, and closes the store.
func (c *Committer) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	<-c.done
	return c.kv.Close()
}

var errClosed = errors.New("the store is closed")
