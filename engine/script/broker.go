package script

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mqttlua/broker/codec"
	"github.com/mqttlua/broker/engine/broker"
	"github.com/mqttlua/broker/engine/topic"
	"github.com/mqttlua/broker/engine/transport"
	lua "github.com/yuin/gopher-lua"
	"golang.org/x/crypto/bcrypt"
)

// The `broker` Lua module. Functions that take an fd act on a connection
// of the calling handler's server; they raise on misuse and return nil,
// err when the connection is gone.

// openBroker builds the broker module for one VM.
func (vm *VM) openBroker() *lua.LTable {
	L := vm.L
	b := &binding{k: vm.pool.broker, vm: vm}
	return L.SetFuncs(L.NewTable(), map[string]lua.LGFunction{
		"accept":          b.accept,
		"route":           b.route,
		"ack":             b.ack,
		"subscribe":       b.subscribe,
		"unsubscribe":     b.unsubscribe,
		"publish":         b.publish,
		"clients":         b.clients,
		"retained":        b.retained,
		"retained_list":   b.retainedList,
		"retained_delete": b.retainedDelete,
		"client":          b.client,
		"kick":            b.kick,
		"configure":       b.configure,
		"stats":           b.stats,
		"hash_password":   b.hashPassword,
		"check_password":  b.checkPassword,
		"authenticate":    b.authenticate,
		"read_passwords":  b.readPasswords,
		"match":           b.match,
		"covers":          b.covers,
	})
}

type binding struct {
	k  *broker.Broker
	vm *VM
}

// conn returns the live connection for the fd argument, or pushes nil,
// "closed" and returns nil.
func (b *binding) conn(L *lua.LState, n int) *broker.Client {
	fd := L.CheckInt(n)
	// Most calls act on the connection whose handler is running: no
	// lookup of the shared fd map for them.
	c := b.vm.cur
	if c == nil || c.FD != fd {
		c = b.k.Client(fd)
	}
	if c == nil || c.Closing() {
		return nil
	}
	return c
}

func closed(L *lua.LState) int {
	L.Push(lua.LNil)
	L.Push(lua.LString("closed"))
	return 2
}

// broker.accept(fd, data [, connack_properties]) -> session_present | nil, err
func (b *binding) accept(L *lua.LState) int {
	b.vm.requireHandler(L, "broker.accept", L.CheckInt(1), codec.CONNECT, codec.AUTH)
	c := b.conn(L, 1)
	t := L.CheckTable(2)
	var extra *codec.Properties
	if pt, ok := L.Get(3).(*lua.LTable); ok {
		extra = &codec.Properties{}
		v, err := FromLua(pt)
		if err == nil {
			err = codec.PropertiesFromMap(v, extra, "properties")
		}
		if err == nil {
			err = extra.Check(codec.CONNACK)
		}
		if err != nil {
			L.ArgError(3, err.Error())
		}
	}
	if c == nil {
		return closed(L)
	}
	p, _ := b.packetArg(L, 2, t, codec.CONNECT, true)
	if p.Will != nil && p.Will.Topic == "" {
		L.ArgError(2, "will.topic must be a topic name")
	}
	if p.ProtocolLevel == 0 {
		p.ProtocolLevel = c.Version()
	}
	present, err := b.k.Accept(c, p, extra, b.vm.Batch())
	if err != nil {
		L.Push(lua.LNil)
		L.Push(lua.LString(err.Error()))
		return 2
	}
	L.Push(lua.LBool(present))
	return 1
}

// packetArg reads argument n, a packet table, into the VM's scratch
// packet (one per VM: bindings run under the VM's lock, and the broker
// copies what it keeps), through the data mapping. With requireType the
// table's type (or cmd) must be want; otherwise it may be left out.
func (b *binding) packetArg(L *lua.LState, n int, t *lua.LTable, want codec.Type, requireType bool) (p *codec.Packet, compounds bool) {
	typ := t.RawGetString("type")
	if typ == lua.LNil {
		typ = t.RawGetString("cmd")
	}
	if typ != lua.LNumber(want) && (requireType || typ != lua.LNil) {
		L.ArgError(n, want.String()+" data expected")
	}
	p = &b.vm.scratch
	*p = codec.Packet{Type: want}
	compounds, err := readTable(t, p)
	if err != nil {
		L.ArgError(n, err.Error())
	}
	return p, compounds
}

