=== TEST 1: a tenant's messages, under the names its clients use
--- steps
a: connect {"client_id": "a", "user_name": "alice"}
a: send {"type": "SUBSCRIBE", "message_id": 1, "filters": [{"topic": "s/#", "qos": 1}]}
a: expect {"type": "SUBACK", "codes": [1]}
bob: connect {"client_id": "bob", "user_name": "bob"}
bob: send {"type": "PUBLISH", "topic": "s/1", "message": "bob's", "qos": 1, "message_id": 1}
bob: expect {"type": "PUBACK", "message_id": 1}
a2: connect {"client_id": "a2", "user_name": "alice"}
a2: send {"type": "PUBLISH", "topic": "s/1", "message": "alice's", "qos": 1, "message_id": 1}
a2: expect {"type": "PUBACK", "message_id": 1}
a: expect {"type": "PUBLISH", "topic": "s/1", "message": "alice's", "qos": 1}
a: expect nothing

=== TEST 2: a wildcard reaches only the tenant's own topics
--- steps
bob: connect {"client_id": "bob", "user_name": "bob"}
bob: send {"type": "SUBSCRIBE", "message_id": 1, "filters": [{"topic": "#", "qos": 0}]}
bob: expect {"type": "SUBACK", "codes": [0]}
a: connect {"client_id": "a", "user_name": "alice"}
a: send {"type": "PUBLISH", "topic": "secret", "message": "x"}
bob: expect nothing

=== TEST 3: retained messages and an offline queue, un-prefixed
--- steps
p: connect {"client_id": "p", "user_name": "alice", "clean_session": false}
p: send {"type": "SUBSCRIBE", "message_id": 1, "filters": [{"topic": "state/#", "qos": 1}]}
p: expect {"type": "SUBACK", "codes": [1]}
p: close
wait 100ms
w: connect {"client_id": "w", "user_name": "alice"}
w: send {"type": "PUBLISH", "topic": "state/door", "message": "open", "retain": true, "qos": 1, "message_id": 1}
w: expect {"type": "PUBACK", "message_id": 1}
r: connect {"client_id": "r", "user_name": "alice"}
r: send {"type": "SUBSCRIBE", "message_id": 1, "filters": [{"topic": "state/#", "qos": 1}]}
r: expect {"type": "SUBACK", "codes": [1]}
r: expect {"type": "PUBLISH", "topic": "state/door", "message": "open", "retain": true, "qos": 1}
back: connect {"client_id": "p", "user_name": "alice", "clean_session": false}
back: expect {"type": "PUBLISH", "topic": "state/door", "message": "open", "qos": 1}

=== TEST 4: a user name that is not one topic level is refused
--- steps
x: send {"type": "CONNECT", "client_id": "x", "clean_session": true, "user_name": "a/b"}
x: expect {"type": "CONNACK", "code": 5}
