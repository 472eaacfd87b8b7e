//go:build linux

package transport

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The event-loop transport serves plain TCP connections on Linux the way
// Mosquitto does, rather than with a goroutine per connection: a few
// goroutines (one per Lua VM) each wait for the sockets assigned to them
// (an epoll set, itself watched by Go's poller), read what arrives, hand the packets to the handlers
// and write the replies, all on the loop's goroutine. A connection that
// is waiting costs no goroutine and no stack, and a short-lived one costs
// no goroutine start, no stack growth for its CONNECT handler and no
// scheduler hand-off when its packets arrive: on two cores that was about
// a third of a connection's CPU (docs/performance.md, third round).
//
// What may block is kept off the loop:
//   - writes are non-blocking; a socket that is full is finished by a
//     writer goroutine, which waits for epoll to report it writable;
//   - backpressure (a subscriber that does not keep up with this
//     publisher) pauses reading the publisher's socket and waits on a
//     goroutine of its own, instead of blocking a reader;
//   - a connection whose writer is still busy when its reader ends is
//     finished on a goroutine;
//   - a handler that waits (a script's HTTP or database call: Conn.Blocking)
//     keeps the loop's goroutine, and the loop goes on in a new one: the
//     waiting goroutine finishes that connection's read, puts the
//     connection back in the loop's set and ends (release, reattach). The
//     rest of the turn's events go with the loop, so no edge is lost.
//
// Sockets are registered edge-triggered for input, peer close and
// output, once. A read that does not fill the buffer has emptied the
// socket (unless the peer closed: its end of input has no edge of its
// own and is read at once), so reads rarely end in EAGAIN; output edges
// come only after a write hit a full socket. Keep alive and the connect timeout are a sweep of the loop's
// connections every sweepEvery, so nothing per connection is a timer.

// eventLoopsAvailable: the event loops serve TCP listeners unless
// Config.GoroutinePerConn says otherwise.
const eventLoopsAvailable = true

// sweepEvery is how often a loop checks its connections' read deadlines:
// keep alive is enforced within this much of 1.5 times its value.
const sweepEvery = 100 * time.Millisecond

// readsPerTurn bounds how many full reads one connection gets before the
// loop serves the others: a publisher that never lets its socket empty
// must not starve the rest of its loop.
const readsPerTurn = 16

// eventLoops are the server's loops; conns go to loop FD % len, which is
// also their VM, so a loop only ever waits for its own VM's lock.
type eventLoops struct {
	loops     []*loop
	mu        sync.Mutex
	listeners []*rawListener
}

func (e *eventLoops) listener(i int) *rawListener {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.listeners[i]
}

// closeListeners stops accepting on every listener the loops serve.
func (s *Transport) closeRawListeners() {
	if s.evl == nil {
		return
	}
	s.evl.mu.Lock()
	rls := append([]*rawListener(nil), s.evl.listeners...)
	s.evl.mu.Unlock()
	for _, rl := range rls {
		rl.close()
	}
}

func (s *Transport) startEventLoops() error {
	s.evl = &eventLoops{}
	for i := 0; i < s.cfg.Loops; i++ {
		l, err := newLoop(s)
		if err != nil {
			s.stopEventLoops()
			return err
		}
		s.evl.loops = append(s.evl.loops, l)
		go l.run(&runner{gen: l.gen.Load(), f: l.f})
	}
	return nil
}

// newLoop makes a loop's epoll set and puts it in Go's poller: the loop
// parks there, as any goroutine waiting for a socket does, rather than
// in epoll_wait, where the runtime would take its P away and hand it
// back around every wait.
func newLoop(s *Transport) (*loop, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	if err := syscall.SetNonblock(epfd, true); err != nil {
		syscall.Close(epfd)
		return nil, os.NewSyscallError("fcntl", err)
	}
	f := os.NewFile(uintptr(epfd), "epoll")
	return &loop{srv: s, epfd: epfd, f: f, conns: map[uint64]*Conn{}, done: make(chan struct{})}, nil
}

