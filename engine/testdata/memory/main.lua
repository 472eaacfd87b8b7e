-- Scripts that overrun the Lua memory budget, for TestMemoryBudget*: a
-- PUBLISH to "eat" allocates without end in one call; each PUBLISH to
-- "keep" keeps 4 MiB more in a global; "count" answers how many it keeps.

big = {}

function onMqConnect(server, fd, fromId, data)
  server:send(fd, { type = mqtt.CONNACK, code = 0 })
end

function onMqPublish(server, fd, fromId, data)
  if data.topic == "eat" then
    local t, i = {}, 0
    while true do
      i = i + 1
      t[i] = { i, i + 1, i + 2 }
    end
  elseif data.topic == "keep" then
    big[#big + 1] = string.rep("y", 4 * 1024 * 1024) .. #big
    server:send(fd, { type = mqtt.PUBLISH, topic = "kept", message = tostring(#big) })
  elseif data.topic == "count" then
    server:send(fd, { type = mqtt.PUBLISH, topic = "count", message = tostring(#big) })
  end
end
