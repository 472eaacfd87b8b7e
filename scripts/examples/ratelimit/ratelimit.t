=== TEST 1: the fourth message in a second is dropped
--- steps
sub: connect
sub: send {"type": "SUBSCRIBE", "message_id": 1, "filters": [{"topic": "m", "qos": 0}]}
sub: expect {"type": "SUBACK"}
pub: connect
pub: send {"type": "PUBLISH", "topic": "m", "message": "1"}
pub: send {"type": "PUBLISH", "topic": "m", "message": "2"}
pub: send {"type": "PUBLISH", "topic": "m", "message": "3"}
pub: send {"type": "PUBLISH", "topic": "m", "message": "4"}
sub: expect {"type": "PUBLISH", "message": "1"}
sub: expect {"type": "PUBLISH", "message": "2"}
sub: expect {"type": "PUBLISH", "message": "3"}
sub: expect nothing
--- log
like: rate limit.*count=4

=== TEST 2: the limit is per client, and starts over after the window
--- steps
sub: connect
sub: send {"type": "SUBSCRIBE", "message_id": 1, "filters": [{"topic": "m", "qos": 0}]}
sub: expect {"type": "SUBACK"}
a: connect
b: connect
a: send {"type": "PUBLISH", "topic": "m", "message": "a1"}
a: send {"type": "PUBLISH", "topic": "m", "message": "a2"}
a: send {"type": "PUBLISH", "topic": "m", "message": "a3"}
sub: expect {"type": "PUBLISH", "message": "a1"}
sub: expect {"type": "PUBLISH", "message": "a2"}
sub: expect {"type": "PUBLISH", "message": "a3"}
b: send {"type": "PUBLISH", "topic": "m", "message": "b1"}
sub: expect {"type": "PUBLISH", "message": "b1"}
wait 1100ms
a: send {"type": "PUBLISH", "topic": "m", "message": "a4"}
sub: expect {"type": "PUBLISH", "message": "a4"}