// stopEventLoops ends the loops, after Shutdown has ended the connections.
func (s *Transport) stopEventLoops() {
	if s.evl == nil {
		return
	}
	for _, l := range s.evl.loops {
		l.stop.Store(true)
		if f := l.runnerF.Load(); f != nil {
			f.SetReadDeadline(time.Now()) // wakes it now
		}
	}
	for _, l := range s.evl.loops {
		<-l.done
	}
}

// loop is one event loop.
type loop struct {
	srv  *Transport
	epfd int
	f    *os.File // epfd, in Go's poller; each runner waits on a duplicate of its own
	stop atomic.Bool
	done chan struct{}

	// The loop's goroutine is its runner; gen counts runners, so that one
	// which gave the loop away (release) sees it no longer owns it.
	gen     atomic.Uint64
	runnerF atomic.Pointer[os.File] // the owner's file, for stop to wake
	// The runner's place in its turn, for release to hand the rest on:
	// events[evI] is being handled, of evN; moreCur[moreI] likewise.
	evs      []syscall.EpollEvent
	evN, evI int
	moreCur  []*Conn
	moreI    int
	spare    []*os.File // duplicates of epfd that former runners left (mu)

	mu    sync.Mutex
	conns map[uint64]*Conn // by Conn.FD: epoll reports the ID, not the fd, which the kernel reuses

	events [256]syscall.EpollEvent
	more   []*Conn // connections cut off at readsPerTurn, with input left
	// Listeners taken out of the set after accept failed (out of file
	// descriptors and the like), until acceptPause (monoNow): a listener
	// with connections waiting stays readable, and the loop would spin.
	paused      []*rawListener
	acceptPause int64
}

// listenerPad marks a listening socket's epoll events in the high half of
// their data (its low half is the listener's index); connections' IDs
// never reach it.
const listenerPad = -1 << 31

// rawListener is a TCP listener the event loops accept on themselves,
// with accept4, so accepted sockets never enter Go's poller (registering
// them there and taking them out again costs two epoll_ctl calls each)
// and no accepting goroutine is woken per connection. Every loop waits on
// it, EPOLLEXCLUSIVE so one loop wakes per connection; the connection
// then goes to its own loop (serveRaw).
type rawListener struct {
	srv   *Transport
	ln    net.Listener
	ls    *listenerState
	mu    sync.RWMutex // held for writing to close fd, which accepts hold for reading
	fd    int          // a duplicate of the listener's descriptor: ours to close
	shut  bool
	done  chan struct{}
	index int

	failures atomic.Int64 // accepts that failed since the last warning
	lastWarn atomic.Int64 // monoNow of the last warning; 0: none yet
}

// acceptRaw serves a TCP listener with the event loops until it is
// closed. It reports false if the listener cannot be used this way.
func (s *Transport) acceptRaw(ln net.Listener, ls *listenerState) bool {
	tl, ok := ln.(*net.TCPListener)
	if !ok || s.evl == nil {
		return false
	}
	sc, err := tl.SyscallConn()
	if err != nil {
		return false
	}
	fd := -1
	sc.Control(func(lfd uintptr) {
		// Accepted sockets inherit TCP_NODELAY from the listener, so
		// none needs its own setsockopt. Replies are batched per read
		// already; Nagle would only hold the next batch back.
		syscall.SetsockoptInt(int(lfd), syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
		fd, err = dupCloexec(int(lfd))
	})
	if err != nil {
		return false
	}
	rl := &rawListener{srv: s, ln: ln, ls: ls, fd: fd, done: make(chan struct{})}
	s.evl.mu.Lock()
	rl.index = len(s.evl.listeners)
	s.evl.listeners = append(s.evl.listeners, rl)
	s.evl.mu.Unlock()
	registered := 0
	for _, l := range s.evl.loops {
		if err := rl.register(l); err != 0 {
			s.cfg.Log.WithError(os.NewSyscallError("epoll_ctl", err)).Warn("an event loop cannot accept on " + ln.Addr().String())
			continue
		}
		registered++
	}
	if registered == 0 {
		// Go's accept serves it, with a reader goroutine per connection.
		rl.close()
		return false
	}
	<-rl.done
	return true
}

// epollExclusive is EPOLLEXCLUSIVE (Linux 4.5), which package syscall
// does not name.
const epollExclusive = 1 << 28

// register puts the listener in a loop's set.
func (rl *rawListener) register(l *loop) syscall.Errno {
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | epollExclusive}
	ev.Fd, ev.Pad = int32(rl.index), listenerPad
	err := rawEpollCtl(l.epfd, syscall.EPOLL_CTL_ADD, rl.fd, &ev)
	if err == syscall.EINVAL {
		// A kernel before 4.5: every loop wakes for a new connection,
		// and all but one find nothing to accept.
		ev.Events = syscall.EPOLLIN
		err = rawEpollCtl(l.epfd, syscall.EPOLL_CTL_ADD, rl.fd, &ev)
	}
	return err
}

