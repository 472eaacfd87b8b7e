-- Authentication for the default broker.
--
-- Users come from a Mosquitto-style password file in this folder (lines
-- "user:hash"; make one with `broker passwd USER >> scripts/passwd`, or
-- use a file mosquitto_passwd made: its $7$ and $6$ hashes work too) and
-- from the `users` table below. Passwords are only ever stored hashed.
-- (bcrypt hashes keep refusals uniform in time: an unknown user costs what
-- a bcrypt check does; mosquitto_passwd's hashes check much faster.)
--
-- Clients without a user name are anonymous. Like Mosquitto 2, the broker
-- is secure by default: anonymous clients are accepted only from the
-- loopback interface. Set `anonymous` to "allow" to accept them from
-- anywhere, or "deny" to refuse them everywhere.

local auth = {}

auth.password_file = "passwd" -- relative to the scripts folder; may be absent
auth.users = {
  -- alice = "$2a$10$...", -- a bcrypt hash, never a plain password
}
auth.anonymous = "loopback" -- "loopback", "allow" or "deny"

-- With use_identity_as_username, a client that presents a verified TLS
-- client certificate (a listener with a CA, see README "TLS and
-- WebSocket") is the user its certificate's common name (CN) names, with
-- no password asked: Mosquitto's use_identity_as_username. Clients
-- without one go through the checks below.
auth.use_identity_as_username = false

-- The password file's users join the table (a user in both keeps the
-- table's hash). auth.users is what auth.check consults, so code that adds
-- users later (a test's setup, a timer reading them from elsewhere) only
-- has to change it.
local from_file, err = broker.read_passwords(auth.password_file)
if from_file then
  for user, hash in pairs(from_file) do
    if auth.users[user] == nil then
      auth.users[user] = hash
    end
  end
elseif not err:find("no such file") then
  error("auth: " .. err)
end

-- Plain prefix checks: string patterns are compiled on every call, and
-- this runs for every anonymous CONNECT.
-- A Unix socket's peer is on this machine: "unix:" and the socket path.
local function is_loopback(addr)
  return addr:sub(1, 4) == "127." or addr:sub(1, 5) == "[::1]" or addr:sub(1, 5) == "unix:"
end

-- auth.announce logs the policy once at start.
function auth.announce()
  local n = 0
  for _ in pairs(auth.users) do
    n = n + 1
  end
  if auth.anonymous == "loopback" then
    log.info("anonymous clients are allowed from loopback only; " .. n .. " users configured")
  else
    log.info("anonymous clients: " .. auth.anonymous .. "; " .. n .. " users configured")
  end
end

-- auth.check(server, fd, data) -> true | false, reason code
function auth.check(server, fd, data)
  if data.properties and data.properties.authentication_method then
    -- MQTT 5 enhanced authentication: see onMqAuth in the examples for a
    -- challenge/response; this broker does not offer any method.
    return false, mqtt.BAD_AUTHENTICATION_METHOD
  end
  if auth.use_identity_as_username then
    local cn = server:info(fd, "cert_cn")
    if cn and cn ~= "" then
      data.user_name = cn -- broker.accept records it as the user name
      data.password = nil
      return true
    end
  end
  if data.user_name == nil then
    if auth.anonymous == "allow" then
      return true
    end
    if auth.anonymous == "loopback" and is_loopback(server:info(fd, "remote_addr")) then
      return true
    end
    return false, mqtt.NOT_AUTHORIZED -- 0x05 for 3.1.1 clients
  end
  -- broker.authenticate does for an unknown user (hash nil) the work it
  -- does for a known one, so a refusal's timing does not tell which users
  -- exist; and after too many failures from an address or for a user
  -- name it refuses at once, without checking (see broker.configure's
  -- login_* settings).
  local ok, why = broker.authenticate(fd, data.user_name, data.password or "", auth.users[data.user_name])
  if ok then
    return true
  end
  if why == "limited" then
    return false, mqtt.CONNECTION_RATE_EXCEEDED -- 0x03 for 3.1.1 clients
  end
  return false, mqtt.BAD_USER_NAME_OR_PASSWORD -- 0x04 for 3.1.1 clients
end

return auth
