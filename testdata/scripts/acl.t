# The ACL's decision cache (scripts/acl.lua): PUBLISH decisions are
# remembered per connection and topic, and forgotten when the rules change.

=== TEST 1: decisions are remembered per connection, not per topic
--- setup
require("acl").rules = {
  { action = "allow", topic = "devices/%c/#" },
  { action = "deny", topic = "devices/#" },
}
--- steps
admin: connect
admin: send {"type": "SUBSCRIBE", "message_id": 1, "filters": [{"topic": "#", "qos": 0}]}
admin: expect {"type": "SUBACK", "codes": [0]}
d1: connect
d2: connect
d1: send {"type": "PUBLISH", "topic": "devices/d1/temp", "message": "d1 first"}
admin: expect {"type": "PUBLISH", "topic": "devices/d1/temp", "message": "d1 first"}
d2: send {"type": "PUBLISH", "topic": "devices/d1/temp", "message": "spoofed"}
d1: send {"type": "PUBLISH", "topic": "devices/d1/temp", "message": "d1 again"}
admin: expect {"type": "PUBLISH", "topic": "devices/d1/temp", "message": "d1 again"}
d2: send {"type": "PUBLISH", "topic": "devices/d1/temp", "message": "spoofed again"}
d2: send {"type": "PUBLISH", "topic": "devices/d2/temp", "message": "d2"}
admin: expect {"type": "PUBLISH", "topic": "devices/d2/temp", "message": "d2"}
admin: expect nothing

=== TEST 2: replacing acl.rules takes effect at once
--- setup
local acl = require("acl")
acl.rules = { { action = "deny", topic = "secret/#" } }
-- A PINGREQ swaps the rules, standing in for any run-time change.
function onMqPingreq()
  acl.rules = { { action = "allow", topic = "#" } }
  return true
end
--- steps
sub: connect
sub: send {"type": "SUBSCRIBE", "message_id": 1, "filters": [{"topic": "#", "qos": 0}]}
sub: expect {"type": "SUBACK", "codes": [0]}
pub: connect
pub: send {"type": "PUBLISH", "topic": "secret/x", "message": "before"}
sub: expect nothing
pub: send {"type": "PINGREQ"}
pub: expect {"type": "PINGRESP"}
pub: send {"type": "PUBLISH", "topic": "secret/x", "message": "after"}
sub: expect {"type": "PUBLISH", "topic": "secret/x", "message": "after"}

=== TEST 3: a rule edited in place takes effect after acl.flush()
--- setup
local acl = require("acl")
acl.rules = { { action = "deny", topic = "secret/#" } }
function onMqPingreq()
  acl.rules[1].action = "allow"
  acl.flush()
  return true
end
--- steps
sub: connect
sub: send {"type": "SUBSCRIBE", "message_id": 1, "filters": [{"topic": "#", "qos": 0}]}
sub: expect {"type": "SUBACK", "codes": [0]}
pub: connect
pub: send {"type": "PUBLISH", "topic": "secret/x", "message": "before"}
sub: expect nothing
pub: send {"type": "PINGREQ"}
pub: expect {"type": "PINGRESP"}
pub: send {"type": "PUBLISH", "topic": "secret/x", "message": "after"}
sub: expect {"type": "PUBLISH", "topic": "secret/x", "message": "after"}

=== TEST 4: decisions stay right while a small cache is dropped over and over
--- setup
local acl = require("acl")
acl.rules = { { action = "deny", topic = "a/secret" } }
acl.cache_bytes = 150 -- two entries
--- steps
sub: connect
sub: send {"type": "SUBSCRIBE", "message_id": 1, "filters": [{"topic": "a/#", "qos": 0}]}
sub: expect {"type": "SUBACK", "codes": [0]}
pub: connect
pub: send {"type": "PUBLISH", "topic": "a/1", "message": "1"}
pub: send {"type": "PUBLISH", "topic": "a/secret", "message": "x"}
pub: send {"type": "PUBLISH", "topic": "a/2", "message": "2"}
pub: send {"type": "PUBLISH", "topic": "a/secret", "message": "x"}
pub: send {"type": "PUBLISH", "topic": "a/3", "message": "3"}
pub: send {"type": "PUBLISH", "topic": "a/1", "message": "1 again"}
pub: send {"type": "PUBLISH", "topic": "a/secret", "message": "x"}
sub: expect {"type": "PUBLISH", "topic": "a/1", "message": "1"}
sub: expect {"type": "PUBLISH", "topic": "a/2", "message": "2"}
sub: expect {"type": "PUBLISH", "topic": "a/3", "message": "3"}
sub: expect {"type": "PUBLISH", "topic": "a/1", "message": "1 again"}
sub: expect nothing

=== TEST 5: acl.cache_bytes = 0 turns the cache off
--- setup
local acl = require("acl")
acl.cache_bytes = 0
acl.rules = { { action = "deny", topic = "secret/#" } }
-- Editing in place without acl.flush() is seen at once without a cache.
function onMqPingreq()
  acl.rules[1].action = "allow"
  return true
end
--- steps
sub: connect
sub: send {"type": "SUBSCRIBE", "message_id": 1, "filters": [{"topic": "#", "qos": 0}]}
sub: expect {"type": "SUBACK", "codes": [0]}
pub: connect
pub: send {"type": "PUBLISH", "topic": "secret/x", "message": "before"}
pub: send {"type": "PUBLISH", "topic": "secret/x", "message": "before again"}
sub: expect nothing
pub: send {"type": "PINGREQ"}
pub: expect {"type": "PINGRESP"}
pub: send {"type": "PUBLISH", "topic": "secret/x", "message": "after"}
sub: expect {"type": "PUBLISH", "topic": "secret/x", "message": "after"}
