-- The tables scripts/examples/pg-auth reads. Passwords are bcrypt hashes:
-- `echo PASSWORD | broker passwd alice` prints "alice:" and one.
CREATE TABLE IF NOT EXISTS mqtt_users (
  username      text PRIMARY KEY,
  password_hash text NOT NULL,
  is_superuser  boolean NOT NULL DEFAULT false
);

-- What each user may do: action is publish, subscribe or all; topic is a
-- topic filter ("sensors/+/temp", "cmd/#"), in which %u stands for the
-- user name and %c for the client id.
CREATE TABLE IF NOT EXISTS mqtt_acl (
  username text NOT NULL REFERENCES mqtt_users (username) ON DELETE CASCADE,
  action   text NOT NULL CHECK (action IN ('publish', 'subscribe', 'all')),
  topic    text NOT NULL
);
CREATE INDEX IF NOT EXISTS mqtt_acl_username ON mqtt_acl (username);
