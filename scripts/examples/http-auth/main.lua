-- CONNECT authenticated by an HTTP service, with the request and response
-- EMQX's HTTP authentication uses, so an existing service works as it is:
--
--   POST auth_url  {"clientid": ..., "username": ..., "password": ..., "peerhost": ...}
--   200 {"result": "allow" | "deny" | "ignore", "is_superuser": false}
--   204 (no body): allow
--   4xx/5xx: ignore
--
-- allow accepts the client; deny refuses it (not authorized); ignore means
-- the service has no opinion, and with no other authenticator here it is
-- refused as deny is. When the service cannot answer (refused, timed out,
-- not JSON), the client is refused with "server unavailable" (3.1.1: 0x03,
-- 5.0: 0x88) and may retry: a broken auth service never lets anyone in.
--
-- The call waits without stalling the worker: other clients connect and
-- publish meanwhile. Answers are cached (in `shared`, which every worker
-- sees) for cache_ttl seconds per client id, user name and password, so a
-- reconnect storm does not become a storm of requests.
--
-- Run it: SCRIPT_AUTH_URL=http://127.0.0.1:8991/mqtt/auth broker --scripts scripts/examples/http-auth

auth_service = {} -- global: tests and a setup block can change it
local M = auth_service
M.url = os.getenv("SCRIPT_AUTH_URL") or "http://127.0.0.1:8991/mqtt/auth"
M.cache_ttl = 10      -- seconds an answer is reused (0: not cached)
M.timeout = 2         -- seconds the service has to answer

-- The key is a digest: the cache never holds a password.
local function cache_key(data)
  local who = table.concat({ data.client_id, data.user_name or "", data.password or "" }, "\0")
  return "http-auth:" .. crypto.hex_encode(crypto.sha256(who))
end

-- ask returns "allow", "deny" or "ignore", or nil and why the service
-- gave no answer.
local function ask(server, fd, data)
  local res, err = http.request({
    method = "POST",
    url = M.url,
    timeout = M.timeout,
    headers = { ["content-type"] = "application/json" },
    body = json.encode({
      clientid = data.client_id,
      username = data.user_name or "",
      password = data.password or "",
      peerhost = (server:info(fd).remote_addr or ""):match("^%[?(.-)%]?:%d+$") or "",
    }),
  })
  if not res then
    return nil, err
  end
  if res.status == 204 then
    return "allow"
  end
  if res.status >= 400 then
    return "ignore"
  end
  if res.status ~= 200 then
    return nil, "status " .. res.status
  end
  local ok, doc = pcall(json.decode, res.body)
  if not ok or type(doc) ~= "table" then
    return nil, "the answer is not JSON"
  end
  if doc.result == "allow" or doc.result == "deny" or doc.result == "ignore" then
    return doc.result
  end
  return nil, "the answer has no result"
end

function onMqConnect(server, fd, fromId, data)
  local key = cache_key(data)
  local result, err = shared.get(key), nil
  if result == nil then
    result, err = ask(server, fd, data)
    if result and M.cache_ttl > 0 then
      shared.set(key, result, M.cache_ttl)
    end
  end
  if result == nil then
    log.warn("auth service gave no answer: refusing the client", { err = err, client_id = data.client_id })
    server:send(fd, { type = mqtt.CONNACK, code = mqtt.SERVER_UNAVAILABLE })
    return
  end
  if result ~= "allow" then
    log.info("connection refused by the auth service", { client_id = data.client_id, result = result })
    server:send(fd, { type = mqtt.CONNACK, code = mqtt.NOT_AUTHORIZED })
    return
  end
  broker.accept(fd, data)
end

function onMqPublish(server, fd, fromId, data)
  broker.route(fd, data)
end

function onMqSubscribe(server, fd, fromId, data)
  broker.subscribe(fd, data)
end

function onMqUnsubscribe(server, fd, fromId, data)
  broker.unsubscribe(fd, data)
end
