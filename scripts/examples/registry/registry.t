=== TEST 1: presence is retained while online, and says why a device left
--- steps
dev1: connect
dash: connect
dash: send {"type": "SUBSCRIBE", "message_id": 1, "filters": [{"topic": "devices/+/presence", "qos": 1}]}
dash: expect {"type": "SUBACK", "codes": [1]}
dash: expect {"type": "PUBLISH", "topic": "devices/dash/presence", "retain": true}
dash: send {"type": "PUBACK", "message_id": 1}
dash: expect {"type": "PUBLISH", "topic": "devices/dev1/presence", "retain": true}
dash: send {"type": "PUBACK", "message_id": 2}
dev1: close
dash: expect {"type": "PUBLISH", "topic": "devices/dev1/presence", "retain": false}
dash: send {"type": "PUBACK", "message_id": 3}
dev2: connect
dash: expect {"type": "PUBLISH", "topic": "devices/dev2/presence"}
dash: send {"type": "PUBACK", "message_id": 4}
dev2: send {"type": "DISCONNECT"}
dash: expect {"type": "PUBLISH", "topic": "devices/dev2/presence"}

=== TEST 2: clients cannot forge presence
--- steps
dash: connect
dash: send {"type": "SUBSCRIBE", "message_id": 1, "filters": [{"topic": "devices/evil/presence", "qos": 0}]}
dash: expect {"type": "SUBACK"}
evil: connect
dash: expect {"type": "PUBLISH", "topic": "devices/evil/presence"}
evil: send {"type": "PUBLISH", "topic": "devices/evil/presence", "message": "{\"online\":false}", "qos": 1, "message_id": 9}
evil: expect {"type": "PUBACK", "message_id": 9}
dash: expect nothing
