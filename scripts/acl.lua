-- Access control for the default broker.
--
-- Rules are checked in order and the first that matches decides; when
-- none matches, `default` decides. A rule may name a user (`user`) or a
-- client id (`client`), and gives an MQTT topic filter (`topic`) in which
-- %u stands for the user name and %c for the client id, the access it
-- covers ("read" for SUBSCRIBE, "write" for PUBLISH, or "readwrite"), and
-- "allow" or "deny".
--
-- SUBSCRIBE is checked on its filter when it arrives: a filter is allowed
-- or denied by the first rule whose topic matches it, with the filter's
-- own wildcards taken literally.

local acl = {}

acl.default = "allow"
acl.rules = {
  -- Example rules (uncomment and adapt):
  -- { action = "allow", topic = "devices/%c/#", access = "readwrite" },
  -- { action = "deny",  topic = "devices/#" },
  -- { action = "allow", user = "admin", topic = "#" },
  -- { action = "deny",  topic = "$SYS/#", access = "write" },
}

-- Locals for what the per-message path calls: a global or field lookup
-- costs a hash lookup each time.
local find, sub, concat = string.find, string.sub, table.concat
local match = broker.match

-- expand replaces %c and %u in a rule's topic. Plain string operations:
-- Lua patterns are compiled on every call, and this runs per message.
local function expand(topic, client_id, user_name)
  local out, i = {}, 1
  while true do
    local j = find(topic, "%", i, true)
    if not j then
      out[#out + 1] = sub(topic, i)
      return concat(out)
    end
    out[#out + 1] = sub(topic, i, j - 1)
    local k = sub(topic, j + 1, j + 1)
    if k == "c" then
      out[#out + 1] = client_id or ""
    elseif k == "u" then
      out[#out + 1] = user_name or ""
    else
      out[#out + 1] = "%" .. k
    end
    i = j + 2
  end
end

-- decide walks the rules for one access.
local function decide(server, fd, topic, access, rules)
  local client_id, user_name = server:info(fd, "client_id", "user_name")
  for i = 1, #rules do
    local rule = rules[i]
    local a = rule.access
    if (a == nil or a == "readwrite" or a == access)
      and (rule.user == nil or rule.user == user_name)
      and (rule.client == nil or rule.client == client_id)
    then
      local t = rule.topic
      if find(t, "%", 1, true) then
        t = expand(t, client_id, user_name)
      end
      if match(t, topic) then
        return rule.action == "allow"
      end
    end
  end
  return acl.default == "allow"
end

-- PUBLISH decisions are remembered per connection and topic: clients
-- publish to the same few topics over and over, and a remembered decision
-- costs two table lookups instead of a walk over the rules. A connection's
-- client id and user name cannot change while it is connected, and fds
-- are never reused, so an entry stays right for its connection's life.
-- The cache is dropped whole when its topics add up to more than
-- acl.cache_bytes (that is also how closed connections' entries go) and
-- when acl.rules or acl.default is replaced. After editing the rules table
-- in place at run time, call acl.flush(). If you make decisions depend on
-- anything else (the time, `shared` state), set acl.cache_bytes = 0: that
-- turns the cache off.
acl.cache_bytes = 4 * 1024 * 1024
local cache, cached, cache_rules, cache_default = {}, 0, nil, nil

function acl.flush()
  cache, cached = {}, 0
end

-- acl.allowed(server, fd, topic, access) -> bool
-- access: "read" (SUBSCRIBE) or "write" (PUBLISH).
function acl.allowed(server, fd, topic, access)
  local rules = acl.rules
  if #rules == 0 then
    return acl.default == "allow"
  end
  if access ~= "write" or acl.cache_bytes <= 0 then
    return decide(server, fd, topic, access, rules)
  end
  if rules ~= cache_rules or acl.default ~= cache_default then
    acl.flush()
    cache_rules, cache_default = rules, acl.default
  end
  local mine = cache[fd]
  if mine then
    local d = mine[topic]
    if d ~= nil then
      return d
    end
  end
  local d = decide(server, fd, topic, access, rules)
  cached = cached + #topic + 64
  if cached > acl.cache_bytes then
    acl.flush()
    mine = nil
  end
  if not mine then
    mine = {}
    cache[fd] = mine
  end
  mine[topic] = d
  return d
end

return acl
