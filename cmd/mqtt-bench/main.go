// Command mqtt-bench is a load generator for MQTT brokers. It speaks MQTT
// over raw TCP so that the client side costs little, and counts every
// message: each payload carries its publisher, a sequence number and a
// timestamp, so losses and duplicates are exact and a broker that drops
// messages cannot look fast.
//
//	mqtt-bench --addr 127.0.0.1:1883 --scenario fanin --qos 0
//
// Scenarios: fanin (P publishers to one wildcard subscriber), fanout (one
// publisher to S subscribers), pairs (N publisher/subscriber pairs),
// latency (--publishers publishers sharing a fixed total --rate, to one
// subscriber; p50/p99/p99.9 of publish-to-receive), connect
// (connections per second), idle (broker RSS per idle connection; needs
// --pid). It targets the given address only and stops after --duration.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mqttlua/broker/codec"
	"github.com/spf13/pflag"
)

type config struct {
	addr        string
	subAddr     string // subscribers' broker (a cluster's other node), default addr
	scenario    string
	qos         byte
	publishers  int
	subscribers int
	pairs       int
	size        int
	duration    time.Duration
	rate        int
	conns       int
	connectors  int
	pid         int
	window      int
	level       byte
}

func main() {
	var cfg config
	var qos, level int
	pflag.StringVar(&cfg.addr, "addr", "127.0.0.1:1883", "broker address (loopback): host:port, or mqtt://, mqtts://, ws://host:port/path, wss://host:port/path")
	pflag.StringVar(&cfg.subAddr, "sub-addr", "", "subscribers' broker address, for a cluster: publishers on --addr, subscribers on another node (fanin, fanout, pairs, latency; default --addr)")
	pflag.StringVar(&cfg.scenario, "scenario", "fanin", "fanin, fanout, pairs, latency, connect or idle")
	pflag.IntVar(&qos, "qos", 0, "QoS of publications and subscriptions (0 or 1)")
	pflag.IntVar(&cfg.publishers, "publishers", 8, "publishers (fanin, latency)")
	pflag.IntVar(&cfg.subscribers, "subscribers", 8, "subscribers (fanout)")
	pflag.IntVar(&cfg.pairs, "pairs", 8, "publisher/subscriber pairs (pairs)")
	pflag.IntVar(&cfg.size, "size", 64, "payload bytes (at least 20)")
	pflag.DurationVar(&cfg.duration, "duration", 5*time.Second, "how long publishers publish")
	pflag.IntVar(&cfg.rate, "rate", 10000, "messages per second (latency)")
	pflag.IntVar(&cfg.conns, "conns", 10000, "connections (idle)")
	pflag.IntVar(&cfg.connectors, "connectors", 8, "clients connecting and disconnecting at once (connect)")
	pflag.IntVar(&cfg.pid, "pid", 0, "broker process id, for its memory (idle) and CPU time per connection (connect)")
	pflag.IntVar(&cfg.window, "window", 100, "unacknowledged QoS 1 messages per publisher")
	pflag.IntVar(&level, "level", 4, "protocol level: 4 (3.1.1) or 5")
	pflag.BoolVar(&persistentSubs, "persistent", false, "subscribers keep persistent sessions (clean session 0), so a broker with persistence stores what it queues for them")
	pflag.Parse()
	cfg.qos, cfg.level = byte(qos), byte(level)
	if cfg.size < headerLen {
		cfg.size = headerLen
	}
	if cfg.subAddr == "" {
		cfg.subAddr = cfg.addr
	}
	for _, a := range []string{cfg.addr, cfg.subAddr} {
		hostPort := a
		if _, rest, ok := strings.Cut(a, "://"); ok {
			hostPort = rest
		}
		if !strings.HasPrefix(hostPort, "127.") && !strings.HasPrefix(hostPort, "localhost:") && !strings.HasPrefix(hostPort, "[::1]") {
			fmt.Fprintln(os.Stderr, "mqtt-bench: only loopback addresses are allowed")
			os.Exit(2)
		}
	}
	go func() {
		// A bench must stop on its own; this is the backstop.
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, os.Interrupt)
		select {
		case <-sigs:
		case <-time.After(cfg.duration*3 + 2*time.Minute):
		}
		fmt.Fprintln(os.Stderr, "mqtt-bench: stopped")
		os.Exit(1)
	}()
	var res result
	var err error
	switch cfg.scenario {
	case "fanin":
		res, err = flow(cfg, cfg.publishers, 1, func(i int) string { return fmt.Sprintf("bench/in/%d", i) }, func(int) string { return "bench/in/#" })
	case "fanout":
		res, err = flow(cfg, 1, cfg.subscribers, func(int) string { return "bench/out" }, func(int) string { return "bench/out" })
	case "pairs":
		res, err = pairs(cfg)
	case "latency":
		res, err = flow(cfg, cfg.publishers, 1, func(i int) string { return fmt.Sprintf("bench/lat/%d", i) }, func(int) string { return "bench/lat/+" })
	case "connect":
		res, err = connectRate(cfg)
	case "idle":
		res, err = idle(cfg)
	default:
		err = fmt.Errorf("unknown scenario %q", cfg.scenario)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mqtt-bench:", err)
		os.Exit(1)
	}
	fmt.Println(res.String())
}

