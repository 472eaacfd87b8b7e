-- Per-client publish rate limit: the ratelimit module (lualib/ratelimit.lua)
-- in front of the kit's default handling, through chain.
--
-- Run it: broker --scripts scripts/examples/ratelimit
-- Test it: broker test --scripts scripts/examples/ratelimit

local chain = require "chain"
local ratelimit = require "ratelimit"

ratelimit.limit = 3  -- messages
ratelimit.window = 1 -- per second, per client

chain.use(ratelimit, chain.broker)
