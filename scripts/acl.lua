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

-- acl.active() -> whether any rule can deny (else everything is allowed
-- and callers can skip looking up who is asking).
function acl.active()
  return #acl.rules > 0 or acl.default ~= "allow"
end

-- acl.allowed(server, fd, topic, access) -> bool
-- access: "read" (SUBSCRIBE) or "write" (PUBLISH).
function acl.allowed(server, fd, topic, access)
  local rules = acl.rules
  if #rules == 0 then
    return acl.default == "allow"
  end
  local client_id, user_name = server:whois(fd)
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

return acl
