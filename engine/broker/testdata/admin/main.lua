-- A broker whose "admin/..." topics drive the kit's script API.
function onMqConnect(server, fd, fromId, data)
  broker.accept(fd, data)
end

function onMqSubscribe(server, fd, fromId, data)
  broker.subscribe(fd, data)
end

function onMqPublish(server, fd, fromId, data)
  local cmd = data.topic:match("^admin/(.+)$")
  if cmd == "publish" then
    -- inject a message, as a script-side bridge or scheduler would
    local n = broker.publish({ topic = "news/" .. data.message, message = "from script", qos = 1, retain = true })
    broker.publish({ topic = "admin/result", message = "reached " .. n })
  elseif cmd == "clients" then
    local ids = {}
    for _, c in ipairs(broker.clients()) do
      local subs = {}
      for f, q in pairs(c.subscriptions) do subs[#subs + 1] = f .. "@" .. q end
      table.sort(subs)
      ids[#ids + 1] = c.client_id .. (c.connected and "+" or "-") .. "[" .. table.concat(subs, ",") .. "]"
    end
    broker.publish({ topic = "admin/result", message = table.concat(ids, " ") })
  elseif cmd == "kick" then
    broker.publish({ topic = "admin/result", message = tostring(broker.kick(data.message, mqtt.ADMINISTRATIVE_ACTION, "bye")) })
  elseif cmd == "stats" then
    local s = broker.stats()
    broker.publish({ topic = "admin/result", message = s.retained .. " " .. s.subscriptions .. " " .. s.closes.script_close })
  else
    broker.route(fd, data)
  end
end