func dupCloexec(fd int) (int, error) {
	nfd, _, errno := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_DUPFD_CLOEXEC, 0)
	if errno != 0 {
		return -1, os.NewSyscallError("fcntl", errno)
	}
	return int(nfd), nil
}

// close stops accepting: the duplicate descriptor is closed (which takes
// it out of every epoll set) once no loop is accepting on it.
func (rl *rawListener) close() {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	if !rl.shut {
		rl.shut = true
		syscall.Close(rl.fd)
		close(rl.done)
	}
}

// accept takes the connections waiting on the listener.
func (rl *rawListener) accept(l *loop) {
	s := rl.srv
	rl.mu.RLock()
	defer rl.mu.RUnlock()
	var sa syscall.RawSockaddrAny
	for !rl.shut {
		fd, err := acceptFn(rl.fd, &sa)
		switch err {
		case 0:
			s.serveRaw(fd, peerAddrOf(&sa), rl.ln.Addr(), rl.ls)
			continue
		case syscall.EAGAIN:
			return
		case syscall.EINTR, syscall.ECONNABORTED:
			continue
		}
		// Out of file descriptors and the like: the waiting
		// connections keep the listener readable, so it leaves this
		// loop's set until the next sweep rather than have the loop
		// spin, as net/http's accept backs off. Logged at most every
		// acceptWarnEvery, with the count.
		rl.failures.Add(1)
		if now, last := monoNow(), rl.lastWarn.Load(); last == 0 || now-last >= int64(acceptWarnEvery) {
			rl.lastWarn.Store(now)
			s.cfg.Log.WithError(os.NewSyscallError("accept4", err)).WithField("failures", rl.failures.Swap(0)).Warn("accept failed; retrying every " + sweepEvery.String())
		}
		rawEpollCtl(l.epfd, syscall.EPOLL_CTL_DEL, rl.fd, nil)
		l.paused = append(l.paused, rl)
		l.acceptPause = monoNow() + int64(sweepEvery)
		return
	}
}

// acceptWarnEvery spaces the warnings of a listener whose accepts fail.
const acceptWarnEvery = 10 * time.Second

// acceptFn is rawAccept; tests make it fail.
var acceptFn = rawAccept

// resumeAccept puts the listeners accept failed on back in the loop's set
// once their pause is over; epoll then reports the connections waiting.
func (l *loop) resumeAccept(now int64) {
	if len(l.paused) == 0 || now < l.acceptPause {
		return
	}
	for i, rl := range l.paused {
		rl.mu.RLock()
		if !rl.shut {
			if err := rl.register(l); err != 0 {
				l.srv.cfg.Log.WithError(os.NewSyscallError("epoll_ctl", err)).Warn("an event loop stops accepting on " + rl.ln.Addr().String())
			}
		}
		rl.mu.RUnlock()
		l.paused[i] = nil
	}
	l.paused = l.paused[:0]
}

