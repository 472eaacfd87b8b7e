-- clientacl: what each connected client may publish and subscribe to,
-- decided once at CONNECT (from Redis, a database, an HTTP service, a JWT)
-- and kept with the connection on its worker.
--
--   local clientacl = require "clientacl"
--   -- in onMqConnect, once the client is accepted:
--   clientacl.set(fd, { publish = { "sensors/dev1/+" }, subscribe = { "cmd/dev1/#" } })
--   -- or { superuser = true }: anything
--   function onMqPublish(server, fd, fromId, data) clientacl.publish(fd, data) end
--   function onMqSubscribe(server, fd, fromId, data) clientacl.subscribe(fd, data) end
--   function onClose(server, fd) clientacl.forget(fd) end
--
-- Patterns are topic filters. A PUBLISH is allowed when a publish pattern
-- matches its topic; a SUBSCRIBE filter when a subscribe pattern covers
-- every topic the filter can match ("a/+" allows "a/b" and "a/+", not
-- "a/#"). A client with no ACL may do nothing. Denied publishes are
-- acknowledged and dropped (MQTT 5 clients read 0x87), denied filters
-- refused in the SUBACK, and logged at debug level.

local clientacl = {}

local acls = {} -- fd -> { superuser, publish, subscribe } (this worker's clients)

-- set gives the connection fd its ACL: a table with publish and subscribe
-- lists of patterns, and superuser.
function clientacl.set(fd, acl)
  acls[fd] = { superuser = acl.superuser == true, publish = acl.publish or {}, subscribe = acl.subscribe or {} }
end

-- forget drops the ACL of a connection that closed.
function clientacl.forget(fd)
  acls[fd] = nil
end

-- allowed reports whether fd may "publish" to topic or "subscribe" to a
-- filter.
function clientacl.allowed(fd, action, topic)
  local acl = acls[fd]
  if not acl then
    return false
  end
  if acl.superuser then
    return true
  end
  for _, pattern in ipairs(acl[action]) do
    if broker.covers(pattern, topic) then
      return true
    end
  end
  return false
end

-- publish routes data if fd may publish to its topic, and otherwise
-- acknowledges and drops it.
function clientacl.publish(fd, data)
  if not clientacl.allowed(fd, "publish", data.topic) then
    log.debug("publish denied", { topic = data.topic })
    broker.ack(fd, data, mqtt.NOT_AUTHORIZED)
    return
  end
  broker.route(fd, data)
end

-- subscribe grants each filter fd may subscribe to, refuses the others.
function clientacl.subscribe(fd, data)
  local codes = {}
  for i, f in ipairs(data.filters) do
    if clientacl.allowed(fd, "subscribe", f.topic) then
      codes[i] = f.qos
    else
      log.debug("subscribe denied", { filter = f.topic })
      codes[i] = mqtt.NOT_AUTHORIZED
    end
  end
  broker.subscribe(fd, data, codes)
end

return clientacl
