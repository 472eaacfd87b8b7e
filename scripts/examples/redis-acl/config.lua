-- The Redis server holding the users and their ACLs. The password, if it
-- has one, comes from the environment: redis://:${REDIS_PASSWORD}@host:6379/0
return {
  redis = {
    default = { url = "redis://127.0.0.1:6379/0", pool_size = 16, timeout = 1 },
  },
}