// messageArg reads argument n, a PUBLISH table, as a message to route,
// and its message_id.
func (b *binding) messageArg(L *lua.LState, n int, t *lua.LTable) (*broker.Message, uint16) {
	p, compounds := b.packetArg(L, n, t, codec.PUBLISH, false)
	if err := codec.CheckTopicName(p.Topic); err != nil {
		L.ArgError(n, err.Error())
	}
	// The payload aliases the Lua string's bytes, which nothing writes.
	m := &broker.Message{Topic: p.Topic, Payload: p.Payload, QoS: p.QoS, Retain: p.Retain, Owned: true}
	if compounds {
		props := p.Properties
		// Per-hop properties are not forwarded (5.0 §3.3.2.3.4, §3.3.4).
		props.Clear(codec.PropTopicAlias)
		props.Clear(codec.PropSubscriptionID)
		m.Props = &props
	}
	return m, p.PacketID
}

// requireSession raises when c was not accepted as a session: the
// script answered its CONNECT itself (a raw CONNACK), so the broker has no
// session to subscribe. Mixing the two layers this way used to refuse
// every filter without a word.
func requireSession(L *lua.LState, fn string, c *broker.Client, packet string) {
	if !c.HasSession() {
		L.RaiseError("%s: fd %d has no session: its CONNECT was answered without broker.accept. "+
			"Accept it with broker.accept to use the broker's sessions, or answer %s yourself with server:send", fn, c.FD, packet)
	}
}

// broker.route(fd, data) -> number of sessions | nil, "closed"
// Acknowledges and routes a PUBLISH received from fd.
func (b *binding) route(L *lua.LState) int {
	b.vm.requireHandler(L, "broker.route", L.CheckInt(1), codec.PUBLISH)
	c := b.conn(L, 1)
	t := L.CheckTable(2)
	m, id := b.messageArg(L, 2, t)
	if c == nil {
		return closed(L)
	}
	if m.QoS > 0 && id == 0 {
		L.ArgError(2, "message_id missing for QoS > 0")
	}
	L.Push(lua.LNumber(b.k.PublishVia(c, m, id, b.vm.Batch(), b.vm.deliverHook())))
	return 1
}

// broker.ack(fd, data [, code]) acknowledges a PUBLISH without routing it.
func (b *binding) ack(L *lua.LState) int {
	b.vm.requireHandler(L, "broker.ack", L.CheckInt(1), codec.PUBLISH)
	c := b.conn(L, 1)
	t := L.CheckTable(2)
	code := codec.ReasonCode(L.OptInt(3, int(codec.Success)))
	if c == nil {
		return closed(L)
	}
	qos, _ := t.RawGetString("qos").(lua.LNumber)
	id, _ := t.RawGetString("message_id").(lua.LNumber)
	if qos > 0 && !code.ValidFor(codec.PUBACK) {
		L.ArgError(3, fmt.Sprintf("0x%02X is not a PUBACK/PUBREC reason code", byte(code)))
	}
	b.k.Ack(c, byte(qos), uint16(id), code, b.vm.Batch())
	L.Push(lua.LTrue)
	return 1
}

// broker.subscribe(fd, data [, codes]) -> granted codes
func (b *binding) subscribe(L *lua.LState) int {
	b.vm.requireHandler(L, "broker.subscribe", L.CheckInt(1), codec.SUBSCRIBE)
	c := b.conn(L, 1)
	t := L.CheckTable(2)
	var codes []codec.ReasonCode
	if ct, ok := L.Get(3).(*lua.LTable); ok {
		for i := 1; i <= ct.Len(); i++ {
			n, ok := ct.RawGetInt(i).(lua.LNumber)
			if !ok || n < 0 || n > 255 {
				L.ArgError(3, fmt.Sprintf("codes[%d] must be a QoS or a reason code", i))
			}
			codes = append(codes, codec.ReasonCode(n))
		}
	}
	if c == nil {
		return closed(L)
	}
	p, err := TablePacket(t, codec.V5)
	if err != nil || p.Type != codec.SUBSCRIBE {
		L.ArgError(2, "SUBSCRIBE data expected")
	}
	requireSession(L, "broker.subscribe", c, "SUBSCRIBE")
	out := b.k.SubscribeVia(c, p, codes, b.vm.Batch(), b.vm.deliverHook())
	res := L.CreateTable(len(out), 0)
	for _, code := range out {
		res.Append(lua.LNumber(code))
	}
	L.Push(res)
	return 1
}