// result is printed as one line of key=value pairs.
type result struct {
	keys []string
	vals map[string]string
}

func (r *result) set(k string, v any) {
	if r.vals == nil {
		r.vals = map[string]string{}
	}
	if _, ok := r.vals[k]; !ok {
		r.keys = append(r.keys, k)
	}
	switch x := v.(type) {
	case float64:
		r.vals[k] = strconv.FormatFloat(x, 'f', 1, 64)
	default:
		r.vals[k] = fmt.Sprint(v)
	}
}

func (r result) String() string {
	parts := make([]string, len(r.keys))
	for i, k := range r.keys {
		parts[i] = k + "=" + r.vals[k]
	}
	return strings.Join(parts, " ")
}

// publisher publishes sequence-numbered messages.
type publisher struct {
	c      *client
	idx    uint32
	topic  string
	sent   atomic.Int64
	tokens chan struct{} // QoS 1 window
}

func (p *publisher) run(cfg config, stop <-chan struct{}) error {
	payload := make([]byte, cfg.size)
	pkt := codec.Packet{Type: codec.PUBLISH, Topic: p.topic, QoS: cfg.qos, Payload: payload}
	paced := cfg.scenario == "latency"
	// Paced publishers share the rate, each offset by its share of one
	// interval, so that together they send evenly rather than in bursts.
	every := time.Second * time.Duration(cfg.publishers) / time.Duration(cfg.rate)
	start := time.Now().Add(every * time.Duration(p.idx) / time.Duration(cfg.publishers))
	var seq uint64
	for {
		select {
		case <-stop:
			return p.c.flush()
		default:
		}
		if paced {
			next := start.Add(time.Duration(seq) * every)
			if d := time.Until(next); d > 0 {
				time.Sleep(d)
			}
		}
		if cfg.qos > 0 {
			select {
			case <-p.tokens:
			default:
				if err := p.c.flush(); err != nil {
					return err
				}
				select {
				case <-p.tokens:
				case <-stop:
					return p.c.flush()
				}
			}
			pkt.PacketID = uint16(seq%65535) + 1
		}
		fillPayload(payload, p.idx, seq, time.Now().UnixNano())
		if err := p.c.send(&pkt); err != nil {
			return err
		}
		p.sent.Add(1)
		seq++
		if paced {
			if err := p.c.flush(); err != nil {
				return err
			}
		}
	}
}

// acks releases window tokens as PUBACKs arrive.
func (p *publisher) acks() {
	var pk codec.Packet
	for {
		if err := p.c.r.ReadPacket(&pk); err != nil {
			return
		}
		if pk.Type == codec.PUBACK {
			p.tokens <- struct{}{}
		}
	}
}

// flow runs np publishers and ns subscribers; every subscriber gets every
// message.
func flow(cfg config, np, ns int, pubTopic, subFilter func(int) string) (result, error) {
	var res result
	res.set("scenario", cfg.scenario)
	res.set("qos", cfg.qos)
	var tallies []*tally
	var subs []*client
	for i := 0; i < ns; i++ {
		c, err := dial(cfg.subAddr, fmt.Sprintf("bench-sub-%d-%d", os.Getpid(), i), cfg.level, bulkBuf)
		if err != nil {
			return res, err
		}
		if err := c.subscribe(subFilter(i), cfg.qos); err != nil {
			return res, err
		}
		subs = append(subs, c)
		t := newTally(cfg.scenario == "latency")
		tallies = append(tallies, t)
		go c.receive(t)
	}
	crossNodes(cfg)
	pubs, err := startPublishers(cfg, np, pubTopic)
	if err != nil {
		return res, err
	}
	return runFlow(cfg, res, pubs, subs, tallies, int64(ns))
}

