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

local function escape(s)
  return (s:gsub("%%", "%%%%"))
end

local function applies(rule, who, access)
  if rule.user and rule.user ~= who.user_name then
    return false
  end
  if rule.client and rule.client ~= who.client_id then
    return false
  end
  local a = rule.access or "readwrite"
  return a == "readwrite" or a == access
end

-- acl.active() -> whether any rule can deny (else everything is allowed
-- and callers can skip looking up who is asking).
function acl.active()
  return #acl.rules > 0 or acl.default ~= "allow"
end

-- acl.allowed(who, topic, access) -> bool
-- who: {client_id, user_name}; access: "read" or "write".
function acl.allowed(who, topic, access)
  local rules = acl.rules
  if #rules == 0 then
    return acl.default == "allow"
  end
  for _, rule in ipairs(rules) do
    if applies(rule, who, access) then
      local pattern = rule.topic
        :gsub("%%c", escape(who.client_id or ""))
        :gsub("%%u", escape(who.user_name or ""))
      if broker.match(pattern, topic) then
        return rule.action == "allow"
      end
    end
  end
  return acl.default == "allow"
end

return acl
