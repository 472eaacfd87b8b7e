=== TEST 1: a user in the table connects; its ACL rows (with %u) decide publish and subscribe
--- setup
stub.pg{ sql = "SELECT password_hash, is_superuser FROM mqtt_users WHERE username = $1",
  rows = { { password_hash = broker.hash_password("s3cret", 4), is_superuser = false } } }
stub.pg{ sql = "SELECT action, topic FROM mqtt_acl WHERE username = $1",
  rows = { { action = "publish", topic = "sensors/%u/+" }, { action = "subscribe", topic = "cmd/%u/#" } } }
--- steps
dev: connect {"user_name": "alice", "password": "s3cret"}
dev: send {"type": "SUBSCRIBE", "message_id": 1, "filters": [{"topic": "cmd/alice/#", "qos": 1}, {"topic": "cmd/#", "qos": 1}]}
dev: expect {"type": "SUBACK", "codes": [1, 128]}
dev: send {"type": "PUBLISH", "topic": "sensors/alice/temp", "message": "21", "qos": 1, "message_id": 2}
dev: expect {"type": "PUBACK", "message_id": 2}
dev: send {"type": "PUBLISH", "topic": "sensors/bob/temp", "message": "21", "qos": 1, "message_id": 3}
dev: expect {"type": "PUBACK", "message_id": 3}
--- log
like: publish denied.*sensors/bob/temp
unlike: level=error

=== TEST 2: a superuser may do anything
--- setup
stub.pg{ sql = "SELECT password_hash, is_superuser FROM mqtt_users WHERE username = $1",
  rows = { { password_hash = broker.hash_password("root", 4), is_superuser = true } } }
stub.pg{ sql = "SELECT action, topic FROM mqtt_acl WHERE username = $1", rows = {} }
--- steps
admin: connect {"user_name": "admin", "password": "root"}
admin: send {"type": "SUBSCRIBE", "message_id": 1, "filters": [{"topic": "#", "qos": 0}]}
admin: expect {"type": "SUBACK", "codes": [0]}

=== TEST 3: an unknown user, a wrong password: not authorized; the database down: server unavailable
--- setup
stub.pg{ sql = "SELECT password_hash, is_superuser FROM mqtt_users WHERE username = $1", rows = {} }
--- steps
a: send {"type": "CONNECT", "client_id": "a", "user_name": "nobody", "password": "x", "keep_alive": 60, "clean_session": true, "protocol_level": 4}
a: expect {"type": "CONNACK", "code": "V3_NOT_AUTHORIZED"}
--- log
like: connection refused.*user_name=nobody

=== TEST 4: the database cannot answer: server unavailable (5.0: 0x88), logged
--- setup
stub.pg{ sql = "SELECT password_hash, is_superuser FROM mqtt_users WHERE username = $1", error = "timeout", delay = 0.05 }
--- steps
a: level 5
a: send {"type": "CONNECT", "client_id": "a", "user_name": "alice", "password": "x", "keep_alive": 60, "clean_session": true, "protocol_level": 5}
a: expect {"type": "CONNACK", "code": "SERVER_UNAVAILABLE"}
--- log
like: the user database gave no answer.*timeout