// broker.unsubscribe(fd, data)
func (b *binding) unsubscribe(L *lua.LState) int {
	b.vm.requireHandler(L, "broker.unsubscribe", L.CheckInt(1), codec.UNSUBSCRIBE)
	c := b.conn(L, 1)
	t := L.CheckTable(2)
	if c == nil {
		return closed(L)
	}
	p, err := TablePacket(t, codec.V5)
	if err != nil || p.Type != codec.UNSUBSCRIBE {
		L.ArgError(2, "UNSUBSCRIBE data expected")
	}
	requireSession(L, "broker.unsubscribe", c, "UNSUBSCRIBE")
	b.k.Unsubscribe(c, p, b.vm.Batch())
	L.Push(lua.LTrue)
	return 1
}

// broker.publish{topic=, message=, qos=, retain=} -> number of sessions
func (b *binding) publish(L *lua.LState) int {
	m, _ := b.messageArg(L, 1, L.CheckTable(1))
	L.Push(lua.LNumber(b.k.InjectVia(m, b.vm.Batch(), b.vm.deliverHook())))
	return 1
}

func clientTable(L *lua.LState, ci broker.ClientInfo) *lua.LTable {
	t := L.CreateTable(0, 7)
	t.RawSetString("client_id", lua.LString(ci.ClientID))
	t.RawSetString("connected", lua.LBool(ci.Connected))
	if ci.Connected {
		t.RawSetString("fd", lua.LNumber(ci.FD))
	}
	t.RawSetString("persistent", lua.LBool(ci.Persistent))
	if ci.UserName != "" {
		t.RawSetString("user_name", lua.LString(ci.UserName))
	}
	t.RawSetString("inflight", lua.LNumber(ci.Inflight))
	t.RawSetString("queued", lua.LNumber(ci.Queued))
	subs := L.CreateTable(0, len(ci.Subscriptions))
	for f, q := range ci.Subscriptions {
		subs.RawSetString(f, lua.LNumber(q))
	}
	t.RawSetString("subscriptions", subs)
	return t
}

// broker.clients([{prefix = "dev-", after = id, limit = n}]) -> list of
// client tables, next
// Sorted by client id; with a limit, next is the after of the following
// page (nil at the end).
func (b *binding) clients(L *lua.LState) int {
	var prefix, after string
	limit := 0
	if opts, ok := L.Get(1).(*lua.LTable); ok {
		prefix = lua.LVAsString(opts.RawGetString("prefix"))
		after = lua.LVAsString(opts.RawGetString("after"))
		if n, ok := opts.RawGetString("limit").(lua.LNumber); ok {
			if n < 1 {
				L.ArgError(1, "limit must be at least 1")
			}
			limit = int(n)
		}
	}
	list, next := b.k.ClientsPage(prefix, after, limit, nil)
	t := L.CreateTable(len(list), 0)
	for _, ci := range list {
		t.Append(clientTable(L, ci))
	}
	L.Push(t)
	if next == "" {
		L.Push(lua.LNil)
	} else {
		L.Push(lua.LString(next))
	}
	return 2
}

// broker.client(client_id) -> client table | nil
func (b *binding) client(L *lua.LState) int {
	ci, ok := b.k.Info(L.CheckString(1))
	if !ok {
		L.Push(lua.LNil)
		return 1
	}
	L.Push(clientTable(L, ci))
	return 1
}

// broker.kick(client_id [, code [, reason_string]]) -> bool
func (b *binding) kick(L *lua.LState) int {
	code := codec.ReasonCode(L.OptInt(2, int(codec.AdministrativeAction)))
	if !code.ValidFor(codec.DISCONNECT) {
		L.ArgError(2, "not a DISCONNECT reason code")
	}
	L.Push(lua.LBool(b.k.Kick(L.CheckString(1), code, L.OptString(3, ""))))
	return 1
}

