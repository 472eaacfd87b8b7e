-- Handlers that fail on purpose, for the engine's isolation tests.
function onMqConnect(server, fd, fromId, data)
  server:send(fd, { type = mqtt.CONNACK, code = 0 })
end

function onMqPublish(server, fd, fromId, data)
  if data.topic == "boom" then
    error("boom requested")
  elseif data.topic == "loop" then
    while true do end
  elseif data.topic == "trim" then
    -- The trim idiom, on a payload of spaces: backtracks for minutes
    -- inside the pattern matcher unless it checks the deadline.
    local s = data.message:match("^%s*(.-)%s*$")
  end
  for sub in server:connections() do
    if sub ~= fd then
      server:send(sub, { type = mqtt.PUBLISH, topic = data.topic, message = data.message })
    end
  end
  if data.qos == 1 then
    server:send(fd, { type = mqtt.PUBACK, message_id = data.message_id })
  end
end

function onMqSubscribe(server, fd, fromId, data)
  local codes = {}
  for i, f in ipairs(data.filters) do codes[i] = f.qos end
  server:send(fd, { type = mqtt.SUBACK, message_id = data.message_id, codes = codes })
end
