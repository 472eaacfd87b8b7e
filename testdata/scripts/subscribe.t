# SUBSCRIBE and UNSUBSCRIBE decisions of the default scripts.

=== TEST 1: a denied filter gets 0x80 in its SUBACK, the others are granted
--- setup
require("acl").rules = {
  { action = "deny", topic = "private/#", access = "read" },
  { action = "allow", user = "boss", topic = "#" },
}
--- steps
a: connect
a: send {"type": "SUBSCRIBE", "message_id": 4, "filters": [{"topic": "public/#", "qos": 1}, {"topic": "private/diary", "qos": 1}, {"topic": "x", "qos": 2}]}
a: expect {"type": "SUBACK", "message_id": 4, "codes": [1, 128, 2]}
--- log
like: subscribe denied.*private/diary

=== TEST 2: MQTT 5 clients get 0x87 for a denied filter
--- setup
require("acl").rules = { { action = "deny", topic = "private/#" } }
--- steps
a: level 5
a: connect
a: send {"type": "SUBSCRIBE", "message_id": 1, "filters": [{"topic": "private/x", "qos": 0}]}
a: expect {"type": "SUBACK", "codes": ["NOT_AUTHORIZED"]}

=== TEST 3: after UNSUBSCRIBE nothing more arrives
--- steps
a: connect
a: send {"type": "SUBSCRIBE", "message_id": 1, "filters": [{"topic": "t", "qos": 0}]}
a: expect {"type": "SUBACK"}
a: send {"type": "UNSUBSCRIBE", "message_id": 2, "topics": ["t"]}
a: expect {"type": "UNSUBACK", "message_id": 2}
b: connect
b: send {"type": "PUBLISH", "topic": "t", "message": "x"}
a: expect nothing

=== TEST 4: overlapping subscriptions deliver one copy at the highest QoS
--- steps
a: connect
a: send {"type": "SUBSCRIBE", "message_id": 1, "filters": [{"topic": "o/+", "qos": 0}, {"topic": "o/#", "qos": 1}]}
a: expect {"type": "SUBACK", "codes": [0, 1]}
b: connect
b: send {"type": "PUBLISH", "topic": "o/x", "message": "once", "qos": 1, "message_id": 1}
a: expect {"type": "PUBLISH", "topic": "o/x", "qos": 1}
a: expect nothing

=== TEST 5: wildcards at the first level do not match $ topics
--- steps
a: connect
a: send {"type": "SUBSCRIBE", "message_id": 1, "filters": [{"topic": "#", "qos": 0}]}
a: expect {"type": "SUBACK"}
b: connect
b: send {"type": "PUBLISH", "topic": "$SYS/x", "message": "sys"}
a: expect nothing
