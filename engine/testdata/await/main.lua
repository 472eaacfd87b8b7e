-- Handlers that wait, for TestAwait*: a client whose id starts with
-- "slow" waits sleep(n) seconds in its CONNECT handler (n from the user
-- name), inside a pcall and a coroutine of the script's own, as scripts
-- do; the others are answered at once. A PUBLISH to "sleep" waits
-- data.message seconds and then answers; "count" answers the calls made.
-- A client whose id starts with "hash" has its password checked against
-- SCRIPT_HASH (a costly bcrypt hash) in its CONNECT handler.

local calls = 0

function onMqConnect(server, fd, fromId, data)
  calls = calls + 1
  if data.client_id:sub(1, 4) == "slow" then
    local secs = tonumber(data.user_name) or 1
    local ok, err = pcall(function()
      local co = coroutine.wrap(function() sleep(secs / 2); coroutine.yield("mid"); sleep(secs / 2); return "end" end)
      assert(co() == "mid")
      assert(co() == "end")
    end)
    if not ok then
      log.error("slow connect failed", { err = tostring(err) })
    end
  end
  if data.client_id:sub(1, 4) == "gone" then
    -- The broker closes the connection while this waits (a "kick"):
    -- the bindings answer nil, "closed".
    sleep(0.2)
    local ok, err = broker.accept(fd, data)
    log.info("accept after the connection closed", { ok = tostring(ok), err = tostring(err) })
    return
  end
  if data.client_id:sub(1, 4) == "hash" then
    -- bcrypt of a high cost: off the worker, like the I/O calls.
    assert(broker.check_password(os.getenv("SCRIPT_HASH"), "pw"), "the password matches")
  end
  broker.accept(fd, data)
end

function onMqPublish(server, fd, fromId, data)
  calls = calls + 1
  if data.topic == "sleep" then
    local before = os.now()
    sleep(tonumber(data.message))
    server:send(fd, { type = mqtt.PUBLISH, topic = "slept", message = string.format("%.1f", os.now() - before) })
  elseif data.topic == "echo" then
    -- Every other message waits a little: the answers must still come
    -- back in order.
    if tonumber(data.message) % 2 == 0 then
      sleep(0.002)
    end
    server:send(fd, { type = mqtt.PUBLISH, topic = "echo", message = data.message })
  elseif data.topic == "kick" then
    server:close(tonumber(data.message))
  elseif data.topic == "timer" then
    -- A timer callback that waits.
    timer.after(0.01, function()
      sleep(0.05)
      server:send(fd, { type = mqtt.PUBLISH, topic = "timer", message = "done" })
    end)
  elseif data.topic == "count" then
    server:send(fd, { type = mqtt.PUBLISH, topic = "count", message = tostring(calls) })
  elseif data.topic == "spin" then
    -- CPU past the handler timeout after a wait: the deadline counts
    -- the CPU of the whole call.
    sleep(0.05)
    while true do end
  elseif data.topic == "forever" then
    while true do sleep(0.2) end
  else
    broker.route(fd, data)
  end
end

function onMqDeliver(server, fd, fromId, data)
  if data.topic == "deliver/sleep" then
    sleep(0.1)
  end
end

function onMqSubscribe(server, fd, fromId, data)
  broker.subscribe(fd, data)
end

function onMqDisconnect(server, fd, fromId, data)
  return true
end