func startPublishers(cfg config, np int, topic func(int) string) ([]*publisher, error) {
	var pubs []*publisher
	for i := 0; i < np; i++ {
		c, err := dial(cfg.addr, fmt.Sprintf("bench-pub-%d-%d", os.Getpid(), i), cfg.level, bulkBuf)
		if err != nil {
			return nil, err
		}
		p := &publisher{c: c, idx: uint32(i), topic: topic(i), tokens: make(chan struct{}, cfg.window)}
		for j := 0; j < cfg.window; j++ {
			p.tokens <- struct{}{}
		}
		if cfg.qos > 0 {
			go p.acks()
		}
		pubs = append(pubs, p)
	}
	return pubs, nil
}

// runFlow publishes for the duration, waits for deliveries to stop, and
// reports rate, losses and duplicates. copies is how many subscribers
// should get each message.
func runFlow(cfg config, res result, pubs []*publisher, subs []*client, tallies []*tally, copies int64) (result, error) {
	// Each subscriber counts its own copies; these sum them.
	counts := func() (unique, dup int64, last time.Time) {
		for _, t := range tallies {
			u, d, l := t.counts()
			unique += u
			dup += d
			if l.After(last) {
				last = l
			}
		}
		return
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	start := time.Now()
	for _, p := range pubs {
		wg.Add(1)
		go func(p *publisher) {
			defer wg.Done()
			if err := p.run(cfg, stop); err != nil {
				fmt.Fprintln(os.Stderr, "mqtt-bench: publisher:", err)
			}
		}(p)
	}
	time.Sleep(cfg.duration)
	close(stop)
	wg.Wait()
	var sent int64
	for _, p := range pubs {
		sent += p.sent.Load()
	}
	expected := sent * copies
	// Drain: until everything arrived or nothing more for a second.
	deadline := time.Now().Add(30 * time.Second)
	lastN, lastChange := int64(-1), time.Now()
	for time.Now().Before(deadline) {
		n, _, _ := counts()
		if n >= expected {
			break
		}
		if n != lastN {
			lastN, lastChange = n, time.Now()
		} else if time.Since(lastChange) > time.Second {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	unique, dup, last := counts()
	elapsed := last.Sub(start)
	if elapsed <= 0 {
		elapsed = cfg.duration
	}
	res.set("sent", sent)
	res.set("expected", expected)
	res.set("received", unique)
	res.set("lost", expected-unique)
	res.set("dup", dup)
	res.set("rate", float64(unique)/elapsed.Seconds())
	if t := tallies[0]; t.keepLats && len(t.latency) > 0 {
		l := t.latency
		sort.Slice(l, func(i, j int) bool { return l[i] < l[j] })
		q := func(f float64) float64 { return float64(l[int(f*float64(len(l)-1))]) / 1e3 }
		res.set("p50_us", q(0.50))
		res.set("p99_us", q(0.99))
		res.set("p999_us", q(0.999))
	}
	for _, p := range pubs {
		p.c.close()
	}
	for _, c := range subs {
		c.close()
	}
	return res, nil
}

// pairs: publisher i to subscriber i, each on its own topic.
func pairs(cfg config) (result, error) {
	var res result
	res.set("scenario", "pairs")
	res.set("qos", cfg.qos)
	var tallies []*tally
	var subs []*client
	for i := 0; i < cfg.pairs; i++ {
		c, err := dial(cfg.subAddr, fmt.Sprintf("bench-psub-%d-%d", os.Getpid(), i), cfg.level, bulkBuf)
		if err != nil {
			return res, err
		}
		if err := c.subscribe(fmt.Sprintf("bench/pair/%d", i), cfg.qos); err != nil {
			return res, err
		}
		subs = append(subs, c)
		t := newTally(false)
		tallies = append(tallies, t)
		go c.receive(t)
	}
	crossNodes(cfg)
	pubs, err := startPublishers(cfg, cfg.pairs, func(i int) string { return fmt.Sprintf("bench/pair/%d", i) })
	if err != nil {
		return res, err
	}
	return runFlow(cfg, res, pubs, subs, tallies, 1)
}

// connectRate opens and closes connections from cfg.connectors goroutines.
func connectRate(cfg config) (result, error) {
	var res result
	res.set("scenario", "connect")
	var n, failed atomic.Int64
	// With --pid, the broker's CPU time per connection too: on a shared
	// two-core machine the rate also depends on how much CPU this client
	// leaves, and CPU per connection is the steadier comparison.
	var cpuBefore time.Duration
	if cfg.pid != 0 {
		var err error
		if cpuBefore, err = cpuTime(cfg.pid); err != nil {
			return res, err
		}
	}
	stop := time.Now().Add(cfg.duration)
	var wg sync.WaitGroup
	for w := 0; w < cfg.connectors; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; time.Now().Before(stop); i++ {
				c, err := dial(cfg.addr, fmt.Sprintf("bench-c-%d-%d-%d", os.Getpid(), w, i), cfg.level, smallBuf)
				if err != nil {
					failed.Add(1)
					continue
				}
				c.close()
				n.Add(1)
			}
		}(w)
	}
	wg.Wait()
	res.set("connects", n.Load())
	res.set("failed", failed.Load())
	res.set("rate", float64(n.Load())/cfg.duration.Seconds())
	if cfg.pid != 0 && n.Load() > 0 {
		after, err := cpuTime(cfg.pid)
		if err != nil {
			return res, err
		}
		res.set("cpu_us_per_conn", float64((after-cpuBefore).Microseconds())/float64(n.Load()))
	}
	return res, nil
}

// idle opens cfg.conns connections and reports the broker's RSS growth
// per connection.
func idle(cfg config) (result, error) {
	var res result
	res.set("scenario", "idle")
	if cfg.pid == 0 {
		return res, fmt.Errorf("idle needs --pid of the broker")
	}
	warm, err := dial(cfg.addr, fmt.Sprintf("bench-warm-%d", os.Getpid()), cfg.level, smallBuf)
	if err != nil {
		return res, err
	}
	defer warm.close()
	time.Sleep(500 * time.Millisecond)
	before, err := rss(cfg.pid)
	if err != nil {
		return res, err
	}
	conns := make([]*client, cfg.conns)
	var wg sync.WaitGroup
	var failed atomic.Int64
	per := (cfg.conns + 15) / 16
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w * per; i < (w+1)*per && i < cfg.conns; i++ {
				c, err := dial(cfg.addr, fmt.Sprintf("bench-idle-%d-%d", os.Getpid(), i), cfg.level, smallBuf)
				if err != nil {
					failed.Add(1)
					continue
				}
				conns[i] = c
			}
		}(w)
	}
	wg.Wait()
	time.Sleep(2 * time.Second)
	after, err := rss(cfg.pid)
	if err != nil {
		return res, err
	}
	ok := int64(cfg.conns) - failed.Load()
	res.set("conns", ok)
	res.set("failed", failed.Load())
	res.set("rss_before_kb", before)
	res.set("rss_after_kb", after)
	if ok > 0 {
		res.set("kb_per_conn", float64(after-before)/float64(ok))
	}
	for _, c := range conns {
		if c != nil {
			c.conn.Close()
		}
	}
	return res, nil
}

// cpuTime returns the user and system CPU time process pid has used
// (/proc/PID/stat fields 14 and 15, in clock ticks of 1/100 s).
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces: count from its ')'.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	var ticks int64
	for _, v := range f[11:13] {
		t, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, err
		}
		ticks += t
	}
	return time.Duration(ticks) * 10 * time.Millisecond, nil
}

func rss(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			return strconv.ParseInt(f[1], 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmRSS for pid %d", pid)
}

// crossNodes gives a cluster time to spread the subscribers' interest
// to the publishers' node before they start (NATS does that after
// SUBACK).
func crossNodes(cfg config) {
	if cfg.subAddr != cfg.addr {
		time.Sleep(500 * time.Millisecond)
	}
}
