-- The database holding the users; its password comes from the
-- environment (PGPASSWORD is read by the driver too).
return {
  pg = {
    default = { url = "postgres://broker@127.0.0.1:5432/mqtt?sslmode=disable", pool_size = 16, timeout = 2 },
  },
}
