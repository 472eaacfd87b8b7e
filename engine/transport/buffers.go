package transport

// Outbound buffers. A connection writes its queue in rounds: the writer
// takes the queue's buffer and the senders append to the next one. The
// buffer of a round is kept for a later round (Conn.spare): up to
// spareMax always, up to bigSpareMax while the rounds are that large.
// Before, anything past 64 KiB was dropped after its round, so a
// connection that wrote that much every round grew a new buffer from
// nothing each time (16 KB payloads to 16 subscribers spent twice as long
// in growslice's copies as in encoding the packets). Now a round starts
// with room for the recent rounds' size (Conn.roundSize), and a large
// queue doubles ahead of the encoder (growOut).
//
// Buffers are never shared between connections: a pool shared by all
// connections was measured faster, but under 16 KB fan-in it handed out
// a buffer that a connection still used (subscribers received other
// bytes and were cut off), by a path not found; see the note on issue 20.
const (
	spareMax    = 64 << 10 // kept by an idle connection
	bigSpareMax = 4 << 20  // kept while the recent rounds are this large
)

// newBig returns an empty buffer with room for n bytes, rounded up to a
// power of two so that a round of about the same size fits again.
func newBig(n int) []byte {
	c := 1
	for c < n {
		c <<= 1
	}
	return make([]byte, 0, c)
}

// growOut returns b's bytes in a buffer of twice its capacity. append
// grows a large slice by a quarter at a time, so a queue that reaches a
// megabyte was copied some ten times over on the way; doubling ahead of
// the encoder copies each byte about once.
func growOut(b []byte) []byte {
	return append(make([]byte, 0, 2*cap(b)), b...)
}
