-- A broker for the listener tests: the kit does the protocol work, and a
-- PUBLISH to "whoami" is answered (on "whoami") with what server:info
-- knows of the connection's listener, address and client certificate.

function onMqConnect(server, fd, fromId, data)
  broker.accept(fd, data)
end

function onMqPublish(server, fd, fromId, data)
  if data.topic == "whoami" then
    local listener, cn, fp, addr, user = server:info(fd, "listener", "cert_cn", "cert_fingerprint", "remote_addr", "user_name")
    local sans = server:info(fd, "cert_sans")
    local all = server:info(fd)
    server:send(fd, { type = mqtt.PUBLISH, topic = "whoami", message = table.concat({
      listener, cn or "-", fp or "-", addr, sans and table.concat(sans, ",") or "-",
      all.cert and all.cert.cn or "-", all.listener, user or "-",
    }, "|") })
    return
  end
  broker.route(fd, data)
end

function onMqSubscribe(server, fd, fromId, data)
  local codes = {}
  for i, f in ipairs(data.filters) do
    codes[i] = f.qos
  end
  broker.subscribe(fd, data, codes)
end

function onMqUnsubscribe(server, fd, fromId, data)
  broker.unsubscribe(fd, data)
end
