-- Topic rewrite and payload enrichment.
--
-- Devices publish bare readings to sensors/<device>/raw ("21.5"). This
-- script turns each into JSON on sensors/<device>/json, adding the device,
-- the client that sent it and the time it arrived, so consumers never parse
-- device formats. Anything else is routed unchanged.
--
-- Run it: broker --scripts scripts/examples/enrich

function onMqConnect(server, fd, fromId, data)
  broker.accept(fd, data)
end

function onMqPublish(server, fd, fromId, data)
  local device = data.topic:match("^sensors/([^/]+)/raw$")
  if device then
    local value = tonumber(data.message)
    if value == nil then
      log.warn("not a number, dropped", { topic = data.topic })
      broker.ack(fd, data, mqtt.PAYLOAD_FORMAT_INVALID)
      return
    end
    data.topic = "sensors/" .. device .. "/json"
    data.message = json.encode({
      device = device,
      value = value,
      client = server:info(fd, "client_id"),
      received = os.time(),
    })
    -- MQTT 5 subscribers learn the payload is JSON text.
    data.properties = data.properties or {}
    data.properties.content_type = "application/json"
    data.properties.payload_format_indicator = 1
  end
  broker.route(fd, data)
end

function onMqSubscribe(server, fd, fromId, data)
  broker.subscribe(fd, data)
end
