-- The HTTP service that authenticates clients, and how long a call to it
-- may take before the client is refused as "server unavailable".
return {
  http = { timeout = 2, max_conns_per_host = 64 },
  settings = { io_timeout = 2 },
}
