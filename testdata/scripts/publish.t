# PUBLISH decisions of the default scripts: routing, QoS, retained, wills,
# and the ACL (scripts/acl.lua).

=== TEST 1: QoS 0, 1 and 2 in both directions
--- steps
sub: connect
sub: send {"type": "SUBSCRIBE", "message_id": 1, "filters": [{"topic": "q/#", "qos": 2}]}
sub: expect {"type": "SUBACK", "codes": [2]}
pub: connect
pub: send {"type": "PUBLISH", "topic": "q/0", "message": "zero"}
sub: expect {"type": "PUBLISH", "topic": "q/0", "qos": 0, "message": "zero"}
pub: send {"type": "PUBLISH", "topic": "q/1", "message": "one", "qos": 1, "message_id": 7}
pub: expect {"type": "PUBACK", "message_id": 7}
sub: expect {"type": "PUBLISH", "topic": "q/1", "qos": 1, "message_id": 1}
sub: send {"type": "PUBACK", "message_id": 1}
pub: send {"type": "PUBLISH", "topic": "q/2", "message": "two", "qos": 2, "message_id": 8}
pub: expect {"type": "PUBREC", "message_id": 8}
pub: send {"type": "PUBREL", "message_id": 8}
pub: expect {"type": "PUBCOMP", "message_id": 8}
sub: expect {"type": "PUBLISH", "topic": "q/2", "qos": 2, "message_id": 2}
sub: send {"type": "PUBREC", "message_id": 2}
sub: expect {"type": "PUBREL", "message_id": 2}
sub: send {"type": "PUBCOMP", "message_id": 2}
sub: expect nothing

=== TEST 2: a retained message is stored, replaced, delivered with RETAIN, and cleared
--- steps
pub: connect
pub: send {"type": "PUBLISH", "topic": "state/lamp", "message": "on", "retain": true}
pub: send {"type": "PUBLISH", "topic": "state/lamp", "message": "off", "retain": true, "qos": 1, "message_id": 1}
pub: expect {"type": "PUBACK", "message_id": 1}
late: connect
late: send {"type": "SUBSCRIBE", "message_id": 1, "filters": [{"topic": "state/+", "qos": 0}]}
late: expect {"type": "SUBACK"}
late: expect {"type": "PUBLISH", "topic": "state/lamp", "message": "off", "retain": true}
late: expect nothing
pub: send {"type": "PUBLISH", "topic": "state/lamp", "message": "", "retain": true, "qos": 1, "message_id": 2}
pub: expect {"type": "PUBACK", "message_id": 2}
late: expect {"type": "PUBLISH", "topic": "state/lamp", "message": "", "retain": false}
later: connect
later: send {"type": "SUBSCRIBE", "message_id": 1, "filters": [{"topic": "state/#", "qos": 0}]}
later: expect {"type": "SUBACK"}
later: expect nothing

=== TEST 3: the will is published when a client is lost, not after DISCONNECT
--- steps
watch: connect
watch: send {"type": "SUBSCRIBE", "message_id": 1, "filters": [{"topic": "will/#", "qos": 0}]}
watch: expect {"type": "SUBACK"}
polite: connect {"will": {"topic": "will/polite", "message": "bye", "qos": 0, "retain": false}}
polite: send {"type": "DISCONNECT"}
polite: expect closed client_disconnect
watch: expect nothing
lost: connect {"will": {"topic": "will/lost", "message": "lost", "qos": 0, "retain": false}}
lost: close
watch: expect {"type": "PUBLISH", "topic": "will/lost", "message": "lost"}

=== TEST 4: a denied PUBLISH is acknowledged and dropped
--- setup
require("acl").rules = { { action = "deny", topic = "secret/#", access = "write" } }
--- steps
sub: connect
sub: send {"type": "SUBSCRIBE", "message_id": 1, "filters": [{"topic": "#", "qos": 1}]}
sub: expect {"type": "SUBACK", "codes": [1]}
pub: connect
pub: send {"type": "PUBLISH", "topic": "secret/plans", "message": "x", "qos": 1, "message_id": 3}
pub: expect {"type": "PUBACK", "message_id": 3}
pub: send {"type": "PUBLISH", "topic": "public/news", "message": "y"}
sub: expect {"type": "PUBLISH", "topic": "public/news"}
sub: expect nothing
--- log
like: publish denied.*secret/plans

=== TEST 5: a denied MQTT 5 PUBLISH is acknowledged with 0x87
--- setup
require("acl").rules = { { action = "deny", topic = "secret/#" } }
--- steps
pub: level 5
pub: connect
pub: send {"type": "PUBLISH", "topic": "secret/plans", "message": "x", "qos": 1, "message_id": 3}
pub: expect {"type": "PUBACK", "message_id": 3, "code": "NOT_AUTHORIZED"}

=== TEST 6: %c in a rule is the client id
--- setup
require("acl").rules = {
  { action = "allow", topic = "devices/%c/#" },
  { action = "deny", topic = "devices/#" },
}
--- steps
watch: connect
watch: send {"type": "SUBSCRIBE", "message_id": 1, "filters": [{"topic": "devices/#", "qos": 0}]}
watch: expect {"type": "SUBACK", "codes": [128]}
admin: connect
admin: send {"type": "SUBSCRIBE", "message_id": 1, "filters": [{"topic": "#", "qos": 0}]}
admin: expect {"type": "SUBACK", "codes": [0]}
d1: connect
d1: send {"type": "PUBLISH", "topic": "devices/d1/temp", "message": "21"}
d1: send {"type": "PUBLISH", "topic": "devices/d2/temp", "message": "spoofed"}
admin: expect {"type": "PUBLISH", "topic": "devices/d1/temp"}
admin: expect nothing

=== TEST 7: no client publishes to a $ topic: not delivered, not retained, logged
--- steps
sub: connect
sub: send {"type": "SUBSCRIBE", "message_id": 1, "filters": [{"topic": "$SYS/#", "qos": 1}]}
sub: expect {"type": "SUBACK", "codes": [1]}
pub: level 5
pub: connect
pub: send {"type": "PUBLISH", "topic": "$SYS/broker/version", "message": "forged", "retain": true, "qos": 1, "message_id": 4}
pub: expect {"type": "PUBACK", "message_id": 4, "code": "NOT_AUTHORIZED"}
sub: expect nothing
late: connect
late: send {"type": "SUBSCRIBE", "message_id": 1, "filters": [{"topic": "$SYS/#", "qos": 0}]}
late: expect {"type": "SUBACK", "codes": [0]}
late: expect nothing
--- log
like: publish to a \$ topic denied.*SYS/broker/version