// serveRaw is ServeConn for an accepted socket: the connection goes to an
// event loop.
func (s *Transport) serveRaw(fd int, peer peerAddr, laddr net.Addr, ls *listenerState) {
	if !s.admit(ls, peer.String) {
		rawClose(fd)
		return
	}
	id := int(s.nextFD.Add(1))
	l := s.evl.loops[id%len(s.evl.loops)]
	rc := &rawConn{fd: fd, id: uint64(id), loop: l, peer: peer, laddr: laddr, reading: true}
	c := newConn(s, id, rc)
	c.ls = ls
	c.raw = rc
	rc.written = &c.written
	c.rd = c.newReader()
	rc.deadline.Store(c.readDeadline())
	// Known to the server and to its loop before epoll can report it.
	s.track(c)
	l.mu.Lock()
	l.conns[uint64(id)] = c
	l.mu.Unlock()
	ev := rc.event()
	if err := rawEpollCtl(l.epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != 0 {
		// Out of kernel memory or watches: no loop will see the
		// socket, so the connection ends here.
		s.cfg.Log.WithError(err).Warn("epoll_ctl add failed")
		c.mu.Lock()
		c.closing, c.reason = true, CloseNetworkError
		c.closingNow.Store(true)
		c.mu.Unlock()
		rc.closeFd()
		c.closed(CloseNetworkError)
	}
}

// runner is one goroutine's turn at running a loop.
type runner struct {
	gen uint64
	f   *os.File // epfd or a duplicate: the runner parks in Go's poller on it
	// What the runner before it left of its turn (release).
	events []syscall.EpollEvent
	more   []*Conn
}

func (l *loop) owns(r *runner) bool { return l.gen.Load() == r.gen }

func (l *loop) run(r *runner) {
	sc, err := r.f.SyscallConn()
	if err != nil {
		l.srv.cfg.Log.WithError(err).Error("event loop cannot wait")
		return
	}
	l.runnerF.Store(r.f)
	if l.stop.Load() {
		r.f.SetReadDeadline(time.Now()) // stop may have missed this file
	}
	next := monoNow() + int64(sweepEvery)
	r.f.SetReadDeadline(time.Now().Add(sweepEvery))
	// The turn the runner before left: its more go first, as they
	// would have.
	l.more = append(r.more, l.more...)
	if len(r.events) > 0 {
		l.handle(r, r.events, len(r.events))
	}
	r.events, r.more = nil, nil
	poll := func(uintptr) bool { return l.poll(r) }
	for !l.stop.Load() && l.owns(r) {
		err := sc.Read(poll)
		if !l.owns(r) {
			break
		}
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			l.srv.cfg.Log.WithError(err).Error("event loop wait failed")
			time.Sleep(10 * time.Millisecond)
		}
		if now := monoNow(); now >= next {
			l.sweep(r, now)
			if !l.owns(r) {
				break
			}
			l.resumeAccept(now)
			next = now + int64(sweepEvery)
			if !l.stop.Load() {
				r.f.SetReadDeadline(time.Now().Add(sweepEvery))
			}
		}
	}
	if !l.owns(r) {
		// Gave the loop away, and has finished what it waited for.
		l.putFile(r.f)
		return
	}
	// Shutdown gave up waiting for these: their sockets close with the
	// loop.
	l.closeAll()
	l.mu.Lock()
	for _, f := range l.spare {
		f.Close()
	}
	l.spare = nil
	l.mu.Unlock()
	if r.f != l.f {
		r.f.Close()
	}
	l.f.Close()
	close(l.done)
}

// poll handles the events ready now and reports whether there were any
// (false: wait for the next).
func (l *loop) poll(r *runner) bool {
	n, err := rawEpollPoll(l.epfd, l.events[:])
	if err != 0 && err != syscall.EINTR {
		l.srv.cfg.Log.WithError(err).Error("epoll_wait failed")
		return true
	}
	if n <= 0 && len(l.more) == 0 {
		return false
	}
	if !l.handle(r, l.events[:], n) {
		return true
	}
	if more := l.more; len(more) > 0 {
		l.more = nil
		l.moreCur = more
		for i, c := range more {
			l.moreI = i
			more[i] = nil
			l.readable(c, false)
			if !l.owns(r) {
				return true
			}
		}
		l.moreCur = nil
	}
	return true
}

