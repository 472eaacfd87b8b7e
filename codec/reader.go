package codec

import (
	"bytes"
	"fmt"
	"io"
)

// Default buffer sizes of a Reader. A connection starts small, so ten
// thousand idle connections cost little, grows to hold the largest packet it
// is sent, and goes back to the small buffer once that packet is consumed.
const (
	DefaultReadBufferSize = 512
	maxKeptBufferSize     = 64 * 1024
)

// Reader decodes a stream of packets from an io.Reader such as a net.Conn.
// It handles packets split across reads at any byte and several packets in
// one read, and enforces MaxPacketSize from the fixed header, before reading
// (or allocating for) the body.
//
// A Reader is not safe for concurrent use. The byte fields of a packet it
// returns alias its buffer and are valid until the next ReadPacket.
type Reader struct {
	r io.Reader
	// MaxPacketSize is the largest packet accepted, counting the fixed
	// header; 0 means the protocol maximum.
	MaxPacketSize int
	// Version is the protocol level used to decode packets other than
	// CONNECT. ReadPacket sets it when it decodes a CONNECT.
	Version byte
	// FirstConnect refuses a first packet that is not a CONNECT as soon
	// as its first byte arrives ([MQTT-3.1.0-1]), rather than after the
	// bytes its length announces: a PROXY protocol header, an HTTP
	// request or TLS sent to a plain MQTT listener is answered at once.
	// It clears after the first packet.
	FirstConnect bool

	buf        []byte
	start, end int
	initial    int
	lastRead   int // bytes the last read returned, to size the buffer
}

// NewReader returns a Reader with an initial buffer of size bytes (0: the
// default).
func NewReader(r io.Reader, size int) *Reader {
	if size <= 0 {
		size = DefaultReadBufferSize
	}
	return &Reader{r: r, initial: size}
}

// Buffered returns the number of bytes read from the stream but not yet
// decoded.
func (r *Reader) Buffered() int { return r.end - r.start }

// ReadPacket reads and decodes the next packet into p. It returns io.EOF at a
// clean end of stream, io.ErrUnexpectedEOF when the stream ends inside a
// packet, an *Error for a packet that must be rejected (after which the
// stream cannot be resynchronised and should be closed), or the underlying
// reader's error.
func (r *Reader) ReadPacket(p *Packet) error {
	for {
		ok, err := r.Next(p)
		if ok || err != nil {
			return err
		}
		if err := r.fill(); err != nil {
			return err
		}
	}
}

// Next decodes the next packet already buffered into p. It returns false
// and no error when no whole packet is buffered yet: the caller then reads
// into Space and calls Advance. Together they let a connection's goroutine
// do the blocking read itself, with no codec frames on its stack while it
// waits, which keeps an idle connection's stack small.
func (r *Reader) Next(p *Packet) (bool, error) {
	hdr, total, err := r.buffered()
	if err != nil {
		// Refused from its fixed header: p holds nothing of an earlier
		// packet (the caller may reuse it), only the type.
		p.Reset()
		if r.end > r.start {
			p.Type = Type(r.buf[r.start] >> 4)
		}
		return false, err
	}
	if hdr == 0 {
		return false, nil
	}
	return true, r.decode(p, hdr, total)
}

// Space returns the free part of the buffer for the next read: room for
// the pending packet, sized to the traffic (see fill).
func (r *Reader) Space() []byte {
	if r.buf == nil {
		r.buf = make([]byte, r.initial)
	}
	if r.start == r.end {
		r.resize()
	}
	if _, total, err := r.buffered(); err == nil && total > 0 {
		r.makeRoom(total)
	} else {
		r.makeRoom(5)
	}
	return r.buf[r.end:]
}

// Advance records n bytes read into the slice Space returned.
func (r *Reader) Advance(n int) {
	r.end += n
	r.lastRead = n
}

