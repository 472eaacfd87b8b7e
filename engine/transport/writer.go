package transport

import "time"

// writeLoop writes whatever is queued in one call per round, so a burst of
// packets costs one syscall. It never holds mu during the write. Bytes
// queued through a Batch wait for its flush, whose signal starts a round.
// The goroutine exits when a round finds no new signal, and closes the
// socket once the connection is closing and its queue is written.
func (c *Conn) writeLoop() {
	defer c.t.wg.Done()
	c.writeRounds(false)
}

// writeRounds writes the queue round after round, the caller holding the
// writer role (writerOn). It ends when a round finds no new signal
// (giving the role up), or after closing the socket once the connection
// is closing and its queue is written. With handOff, it writes one round
// only and leaves any more to a writer goroutine: the reader that calls it
// must get back to reading.
func (c *Conn) writeRounds(handOff bool) {
	for {
		c.mu.Lock()
		buf, closing := c.out, c.closing
		c.out = c.spare[:0]
		c.spare = nil
		c.writing = len(buf)
		c.pending = false
		c.mu.Unlock()
		off := 0
		if handOff && c.raw != nil && len(buf) > 0 {
			// An event loop writes what the socket takes now and
			// leaves the rest to a writer goroutine: it must not wait.
			n, err := c.raw.tryWrite(buf)
			if err != nil {
				c.Close(CloseNetworkError)
				c.shut()
				return
			}
			c.written.Add(int64(n))
			c.t.Stats.BytesOut.Add(int64(n))
			if off = n; off < len(buf) {
				c.t.wg.Add(1)
				go func() {
					defer c.t.wg.Done()
					if c.write(buf, off) {
						c.writeRounds(false)
					}
				}()
				return
			}
		}
		if !c.write(buf, off) {
			return
		}
		c.mu.Lock()
		if c.pending || (c.closing && len(c.out) > 0) || (c.closing && !closing) {
			c.mu.Unlock()
			if handOff {
				c.t.wg.Add(1)
				go c.writeLoop()
				return
			}
			continue
		}
		if c.closing {
			c.mu.Unlock()
			c.shut()
			return
		}
		c.writerOn = false
		c.mu.Unlock()
		return
	}
}

// writeOwn is called by the connection's reader before it waits for more
// input: from now on signals start a writer goroutine again, and what is
// queued (the replies to the packets just handled, above all) is written
// right here unless a writer goroutine is at it. No goroutine to start
// and no hand-off for the common request/reply case, as nats-server's read
// loop flushes its own client inline.
func (c *Conn) writeOwn() {
	c.mu.Lock()
	c.readerActive = false
	if c.writerOn {
		// A writer goroutine is finishing a round: it must go round
		// again for what the handlers just queued.
		c.pending = true
		c.mu.Unlock()
		return
	}
	if len(c.out) == 0 && !c.pending && !c.closing {
		c.mu.Unlock()
		return
	}
	c.writerOn = true
	c.mu.Unlock()
	c.writeRounds(true)
}

// write writes buf[off:], a buffer taken from the queue, and recycles
// buf. On an error it closes the connection and reports false.
func (c *Conn) write(buf []byte, off int) bool {
	for off < len(buf) {
		// A socket an event loop serves counts its progress as the peer
		// takes bytes in (rawConn.Write); another is written in chunks,
		// so that progress (Conn.written) shows while a slow peer takes a
		// large queue in.
		end := len(buf)
		if c.raw == nil {
			end = min(end, off+writeChunk)
		}
		n, err := c.nc.Write(buf[off:end])
		if c.raw == nil {
			c.written.Add(int64(n))
		}
		c.t.Stats.BytesOut.Add(int64(n))
		if err != nil {
			c.Close(CloseNetworkError)
			c.shut()
			return false
		}
		off = end
	}
	c.recycle(buf)
	return true
}

// writeChunk is the most one write call of a goroutine-served connection
// takes of the queue.
const writeChunk = 64 << 10

// shut closes the socket once everything queued is written; it ends the
// reader's wait too. When the broker ends the connection, the socket is
// only half-closed and lingers (see linger.go).
func (c *Conn) shut() {
	c.shutOnce.Do(func() {
		c.mu.Lock()
		reason := c.reason
		c.mu.Unlock()
		if c.raw != nil {
			c.raw.closeLinger(lingers(reason))
		} else if cw := closeWriter(c.nc); cw != nil && lingers(reason) && cw.CloseWrite() == nil {
			c.lingering = true
			// Wake the reader: it tells the layer above the connection
			// closed, then lingers.
			c.nc.SetReadDeadline(time.Now())
		} else {
			c.nc.Close()
		}
		close(c.done)
	})
}

// recycle keeps a written buffer as the next spare unless it grew large,
// so an idle connection does not keep a burst's memory.
func (c *Conn) recycle(buf []byte) {
	c.mu.Lock()
	c.writing = 0
	if c.spare == nil && cap(buf) <= 64*1024 {
		c.spare = buf[:0]
	}
	if len(c.out) < c.lowWater() {
		c.drained.Signal()
	}
	c.mu.Unlock()
}
