-- Per-client publish rate limit.
--
-- Each client may publish `limit` messages per `window` seconds. The count
-- lives in `shared`, the key-value store every Lua worker sees, under a key
-- that expires with the window: no Lua global, no cleanup timer. Messages
-- over the limit are dropped; an MQTT 5 client is told so with 0x97
-- (Quota exceeded) in its PUBACK, a 3.1.1 client cannot be told and just
-- gets its acknowledgement.
--
-- Run it: broker --scripts scripts/examples/ratelimit
-- Test it: broker test --scripts scripts/examples/ratelimit

local limit = 3
local window = 1 -- seconds

function onMqConnect(server, fd, fromId, data)
  broker.accept(fd, data)
end

function onMqPublish(server, fd, fromId, data)
  local client = server:info(fd, "client_id") -- just the client id: no table built
  -- One counter per client and window; incr creates it at 0 with the
  -- window as its expiry, so it starts over by itself.
  local n = shared.incr("rate:" .. client, 1, 0, window)
  if n > limit then
    log.info("rate limit", { client = client, count = n })
    broker.ack(fd, data, mqtt.QUOTA_EXCEEDED)
    return
  end
  broker.route(fd, data)
end

function onMqSubscribe(server, fd, fromId, data)
  broker.subscribe(fd, data)
end

function onMqUnsubscribe(server, fd, fromId, data)
  broker.unsubscribe(fd, data)
end
