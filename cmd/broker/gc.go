package main

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
)

// The broker's garbage collection target adapts to its live heap.
//
// Under load a broker allocates far more than it keeps: every message
// builds the Lua table its handler gets, while the live heap (sessions,
// subscriptions, queued messages) may be a few MB. At Go's default of 100
// such a heap is collected many times a second, and fan-in QoS 0 ran about
// 30% slower than at 400 (docs/performance.md). But 400 also lets a large
// live heap, such as 10k idle connections, grow to five times its size.
// So the target is a headroom in bytes rather than a ratio: after each
// collection the percentage is set so that the next one comes after about
// gcHeadroom more bytes, between gcMinPercent and gcMaxPercent. This is
// the approach of Go's GOMEMLIMIT turned around: a floor for the heap
// target instead of a ceiling. 16 MB kept most of the fan-in gain (32 MB
// was ~4% faster) while 10k idle connections stayed at 6.3 KB each (8.0
// KB with 32 MB, 6.8 KB at a fixed 100).
const (
	gcHeadroom   = 16 << 20
	gcMinPercent = 100
	gcMaxPercent = 400
)

// gcAuto is whether the tuner adjusts the percentage: not when a fixed
// value is configured.
var (
	gcAuto      atomic.Bool
	gcTunerOnce sync.Once
)

// gcPercentFor returns the GC percentage that puts the next collection
// about gcHeadroom bytes past a live heap of live bytes.
func gcPercentFor(live uint64) int {
	if live == 0 {
		return gcMaxPercent
	}
	p := gcHeadroom * 100 / live
	switch {
	case p < gcMinPercent:
		return gcMinPercent
	case p > gcMaxPercent:
		return gcMaxPercent
	}
	return int(p)
}

// startGCTuner sets the percentage for the current live heap and keeps it
// adjusted after every collection.
func startGCTuner() {
	gcAuto.Store(true)
	debug.SetGCPercent(gcMaxPercent)
	gcTunerOnce.Do(armGCTuner)
}

// gcSentinel is garbage on purpose: its cleanup runs after the collection
// that found it unreachable, once per GC cycle.
type gcSentinel struct{ _ [16]byte }

func armGCTuner() {
	runtime.AddCleanup(&gcSentinel{}, func(struct{}) {
		defer armGCTuner()
		if !gcAuto.Load() {
			return // a fixed percentage is configured
		}
		sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
		metrics.Read(sample)
		if sample[0].Value.Kind() == metrics.KindUint64 {
			// Once per collection: cheap, and always right even when
			// someone else changed the percentage in between.
			debug.SetGCPercent(gcPercentFor(sample[0].Value.Uint64()))
		}
	}, struct{}{})
}
