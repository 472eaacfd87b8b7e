-- Users with bcrypt hashes in a PostgreSQL table, and what each may
-- publish and subscribe to in another (schema.sql):
--
--   mqtt_users (username, password_hash, is_superuser)
--   mqtt_acl   (username, action, topic)   -- action: publish | subscribe | all
--
-- At CONNECT the user's row and ACL rows are read (parameterised queries:
-- a user name is never SQL), the password is checked off the worker, and
-- the ACL is kept for the connection. A superuser may do anything. An
-- unknown user or a wrong password is refused as not authorized; when the
-- database cannot answer, as server unavailable (the client may retry).
-- The queries wait without stalling the worker.
--
-- Run it: psql -f scripts/examples/pg-auth/schema.sql mqtt
--         broker --scripts scripts/examples/pg-auth

local clientacl = require "clientacl" -- per-connection ACLs (lualib/clientacl.lua)

local function refuse(server, fd, code)
  server:send(fd, { type = mqtt.CONNACK, code = code })
end

function onMqConnect(server, fd, fromId, data)
  local user = data.user_name or ""
  local db = pg.pool()
  local row, err = db:one("SELECT password_hash, is_superuser FROM mqtt_users WHERE username = $1", user)
  local rules
  if not err and row then
    rules, err = db:query("SELECT action, topic FROM mqtt_acl WHERE username = $1", user)
  end
  if err then
    log.warn("the user database gave no answer: refusing the client", { err = err, client_id = data.client_id })
    return refuse(server, fd, mqtt.SERVER_UNAVAILABLE)
  end
  -- An unknown user is checked against a dummy hash: a refusal takes as
  -- long either way. Failures are limited per address and user name.
  local ok, why = broker.authenticate(fd, user, data.password or "", row and row.password_hash)
  if not ok then
    log.info("connection refused", { client_id = data.client_id, user_name = user, why = why })
    return refuse(server, fd, mqtt.NOT_AUTHORIZED)
  end
  local acl = { superuser = row.is_superuser, publish = {}, subscribe = {} }
  for _, r in ipairs(rules) do
    -- (functions as replacements: a "%" in a name is not a pattern escape)
    local topic = r.topic:gsub("%%u", function() return user end):gsub("%%c", function() return data.client_id end)
    if r.action == "publish" or r.action == "all" then
      table.insert(acl.publish, topic)
    end
    if r.action == "subscribe" or r.action == "all" then
      table.insert(acl.subscribe, topic)
    end
  end
  if broker.accept(fd, data) ~= nil then -- session present: true or false
    clientacl.set(fd, acl)
  end
end

function onClose(server, fd)
  clientacl.forget(fd)
end

function onMqPublish(server, fd, fromId, data)
  clientacl.publish(fd, data)
end

function onMqSubscribe(server, fd, fromId, data)
  clientacl.subscribe(fd, data)
end

function onMqUnsubscribe(server, fd, fromId, data)
  broker.unsubscribe(fd, data)
end
