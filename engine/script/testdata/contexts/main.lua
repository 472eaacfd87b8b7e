-- Calls broker.* bindings where they do not belong and reports the error
-- each raises as a PUBLISH to the caller on topic "err".
local function report(fd, err)
  server:send(fd, { type = mqtt.PUBLISH, topic = "err", message = tostring(err) })
end

function onMqConnect(server, fd, fromId, data)
  if data.client_id == "raw" then
    -- Answered Simps-style, without a session.
    server:send(fd, mqtt.getAck({ type = mqtt.CONNACK, code = 0 }))
  else
    broker.accept(fd, data)
  end
end

function onMqSubscribe(server, fd, fromId, data)
  local ok, err = pcall(broker.subscribe, fd, data)
  if not ok then report(fd, err) end
end

function onMqPublish(server, fd, fromId, data)
  if data.topic == "accept" then
    local ok, err = pcall(broker.accept, fd, { type = mqtt.CONNECT, client_id = "x" })
    report(fd, err)
  elseif data.topic == "timer" then
    timer.after(0.01, function()
      local ok, err = pcall(broker.route, fd, data)
      report(fd, err)
    end)
  elseif data.topic == "otherfd" then
    local ok, err = pcall(broker.route, fd + 1000, data)
    report(fd, err)
  else
    broker.route(fd, data)
  end
end
