package codec_test

import (
	"bytes"
	"reflect"
	"testing"

	paho5 "github.com/eclipse/paho.golang/packets"
	paho3 "github.com/eclipse/paho.mqtt.golang/packets"
	"github.com/mqttlua/broker/codec"
)

// These tests check the codec against two independent implementations:
// paho.golang's 5.0 packets and paho.mqtt.golang's 3.1.1 packets. Each side
// decodes what the other encodes.

func u32(v uint32) *uint32 { return &v }
func u16(v uint16) *uint16 { return &v }
func b8(v byte) *byte      { return &v }

func decodeOurs(t *testing.T, b []byte, level byte) *codec.Packet {
	t.Helper()
	var p codec.Packet
	n, err := codec.Decode(b, level, &p)
	if err != nil || n != len(b) {
		t.Fatalf("decode % x: n=%d err=%v", b, n, err)
	}
	return &p
}

// inPaho5 encodes p with our encoder and decodes it with paho.golang.
func inPaho5(t *testing.T, p *codec.Packet) *paho5.ControlPacket {
	t.Helper()
	b, err := codec.Encode(p, codec.V5)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := paho5.ReadPacket(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return cp
}

func TestPaho5ConnectDecodes(t *testing.T) {
	cp := paho5.NewControlPacket(paho5.CONNECT)
	c := cp.Content.(*paho5.Connect)
	c.ProtocolName, c.ProtocolVersion = "MQTT", 5
	c.ClientID, c.KeepAlive, c.CleanStart = "paho-1", 30, true
	c.UsernameFlag, c.Username, c.PasswordFlag, c.Password = true, "u", true, []byte("p")
	c.WillFlag, c.WillQOS, c.WillRetain, c.WillTopic, c.WillMessage = true, 1, true, "w/t", []byte("gone")
	c.Properties = &paho5.Properties{SessionExpiryInterval: u32(60), ReceiveMaximum: u16(5),
		User: []paho5.User{{Key: "a", Value: "1"}, {Key: "a", Value: "2"}}}
	// paho.golang packs will properties with the CONNECT rules, so it drops
	// PUBLISH-only ones such as content type: use what it does write.
	c.WillProperties = &paho5.Properties{WillDelayInterval: u32(9), User: []paho5.User{{Key: "w", Value: "1"}}}
	var buf bytes.Buffer
	if _, err := cp.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	p := decodeOurs(t, buf.Bytes(), 5)
	if p.ClientID != "paho-1" || p.KeepAlive != 30 || !p.CleanSession || p.Username != "u" || string(p.Password) != "p" {
		t.Fatalf("connect fields: %+v", p)
	}
	w := p.Will
	if w == nil || w.QoS != 1 || !w.Retain || w.Topic != "w/t" || string(w.Payload) != "gone" ||
		w.Properties.WillDelay != 9 || len(w.Properties.User) != 1 {
		t.Fatalf("will: %+v", w)
	}
	if p.Properties.SessionExpiry != 60 || p.Properties.ReceiveMaximum != 5 ||
		!reflect.DeepEqual(p.Properties.User, []codec.UserProperty{{"a", "1"}, {"a", "2"}}) {
		t.Fatalf("properties: %+v", p.Properties)
	}
}

func TestOurPublishDecodesInPaho5(t *testing.T) {
	p := &codec.Packet{Type: codec.PUBLISH, QoS: 2, Retain: true, PacketID: 77, Topic: "a/b", Payload: []byte("payload")}
	p.Properties.SetUint(codec.PropMessageExpiry, 120)
	p.Properties.SetString(codec.PropResponseTopic, "r/t")
	p.Properties.SetBytes(codec.PropCorrelationData, []byte{1, 2})
	p.Properties.SetUint(codec.PropSubscriptionID, 42)
	p.Properties.User = []codec.UserProperty{{"k", "v"}}
	cp := inPaho5(t, p)
	pub := cp.Content.(*paho5.Publish)
	pr := pub.Properties
	if pub.QoS != 2 || !pub.Retain || pub.PacketID != 77 || pub.Topic != "a/b" || string(pub.Payload) != "payload" ||
		*pr.MessageExpiry != 120 || pr.ResponseTopic != "r/t" || !bytes.Equal(pr.CorrelationData, []byte{1, 2}) ||
		*pr.SubscriptionIdentifier != 42 || len(pr.User) != 1 || pr.User[0].Key != "k" {
		t.Fatalf("paho decoded %+v with %+v", pub, pr)
	}
}

func TestPaho5SubscribeAndAcksDecode(t *testing.T) {
	cp := paho5.NewControlPacket(paho5.SUBSCRIBE)
	s := cp.Content.(*paho5.Subscribe)
	s.PacketID = 3
	s.Properties = &paho5.Properties{SubscriptionIdentifier: func() *int { v := 1000; return &v }()}
	s.Subscriptions = []paho5.SubOptions{{Topic: "x/+", QoS: 1, NoLocal: true, RetainAsPublished: true, RetainHandling: 2}, {Topic: "y/#", QoS: 2}}
	var buf bytes.Buffer
	if _, err := cp.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	p := decodeOurs(t, buf.Bytes(), 5)
	want := []codec.Subscription{{Topic: "x/+", QoS: 1, NoLocal: true, RetainAsPublished: true, RetainHandling: 2}, {Topic: "y/#", QoS: 2}}
	if p.PacketID != 3 || !reflect.DeepEqual(p.Subscriptions, want) || p.Properties.SubscriptionIDs[0] != 1000 {
		t.Fatalf("subscribe: %+v", p)
	}

	dp := paho5.NewControlPacket(paho5.DISCONNECT)
	d := dp.Content.(*paho5.Disconnect)
	d.ReasonCode = 0x8E
	d.Properties = &paho5.Properties{ReasonString: "bye"}
	buf.Reset()
	if _, err := dp.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	p = decodeOurs(t, buf.Bytes(), 5)
	if p.ReasonCode != codec.SessionTakenOver || p.Properties.ReasonString != "bye" {
		t.Fatalf("disconnect: %+v", p)
	}
}

func TestOurConnackDecodesInPaho5(t *testing.T) {
	p := &codec.Packet{Type: codec.CONNACK, SessionPresent: true}
	p.Properties.SetUint(codec.PropReceiveMaximum, 10)
	p.Properties.SetUint(codec.PropMaximumQoS, 1)
	p.Properties.SetString(codec.PropAssignedClientID, "auto-1")
	p.Properties.SetUint(codec.PropServerKeepAlive, 20)
	cp := inPaho5(t, p)
	ca := cp.Content.(*paho5.Connack)
	if !ca.SessionPresent || ca.ReasonCode != 0 || *ca.Properties.ReceiveMaximum != 10 || *ca.Properties.MaximumQOS != 1 ||
		ca.Properties.AssignedClientID != "auto-1" || *ca.Properties.ServerKeepAlive != 20 {
		t.Fatalf("paho decoded %+v", ca)
	}
}

func TestPaho3ConnectAndPublishDecode(t *testing.T) {
	c := paho3.NewControlPacket(paho3.Connect).(*paho3.ConnectPacket)
	c.ProtocolName, c.ProtocolVersion = "MQTT", 4
	c.ClientIdentifier, c.Keepalive, c.CleanSession = "p3", 10, false
	c.UsernameFlag, c.Username, c.PasswordFlag, c.Password = true, "u", true, []byte("pw")
	c.WillFlag, c.WillQos, c.WillTopic, c.WillMessage = true, 2, "lw", []byte("x")
	var buf bytes.Buffer
	if err := c.Write(&buf); err != nil {
		t.Fatal(err)
	}
	p := decodeOurs(t, buf.Bytes(), 0)
	if p.ProtocolLevel != 4 || p.ClientID != "p3" || p.CleanSession || p.Username != "u" || string(p.Password) != "pw" ||
		p.Will == nil || p.Will.QoS != 2 || p.Will.Topic != "lw" {
		t.Fatalf("connect: %+v", p)
	}
	pub := paho3.NewControlPacket(paho3.Publish).(*paho3.PublishPacket)
	pub.Qos, pub.MessageID, pub.TopicName, pub.Payload, pub.Retain = 1, 9, "a/b", []byte("hi"), true
	buf.Reset()
	if err := pub.Write(&buf); err != nil {
		t.Fatal(err)
	}
	p = decodeOurs(t, buf.Bytes(), 4)
	if p.QoS != 1 || p.PacketID != 9 || p.Topic != "a/b" || string(p.Payload) != "hi" || !p.Retain {
		t.Fatalf("publish: %+v", p)
	}
}

func TestOurPacketsDecodeInPaho3(t *testing.T) {
	sub := &codec.Packet{Type: codec.SUBSCRIBE, PacketID: 5, Subscriptions: []codec.Subscription{{Topic: "a/#", QoS: 2}, {Topic: "b", QoS: 0}}}
	b, err := codec.Encode(sub, codec.V311)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := paho3.ReadPacket(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	s := cp.(*paho3.SubscribePacket)
	if s.MessageID != 5 || !reflect.DeepEqual(s.Topics, []string{"a/#", "b"}) || !reflect.DeepEqual(s.Qoss, []byte{2, 0}) {
		t.Fatalf("paho decoded %+v", s)
	}
	ack := &codec.Packet{Type: codec.SUBACK, PacketID: 5, ReasonCodes: []codec.ReasonCode{2, 0x80}}
	b, _ = codec.Encode(ack, codec.V311)
	cp, err = paho3.ReadPacket(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if sa := cp.(*paho3.SubackPacket); sa.MessageID != 5 || !bytes.Equal(sa.ReturnCodes, []byte{2, 0x80}) {
		t.Fatalf("paho decoded %+v", sa)
	}
}
