-- ratelimit: a per-client publish rate limit, as a chain module.
--
-- Each client may publish `limit` messages per `window` seconds. The count
-- lives in `shared`, under a key that expires with the window: no Lua
-- global, no cleanup timer. Messages over the limit are acknowledged and
-- dropped; an MQTT 5 client reads 0x97 (Quota exceeded) in its PUBACK.
--
--   local ratelimit = require "ratelimit"
--   ratelimit.limit, ratelimit.window = 3, 1
--   require("chain").use(ratelimit, require("chain").broker)

local chain = require "chain"

local ratelimit = { limit = 3, window = 1 }

function ratelimit.onMqPublish(server, fd, fromId, data)
  local client = server:info(fd, "client_id") -- just the client id: no table built
  -- One counter per client and window; incr creates it at 0 with the
  -- window as its expiry, so it starts over by itself.
  local n = shared.incr("rate:" .. client, 1, 0, ratelimit.window)
  if n > ratelimit.limit then
    log.info("rate limit", { client = client, count = n })
    broker.ack(fd, data, mqtt.QUOTA_EXCEEDED)
    return chain.STOP
  end
end

return ratelimit
