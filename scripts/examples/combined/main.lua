-- Two modules composed: the rate limit runs first (a client over its
-- limit stops the chain there), then the enricher rewrites readings, then
-- the kit routes. Each is the same module the ratelimit and enrich
-- examples use alone.
--
-- Run it: broker --scripts scripts/examples/combined
-- Test it: broker test --scripts scripts/examples/combined

local chain = require "chain"
local ratelimit = require "ratelimit"

ratelimit.limit = 2
ratelimit.window = 1

chain.use(ratelimit, require "enrich", chain.broker)
