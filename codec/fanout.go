package codec

// Fanout encodes one PUBLISH for many subscribers. Deliveries differ only in
// protocol level, QoS, retain flag and packet identifier, so Fanout encodes
// the message once per (level, QoS, retain) shape and then copies that
// encoding for each delivery, patching the packet identifier in the copy.
// The copy is the write into the subscriber's outbound buffer, which happens
// anyway; the topic, properties and payload are never re-encoded.
//
// Deliveries whose 5.0 properties differ from the message's own
// (subscription identifiers, a topic alias, a reduced message expiry) are
// encoded with Packet.Append instead.
//
// A Fanout is not safe for concurrent use.
type Fanout struct {
	msg   *Packet
	forms [2][3][2]fanoutForm // [level 3/4 or 5][qos][retain]
}

type fanoutForm struct {
	buf   []byte
	idOff int // offset of the packet identifier, 0 for QoS 0
	err   error
	done  bool
}

// NewFanout returns a Fanout for msg, which must not change while the
// Fanout is in use. msg.QoS, msg.Retain, msg.Dup and msg.PacketID are
// ignored: each delivery sets its own.
func NewFanout(msg *Packet) *Fanout { return &Fanout{msg: msg} }

// Reset reuses f for another message, keeping its buffers.
func (f *Fanout) Reset(msg *Packet) {
	f.msg = msg
	for i := range f.forms {
		for j := range f.forms[i] {
			for k := range f.forms[i][j] {
				ff := &f.forms[i][j][k]
				ff.buf, ff.idOff, ff.err, ff.done = ff.buf[:0], 0, nil, false
			}
		}
	}
}

// Append appends the message as delivered to a client at protocol level
// version with the given QoS, retain flag and packet identifier (ignored
// for QoS 0). DUP is never set: a first delivery is not a duplicate.
func (f *Fanout) Append(dst []byte, version, qos byte, retain bool, id uint16) ([]byte, error) {
	if qos > 2 {
		return dst, malformed("qos", "QoS 3", "MQTT-3.3.1-4")
	}
	lv := 0
	if version == V5 {
		lv = 1
	}
	r := 0
	if retain {
		r = 1
	}
	ff := &f.forms[lv][qos][r]
	if !ff.done {
		f.encode(ff, version, qos, retain)
	}
	if ff.err != nil {
		return dst, ff.err
	}
	start := len(dst)
	dst = append(dst, ff.buf...)
	if ff.idOff > 0 {
		dst[start+ff.idOff] = byte(id >> 8)
		dst[start+ff.idOff+1] = byte(id)
	}
	return dst, nil
}

func (f *Fanout) encode(ff *fanoutForm, version, qos byte, retain bool) {
	ff.done = true
	m := *f.msg // shallow copy: only the header fields change
	m.QoS, m.Retain, m.Dup = qos, retain, false
	m.PacketID = 1 // placeholder, patched per delivery
	if version != V5 {
		m.Properties = Properties{}
	}
	ff.buf, ff.err = m.Append(ff.buf[:0], version)
	if ff.err == nil && qos > 0 {
		_, hdr, _ := parseHeader(ff.buf)
		ff.idOff = hdr + 2 + len(m.Topic)
	}
}