// handle handles events[:n] and reports whether r still runs the loop.
func (l *loop) handle(r *runner, events []syscall.EpollEvent, n int) bool {
	l.evs, l.evN = events, n
	for i := 0; i < n; i++ {
		l.evI = i
		ev := &events[i]
		if ev.Pad == listenerPad {
			l.srv.evl.listener(int(ev.Fd)).accept(l)
			continue
		}
		l.mu.Lock()
		c := l.conns[uint64(uint32(ev.Fd))|uint64(uint32(ev.Pad))<<32]
		l.mu.Unlock()
		if c == nil {
			continue
		}
		if ev.Events&(syscall.EPOLLOUT|syscall.EPOLLERR|syscall.EPOLLHUP) != 0 {
			c.raw.writable()
		}
		if ev.Events&(syscall.EPOLLIN|syscall.EPOLLRDHUP|syscall.EPOLLERR|syscall.EPOLLHUP) != 0 {
			l.readable(c, ev.Events&(syscall.EPOLLRDHUP|syscall.EPOLLERR|syscall.EPOLLHUP) != 0)
			if !l.owns(r) {
				return false
			}
		}
	}
	l.evN = 0
	return true
}

// release is Blocking on the loop's runner, in c's receiver: the runner
// is about to wait. c leaves the loop's set until its goroutine has
// handled its read (reattach), and the loop goes on in a new runner with
// the rest of this turn. It reports false when no new runner could be
// made (out of file descriptors): the loop then waits with the handler.
func (l *loop) release(c *Conn) bool {
	f := l.getFile()
	if f == nil {
		return false
	}
	rc := c.raw
	rc.detached.Store(true)
	rc.deadline.Store(0)
	rc.onLoop = false
	next := &runner{f: f}
	if l.evN > l.evI+1 {
		next.events = append([]syscall.EpollEvent(nil), l.evs[l.evI+1:l.evN]...)
	}
	l.evN = 0
	if l.moreCur != nil {
		next.more = append(next.more, l.moreCur[l.moreI+1:]...)
		l.moreCur = nil
	}
	next.more = append(next.more, l.more...)
	l.more = nil
	next.gen = l.gen.Add(1)
	go l.run(next)
	return true
}

// reattach puts a connection whose handler waited (release) back in the
// loop's set, on the goroutine that waited, once its read is handled: its
// output is written, slow receivers waited for, and epoll reports what
// arrived meanwhile.
func (l *loop) reattach(c *Conn) {
	c.batch.flushAndWait()
	rc := c.raw
	rc.deadline.Store(c.readDeadline())
	rc.detached.Store(false)
	rc.resume()
}

// getFile returns a duplicate of the loop's epoll descriptor for a new
// runner to wait on, or nil.
func (l *loop) getFile() *os.File {
	l.mu.Lock()
	if n := len(l.spare); n > 0 {
		f := l.spare[n-1]
		l.spare = l.spare[:n-1]
		l.mu.Unlock()
		return f
	}
	l.mu.Unlock()
	fd, err := dupCloexec(l.epfd)
	if err != nil {
		l.srv.cfg.Log.WithError(err).Warn("event loop cannot hand over to a new goroutine; it waits with the handler")
		return nil
	}
	return os.NewFile(uintptr(fd), "epoll")
}

// maxSpareFiles bounds the duplicates a loop keeps for its next runners.
const maxSpareFiles = 16

// putFile keeps a former runner's file for the next one.
func (l *loop) putFile(f *os.File) {
	if f == l.f {
		// The loop's own descriptor: it closes with the loop, and a
		// file in the poller has no second owner.
		return
	}
	f.SetReadDeadline(time.Time{})
	l.mu.Lock()
	if len(l.spare) < maxSpareFiles && !l.stop.Load() {
		l.spare = append(l.spare, f)
		f = nil
	}
	l.mu.Unlock()
	if f != nil {
		f.Close()
	}
}

func (l *loop) closeAll() {
	l.mu.Lock()
	left := make([]*Conn, 0, len(l.conns))
	for _, c := range l.conns {
		left = append(left, c)
	}
	l.mu.Unlock()
	for _, c := range left {
		c.raw.closeFd()
	}
}

