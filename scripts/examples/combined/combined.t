=== TEST 1: readings are enriched until the client passes its limit
--- steps
dash: connect
dash: send {"type": "SUBSCRIBE", "message_id": 1, "filters": [{"topic": "sensors/#", "qos": 0}]}
dash: expect {"type": "SUBACK"}
dev: connect {"client_id": "dev-1"}
dev: send {"type": "PUBLISH", "topic": "sensors/hall/raw", "message": "20"}
dev: send {"type": "PUBLISH", "topic": "sensors/hall/raw", "message": "21"}
dev: send {"type": "PUBLISH", "topic": "sensors/hall/raw", "message": "22"}
dash: expect {"type": "PUBLISH", "topic": "sensors/hall/json"}
dash: expect {"type": "PUBLISH", "topic": "sensors/hall/json"}
dash: expect nothing
--- log
like: rate limit.*count=3

=== TEST 2: the limit stops the chain before the enricher sees the message
--- steps
dev: level 5
dev: connect {"client_id": "dev-2"}
dev: send {"type": "PUBLISH", "topic": "sensors/a/raw", "message": "1", "qos": 1, "message_id": 1}
dev: expect {"type": "PUBACK", "message_id": 1}
dev: send {"type": "PUBLISH", "topic": "sensors/a/raw", "message": "2", "qos": 1, "message_id": 2}
dev: expect {"type": "PUBACK", "message_id": 2}
dev: send {"type": "PUBLISH", "topic": "sensors/a/raw", "message": "not a number", "qos": 1, "message_id": 3}
dev: expect {"type": "PUBACK", "message_id": 3, "code": "QUOTA_EXCEEDED"}
