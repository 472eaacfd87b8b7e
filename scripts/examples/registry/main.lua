-- A device registry: every client's presence is a retained message on
-- devices/<client id>/presence, {"online": true, ...} while it is
-- connected and {"online": false, "reason": ...} after it goes, for
-- whatever reason (a will only covers the abnormal ones). A dashboard
-- subscribing to devices/+/presence sees every device at once, because the
-- messages are retained.
--
-- Run it: broker --scripts scripts/examples/registry

local clients = {} -- fd -> client id, for onClose (this worker's clients)

local function presence(client, doc)
  broker.publish({
    topic = "devices/" .. client .. "/presence",
    message = json.encode(doc),
    qos = 1,
    retain = true,
  })
end

function onMqConnect(server, fd, fromId, data)
  if broker.accept(fd, data) == nil then
    return -- refused: no presence
  end
  local client = server:info(fd).client_id
  clients[fd] = client
  presence(client, { online = true, since = os.time(), protocol_level = data.protocol_level })
end

function onClose(server, fd, reason)
  local client = clients[fd]
  clients[fd] = nil
  if client then
    presence(client, { online = false, since = os.time(), reason = reason })
  end
end

function onMqPublish(server, fd, fromId, data)
  if data.topic:match("^devices/[^/]+/presence$") then
    -- Only the registry writes presence.
    broker.ack(fd, data, mqtt.NOT_AUTHORIZED)
    return
  end
  broker.route(fd, data)
end

function onMqSubscribe(server, fd, fromId, data)
  broker.subscribe(fd, data)
end
