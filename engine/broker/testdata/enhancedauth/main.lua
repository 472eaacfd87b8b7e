-- MQTT 5 enhanced authentication, challenge/response: the client names
-- the method "reverse" in CONNECT; the server answers AUTH 0x18 with a
-- challenge; the client proves itself by sending the challenge reversed.
local pending = {} -- fd -> {connect = data, challenge = string}

function onMqConnect(server, fd, fromId, data)
  local props = data.properties or {}
  if props.authentication_method == nil then
    broker.accept(fd, data)
    return
  end
  if props.authentication_method ~= "reverse" then
    server:send(fd, { type = mqtt.CONNACK, code = mqtt.BAD_AUTHENTICATION_METHOD })
    return
  end
  local challenge = "nonce-" .. fd .. "-" .. shared.incr("nonce", 1)
  pending[fd] = { connect = data, challenge = challenge }
  server:send(fd, {
    type = mqtt.AUTH,
    code = mqtt.CONTINUE_AUTHENTICATION,
    properties = { authentication_method = "reverse", authentication_data = challenge },
  })
end

function onMqAuth(server, fd, fromId, data)
  local p = pending[fd]
  pending[fd] = nil
  local props = data.properties or {}
  if p and data.code == mqtt.CONTINUE_AUTHENTICATION and props.authentication_data == p.challenge:reverse() then
    broker.accept(fd, p.connect, { authentication_method = "reverse" })
  else
    server:send(fd, { type = mqtt.CONNACK, code = mqtt.NOT_AUTHORIZED, properties = { reason_string = "wrong answer" } })
  end
end

function onMqSubscribe(server, fd, fromId, data)
  broker.subscribe(fd, data)
end

function onMqPublish(server, fd, fromId, data)
  broker.route(fd, data)
end

function onClose(server, fd, reason)
  pending[fd] = nil
end
