-- The Simps raw-mode MQTT server, ported line by line from the Simps
-- framework's MqttServer example. Every handler answers by hand through
-- `server:send` and `mqtt.getAck`, and every PUBLISH is broadcast to every
-- other connected client: there is no topic routing, no retained message
-- and no session here. It shows the raw layer that everything else is
-- built on.
--
-- Handlers receive (server, fd, fromId, data): `fd` names the connection,
-- `fromId` is the Lua worker running this call, `data` is the decoded
-- packet with Simps' field names (data.client_id, data.topic, ...).

function onMqConnect(server, fd, fromId, data)
  -- If the protocol name is wrong the server may close the connection.
  if data.protocol_name ~= "MQTT" and data.protocol_name ~= "MQIsdp" then
    server:close(fd)
    return false
  end
  -- Authenticate here: refuse with code 5 (not authorized), for example.
  server:send(fd, mqtt.getAck({
    cmd = mqtt.CONNACK, -- 2
    code = 0,           -- accepted
    session_present = 0,
  }))
end

function onMqPingreq(server, fd, fromId, data)
  -- true: the engine answers with PINGRESP
  return true
end

function onMqDisconnect(server, fd, fromId, data)
  -- true: the engine closes the connection
  return true
end

function onMqPublish(server, fd, fromId, data)
  -- Broadcast to every other connection, as Simps' example does.
  for sub in server:connections() do
    if sub ~= fd then
      server:send(sub, {
        type = mqtt.PUBLISH,
        topic = data.topic,
        message = data.message,
        qos = 0,
        dup = false,
        retain = false,
      })
    end
  end
  if data.qos == 1 then
    server:send(fd, mqtt.getAck({ cmd = mqtt.PUBACK, message_id = data.message_id }))
  elseif data.qos == 2 then
    server:send(fd, mqtt.getAck({ cmd = mqtt.PUBREC, message_id = data.message_id }))
  end
end

function onMqPubrel(server, fd, fromId, data)
  server:send(fd, mqtt.getAck({ cmd = mqtt.PUBCOMP, message_id = data.message_id }))
end

function onMqSubscribe(server, fd, fromId, data)
  -- Grant every filter at the QoS it asked for; data.filters keeps the
  -- packet's order, which the SUBACK codes must follow.
  local codes = {}
  for i, filter in ipairs(data.filters) do
    codes[i] = filter.qos
  end
  server:send(fd, mqtt.getAck({ cmd = mqtt.SUBACK, message_id = data.message_id, codes = codes }))
end

function onMqUnsubscribe(server, fd, fromId, data)
  local codes = {}
  for i = 1, #data.topics do
    codes[i] = mqtt.SUCCESS
  end
  server:send(fd, mqtt.getAck({ cmd = mqtt.UNSUBACK, message_id = data.message_id, codes = codes }))
end
