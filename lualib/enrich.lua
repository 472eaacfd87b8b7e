-- enrich: readings turned into JSON, as a chain module.
--
-- Devices publish bare readings to sensors/<device>/raw ("21.5"); this
-- module turns each into JSON on sensors/<device>/json, adding the device,
-- the client that sent it and the time it arrived, so consumers never
-- parse device formats. Anything else passes on unchanged; a reading
-- that is not a number is acknowledged and dropped (5.0: 0x99 Payload
-- format invalid).
--
--   require("chain").use(require("enrich"), require("chain").broker)

local chain = require "chain"

local enrich = {}

function enrich.onMqPublish(server, fd, fromId, data)
  local device = data.topic:match("^sensors/([^/]+)/raw$")
  if not device then
    return
  end
  local value = tonumber(data.message)
  if value == nil then
    log.warn("not a number, dropped", { topic = data.topic })
    broker.ack(fd, data, mqtt.PAYLOAD_FORMAT_INVALID)
    return chain.STOP
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

return enrich
