-- Users and ACLs in Redis, laid out as VerneMQ's vmq_diversity Redis
-- authentication keeps them, so an existing VerneMQ user store works as
-- it is. One key per client:
--
--   key:   ["mountpoint","client id","user name"]   (JSON; the mountpoint is "" here)
--   value: {"passhash": "$2a$10$...",               (bcrypt)
--           "publish_acl":   [{"pattern": "a/+/c"}, ...],
--           "subscribe_acl": [{"pattern": "a/#"}, ...]}
--
--   redis-cli SET '["","dev1","alice"]' '{"passhash":"...","publish_acl":[{"pattern":"dev1/#"}],"subscribe_acl":[{"pattern":"cmd/dev1/#"}]}'
--
-- (`echo PASSWORD | broker passwd alice` prints "alice:" and a bcrypt hash.) The ACL
-- is read once, at CONNECT, and kept for the connection. A client with no
-- key, or the wrong password, is refused as not authorized; when Redis
-- cannot answer, as server unavailable (it may retry). The Redis call and
-- the bcrypt check wait without stalling the worker.
--
-- Run it: broker --scripts scripts/examples/redis-acl

local clientacl = require "clientacl" -- per-connection ACLs (lualib/clientacl.lua)

local function patterns(list)
  local out = {}
  if type(list) == "table" then
    for _, e in ipairs(list) do
      if type(e) == "table" and type(e.pattern) == "string" then
        out[#out + 1] = e.pattern
      end
    end
  end
  return out
end

function onMqConnect(server, fd, fromId, data)
  local key = json.encode({ "", data.client_id, data.user_name or "" })
  local value, err = redis.client():get(key)
  if err then
    log.warn("redis gave no answer: refusing the client", { err = err, client_id = data.client_id })
    server:send(fd, { type = mqtt.CONNACK, code = mqtt.SERVER_UNAVAILABLE })
    return
  end
  local ok, doc = pcall(json.decode, value or "")
  if not ok or type(doc) ~= "table" or type(doc.passhash) ~= "string" then
    doc = {} -- no such client (or no usable entry): checked as unknown
  end
  -- authenticate checks an unknown client against a dummy hash, so a
  -- refusal takes as long either way, and limits failures per address
  -- and per user name.
  local good, why = broker.authenticate(fd, data.user_name or "", data.password or "", doc.passhash)
  if not good then
    log.info("connection refused", { client_id = data.client_id, user_name = data.user_name or "", known = doc.passhash ~= nil, why = why })
    server:send(fd, { type = mqtt.CONNACK, code = mqtt.NOT_AUTHORIZED })
    return
  end
  if broker.accept(fd, data) ~= nil then -- session present: true or false
    clientacl.set(fd, { publish = patterns(doc.publish_acl), subscribe = patterns(doc.subscribe_acl) })
  end
end

function onClose(server, fd)
  clientacl.forget(fd)
end

function onMqPublish(server, fd, fromId, data)
  clientacl.publish(fd, data)
end

function onMqSubscribe(server, fd, fromId, data)
  clientacl.subscribe(fd, data)
end

function onMqUnsubscribe(server, fd, fromId, data)
  broker.unsubscribe(fd, data)
end