// readable reads and handles what a connection sent. hangup is set when
// epoll reported the peer closed (or the socket hung up or failed): the
// end of input is then already queued behind the data, with no edge of
// its own to come, so reading goes on to it; and it is read even while
// the connection is paused.
func (l *loop) readable(c *Conn, hangup bool) {
	rc := c.raw
	rc.mu.Lock()
	ok := rc.reading && !rc.detached.Load() && (!rc.paused || hangup)
	rc.mu.Unlock()
	if !ok {
		return
	}
	// onLoop tells Blocking that c's receiver runs on the runner. Once
	// release gave the loop away (gen moved), c may be the next runner's
	// to serve: onLoop is left alone.
	gen := l.gen.Load()
	rc.onLoop = true
	l.read(c, hangup)
	if l.gen.Load() == gen {
		rc.onLoop = false
	}
}

// read is readable's work.
func (l *loop) read(c *Conn, hangup bool) {
	rc := c.raw
	r := c.rd
	got := false
	for i := 0; ; i++ {
		space := r.Space()
		n, errno := rawRead(rc.fd, space)
		if errno == syscall.EINTR {
			continue
		}
		if errno == syscall.EAGAIN {
			break // input another turn already read
		}
		got = true
		var err error
		if errno != 0 {
			err = os.NewSyscallError("read", errno)
		} else if n == 0 {
			err = io.EOF
		}
		if !c.afterRead(r, n, err) || !c.handleBuffered(r) {
			l.end(c)
			return
		}
		if rc.detached.Load() {
			// A handler waited, on this goroutine, and the loop went
			// on without it (release).
			l.reattach(c)
			return
		}
		if n < len(space) && !hangup {
			break // a short read emptied the socket: the next input is a new edge
		}
		if i+1 == readsPerTurn {
			l.more = append(l.more, c)
			break
		}
		if !l.flush(c) {
			return
		}
	}
	if got {
		l.flush(c)
	}
}

// flush is beforeRead for the loop: it writes what the handled packets
// produced and, when receivers are over their high-water mark, pauses the
// connection until they drain (see Batch.flushAndWait). It reports
// whether reading may go on.
func (l *loop) flush(c *Conn) bool {
	c.batch.flushOwn()
	rc := c.raw
	wait := c.batch.takePressure()
	if wait == nil {
		rc.deadline.Store(c.readDeadline())
		return true
	}
	rc.mu.Lock()
	rc.paused = true
	rc.mu.Unlock()
	rc.deadline.Store(0)
	go func() {
		for _, p := range wait {
			Wait(p)
		}
		rc.deadline.Store(c.readDeadline())
		rc.resume()
	}()
	return false
}

// readDeadline is the connection's next read deadline on the loops'
// clock (see Conn.readWait); 0 for none.
func (c *Conn) readDeadline() int64 {
	if c.closingNow.Load() {
		return 1 // long past: a lingering close waits for the loop to let go
	}
	if t := c.readWait(); t > 0 {
		return monoNow() + int64(t)
	}
	return 0
}

// sweep closes the connections whose read deadline passed.
func (l *loop) sweep(r *runner, now int64) {
	var late []*Conn
	l.mu.Lock()
	for _, c := range l.conns {
		if d := c.raw.deadline.Load(); d != 0 && now > d {
			late = append(late, c)
		}
	}
	l.mu.Unlock()
	for _, c := range late {
		c.raw.mu.Lock()
		reading := c.raw.reading && !c.raw.detached.Load()
		c.raw.mu.Unlock()
		if !reading {
			continue
		}
		c.raw.onLoop = true
		c.failRead(os.ErrDeadlineExceeded)
		l.end(c)
		if !l.owns(r) {
			return // the next runner's sweep sees the rest
		}
		c.raw.onLoop = false
	}
}

// end finishes a connection whose input ended, on the loop when that does
// not block.
func (l *loop) end(c *Conn) {
	rc := c.raw
	rc.deadline.Store(0)
	rc.mu.Lock()
	rc.reading = false
	if rc.shut {
		// The writer is done and has shut the socket down: no one
		// uses it any more.
		rc.closeFdLocked()
	}
	rc.mu.Unlock()
	c.batch.flushOthers()
	c.finish(true)
}

