-- Exercises the bindings: each PUBLISH to "cmd/<name>" runs a check and
-- answers the sender on "result/<name>" with what it found.
local json = require "json"

local function reply(server, fd, name, value)
  server:send(fd, { type = mqtt.PUBLISH, topic = "result/" .. name, message = tostring(value) })
end

function onWorkerStart(server, workerId)
  shared.incr("workers_started", 1)
end

function onMqConnect(server, fd, fromId, data)
  if data.client_id == "refuse-me" then
    server:send(fd, { type = mqtt.CONNACK, code = mqtt.NOT_AUTHORIZED })
    return
  end
  if data.client_id == "drop-me" then
    return false
  end
  server:send(fd, mqtt.getAck({ cmd = mqtt.CONNACK, code = 0, session_present = 0 }))
end

function onMqPublish(server, fd, fromId, data)
  local name = data.topic:match("^cmd/(.+)$")
  if name == "incr" then
    reply(server, fd, name, shared.incr("counter", 1))
  elseif name == "workers" then
    reply(server, fd, name, shared.get("workers_started"))
  elseif name == "json" then
    local v = json.decode(data.message)
    v.seen = true
    reply(server, fd, name, json.encode({ n = v.n + 1, seen = v.seen }))
  elseif name == "info" then
    local info = server:info(fd)
    reply(server, fd, name, info.client_id .. " " .. info.protocol_level .. " " .. tostring(server:exist(fd)))
  elseif name == "addr" then
    local a = server:info(fd, "remote_addr")
    local gone, err = server:info(99999, "remote_addr")
    local id, user, level = server:info(fd, "client_id", "user_name", "protocol_level")
    local typo = pcall(server.info, server, fd, "clientid")
    reply(server, fd, name, a:sub(1, 10) .. " " .. tostring(a == server:info(fd).remote_addr) .. " " .. tostring(gone) .. " " .. err ..
      " " .. id .. " " .. tostring(user) .. " " .. level .. " " .. tostring(typo))
  elseif name == "unpack" then
    local p = mqtt.unpack(mqtt.pack({ type = mqtt.PUBLISH, topic = "x/y", message = "z", qos = 1, message_id = 7 }))
    reply(server, fd, name, p.topic .. " " .. p.message .. " " .. p.message_id)
  elseif name == "timer" then
    timer.after(0.05, function()
      reply(server, fd, name, "fired")
    end)
  elseif name == "badarg" then
    local ok, err = pcall(server.send, server, nil, "x")
    reply(server, fd, name, err)
  elseif name == "sendclosed" then
    local ok, err = server:send(999999, "x")
    reply(server, fd, name, tostring(ok) .. " " .. err)
  elseif name == "kick" then
    server:close(fd, mqtt.ADMINISTRATIVE_ACTION, "kicked by script")
  elseif name == "badshared" then
    -- A bad key raises, and leaves the store usable.
    local ok = pcall(shared.get, {})
    reply(server, fd, name, tostring(ok) .. " " .. shared.incr("after_bad_get", 1))
  elseif name == "io" then
    reply(server, fd, name, tostring(io) .. " " .. tostring(os.execute) .. " " .. tostring(dofile))
  end
end

function onMqSubscribe(server, fd, fromId, data)
  local codes = {}
  for i, f in ipairs(data.filters) do codes[i] = f.qos end
  server:send(fd, { type = mqtt.SUBACK, message_id = data.message_id, codes = codes })
end

function onClose(server, fd, reason)
  shared.set("closed:" .. fd, reason)
end
