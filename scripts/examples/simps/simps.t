# The Simps raw-mode server: acks by hand, every PUBLISH broadcast.

=== TEST 1: CONNACK via mqtt.getAck, then broadcast to every other client
--- steps
a: connect
b: connect
c: level 5
c: connect
a: send {"type": "PUBLISH", "topic": "any/topic", "message": "hello"}
b: expect {"type": "PUBLISH", "topic": "any/topic", "message": "hello", "qos": 0}
c: expect {"type": "PUBLISH", "topic": "any/topic", "message": "hello", "qos": 0}
a: expect nothing

=== TEST 2: PUBACK, PUBREC/PUBCOMP, SUBACK and UNSUBACK by hand
--- steps
a: connect
a: send {"type": "PUBLISH", "topic": "t", "message": "1", "qos": 1, "message_id": 5}
a: expect {"type": "PUBACK", "message_id": 5}
a: send {"type": "PUBLISH", "topic": "t", "message": "2", "qos": 2, "message_id": 6}
a: expect {"type": "PUBREC", "message_id": 6}
a: send {"type": "PUBREL", "message_id": 6}
a: expect {"type": "PUBCOMP", "message_id": 6}
a: send {"type": "SUBSCRIBE", "message_id": 7, "filters": [{"topic": "x", "qos": 2}, {"topic": "y", "qos": 0}]}
a: expect {"type": "SUBACK", "message_id": 7, "codes": [2, 0]}
a: send {"type": "UNSUBSCRIBE", "message_id": 8, "topics": ["x"]}
a: expect {"type": "UNSUBACK", "message_id": 8}
a: send {"type": "PINGREQ"}
a: expect {"type": "PINGRESP"}
a: send {"type": "DISCONNECT"}
a: expect closed client_disconnect

=== TEST 3: a protocol name and level that do not match get CONNACK 0x01
# The engine answers before the script sees it: "MQIsdp" is MQTT 3.1's
# name, and level 4 is 3.1.1's.
--- steps
a: send hex 10 0e 00 06 4d 51 49 73 64 70 04 02 00 3c 00 00
a: expect {"type": "CONNACK", "code": 1}
a: expect closed
