-- The default broker. Every packet a client sends arrives here, decoded,
-- in one of the Simps-named handlers below; the `broker` kit does the
-- protocol work (sessions, QoS flows, retained messages, wills, routing)
-- when a handler asks it to. Edit this file to change what the broker
-- decides; edit auth.lua and acl.lua to change who may do what.
--
-- Handlers get (server, fd, fromId, data): `fd` is the connection,
-- `fromId` the Lua worker running this call, and `data` the packet with
-- Simps' field names (data.client_id, data.topic, data.message, ...).
-- A connection always runs on the same worker, so per-connection Lua
-- state could live in a local table here (it would be lost on a reload);
-- state shared by all clients belongs in `shared` or in the kit, never in
-- Lua globals.

local auth = require "auth"
local acl = require "acl"

-- Locals for the per-message path (a global lookup is a hash lookup).
local route, ack, acl_allowed = broker.route, broker.ack, acl.allowed

-- Limits of the kit: the outbound window of unacknowledged QoS 1/2
-- messages per client, and how many more are held for it (while offline
-- with clean session 0, or beyond the window) before the oldest is dropped.
broker.configure({ max_inflight = 20, max_queued = 1000, queue_drop = "oldest" })


function onWorkerStart(server, workerId)
  if workerId == 0 then
    auth.announce()
  end
end

function onMqConnect(server, fd, fromId, data)
  -- 1. Authenticate. auth.check answers the reason code to refuse with.
  local ok, code = auth.check(server, fd, data)
  if not ok then
    log.info("connection refused", { user_name = data.user_name or "", code = code })
    server:send(fd, { type = mqtt.CONNACK, code = code })
    return
  end
  -- 2. Accept: the kit resolves the client id, takes over an older
  -- connection with the same id, resumes or starts the session, keeps the
  -- will, and answers CONNACK.
  broker.accept(fd, data)
end

function onMqPublish(server, fd, fromId, data)
  -- 3. Topics that start with "$" are the broker's ($SYS/...; MQTT 4.7.2):
  -- no client publishes there, so nobody can forge the broker's status.
  -- (A topic starts with "$" when it sorts from "$" to just before "%":
  -- two comparisons, no function call on the per-message path.)
  local topic = data.topic
  if topic >= "$" and topic < "%" then
    log.info("publish to a $ topic denied", { topic = topic })
    ack(fd, data, mqtt.NOT_AUTHORIZED)
    return
  end
  -- 4. Authorize. A denied PUBLISH is acknowledged and dropped, as 3.1.1
  -- requires (5.0 clients see 0x87 in the acknowledgement). acl.allowed
  -- answers at once when there are no rules, and remembers decisions.
  if not acl_allowed(server, fd, topic, "write") then
    log.debug("publish denied", { topic = topic })
    ack(fd, data, mqtt.NOT_AUTHORIZED)
    return
  end
  -- 5. Rewrite or enrich here: change data.topic or data.message before
  -- routing, or return without routing to drop the message.
  route(fd, data)
end

function onMqSubscribe(server, fd, fromId, data)
  -- One code per filter, in packet order: the QoS to grant, or a refusal
  -- (0x80 in the SUBACK of a 3.1.1 client).
  local codes = {}
  for i, filter in ipairs(data.filters) do
    if acl.allowed(server, fd, filter.topic, "read") then
      codes[i] = filter.qos
    else
      log.debug("subscribe denied", { filter = filter.topic })
      codes[i] = mqtt.NOT_AUTHORIZED
    end
  end
  broker.subscribe(fd, data, codes)
end

function onMqUnsubscribe(server, fd, fromId, data)
  broker.unsubscribe(fd, data)
end

function onMqPingreq(server, fd, fromId, data)
  return true -- the engine answers PINGRESP
end

function onMqDisconnect(server, fd, fromId, data)
  return true -- the engine closes; the will is discarded
end
