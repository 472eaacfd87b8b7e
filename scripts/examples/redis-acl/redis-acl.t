=== TEST 1: a user in Redis connects, and its ACL decides what it may publish and subscribe to
--- setup
stub.redis{ command = { "GET", '["","dev1","alice"]' }, reply = json.encode({
  passhash = broker.hash_password("s3cret", 4),
  publish_acl = { { pattern = "dev1/#" } },
  subscribe_acl = { { pattern = "cmd/dev1/+" } },
}) }
--- steps
dev1: connect {"user_name": "alice", "password": "s3cret"}
dev1: send {"type": "SUBSCRIBE", "message_id": 1, "filters": [{"topic": "cmd/dev1/+", "qos": 1}, {"topic": "#", "qos": 0}]}
dev1: expect {"type": "SUBACK", "codes": [1, 128]}
dev1: send {"type": "SUBSCRIBE", "message_id": 2, "filters": [{"topic": "dev1/echo", "qos": 0}]}
dev1: expect {"type": "SUBACK", "codes": [128]}
dev1: send {"type": "PUBLISH", "topic": "dev1/temp", "message": "21", "qos": 1, "message_id": 5}
dev1: expect {"type": "PUBACK", "message_id": 5}
dev1: send {"type": "PUBLISH", "topic": "other/temp", "message": "21", "qos": 1, "message_id": 6}
dev1: expect {"type": "PUBACK", "message_id": 6}
--- log
like: publish denied.*other/temp
unlike: level=error

=== TEST 2: a wrong password, or a client with no key, is refused as not authorized
--- setup
stub.redis{ command = { "GET", '["","dev1","alice"]' }, reply = json.encode({ passhash = broker.hash_password("s3cret", 4) }) }
stub.redis{ command = { "GET", '["","dev2","bob"]' }, reply = nil }
--- steps
a: send {"type": "CONNECT", "client_id": "dev1", "user_name": "alice", "password": "guess", "keep_alive": 60, "clean_session": true, "protocol_level": 4}
a: expect {"type": "CONNACK", "code": "V3_NOT_AUTHORIZED"}
b: level 5
b: send {"type": "CONNECT", "client_id": "dev2", "user_name": "bob", "password": "x", "keep_alive": 60, "clean_session": true, "protocol_level": 5}
b: expect {"type": "CONNACK", "code": "NOT_AUTHORIZED"}
--- log
like: connection refused.*known=false

=== TEST 3: Redis cannot answer: server unavailable, logged
--- setup
stub.redis{ command = { "GET", '["","dev1","alice"]' }, error = "dial tcp 127.0.0.1:6379: connect: connection refused" }
--- steps
a: send {"type": "CONNECT", "client_id": "dev1", "user_name": "alice", "password": "s3cret", "keep_alive": 60, "clean_session": true, "protocol_level": 4}
a: expect {"type": "CONNACK", "code": "V3_SERVER_UNAVAILABLE"}
--- log
like: redis gave no answer.*connection refused
