-- Tries to leave the sandbox from a handler. Each PUBLISH's payload is a
-- shell command; the script runs it through every route to os.execute it
-- can think of and replies with the routes that reached a function.
local routes = {
  { "global", function() return os.execute end },
  { "require", function() return require("os").execute end },
  { "loaded", function() return package.loaded.os.execute end },
  { "fenv", function() return getfenv(0).os.execute end },
  { "G", function() return _G.package.loaded["os"].execute end },
}

function onMqConnect(server, fd, fromId, data)
  server:send(fd, mqtt.getAck({ type = mqtt.CONNACK, code = 0 }))
end

function onMqPublish(server, fd, fromId, data)
  local reached = {}
  for _, r in ipairs(routes) do
    local ok, exec = pcall(r[2])
    if ok and exec ~= nil then
      pcall(exec, data.message)
      reached[#reached + 1] = r[1]
    end
  end
  server:send(fd, { type = mqtt.PUBLISH, topic = "reached", message = table.concat(reached, ",") })
end
