# CONNECT decisions of the default scripts (scripts/main.lua, auth.lua).

=== TEST 1: an anonymous client from loopback is accepted
--- steps
a: connect
a: send {"type": "PINGREQ"}
a: expect {"type": "PINGRESP"}
--- log
like: anonymous clients are allowed from loopback only
unlike: level=error

=== TEST 2: an anonymous client from elsewhere is refused (3.1.1: 0x05)
--- steps
a: from 192.0.2.7:50000
a: send {"type": "CONNECT", "client_id": "remote", "clean_session": true}
a: expect {"type": "CONNACK", "code": 5, "session_present": false}
a: expect closed connect_refused
--- log
like: connection refused

=== TEST 3: an anonymous MQTT 5 client from elsewhere gets 0x87
--- steps
a: from 192.0.2.7:50001
a: level 5
a: send {"type": "CONNECT", "client_id": "remote5", "clean_session": true}
a: expect {"type": "CONNACK", "code": "NOT_AUTHORIZED"}
a: expect closed

=== TEST 4: a user with the right password is accepted, from anywhere
--- setup
require("auth").users.alice = broker.hash_password("s3cret", 4)
--- steps
a: from 198.51.100.1:4000
a: connect {"user_name": "alice", "password": "s3cret"}

=== TEST 5: a wrong password gets 0x04 (5.0: 0x86)
--- setup
require("auth").users.alice = broker.hash_password("s3cret", 4)
--- steps
a: send {"type": "CONNECT", "client_id": "a", "clean_session": true, "user_name": "alice", "password": "guess"}
a: expect {"type": "CONNACK", "code": 4}
a: expect closed
b: level 5
b: send {"type": "CONNECT", "client_id": "b", "clean_session": true, "user_name": "alice", "password": "guess"}
b: expect {"type": "CONNACK", "code": "BAD_USER_NAME_OR_PASSWORD"}
b: expect closed

=== TEST 6: an unknown user is refused like a wrong password
--- setup
require("auth").users.alice = broker.hash_password("s3cret", 4)
--- steps
a: send {"type": "CONNECT", "client_id": "a", "clean_session": true, "user_name": "mallory", "password": "x"}
a: expect {"type": "CONNACK", "code": 4}
a: expect closed

=== TEST 7: anonymous clients can be denied everywhere
--- setup
require("auth").anonymous = "deny"
--- steps
a: send {"type": "CONNECT", "client_id": "a", "clean_session": true}
a: expect {"type": "CONNACK", "code": 5}
a: expect closed

=== TEST 8: MQTT 5 enhanced authentication is not offered (0x8C)
--- steps
a: level 5
a: send {"type": "CONNECT", "client_id": "a", "clean_session": true, "properties": {"authentication_method": "SCRAM-SHA-1"}}
a: expect {"type": "CONNACK", "code": "BAD_AUTHENTICATION_METHOD"}
a: expect closed

=== TEST 9: a second connection with the same client id takes over
--- steps
first: level 5
first: connect {"client_id": "same"}
second: connect {"client_id": "same"}
first: expect {"type": "DISCONNECT", "code": "SESSION_TAKEN_OVER"}
first: expect closed session_taken_over
second: send {"type": "PINGREQ"}
second: expect {"type": "PINGRESP"}

=== TEST 10: a zero-length client id needs clean session in 3.1.1
--- steps
a: connect {"client_id": ""}
b: send {"type": "CONNECT", "client_id": "", "clean_session": false}
b: expect {"type": "CONNACK", "code": 2}
b: expect closed

=== TEST 11: a persistent session is present on reconnect
--- steps
a: connect {"clean_session": false}
a: send {"type": "DISCONNECT"}
a: expect closed client_disconnect
b: send {"type": "CONNECT", "client_id": "a", "clean_session": false}
b: expect {"type": "CONNACK", "code": 0, "session_present": true}

=== TEST 12: the first packet must be CONNECT
--- steps
a: send {"type": "PINGREQ"}
a: expect closed first_packet_not_connect

=== TEST 13: the fixture CONNECT of every protocol level is accepted
--- steps
v3: send fixture v3-connect-minimal
v3: expect {"type": "CONNACK", "code": 0}
v4: send fixture v4-connect-minimal
v4: expect {"type": "CONNACK", "code": 0}
v5: send fixture v5-connect-minimal
v5: expect {"type": "CONNACK", "code": 0}

=== TEST 8: a user's session is theirs: another user, or an anonymous client, cannot take its client id
--- setup
require("auth").users.alice = broker.hash_password("s3cret", 4)
require("auth").users.mallory = broker.hash_password("evil", 4)
--- steps
alice: send {"type": "CONNECT", "client_id": "dev-1", "clean_session": false, "user_name": "alice", "password": "s3cret"}
alice: expect {"type": "CONNACK", "code": 0}
alice: send {"type": "SUBSCRIBE", "message_id": 1, "filters": [{"topic": "inbox/alice", "qos": 1}]}
alice: expect {"type": "SUBACK", "codes": [1]}
mallory: send {"type": "CONNECT", "client_id": "dev-1", "clean_session": false, "user_name": "mallory", "password": "evil"}
mallory: expect {"type": "CONNACK", "code": 2}
mallory: expect closed connect_refused
anon: level 5
anon: send {"type": "CONNECT", "client_id": "dev-1", "clean_session": true}
anon: expect {"type": "CONNACK", "code": "CLIENT_IDENTIFIER_NOT_VALID"}
anon: expect closed
alice: send {"type": "PINGREQ"}
alice: expect {"type": "PINGRESP"}

=== TEST 9: with open_sessions, the client id is anyone's (Mosquitto's behaviour)
--- setup
require("auth").users.alice = broker.hash_password("s3cret", 4)
broker.configure({ open_sessions = true })
--- steps
alice: send {"type": "CONNECT", "client_id": "dev-1", "clean_session": false, "user_name": "alice", "password": "s3cret"}
alice: expect {"type": "CONNACK", "code": 0}
anon: send {"type": "CONNECT", "client_id": "dev-1", "clean_session": false}
anon: expect {"type": "CONNACK", "code": 0, "session_present": true}
alice: expect closed session_taken_over

=== TEST 10: after too many failures from an address, its logins are refused without a check, logged once
--- setup
require("auth").users.alice = broker.hash_password("s3cret", 4)
broker.configure({ login_failures_per_address = 2 })
--- steps
a: from 203.0.113.5:1000
a: send {"type": "CONNECT", "client_id": "a", "clean_session": true, "user_name": "alice", "password": "guess1"}
a: expect {"type": "CONNACK", "code": 4}
b: from 203.0.113.5:1001
b: send {"type": "CONNECT", "client_id": "b", "clean_session": true, "user_name": "alice", "password": "guess2"}
b: expect {"type": "CONNACK", "code": 4}
c: from 203.0.113.5:1002
c: level 5
c: send {"type": "CONNECT", "client_id": "c", "clean_session": true, "user_name": "alice", "password": "s3cret"}
c: expect {"type": "CONNACK", "code": "CONNECTION_RATE_EXCEEDED"}
d: from 203.0.113.5:1003
d: send {"type": "CONNECT", "client_id": "d", "clean_session": true, "user_name": "alice", "password": "s3cret"}
d: expect {"type": "CONNACK", "code": 3}
e: from 198.51.100.1:1000
e: connect {"user_name": "alice", "password": "s3cret"}
--- log
like: login failures: refusing logins.*address=203.0.113.5
