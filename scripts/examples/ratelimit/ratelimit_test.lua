local testing = require "testing"

testing.test("an MQTT 5 client over the limit gets 0x97", function()
  local pub = testing.client("pub", { level = 5 })
  pub:connect()
  for i = 1, 3 do
    pub:send({ type = "PUBLISH", topic = "m", message = tostring(i), qos = 1, message_id = i })
    -- nobody subscribed: 0x10 No matching subscribers
    pub:expect({ type = "PUBACK", message_id = i, code = "NO_MATCHING_SUBSCRIBERS" })
  end
  pub:send({ type = "PUBLISH", topic = "m", message = "4", qos = 1, message_id = 4 })
  pub:expect({ type = "PUBACK", message_id = 4, code = "QUOTA_EXCEEDED" })
end)
