// Package observe shows a running broker to its operators: Prometheus
// metrics and health checks on an HTTP listener (http.go), and the $SYS
// topics Mosquitto's tools read (sys.go). It sits beside the wiring,
// above the three layers, and only reads them: each layer keeps its own
// counters (transport.Stats, broker.Stats and Sessions, script.Pool's
// handler and worker statistics), and a scrape or a $SYS tick turns a
// snapshot of them into metrics or messages. Nothing here runs on the
// message path.
package observe

import (
	"strconv"
	"sync/atomic"
	"time"

	"github.com/mqttlua/broker/codec"
	"github.com/mqttlua/broker/engine/broker"
	"github.com/mqttlua/broker/engine/cluster"
	"github.com/mqttlua/broker/engine/script"
	"github.com/mqttlua/broker/engine/transport"
	"github.com/prometheus/client_golang/prometheus"
)

// Sources are the layers and counters a broker is observed through.
type Sources struct {
	Transport    *transport.Transport
	Broker       *broker.Broker
	Scripts      *script.Pool
	ScriptErrors *atomic.Int64
	Version      string
	Started      time.Time
	// Reload loads the scripts again (the admin API's reload); nil: not
	// offered.
	Reload func() error
	// Backup copies the data folder into a new folder (POST /api/backup).
	Backup func(dir string) error
	// Cluster is the cluster this node is in, nil for a single node:
	// every metric is then labelled with the node's name, the cluster's
	// counters are added, and GET /api/cluster lists the members.
	Cluster *cluster.Cluster
}

// collector turns a snapshot of the sources into Prometheus metrics at
// each scrape.
type collector struct {
	src   Sources
	descs map[string]*prometheus.Desc
}

// NewCollector returns a Prometheus collector of the broker's metrics.
func NewCollector(src Sources) prometheus.Collector {
	c := &collector{src: src, descs: map[string]*prometheus.Desc{}}
	for _, d := range metricDefs {
		c.descs[d.name] = prometheus.NewDesc("mqttlua_"+d.name, d.help, d.labels, nil)
	}
	return c
}

type metricDef struct {
	name, help string
	labels     []string
}