// rawConn is a socket served by an event loop. The loop reads it; writes
// come from whoever holds the connection's writer role; the descriptor is
// closed only once neither uses it, as the kernel hands the number to the
// next socket at once.
type rawConn struct {
	fd    int
	id    uint64 // the Conn's FD, the key of loop.conns
	loop  *loop
	peer  peerAddr
	laddr net.Addr

	deadline atomic.Int64 // read deadline, monoNow ns; 0: none
	// detached: a handler waits on the goroutine that was the loop's
	// (release), which reads the connection's buffer until reattach.
	detached atomic.Bool
	// onLoop is set while the runner calls c's receiver (readable,
	// sweep), by the runner only; offLoop once c's end goes on in a
	// goroutine of its own. See blocking.
	onLoop  bool
	offLoop atomic.Bool
	// written is the Conn's count of bytes written, which a writer
	// waiting on a full socket advances as the peer takes them in.
	written *atomic.Int64

	mu        sync.Mutex
	reading   bool          // the loop still reads the socket
	paused    bool          // backpressure: input is left unread
	shut      bool          // the writer is done and shut the socket down
	linger    bool          // shut down for writing only, to linger once the loop lets go
	closed    bool          // fd is closed
	wready    chan struct{} // output edges for a waiting writer; made on first wait
	wdeadline time.Time
	raddrNet  net.Addr
}

// errNotRead reports a Read on a loop-served socket, which only its loop
// reads.
var errNotRead = errors.New("engine: the event loop reads this socket")

func (rc *rawConn) Read([]byte) (int, error) { return 0, errNotRead }

// Write writes all of b, waiting for the socket to drain when it is full;
// only the writer role calls it, never the loop.
func (rc *rawConn) Write(b []byte) (int, error) {
	total := 0
	for {
		n, err := rc.tryWrite(b[total:])
		total += n
		rc.written.Add(int64(n))
		if err != nil {
			return total, &net.OpError{Op: "write", Net: "tcp", Addr: rc.RemoteAddr(), Err: err}
		}
		if total == len(b) {
			return total, nil
		}
		if err := rc.waitWritable(); err != nil {
			return total, err
		}
	}
}

// tryWrite writes what the socket takes now without waiting, for the
// loop's own writes.
func (rc *rawConn) tryWrite(b []byte) (int, error) {
	total := 0
	for total < len(b) {
		n, errno := rawWrite(rc.fd, b[total:])
		if n > 0 {
			total += n
			continue
		}
		switch errno {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return total, nil
		case 0:
			return total, io.ErrShortWrite
		}
		return total, os.NewSyscallError("write", errno)
	}
	return total, nil
}

// waitWritable waits for an output edge after a write found the socket
// full, or for the write deadline. The first time it only makes the
// channel edges are passed on through, and returns for the write to be
// tried again: an edge between the failed write and the channel's making
// was not passed on.
func (rc *rawConn) waitWritable() error {
	rc.mu.Lock()
	ch, dl := rc.wready, rc.wdeadline
	if ch == nil {
		rc.wready = make(chan struct{}, 1)
	}
	rc.mu.Unlock()
	if ch == nil {
		return nil
	}
	var timeout <-chan time.Time
	if !dl.IsZero() {
		t := time.NewTimer(time.Until(dl))
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-ch:
		return nil
	case <-timeout:
		return os.ErrDeadlineExceeded
	}
}

// blocking is Conn.Blocking for a socket a loop serves: on the runner,
// the loop goes on in a new one. Elsewhere (the goroutine a release left,
// or the one that finishes a closed connection) there is nothing to do;
// offLoop is checked first so that such a goroutine never reads onLoop,
// which the runner writes.
func (rc *rawConn) blocking(c *Conn) {
	if rc.offLoop.Load() || !rc.onLoop {
		return
	}
	rc.loop.release(c)
}

// finishingOffLoop is told that the connection's end goes on in a
// goroutine of its own (Conn.finish), which may run handlers.
func (rc *rawConn) finishingOffLoop() { rc.offLoop.Store(true) }

// event is the socket's epoll registration: edge-triggered input, the
// peer's close and output, tagged with the connection's ID.
func (rc *rawConn) event() syscall.EpollEvent {
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLOUT | -syscall.EPOLLET}
	ev.Fd, ev.Pad = int32(uint32(rc.id)), int32(rc.id>>32)
	return ev
}

