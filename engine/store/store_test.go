package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var engines = []Engine{Pebble, Bolt}

func TestStoreRoundTrip(t *testing.T) {
	for _, e := range engines {
		t.Run(string(e), func(t *testing.T) {
			dir := t.TempDir()
			kv, err := Open(dir, e)
			if err != nil {
				t.Fatal(err)
			}
			var b Batch
			b.Put([]byte("r/a"), []byte("1"))
			b.Put([]byte("r/b"), []byte("2"))
			b.Put([]byte("s/x"), []byte("3"))
			if err := kv.Apply(&b, true); err != nil {
				t.Fatal(err)
			}
			b = Batch{}
			b.Delete([]byte("r/a"))
			if err := kv.Apply(&b, false); err != nil {
				t.Fatal(err)
			}
			kv.Sync()
			kv.Close()
			kv, err = Open(dir, e)
			if err != nil {
				t.Fatal(err)
			}
			defer kv.Close()
			var got []string
			kv.Scan([]byte("r/"), func(k, v []byte) error { got = append(got, string(k)+"="+string(v)); return nil })
			if strings.Join(got, ",") != "r/b=2" {
				t.Fatalf("after reopening: %v", got)
			}
		})
	}
}

// TestStoreFolderFaults: a second broker on the folder, a folder of
// another format, a foreign file where the store should be, a folder that
// cannot be written: each a one-line error naming the folder.
func TestStoreFolderFaults(t *testing.T) {
	for _, e := range engines {
		t.Run(string(e), func(t *testing.T) {
			dir := t.TempDir()
			kv, err := Open(dir, e)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := Open(dir, e); err == nil || !strings.Contains(err.Error(), "is in use by process") {
				t.Errorf("second open: %v", err)
			}
			var b Batch
			b.Put(formatKey, []byte("mqttlua-store-99"))
			kv.Apply(&b, true)
			kv.Close()
			if _, err := Open(dir, e); err == nil || !strings.Contains(err.Error(), `holds format "mqttlua-store-99"`) {
				t.Errorf("other format: %v", err)
			}
		})
	}
	// Garbage where the files should be.
	for _, e := range engines {
		dir := t.TempDir()
		name := "store.bolt"
		if e == Pebble {
			os.MkdirAll(filepath.Join(dir, "pebble"), 0o700)
			name = "pebble/CURRENT"
		}
		os.WriteFile(filepath.Join(dir, name), []byte("this is not a store\n"), 0o600)
		_, err := Open(dir, e)
		if err == nil || !strings.Contains(err.Error(), dir) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s over garbage: %v", e, err)
		}
	}
	if os.Geteuid() != 0 {
		dir := t.TempDir()
		os.Chmod(dir, 0o500)
		if _, err := Open(filepath.Join(dir, "data"), Pebble); err == nil || !strings.Contains(err.Error(), "permission denied") {
			t.Errorf("unwritable: %v", err)
		}
	}
}

// TestCommitterGroups: writes submitted from many goroutines are done in
// submission order per goroutine, share commits, and are all on disk when
// their callbacks run (Sync).
func TestCommitterGroups(t *testing.T) {
	for _, e := range engines {
		t.Run(string(e), func(t *testing.T) {
			dir := t.TempDir()
			kv, err := Open(dir, e)
			if err != nil {
				t.Fatal(err)
			}
			c := NewCommitter(kv, Sync, 0, nil)
			const writers, each = 8, 200
			var wg sync.WaitGroup
			var mu sync.Mutex
			last := make([]int, writers)
			for w := range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					var inner sync.WaitGroup
					for i := range each {
						inner.Add(1)
						key := fmt.Sprintf("k/%d/%04d", w, i)
						c.Submit(func(b *Batch) { b.Put([]byte(key), []byte("v")) }, func(err error) {
							defer inner.Done()
							mu.Lock()
							defer mu.Unlock()
							if err != nil || last[w] != i {
								t.Errorf("writer %d: write %d done after %d (err %v)", w, i, last[w], err)
							}
							last[w] = i + 1
						})
					}
					inner.Wait()
				}()
			}
			wg.Wait()
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			kv, _ = Open(dir, e)
			defer kv.Close()
			n := 0
			kv.Scan([]byte("k/"), func(k, v []byte) error { n++; return nil })
			if n != writers*each {
				t.Fatalf("%d of %d writes on disk", n, writers*each)
			}
		})
	}
}

