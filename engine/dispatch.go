package engine

import (
	"github.com/mqttlua/broker/codec"
	"github.com/sirupsen/logrus"
	lua "github.com/yuin/gopher-lua"
)

// dispatch runs the handler for p on c's VM, or the protocol default when
// the scripts define none. It is called by c's reader goroutine.
func (s *Server) dispatch(c *Conn, p *codec.Packet) {
	intercepted := false
	switch p.Type {
	case codec.PUBACK, codec.PUBREC, codec.PUBREL, codec.PUBCOMP:
		for _, m := range s.cfg.Modules {
			if pi, ok := m.(PacketInterceptor); ok && pi.Intercept(c, p, c.t.Batch()) {
				intercepted = true
			}
		}
	}
	vm := s.lockVM(c.FD)
	fn := vm.handler(p.Type)
	if fn == nil {
		vm.mu.Unlock()
		if !intercepted {
			c.defaultAction(p)
		}
		return
	}
	L := vm.L
	vm.cur = c
	L.Push(fn)
	L.Push(vm.server)
	L.Push(c.fdValue)
	L.Push(vm.idValue)
	L.Push(PacketTable(L, p, c.Version()))
	err := vm.pcall(4, 1)
	var ret lua.LValue = lua.LNil
	if err == nil {
		ret = L.Get(-1)
		L.Pop(1)
	}
	vm.cur = nil
	vm.mu.Unlock()
	if err != nil {
		s.scriptFailed(c, s.callbackName(p.Type), err)
		return
	}
	switch p.Type {
	case codec.CONNECT:
		if ret == lua.LFalse {
			c.CloseWithCode(CloseScript, 0, "")
		}
	case codec.PINGREQ:
		if lua.LVAsBool(ret) {
			c.SendPacketVia(&codec.Packet{Type: codec.PINGRESP}, c.t.Batch())
		}
	case codec.DISCONNECT:
		if lua.LVAsBool(ret) {
			c.CloseWithCode(CloseClientDisconnect, 0, "")
		}
	}
}

// scriptFailed logs a handler failure once, with the script's position and
// traceback, and closes only that connection.
func (s *Server) scriptFailed(c *Conn, handler string, err error) {
	s.Stats.ScriptErrors.Add(1)
	reason := CloseScriptError
	fields := logrus.Fields{"handler": handler}
	if le, ok := err.(*LuaError); ok {
		if le.Timeout {
			reason = CloseHandlerTimeout
		}
		if le.Traceback != "" {
			fields["traceback"] = le.Traceback
		}
	}
	entry := s.cfg.Log.WithFields(fields)
	if c != nil {
		entry = entry.WithFields(logrus.Fields{"fd": c.FD, "client_id": c.ClientID()})
	}
	entry.Error(err.Error())
	if c != nil {
		c.Close(reason)
	}
}

// defaultAction is what happens to a packet whose handler the scripts do
// not define: the protocol-correct minimum.
func (c *Conn) defaultAction(p *codec.Packet) {
	v5 := c.Version() == codec.V5
	switch p.Type {
	case codec.CONNECT:
		c.SendPacketVia(&codec.Packet{Type: codec.CONNACK}, c.t.Batch())
	case codec.PINGREQ:
		// [MQTT-3.12.4-1]
		c.SendPacketVia(&codec.Packet{Type: codec.PINGRESP}, c.t.Batch())
	case codec.DISCONNECT:
		c.CloseWithCode(CloseClientDisconnect, 0, "")
	case codec.PUBLISH:
		// Nothing routes the message without a handler, but the sender's
		// QoS flow must still complete.
		switch p.QoS {
		case 1:
			c.SendPacketVia(&codec.Packet{Type: codec.PUBACK, PacketID: p.PacketID}, c.t.Batch())
		case 2:
			c.SendPacketVia(&codec.Packet{Type: codec.PUBREC, PacketID: p.PacketID}, c.t.Batch())
		}
	case codec.PUBREL:
		// [MQTT-4.3.3-11] PUBREL is answered with PUBCOMP.
		c.SendPacketVia(&codec.Packet{Type: codec.PUBCOMP, PacketID: p.PacketID}, c.t.Batch())
	case codec.PUBREC:
		c.SendPacketVia(&codec.Packet{Type: codec.PUBREL, PacketID: p.PacketID}, c.t.Batch())
	case codec.SUBSCRIBE:
		// [MQTT-3.8.4-1] SUBSCRIBE is always answered; with no handler
		// nothing would be delivered, so every filter is refused.
		codes := make([]codec.ReasonCode, len(p.Subscriptions))
		for i := range codes {
			codes[i] = codec.V3SubackFailure
			if v5 {
				codes[i] = codec.ImplementationSpecificError
			}
		}
		c.SendPacketVia(&codec.Packet{Type: codec.SUBACK, PacketID: p.PacketID, ReasonCodes: codes}, c.t.Batch())
	case codec.UNSUBSCRIBE:
		// [MQTT-3.10.4-4]
		ack := &codec.Packet{Type: codec.UNSUBACK, PacketID: p.PacketID}
		if v5 {
			ack.ReasonCodes = make([]codec.ReasonCode, len(p.Topics))
			for i := range ack.ReasonCodes {
				ack.ReasonCodes[i] = codec.NoSubscriptionExisted
			}
		}
		c.SendPacketVia(ack, c.t.Batch())
	case codec.AUTH:
		c.CloseWithCode(CloseProtocolError, codec.BadAuthenticationMethod, "no onMqAuth handler")
	}
}

// onClose runs the script's onClose(server, fd, reason) on the
// connection's VM.
func (s *Server) onClose(c *Conn, reason CloseReason) {
	vm := s.lockVM(c.FD)
	fn := vm.global("onClose")
	if fn == nil {
		vm.mu.Unlock()
		return
	}
	vm.cur = c
	vm.L.Push(fn)
	vm.L.Push(vm.server)
	vm.L.Push(c.fdValue)
	vm.L.Push(reasonValue(reason))
	err := vm.pcall(3, 0)
	vm.cur = nil
	vm.mu.Unlock()
	// The connection's reader has stopped: write what onClose queued for
	// others now.
	c.t.Batch().Flush()
	if err != nil {
		s.scriptFailed(nil, "onClose", err)
	}
}