// broker.configure{max_inflight=, max_queued=, queue_drop="oldest"|"newest",
// max_qos=, max_session_expiry=, response_information=}
func (b *binding) configure(L *lua.LState) int {
	t := L.CheckTable(1)
	s := b.k.Settings()
	var bad string
	t.ForEach(func(k, v lua.LValue) {
		n, isNum := v.(lua.LNumber)
		switch k.String() {
		case "max_inflight":
			if !isNum || n < 1 || n > 65535 {
				bad = "max_inflight must be 1..65535"
			}
			s.MaxInflight = int(n)
		case "max_queued":
			if !isNum || n < 0 {
				bad = "max_queued must be >= 0"
			}
			s.MaxQueued = int(n)
		case "queue_drop":
			switch v.String() {
			case "oldest":
				s.DropNewest = false
			case "newest":
				s.DropNewest = true
			default:
				bad = `queue_drop must be "oldest" or "newest"`
			}
		case "max_qos":
			if !isNum || n < 0 || n > 2 {
				bad = "max_qos must be 0, 1 or 2"
			}
			s.MaxQoS = byte(n)
		case "max_session_expiry":
			if !isNum || n < 0 || n > 0xFFFFFFFF {
				bad = "max_session_expiry must be 0..4294967295 seconds"
			}
			s.MaxSessionExpiry = uint32(n)
		case "response_information":
			s.ResponseInformation = v.String()
		case "login_failures_per_address", "login_failures_per_user", "login_window":
			if !isNum || n < 0 {
				bad = k.String() + " must be a number >= 0"
			}
			addr, user, window := b.k.Logins.Limits()
			switch k.String() {
			case "login_failures_per_address":
				addr = int(n)
			case "login_failures_per_user":
				user = int(n)
			default:
				window = time.Duration(float64(n) * float64(time.Second))
			}
			b.k.Logins.SetLimits(addr, user, window)
		case "open_sessions":
			b, ok := v.(lua.LBool)
			if !ok {
				bad = "open_sessions must be a boolean"
			}
			s.OpenSessions = bool(b)
		default:
			bad = "unknown setting " + k.String()
		}
	})
	if bad != "" {
		L.ArgError(1, bad)
	}
	b.k.SetSettings(s)
	return 0
}

// broker.stats() -> table of counters
func (b *binding) stats(L *lua.LState) int {
	k := b.k
	t := L.NewTable()
	for name, v := range map[string]int64{
		"published": k.Stats.Published.Load(), "delivered": k.Stats.Delivered.Load(),
		"dropped": k.Stats.Dropped.Load(), "takeovers": k.Stats.Takeovers.Load(), "wills_sent": k.Stats.WillsSent.Load(),
		"retained": int64(k.RetainedCount()), "subscriptions": int64(k.SubscriptionCount()),
		"connections": k.TransportStats().Connections.Load(), "sessions_refused": k.Stats.SessionsRefused.Load(),
		"store_failures": k.Stats.StoreFailures.Load(),
		"logins_limited": k.Logins.Refused(),
		"slow_consumers": k.TransportStats().SlowConsumers.Load(),
	} {
		t.RawSetString(name, lua.LNumber(v))
	}
	// closes: how many connections ended for each reason, by its name.
	closes := L.CreateTable(0, transport.NumCloseReasons)
	for r := range transport.NumCloseReasons {
		if r == int(transport.CloseNone) {
			continue
		}
		closes.RawSetString(transport.CloseReason(r).String(), lua.LNumber(k.TransportStats().Closes[r].Load()))
	}
	t.RawSetString("closes", closes)
	L.Push(t)
	return 1
}

// broker.hash_password(password [, cost]) -> bcrypt hash
func (b *binding) hashPassword(L *lua.LState) int {
	password, cost := []byte(L.CheckString(1)), L.OptInt(2, bcrypt.DefaultCost)
	var h []byte
	var err error
	b.vm.offload(L, "broker.hash_password", func() { h, err = bcrypt.GenerateFromPassword(password, cost) })
	if err == nil {
		b.k.Logins.NoteHash(h)
	}
	if err != nil {
		L.ArgError(1, err.Error())
	}
	L.Push(lua.LString(h))
	return 1
}

// broker.check_password(hash, password) -> bool
func (b *binding) checkPassword(L *lua.LState) int {
	hash, password := []byte(L.CheckString(1)), []byte(L.CheckString(2))
	var err error
	b.vm.offload(L, "broker.check_password", func() { err = bcrypt.CompareHashAndPassword(hash, password) })
	L.Push(lua.LBool(err == nil))
	return 1
}

// broker.authenticate(fd, user_name, password, hash) -> true | false, "denied" | "limited"
// Checks a login's password against hash (nil for an unknown user: the
// same work is done), counting failures per source address and user name;
// past the limits it refuses without checking ("limited").
func (b *binding) authenticate(L *lua.LState) int {
	c := b.conn(L, 1)
	user := L.CheckString(2)
	password := L.OptString(3, "")
	hash := L.OptString(4, "")
	if c == nil {
		return closed(L)
	}
	// bcrypt takes tens of milliseconds: off the worker, which serves
	// other clients meanwhile.
	var ok, limited bool
	remote := c.RemoteAddrString()
	b.vm.offload(L, "broker.authenticate", func() { ok, limited = b.k.Logins.Check(remote, user, []byte(hash), []byte(password)) })
	if ok {
		L.Push(lua.LTrue)
		return 1
	}
	L.Push(lua.LFalse)
	if limited {
		L.Push(lua.LString("limited"))
	} else {
		L.Push(lua.LString("denied"))
	}
	return 2
}