var metricDefs = []metricDef{
	{"connections", "Client connections open now, by listener.", []string{"listener"}},
	{"connections_total", "Client connections accepted since start.", nil},
	{"connections_peak", "The most client connections open at once since start.", nil},
	{"connections_refused_total", "Connections refused past a connection limit.", nil},
	{"closes_total", "Connections ended, by reason.", []string{"reason"}},
	{"packets_received_total", "MQTT packets received, by type.", []string{"type"}},
	{"packets_sent_total", "MQTT packets sent, by type (PUBLISH: deliveries to subscribers and what scripts send).", []string{"type"}},
	{"bytes_received_total", "Bytes received from clients (inside TLS and WebSocket).", nil},
	{"bytes_sent_total", "Bytes written to clients (inside TLS and WebSocket).", nil},
	{"messages_published_total", "PUBLISH messages routed (from clients, wills and scripts).", nil},
	{"messages_delivered_total", "Deliveries queued to subscribers.", nil},
	{"messages_dropped_total", "Messages not delivered, by reason.", []string{"reason"}},
	{"slow_consumers_total", "Connections cut off because they did not read.", nil},
	{"sessions", "Sessions, by state (online, offline).", []string{"state"}},
	{"sessions_persistent", "Sessions that outlive their connection.", nil},
	{"session_messages", "QoS 1/2 deliveries in sessions, by state (inflight: sent, not acknowledged; queued: waiting).", []string{"state"}},
	{"sessions_refused_total", "CONNECTs refused because the client id's session belongs to another user.", nil},
	{"takeovers_total", "Sessions taken over by a new connection with the same client id.", nil},
	{"wills_sent_total", "Wills published.", nil},
	{"store_failures_total", "QoS 1/2 publishes refused because the data folder could not be written.", nil},
	{"retained_messages", "Retained messages stored.", nil},
	{"subscriptions", "Subscriptions (filters, over all sessions).", nil},
	{"logins_limited_total", "Logins refused without a check after too many failures.", nil},
	{"script_events_dropped_total", "Message events (onMqQueued, onMqDropped, onMqAcked) not handed to the scripts because their queue was full.", nil},
	{"lua_handler_calls_total", "Lua handler calls, by handler.", []string{"handler"}},
	{"lua_handler_errors_total", "Lua handler calls that failed (raised, ran past the deadline or the memory budget), by handler.", []string{"handler"}},
	{"lua_handler_timeouts_total", "Lua handler calls stopped at their deadline, by handler.", []string{"handler"}},
	{"lua_handler_duration_seconds", "Time in Lua handler calls, by handler.", []string{"handler"}},
	{"lua_worker_busy_seconds_total", "Time each Lua worker spent running calls (its busy ratio is the rate).", []string{"worker"}},
	{"lua_worker_lock_wait_seconds_total", "Time connections waited for a Lua worker another call held.", []string{"worker"}},
	{"lua_worker_lock_waits_total", "Calls that found their Lua worker busy.", []string{"worker"}},
	{"lua_errors_total", "Script failures of any kind (handlers, timers, onClose).", nil},
	{"uptime_seconds", "Seconds since the broker started.", nil},
	{"cluster_messages_total", "Messages between this node and the others, by direction (forwarded: sent by this node; received: routed here from others; duplicate: a copy a node's overlapping filters brought twice, dropped; replayed: delivered from the log to sessions taken up from dead nodes).", []string{"direction"}},
	{"cluster_handovers_total", "Sessions this node took over from another node.", nil},
	{"cluster_wills_published_total", "Wills of dead nodes' connections this node published.", nil},
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	counter := func(name string, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(c.descs[name], prometheus.CounterValue, v, labels...)
	}
	gauge := func(name string, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(c.descs[name], prometheus.GaugeValue, v, labels...)
	}
	if cl := c.src.Cluster; cl != nil {
		n := cl.Counters()
		counter("cluster_messages_total", float64(n["forwarded"]), "forwarded")
		counter("cluster_messages_total", float64(n["received"]), "received")
		counter("cluster_messages_total", float64(n["duplicates"]), "duplicate")
		counter("cluster_messages_total", float64(n["replayed"]), "replayed")
		counter("cluster_handovers_total", float64(n["handovers"]))
		counter("cluster_wills_published_total", float64(n["wills_published"]))
	}
	ts := c.src.Transport.Stats
	c.src.Transport.ListenerConnections(func(url string, n int64) { gauge("connections", float64(n), url) })
	counter("connections_total", float64(ts.ConnectionsTotal.Load()))
	gauge("connections_peak", float64(ts.ConnectionsPeak.Load()))
	counter("connections_refused_total", float64(ts.Refused.Load()))
	for r := range transport.NumCloseReasons {
		if r != int(transport.CloseNone) {
			counter("closes_total", float64(ts.Closes[r].Load()), transport.CloseReason(r).String())
		}
	}
	for t := codec.CONNECT; t <= codec.AUTH; t++ {
		counter("packets_received_total", float64(ts.PacketsIn[t].Load()), t.String())
	}
	for t := codec.CONNECT; t <= codec.AUTH; t++ {
		n := ts.PacketsOut[t].Load()
		if t == codec.PUBLISH {
			n += c.src.Broker.Stats.Delivered.Load()
		}
		counter("packets_sent_total", float64(n), t.String())
	}
	counter("bytes_received_total", float64(ts.BytesIn.Load()))
	counter("bytes_sent_total", float64(ts.BytesOut.Load()))
	counter("slow_consumers_total", float64(ts.SlowConsumers.Load()))

	k := c.src.Broker
	bs := &k.Stats
	counter("messages_published_total", float64(bs.Published.Load()))
	counter("messages_delivered_total", float64(bs.Delivered.Load()))
	for reason, v := range c.src.drops() {
		counter("messages_dropped_total", float64(v), reason)
	}
	sc := k.Sessions()
	gauge("sessions", float64(sc.Online), "online")
	gauge("sessions", float64(sc.Offline), "offline")
	gauge("sessions_persistent", float64(sc.Persistent))
	gauge("session_messages", float64(sc.Inflight), "inflight")
	gauge("session_messages", float64(sc.Queued), "queued")
	counter("sessions_refused_total", float64(bs.SessionsRefused.Load()))
	counter("store_failures_total", float64(bs.StoreFailures.Load()))
	counter("takeovers_total", float64(bs.Takeovers.Load()))
	counter("wills_sent_total", float64(bs.WillsSent.Load()))
	gauge("retained_messages", float64(k.RetainedCount()))
	gauge("subscriptions", float64(k.SubscriptionCount()))
	counter("logins_limited_total", float64(k.Logins.Refused()))
	counter("script_events_dropped_total", float64(bs.EventsDropped.Load()))

	for _, h := range c.src.Scripts.HandlerStats() {
		counter("lua_handler_calls_total", float64(h.Calls), h.Name)
		counter("lua_handler_errors_total", float64(h.Errors), h.Name)
		counter("lua_handler_timeouts_total", float64(h.Timeouts), h.Name)
		buckets := make(map[float64]uint64, len(h.Buckets))
		for i, b := range script.DurationBuckets {
			buckets[b] = h.Buckets[i]
		}
		ch <- prometheus.MustNewConstHistogram(c.descs["lua_handler_duration_seconds"], h.Calls, h.Seconds, buckets, h.Name)
	}
	for _, w := range c.src.Scripts.WorkerStats() {
		id := strconv.Itoa(w.ID)
		counter("lua_worker_busy_seconds_total", w.BusySeconds, id)
		counter("lua_worker_lock_wait_seconds_total", w.LockWaitSeconds, id)
		counter("lua_worker_lock_waits_total", float64(w.LockWaits), id)
	}
	counter("lua_errors_total", float64(c.src.ScriptErrors.Load()))
	gauge("uptime_seconds", time.Since(c.src.Started).Seconds())
}

// drops counts the messages not delivered, by reason: what the metric
// shows by reason, and $SYS and /api/stats in total.
func (src Sources) drops() map[string]int64 {
	bs, ts := &src.Broker.Stats, src.Transport.Stats
	return map[string]int64{
		"queue_full": bs.Dropped.Load(), "offline_qos0": bs.NoSession.Load(), "expired": bs.Expired.Load(),
		"too_large": ts.DroppedTooLarge.Load(), "script": bs.DroppedByScript.Load(),
	}
}

// dropped is the sum of drops.
func (src Sources) dropped() int64 {
	var n int64
	for _, v := range src.drops() {
		n += v
	}
	return n
}
