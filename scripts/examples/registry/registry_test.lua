local testing = require "testing"

testing.test("the offline message carries the close reason", function()
  local dev = testing.client("dev", { level = 5 })
  dev:connect({ keep_alive = 1 })
  local dash = testing.client("dash")
  dash:connect()
  dash:send({ type = "SUBSCRIBE", message_id = 1, filters = { { topic = "devices/dev/presence", qos = 0 } } })
  dash:expect({ type = "SUBACK" })
  local online = dash:expect({ type = "PUBLISH", retain = true })
  testing.eq(json.decode(online.message).online, true)
  -- dev stays silent past 1.5 x its keep alive
  dev:expect({ type = "DISCONNECT", code = "KEEP_ALIVE_TIMEOUT" })
  local offline = dash:expect({ type = "PUBLISH" })
  local doc = json.decode(offline.message)
  testing.eq(doc.online, false)
  testing.eq(doc.reason, "keep_alive_timeout")
end)