// broker.read_passwords(path) -> {user = hash} | nil, err
// Reads a Mosquitto-style "user:hash" file, relative to the scripts folder.
func (b *binding) readPasswords(L *lua.LState) int {
	rel := L.CheckString(1)
	if filepath.IsAbs(rel) || strings.Contains(rel, "..") {
		L.ArgError(1, "path must be inside the scripts folder")
	}
	data, err := os.ReadFile(filepath.Join(b.vm.pool.cfg.Scripts, rel))
	if err != nil {
		L.Push(lua.LNil)
		L.Push(lua.LString(err.Error()))
		return 2
	}
	t := L.NewTable()
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		user, hash, ok := strings.Cut(line, ":")
		if !ok || user == "" || hash == "" {
			L.Push(lua.LNil)
			L.Push(lua.LString(fmt.Sprintf("%s:%d: want user:hash", rel, i+1)))
			return 2
		}
		b.k.Logins.NoteHash([]byte(hash))
		if err := broker.CheckHashFormat(hash); err != nil {
			// A file whose users could never log in is refused at load,
			// not found out one refused login at a time.
			L.Push(lua.LNil)
			L.Push(lua.LString(fmt.Sprintf("%s:%d: user %s: %v", rel, i+1, user, err)))
			return 2
		}
		t.RawSetString(user, lua.LString(hash))
	}
	L.Push(t)
	return 1
}

// broker.match(filter, topic) -> bool: MQTT topic matching for scripts.
func (b *binding) match(L *lua.LState) int {
	L.Push(lua.LBool(topic.MatchFilter(L.CheckString(1), L.CheckString(2))))
	return 1
}

// broker.covers(pattern, filter) -> bool: whether every topic the filter
// matches is one the pattern matches (an ACL pattern and a SUBSCRIBE's
// filter, wildcards and all; for a topic name, the same as match).
func (b *binding) covers(L *lua.LState) int {
	L.Push(lua.LBool(topic.Covers(L.CheckString(1), L.CheckString(2))))
	return 1
}

// messageTable is a routed message as scripts see it (retained
// messages, onMqDeliver, the message events): {topic, message, qos,
// retain, properties}, with the QoS and retain flag of the delivery.
func messageTable(L *lua.LState, m *broker.Message, qos byte, retain bool) *lua.LTable {
	t := L.CreateTable(0, 6)
	t.RawSetString("topic", lua.LString(m.Topic))
	t.RawSetString("message", lua.LString(m.Payload))
	t.RawSetString("qos", lua.LNumber(qos))
	t.RawSetString("retain", lua.LBool(retain))
	if m.Props != nil && !m.Props.Empty() {
		t.RawSetString("properties", ToLua(L, map[string]any(codec.PropertiesToMap(m.Props, codec.PUBLISH))))
	}
	return t
}

// broker.retained(topic) -> message table | nil
func (b *binding) retained(L *lua.LState) int {
	m, ok := b.k.Retained(L.CheckString(1))
	if !ok {
		L.Push(lua.LNil)
		return 1
	}
	L.Push(messageTable(L, m, m.QoS, true))
	return 1
}

// broker.retained_list(filter [, limit]) -> list of message tables, by topic
func (b *binding) retainedList(L *lua.LState) int {
	filter := L.CheckString(1)
	if err := (&codec.Packet{Type: codec.SUBSCRIBE, PacketID: 1, Subscriptions: []codec.Subscription{{Topic: filter}}}).Check(codec.V5); err != nil {
		L.ArgError(1, err.Error())
	}
	list := b.k.RetainedMatch(filter, L.OptInt(2, 0))
	t := L.CreateTable(len(list), 0)
	for _, m := range list {
		t.Append(messageTable(L, m, m.QoS, true))
	}
	L.Push(t)
	return 1
}

// broker.retained_delete(topic) -> whether there was one
func (b *binding) retainedDelete(L *lua.LState) int {
	L.Push(lua.LBool(b.k.DeleteRetained(L.CheckString(1))))
	return 1
}