// writable passes an output edge (or a hang-up) to a waiting writer.
func (rc *rawConn) writable() {
	rc.mu.Lock()
	ch := rc.wready
	rc.mu.Unlock()
	if ch != nil {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// resume reads the socket again after backpressure: re-arming it makes
// epoll report input that arrived meanwhile.
func (rc *rawConn) resume() {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.paused = false
	if rc.closed || !rc.reading {
		return
	}
	ev := rc.event()
	rawEpollCtl(rc.loop.epfd, syscall.EPOLL_CTL_MOD, rc.fd, &ev)
}

// Close is the writer role's close; see closeLinger.
func (rc *rawConn) Close() error {
	rc.closeLinger(false)
	return nil
}

// closeLinger is the writer role's close (Conn.shut): the descriptor
// closes now if the loop no longer reads it; otherwise the socket is
// shut down, the loop sees the end of input and closes it. With linger,
// only the write side is shut down, the loop lets go of the socket at its
// next sweep, and it lingers (linger.go) before it closes.
func (rc *rawConn) closeLinger(linger bool) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.shut || rc.closed {
		return
	}
	rc.shut = true
	rc.linger = linger
	if linger {
		rawShutdownWrite(rc.fd)
	}
	if !rc.reading {
		rc.closeFdLocked()
		return
	}
	if linger {
		rc.deadline.Store(1) // long past: the next sweep ends the reading
		return
	}
	rawShutdown(rc.fd)
}

// abort cuts the connection off from any goroutine: the socket is shut
// down and the loop and writer see errors; it is closed as usual.
func (rc *rawConn) abort() {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if !rc.closed {
		rawShutdown(rc.fd)
	}
}

func (rc *rawConn) closeFd() {
	rc.mu.Lock()
	rc.closeFdLocked()
	rc.mu.Unlock()
}

func (rc *rawConn) closeFdLocked() {
	if rc.closed {
		return
	}
	rc.closed = true
	if rc.linger {
		// Out of the loop's set, into Go's poller, to linger.
		rawEpollCtl(rc.loop.epfd, syscall.EPOLL_CTL_DEL, rc.fd, nil)
		t := rc.loop.srv
		t.lingerWG.Add(1)
		go t.lingerFd(rc.fd)
	} else {
		rawClose(rc.fd) // also takes it out of the epoll set
	}
	l := rc.loop
	l.mu.Lock()
	delete(l.conns, rc.id)
	l.mu.Unlock()
}

func (rc *rawConn) LocalAddr() net.Addr { return rc.laddr }

func (rc *rawConn) RemoteAddr() net.Addr {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.raddrNet == nil {
		rc.raddrNet = rc.peer.tcpAddr()
	}
	return rc.raddrNet
}

func (rc *rawConn) SetDeadline(t time.Time) error {
	rc.SetReadDeadline(t)
	return rc.SetWriteDeadline(t)
}

// SetReadDeadline is kept for net.Conn; the loop keeps the read deadline
// itself.
func (rc *rawConn) SetReadDeadline(t time.Time) error { return nil }

func (rc *rawConn) SetWriteDeadline(t time.Time) error {
	rc.mu.Lock()
	rc.wdeadline = t
	rc.mu.Unlock()
	// A writer waiting for the socket goes round and sees the deadline.
	rc.writable()
	return nil
}

// String is tcpAddr().String() without making the net.TCPAddr (four
// allocations): auth.lua asks for it on every anonymous CONNECT. An
// IPv4-mapped address prints as IPv4, as net.IP prints it.
func (a peerAddr) String() string {
	ip := netip.AddrFrom16(a.ip).Unmap()
	if a.v4 {
		ip = netip.AddrFrom4([4]byte(a.ip[:4]))
	}
	return netip.AddrPortFrom(ip, a.port).String()
}

func (rc *rawConn) remoteAddrString() string { return rc.peer.String() }

func (a peerAddr) tcpAddr() *net.TCPAddr {
	if a.v4 {
		return &net.TCPAddr{IP: net.IPv4(a.ip[0], a.ip[1], a.ip[2], a.ip[3]), Port: int(a.port)}
	}
	return &net.TCPAddr{IP: append(net.IP(nil), a.ip[:]...), Port: int(a.port)}
}
