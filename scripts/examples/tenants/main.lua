-- Tenants by mount point: every user's topics live under
-- tenants/<user>/, and clients see their own names. A client publishes
-- "s/1" and it is routed as "tenants/alice/s/1"; it subscribes "s/#" and
-- the subscription is "tenants/alice/s/#"; onMqDeliver takes the prefix
-- off every delivery again, whether it goes out now, waits in an offline
-- session's queue, or is a retained message a SUBSCRIBE matched. No user
-- can reach another's topics: every name a client uses is under its own
-- prefix.
--
-- Run it: broker --scripts scripts/examples/tenants
-- Test it: broker test --scripts scripts/examples/tenants

local function mount(server, fd)
  return "tenants/" .. (server:info(fd, "user_name") or "anonymous") .. "/"
end

function onMqConnect(server, fd, fromId, data)
  -- A user name that is a topic level of its own, or it would reach past
  -- its mount point ("a/b", "+", "#").
  local user = data.user_name or "anonymous"
  if user == "" or user:find("[/+#]") then
    server:send(fd, { type = mqtt.CONNACK, code = mqtt.NOT_AUTHORIZED })
    return
  end
  broker.accept(fd, data)
end

function onMqPublish(server, fd, fromId, data)
  data.topic = mount(server, fd) .. data.topic
  broker.route(fd, data)
end

function onMqSubscribe(server, fd, fromId, data)
  for _, f in ipairs(data.filters) do
    f.topic = mount(server, fd) .. f.topic
  end
  broker.subscribe(fd, data)
end

function onMqUnsubscribe(server, fd, fromId, data)
  for i, t in ipairs(data.topics) do
    data.topics[i] = mount(server, fd) .. t
  end
  broker.unsubscribe(fd, data)
end

function onMqDeliver(server, fd, fromId, data)
  data.topic = data.topic:gsub("^tenants/[^/]+/", "")
  return data
end
