=== TEST 1: the service allows: the client is accepted, and the request has EMQX's shape
--- setup
stub.http{ url = "http://127.0.0.1:8991/mqtt/auth", method = "POST",
  match = '"clientid":"dev1","password":"s3cret","peerhost":"127.0.0.1","username":"alice"',
  body = '{"result": "allow", "is_superuser": false}' }
--- steps
dev1: connect {"user_name": "alice", "password": "s3cret"}
--- log
unlike: level=error

=== TEST 2: the service denies: not authorized (3.1.1: 0x05, 5.0: 0x87)
--- setup
stub.http{ url = "http://127.0.0.1:8991/mqtt/auth", body = '{"result": "deny"}' }
--- steps
old: send {"type": "CONNECT", "client_id": "old", "user_name": "mallory", "password": "x", "keep_alive": 60, "clean_session": true, "protocol_level": 4}
old: expect {"type": "CONNACK", "code": "V3_NOT_AUTHORIZED"}
new: level 5
new: send {"type": "CONNECT", "client_id": "new", "user_name": "mallory", "password": "x", "keep_alive": 60, "clean_session": true, "protocol_level": 5}
new: expect {"type": "CONNACK", "code": "NOT_AUTHORIZED"}
--- log
like: connection refused by the auth service.*result=deny

=== TEST 3: 204 allows; 4xx/5xx is "ignore", refused as no authenticator allowed it
--- setup
stub.http{ url = "http://127.0.0.1:8991/mqtt/auth", match = '"username":"ok"', status = 204 }
stub.http{ url = "http://127.0.0.1:8991/mqtt/auth", status = 503, body = "busy" }
--- steps
a: connect {"user_name": "ok"}
b: send {"type": "CONNECT", "client_id": "b", "user_name": "other", "keep_alive": 60, "clean_session": true, "protocol_level": 4}
b: expect {"type": "CONNACK", "code": "V3_NOT_AUTHORIZED"}
--- log
like: result=ignore

=== TEST 4: the service is down: server unavailable (3.1.1: 0x03, 5.0: 0x88), logged
--- setup
stub.http{ url = "http://127.0.0.1:8991/mqtt/auth", error = "dial tcp 127.0.0.1:8991: connect: connection refused" }
--- steps
c: send {"type": "CONNECT", "client_id": "c", "user_name": "u", "keep_alive": 60, "clean_session": true, "protocol_level": 4}
c: expect {"type": "CONNACK", "code": "V3_SERVER_UNAVAILABLE"}
d: level 5
d: send {"type": "CONNECT", "client_id": "d", "user_name": "u", "keep_alive": 60, "clean_session": true, "protocol_level": 5}
d: expect {"type": "CONNACK", "code": "SERVER_UNAVAILABLE"}
--- log
like: auth service gave no answer.*connection refused

=== TEST 5: the service is slow (past the timeout) or answers garbage: server unavailable
--- setup
auth_service.timeout = 0.2
stub.http{ url = "http://127.0.0.1:8991/mqtt/auth", match = '"username":"slow"', body = '{"result": "allow"}', delay = 1 }
stub.http{ url = "http://127.0.0.1:8991/mqtt/auth", body = "<html>oops</html>" }
--- steps
slow: send {"type": "CONNECT", "client_id": "slow", "user_name": "slow", "keep_alive": 60, "clean_session": true, "protocol_level": 4}
slow: expect {"type": "CONNACK", "code": "V3_SERVER_UNAVAILABLE"}
junk: send {"type": "CONNECT", "client_id": "junk", "user_name": "junk", "keep_alive": 60, "clean_session": true, "protocol_level": 4}
junk: expect {"type": "CONNACK", "code": "V3_SERVER_UNAVAILABLE"}
--- log
like: err="timeout after 200ms"
like: the answer is not JSON
