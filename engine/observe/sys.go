package observe

import (
	"math"
	"strconv"
	"time"

	"github.com/mqttlua/broker/codec"
	"github.com/mqttlua/broker/engine/broker"
)

// The $SYS topics, with Mosquitto's names, so that the tools made for it
// (MQTT Explorer, mosquitto-exporter, `mosquitto_sub -t '$SYS/#'`) read
// them. Each is published retained, at QoS 0, every interval: a snapshot
// of the same counters the metrics show. Clients cannot publish under
// $SYS (scripts/main.lua refuses "$" topics), so the values are the
// broker's.

// StartSys publishes the $SYS topics every interval until the returned
// stop function is called.
func StartSys(src Sources, interval time.Duration) (stop func()) {
	s := &sys{src: src, loads: map[string]*load{}}
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		s.publish(time.Now())
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				s.publish(now)
			}
		}
	}()
	return func() { close(done) }
}

type sys struct {
	src   Sources
	loads map[string]*load
	last  time.Time
}

// load is an exponentially weighted per-minute rate over 1, 5 and 15
// minutes, as Mosquitto's load topics (and Unix load averages) keep.
type load struct {
	prev int64
	avg  [3]float64
	seen bool
}

var loadWindows = [3]struct {
	name    string
	seconds float64
}{{"1min", 60}, {"5min", 300}, {"15min", 900}}

func (s *sys) publish(now time.Time) {
	ts := s.src.Transport.Stats
	k := s.src.Broker
	sc := k.Sessions()
	var packetsIn int64
	for i := range ts.PacketsIn {
		packetsIn += ts.PacketsIn[i].Load()
	}
	publishIn := ts.PacketsIn[codec.PUBLISH].Load()
	publishOut := k.Stats.Delivered.Load()
	dropped := s.src.dropped()
	connected := ts.Connections.Load()
	bytesIn, bytesOut := ts.BytesIn.Load(), ts.BytesOut.Load()

	values := map[string]string{
		"version":                   "mqttlua " + s.src.Version,
		"uptime":                    strconv.FormatInt(int64(now.Sub(s.src.Started).Seconds()), 10) + " seconds",
		"clients/connected":         itoa(connected),
		"clients/disconnected":      itoa(int64(sc.Offline)),
		"clients/total":             itoa(connected + int64(sc.Offline)),
		"clients/maximum":           itoa(ts.ConnectionsPeak.Load()),
		"messages/received":         itoa(packetsIn),
		"publish/messages/received": itoa(publishIn),
		"publish/messages/sent":     itoa(publishOut),
		"publish/messages/dropped":  itoa(dropped),
		"bytes/received":            itoa(bytesIn),
		"bytes/sent":                itoa(bytesOut),
		"subscriptions/count":       itoa(int64(k.SubscriptionCount())),
		"retained messages/count":   itoa(int64(k.RetainedCount())),
		"store/messages/count":      itoa(int64(sc.Inflight + sc.Queued)),
	}
	dt := now.Sub(s.last).Seconds()
	for name, v := range map[string]int64{
		"messages/received": packetsIn, "publish/received": publishIn, "publish/sent": publishOut,
		"bytes/received": bytesIn, "bytes/sent": bytesOut, "connections": ts.ConnectionsTotal.Load(),
	} {
		l := s.loads[name]
		if l == nil {
			l = &load{}
			s.loads[name] = l
		}
		if l.seen && dt > 0 {
			rate := float64(v-l.prev) / dt * 60
			for i, w := range loadWindows {
				l.avg[i] += (1 - math.Exp(-dt/w.seconds)) * (rate - l.avg[i])
			}
		}
		l.prev, l.seen = v, true
		for i, w := range loadWindows {
			values["load/"+name+"/"+w.name] = strconv.FormatFloat(l.avg[i], 'f', 2, 64)
		}
	}
	s.last = now
	for topic, v := range values {
		k.Inject(&broker.Message{Topic: "$SYS/broker/" + topic, Payload: []byte(v), Retain: true, Owned: true}, nil)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
