-- chain: handlers from several modules, run in a declared order.
--
-- Handlers are globals, so two modules that both handle PUBLISH (a rate
-- limiter and an enricher) cannot both define onMqPublish. With chain,
-- each module is a table of handlers, and
--
--   local chain = require "chain"
--   chain.use(require "ratelimit", require "enrich", chain.broker)
--
-- makes each handler a global that calls the modules' handlers of that
-- name in order. A handler returns nil to pass on to the next module, or
-- anything else to stop the chain with that outcome: chain.STOP when it
-- has answered (acknowledged, refused, routed itself), or a value the
-- chain returns (false from onMqConnect closes, as a handler's false
-- does). onMqDeliver passes the (possibly changed) data along: a module
-- changes it in place or returns a new table, false drops the delivery.
-- chain.broker, last, does what the kit does by default: accept, route,
-- subscribe, unsubscribe.

local chain = {}

chain.STOP = setmetatable({}, { __tostring = function() return "chain.STOP" end })

-- The handlers chain knows: the packet handlers and the hooks.
local HANDLERS = {
  "onMqConnect", "onMqPingreq", "onMqDisconnect", "onMqPublish", "onMqSubscribe",
  "onMqUnsubscribe", "onMqPuback", "onMqPubrec", "onMqPubrel", "onMqPubcomp", "onMqAuth",
  "onClose", "onWorkerStart", "onSessionEnd", "onMqDeliver",
}

-- The kit's default handling, as the end of a chain.
chain.broker = {
  onMqConnect = function(server, fd, fromId, data) broker.accept(fd, data) return chain.STOP end,
  onMqPublish = function(server, fd, fromId, data) broker.route(fd, data) return chain.STOP end,
  onMqSubscribe = function(server, fd, fromId, data) broker.subscribe(fd, data) return chain.STOP end,
  onMqUnsubscribe = function(server, fd, fromId, data) broker.unsubscribe(fd, data) return chain.STOP end,
}

local function deliverChain(fns)
  return function(server, fd, fromId, data)
    for i = 1, #fns do
      local r = fns[i](server, fd, fromId, data)
      if r == false then
        return false
      elseif r == chain.STOP then
        return data
      elseif type(r) == "table" then
        data = r
      end
    end
    return data
  end
end

local function handlerChain(fns)
  return function(...)
    for i = 1, #fns do
      local r = fns[i](...)
      if r == chain.STOP then
        return nil
      elseif r ~= nil then
        return r
      end
    end
  end
end

-- chain.use(module, ...) installs the chains as global handlers. A module
-- is a table; its functions named as handlers join the chains.
function chain.use(...)
  local mods = { ... }
  for i, m in ipairs(mods) do
    if type(m) ~= "table" then
      error("chain.use: argument " .. i .. " is a " .. type(m) .. ", not a module table", 2)
    end
  end
  for _, name in ipairs(HANDLERS) do
    local fns = {}
    for _, m in ipairs(mods) do
      if type(m[name]) == "function" then
        fns[#fns + 1] = m[name]
      end
    end
    if #fns > 0 then
      _G[name] = name == "onMqDeliver" and deliverChain(fns) or handlerChain(fns)
    end
  end
end

return chain
