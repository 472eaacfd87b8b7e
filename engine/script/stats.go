package script

import (
	"sync/atomic"
	"time"

	"github.com/mqttlua/broker/codec"
)

// What the scripts cost, per handler and per worker, for the metrics
// (engine/observe). A worker's counters live in the Pool, by worker
// index, so they outlive the VMs a reload or a rebuild replaces, and only
// the VM holding its lock writes them: the adds are uncontended.

// Handler slots: one per packet type (its handler), and the rest.
const (
	slotClose       = 16 + iota // onClose
	slotTimer                   // timer callbacks
	slotWorkerStart             // onWorkerStart
	slotSessionEnd              // onSessionEnd
	slotEvent                   // onMqQueued, onMqDropped, onMqAcked
	numSlots
)

// DurationBuckets are the upper bounds, in seconds, of the handler
// duration histogram.
var DurationBuckets = []float64{10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3, 1, 2.5, 5}

// handlerStats are one handler's counters on one worker.
type handlerStats struct {
	calls, errors, timeouts atomic.Uint64
	nanos                   atomic.Uint64
	buckets                 [18]atomic.Uint64 // calls with duration <= DurationBuckets[i] (not cumulative)
}

// workerStats are one worker's counters.
type workerStats struct {
	handlers  [numSlots]handlerStats
	busyNanos atomic.Uint64 // time spent in calls
	waitNanos atomic.Uint64 // time connections waited for the worker's lock
	waits     atomic.Uint64 // how many found it taken
}

// record counts one call of slot that took d.
func (w *workerStats) record(slot int, d time.Duration, err error) {
	h := &w.handlers[slot]
	h.calls.Add(1)
	h.nanos.Add(uint64(d))
	w.busyNanos.Add(uint64(d))
	s := d.Seconds()
	for i, b := range DurationBuckets {
		if s <= b {
			h.buckets[i].Add(1)
			break
		}
	}
	if err != nil {
		h.errors.Add(1)
		if le, ok := err.(*LuaError); ok && le.Timeout {
			h.timeouts.Add(1)
		}
	}
}

// HandlerStats is a snapshot of one handler's counters, summed over the
// workers.
type HandlerStats struct {
	Name                    string
	Calls, Errors, Timeouts uint64
	Seconds                 float64  // total time in calls
	Buckets                 []uint64 // cumulative counts for DurationBuckets
}

// WorkerStats is a snapshot of one worker's counters.
type WorkerStats struct {
	ID              int
	BusySeconds     float64
	LockWaitSeconds float64
	LockWaits       uint64
}

// HandlerStats returns the counters of every handler that has run.
func (s *Pool) HandlerStats() []HandlerStats {
	var out []HandlerStats
	for slot := range numSlots {
		hs := HandlerStats{Name: s.slotName(slot), Buckets: make([]uint64, len(DurationBuckets))}
		for i := range s.workers {
			h := &s.workers[i].handlers[slot]
			hs.Calls += h.calls.Load()
			hs.Errors += h.errors.Load()
			hs.Timeouts += h.timeouts.Load()
			hs.Seconds += float64(h.nanos.Load()) / 1e9
			for b := range hs.Buckets {
				hs.Buckets[b] += h.buckets[b].Load()
			}
		}
		if hs.Calls == 0 {
			continue
		}
		for b := 1; b < len(hs.Buckets); b++ {
			hs.Buckets[b] += hs.Buckets[b-1]
		}
		out = append(out, hs)
	}
	return out
}

// WorkerStats returns each worker's counters.
func (s *Pool) WorkerStats() []WorkerStats {
	out := make([]WorkerStats, len(s.workers))
	for i := range s.workers {
		w := &s.workers[i]
		out[i] = WorkerStats{ID: i, BusySeconds: float64(w.busyNanos.Load()) / 1e9,
			LockWaitSeconds: float64(w.waitNanos.Load()) / 1e9, LockWaits: w.waits.Load()}
	}
	return out
}

// slotName names a slot's handler as the scripts define it.
func (s *Pool) slotName(slot int) string {
	switch slot {
	case slotClose:
		return "onClose"
	case slotTimer:
		return "timer"
	case slotWorkerStart:
		return "onWorkerStart"
	case slotSessionEnd:
		return "onSessionEnd"
	case slotEvent:
		return "message events"
	}
	if n := s.callbackNames[slot]; n != "" {
		return n
	}
	return codec.Type(slot).String()
}
