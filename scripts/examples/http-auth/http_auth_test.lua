local testing = require "testing"

local URL = "http://127.0.0.1:8991/mqtt/auth"

testing.test("other clients, on the same worker too, are served while one waits for the service", function()
  stub.http({ url = URL, match = '"username":"slow"', body = '{"result":"allow"}', delay = 1 })
  stub.http({ url = URL, body = '{"result":"allow"}' })
  local slow = testing.client("slow")
  slow:send({ type = "CONNECT", client_id = "slow", user_name = "slow", keep_alive = 60, clean_session = true, protocol_level = 4 })
  testing.wait(0.1) -- slow's request is under way
  local same = 0
  for i = 1, 4 do
    local q = testing.client("quick" .. i)
    q:connect({ user_name = "quick" })
    if server:info(q:fd()).worker_id == server:info(slow:fd(), "worker_id") then
      same = same + 1
    end
  end
  testing.ok(same > 0, "a quick client shares the slow one's worker")
  -- All four were accepted, and the slow one is still waiting.
  slow:expect_nothing(0.1)
  slow:expect({ type = "CONNACK", code = 0 })
end)

testing.test("an answer is cached: a reconnect does not ask again", function()
  stub.http({ url = URL, body = '{"result":"allow"}' })
  local c = testing.client("cached")
  c:connect({ user_name = "u", password = "p" })
  c:close()
  local again = testing.client("cached2")
  again:connect({ client_id = "cached", user_name = "u", password = "p" })
  testing.eq(#stub.calls("http"), 1)
  -- Another password is another question.
  local other = testing.client("cached3")
  other:connect({ client_id = "cached", user_name = "u", password = "q" })
  testing.eq(#stub.calls("http"), 2)
end)
