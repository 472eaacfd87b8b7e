-- testing: unit tests for scripts, run by `broker test`.
--
--   local testing = require "testing"
--
--   testing.test("a subscriber gets what a publisher sends", function()
--     local sub = testing.client("sub")
--     sub:connect()
--     sub:send({ type = "SUBSCRIBE", message_id = 1, filters = { { topic = "a/#", qos = 0 } } })
--     sub:expect({ type = "SUBACK", codes = { 0 } })
--     local pub = testing.client("pub", { level = 5 })
--     pub:connect()
--     pub:send({ type = "PUBLISH", topic = "a/b", message = "hi" })
--     sub:expect({ type = "PUBLISH", topic = "a/b", message = "hi" })
--     sub:expect_nothing()
--   end)
--
-- Each test runs against a fresh broker running the scripts under test,
-- with in-memory connections. The scripts' handlers are also loaded in the
-- test's own Lua state, so a test can call one directly:
--
--   onMqPublish(server, pub:fd(), 0, testing.fixture("v4-publish-qos0"))
--
-- Packet tables use the names of the `data` tables handlers receive; "type"
-- and "code" may be given by name ("PUBLISH", "NOT_AUTHORIZED"). expect
-- compares only the fields it is given.

local core = require "testing.core"

local testing = {}

-- testing.test(name, fn) registers a test.
testing.test = core.register

-- testing.client(name [, {level = 3|4|5, from = "addr:port"}]) -> client
-- with :connect([fields]), :send(packet | bytes), :expect(fields) -> packet,
-- :expect_nothing([seconds]), :expect_closed([reason]), :close(), :fd().
testing.client = core.client

-- testing.fixture(name) -> the decoded packet of testdata/packets/name.txtar
testing.fixture = core.fixture

-- testing.fixture_bytes(name) -> its raw bytes
testing.fixture_bytes = core.fixture_bytes

-- testing.wait(seconds)
testing.wait = core.wait

local function repr(v, depth)
  depth = depth or 0
  if type(v) == "string" then
    return string.format("%q", v)
  elseif type(v) ~= "table" or depth > 3 then
    return tostring(v)
  end
  local keys = {}
  for k in pairs(v) do
    keys[#keys + 1] = k
  end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  local parts = {}
  for _, k in ipairs(keys) do
    parts[#parts + 1] = tostring(k) .. " = " .. repr(v[k], depth + 1)
  end
  return "{" .. table.concat(parts, ", ") .. "}"
end

local function deep_eq(a, b)
  if type(a) ~= "table" or type(b) ~= "table" then
    return a == b
  end
  for k, v in pairs(a) do
    if not deep_eq(v, b[k]) then
      return false
    end
  end
  for k in pairs(b) do
    if a[k] == nil then
      return false
    end
  end
  return true
end

-- testing.eq(got, want [, message]) fails unless got and want are equal
-- (tables compared deeply).
function testing.eq(got, want, message)
  if not deep_eq(got, want) then
    error((message and message .. ": " or "") .. "expected " .. repr(want) .. ", got " .. repr(got), 2)
  end
end

-- testing.ok(value [, message]) fails unless value is true-ish.
function testing.ok(value, message)
  if not value then
    error(message or "expected a true value, got " .. repr(value), 2)
  end
end

-- testing.log_like(pattern) fails unless the broker's log so far has a
-- line matching the Lua pattern; testing.log_unlike the opposite.
function testing.log_like(pattern)
  if not core.logs():find(pattern) then
    error("the log has no line like " .. pattern .. "\n" .. core.logs(), 2)
  end
end

function testing.log_unlike(pattern)
  local logs = core.logs()
  local s = logs:find(pattern)
  if s then
    error("the log has a line like " .. pattern, 2)
  end
end

return testing
