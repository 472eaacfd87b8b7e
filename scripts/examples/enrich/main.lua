-- Topic rewrite and payload enrichment: the enrich module
-- (lualib/enrich.lua) in front of the kit's default handling, through
-- chain.
--
-- Run it: broker --scripts scripts/examples/enrich
-- Test it: broker test --scripts scripts/examples/enrich

local chain = require "chain"

chain.use(require "enrich", chain.broker)