// buffered parses the fixed header at the read position. hdr is 0 when
// the whole packet is not buffered yet; total is its size once the
// header is known.
func (r *Reader) buffered() (hdr, total int, err error) {
	if r.buf == nil {
		return 0, 0, nil
	}
	if r.FirstConnect && r.end > r.start && Type(r.buf[r.start]>>4) != CONNECT {
		return 0, 0, notConnect(r.buf[r.start:r.end])
	}
	remaining, h, err := parseHeader(r.buf[r.start:r.end])
	if err != nil || h == 0 {
		return 0, 0, err
	}
	total = h + int(remaining)
	if max := r.MaxPacketSize; max > 0 && total > max {
		// Enforced before the body is read, so a hostile length never
		// turns into an allocation.
		return 0, 0, tooLarge(total, max)
	}
	if r.end-r.start < total {
		return 0, total, nil
	}
	return h, total, nil
}

// notConnect is the error for a first packet that is not a CONNECT,
// naming what the bytes look like when they are a known other protocol.
func notConnect(b []byte) error {
	reason := "the first packet is not CONNECT"
	switch {
	case bytes.HasPrefix(b, []byte("PROXY ")) || bytes.HasPrefix(b, []byte("\r\n\r\n\x00\r\nQUIT\n")):
		reason += " but a PROXY protocol header (enable proxy_protocol on this listener if a proxy is in front)"
	case bytes.HasPrefix(b, []byte("GET ")):
		reason += " but an HTTP request (WebSocket clients need a ws:// or wss:// listener)"
	case b[0] == 0x16:
		reason += " but looks like a TLS handshake (TLS clients need an mqtts:// listener)"
	}
	return &Error{Code: ProtocolError, Field: "type", Reason: reason, Spec: "MQTT-3.1.0-1"}
}

func tooLarge(total, max int) error {
	return &Error{Code: PacketTooLarge, Field: "remaining_length",
		Reason: fmt.Sprintf("packet of %d bytes exceeds the maximum of %d", total, max), Spec: "5.0:MQTT-3.1.2-24"}
}

func (r *Reader) decode(p *Packet, hdr, total int) error {
	r.FirstConnect = false
	b := r.buf[r.start : r.start+total]
	r.start += total
	if r.start == r.end {
		r.start, r.end = 0, 0
	}
	err := DecodeBody(b[0], b[hdr:], r.Version, p)
	if err == nil && p.Type == CONNECT {
		r.Version = p.ProtocolLevel
	}
	return err
}

// makeRoom ensures the buffer can hold need bytes from r.start.
func (r *Reader) makeRoom(need int) {
	if need <= len(r.buf)-r.start {
		return
	}
	n := r.end - r.start
	if need <= len(r.buf) {
		copy(r.buf, r.buf[r.start:r.end])
	} else {
		size := len(r.buf) * 2
		if size < need {
			size = need
		}
		nb := make([]byte, size)
		copy(nb, r.buf[r.start:r.end])
		r.buf = nb
	}
	r.start, r.end = 0, n
}

// fill reads at least one byte into the free end of the buffer.
func (r *Reader) fill() error {
	space := r.Space()
	for {
		n, err := r.r.Read(space)
		r.Advance(n)
		if n > 0 {
			return nil
		}
		if err == io.EOF {
			if r.end > r.start {
				return io.ErrUnexpectedEOF
			}
			return io.EOF
		}
		if err != nil {
			return err
		}
	}
}

// resize, with the buffer empty, sizes it to the traffic, as nats-server
// does: doubled (up to 64 KiB) after a read that filled it, so a busy
// publisher is read in few syscalls, and back to the initial size after a
// small read, so an idle connection holds little memory.
func (r *Reader) resize() {
	r.start, r.end = 0, 0
	switch {
	case r.lastRead == len(r.buf) && len(r.buf) < maxKeptBufferSize:
		r.buf = make([]byte, 2*len(r.buf))
	case len(r.buf) > r.initial && r.lastRead < len(r.buf)/4:
		r.buf = make([]byte, r.initial)
	}
}
