package script

import (
	"errors"

	"github.com/mqttlua/broker/codec"
	"github.com/mqttlua/broker/engine/broker"
	lua "github.com/yuin/gopher-lua"
)

// The delivery hook: a script's onMqDeliver(server, fd, fromId, data)
// decides each delivery of a message it routes, per subscriber. data is
// {client_id, topic, message, qos, retain, properties} of what that
// subscriber would get (fd is the subscriber's connection, 0 when it is
// offline). Returning nothing (or true) delivers it as it is, false drops
// this one delivery, and data (changed: topic, message, a lower qos,
// properties) delivers that instead. It runs on the worker that routes
// (the publisher's, or the subscriber's for retained messages on
// SUBSCRIBE), inside that handler and its deadline, only when the
// scripts define it.

// deliverHook returns the hook for routes started on this VM, or nil
// when the scripts define no onMqDeliver (no cost then: it is looked up
// when they load, so define it at their top level). mu is held.
func (vm *VM) deliverHook() broker.DeliverHook {
	fn := vm.deliverFn
	if fn == nil {
		return nil
	}
	return func(clientID string, c *broker.Client, m *broker.Message, qos byte) (*broker.Message, byte, bool) {
		// The routing handler's own state: the main state may hold a
		// call that waits.
		L := vm.running
		if L == nil {
			L = vm.L
		}
		data := messageTable(L, m, qos, m.Retain)
		data.RawSetString("client_id", lua.LString(clientID))
		fd := 0
		if c != nil {
			fd = c.FD
		}
		// The hook is not the packet's handler: bindings bound to the
		// packet being handled refuse to run in it.
		handling, where := vm.handling, vm.where
		vm.handling, vm.where = 0, "onMqDeliver"
		err := L.CallByParam(lua.P{Fn: fn, NRet: 1, Protect: true}, vm.server, lua.LNumber(fd), vm.idValue, data)
		vm.handling, vm.where = handling, where
		if err != nil {
			// A failing hook loses no message: logged, delivered as it is.
			vm.pool.scriptFailed(nil, "onMqDeliver", vm.callError(L, err))
			return m, qos, true
		}
		ret := L.Get(-1)
		L.Pop(1)
		switch ret {
		case lua.LNil, lua.LTrue:
			return m, qos, true
		case lua.LFalse:
			return nil, 0, false
		}
		t, ok := ret.(*lua.LTable)
		if !ok {
			return m, qos, true
		}
		out, outQoS, err := changedMessage(m, qos, t)
		if err != nil {
			vm.pool.scriptFailed(nil, "onMqDeliver", &LuaError{Msg: "onMqDeliver returned " + err.Error()})
			return m, qos, true
		}
		return out, outQoS, true
	}
}

// changedMessage reads the table onMqDeliver returned: the message with
// its topic, payload, QoS and properties as the table has them.
func changedMessage(m *broker.Message, qos byte, t *lua.LTable) (*broker.Message, byte, error) {
	out := *m // Owned as m: the broker copies an aliased payload it keeps
	topic, ok := t.RawGetString("topic").(lua.LString)
	if !ok || topic == "" {
		return nil, 0, errors.New("a table without a topic")
	}
	out.Topic = string(topic)
	if err := codec.CheckTopicName(out.Topic); err != nil {
		return nil, 0, err
	}
	if msg, ok := t.RawGetString("message").(lua.LString); ok && string(msg) != string(m.Payload) {
		out.Payload, out.Owned = []byte(msg), true
	}
	if q, ok := t.RawGetString("qos").(lua.LNumber); ok && q >= 0 && byte(q) < qos {
		qos = byte(q)
	}
	if pt, ok := t.RawGetString("properties").(*lua.LTable); ok {
		v, err := FromLua(pt)
		if err != nil {
			return nil, 0, err
		}
		props := &codec.Properties{}
		if err := codec.PropertiesFromMap(v, props, "properties"); err != nil {
			return nil, 0, err
		}
		props.Clear(codec.PropTopicAlias)
		props.Clear(codec.PropSubscriptionID)
		out.Props = props
	}
	return &out, qos, nil
}