// failingKV fails every Apply while broken is set.
type failingKV struct {
	KV
	mu     sync.Mutex
	broken bool
}

func (f *failingKV) Apply(b *Batch, sync bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.broken {
		return errors.New("no space left on device")
	}
	return f.KV.Apply(b, sync)
}

func TestCommitterFailure(t *testing.T) {
	kv, err := Open(t.TempDir(), Pebble)
	if err != nil {
		t.Fatal(err)
	}
	f := &failingKV{KV: kv, broken: true}
	var reported []error
	c := NewCommitter(f, Sync, 0, func(err error) { reported = append(reported, err) })
	done := make(chan error, 3)
	for range 2 {
		c.Submit(func(b *Batch) { b.Put([]byte("x"), []byte("1")) }, func(err error) { done <- err })
		if err := <-done; err == nil {
			t.Fatal("a failed write reported done")
		}
	}
	if c.Healthy() {
		t.Fatal("healthy after a failure")
	}
	// A waiter with nothing of its own to write, after writes that
	// failed in an earlier round, is told so (an acknowledgement must not
	// go out for a write that was lost).
	c.Submit(nil, func(err error) { done <- err })
	if err := <-done; err == nil {
		t.Fatal("a waiter after a failed write reported done")
	}
	f.mu.Lock()
	f.broken = false
	f.mu.Unlock()
	c.Submit(func(b *Batch) { b.Put([]byte("x"), []byte("1")) }, func(err error) { done <- err })
	if err := <-done; err != nil || !c.Healthy() {
		t.Fatalf("after recovery: %v", err)
	}
	c.Close()
	if len(reported) != 1 {
		t.Fatalf("failures reported %d times, want once per run", len(reported))
	}
}

// BenchmarkStore compares the engines on the broker's workloads; run with
// -bench Store -benchtime 1x for docs/persistence.md's figures.
//
//   - queue: a QoS 1 message queued for 4 persistent sessions (4 puts),
//     then acknowledged (4 deletes), 64-byte payloads, 8 publishers,
//     committed with Sync as the broker does;
//   - retained: 100,000 retained messages written in batches of 1,000,
//     then the store closed, opened again and scanned (restart time).
func BenchmarkStore(b *testing.B) {
	payload := make([]byte, 64)
	for _, e := range engines {
		b.Run("queue/"+string(e), func(b *testing.B) {
			kv, err := Open(b.TempDir(), e)
			if err != nil {
				b.Fatal(err)
			}
			c := NewCommitter(kv, Sync, 0, nil)
			defer c.Close()
			const msgs = 4000
			start := time.Now()
			for range b.N {
				var wg sync.WaitGroup
				for p := range 8 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						done := make(chan error, 1)
						for i := range msgs / 8 {
							c.Submit(func(bt *Batch) {
								for s := range 4 {
									bt.Put([]byte(fmt.Sprintf("q/sess%d/%d/%08d", s, p, i)), payload)
								}
							}, func(err error) { done <- err })
							<-done
							c.Submit(func(bt *Batch) {
								for s := range 4 {
									bt.Delete([]byte(fmt.Sprintf("q/sess%d/%d/%08d", s, p, i)))
								}
							}, nil)
						}
					}()
				}
				wg.Wait()
			}
			b.ReportMetric(float64(msgs*b.N)/time.Since(start).Seconds(), "msgs/s")
		})
		b.Run("retained/"+string(e), func(b *testing.B) {
			for range b.N {
				dir := b.TempDir()
				kv, err := Open(dir, e)
				if err != nil {
					b.Fatal(err)
				}
				t0 := time.Now()
				for i := 0; i < 100000; i += 1000 {
					var bt Batch
					for j := i; j < i+1000; j++ {
						bt.Put([]byte(fmt.Sprintf("r/sensors/%06d/temp", j)), payload)
					}
					if err := kv.Apply(&bt, true); err != nil {
						b.Fatal(err)
					}
				}
				write := time.Since(t0)
				kv.Close()
				t0 = time.Now()
				kv, err = Open(dir, e)
				if err != nil {
					b.Fatal(err)
				}
				n := 0
				kv.Scan([]byte("r/"), func(k, v []byte) error { n++; return nil })
				load := time.Since(t0)
				kv.Close()
				if n != 100000 {
					b.Fatalf("loaded %d", n)
				}
				b.ReportMetric(write.Seconds(), "write-s")
				b.ReportMetric(load.Seconds(), "reopen+scan-s")
			}
		})
	}
}
