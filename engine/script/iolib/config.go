package iolib

import (
	"fmt"
	"os"
	"regexp"
	"time"
)

// Config is what config.lua says of the outside servers.
type Config struct {
	HTTP HTTPConfig
	// Redis and PG are the servers scripts reach by name:
	// redis.client("cache"), pg.pool("main"); "default" is the name an
	// argument-less call uses.
	Redis map[string]RedisConfig
	PG    map[string]PGConfig
}

// HTTPConfig configures the http module's client.
type HTTPConfig struct {
	// Timeout bounds a request that names none (0: the handlers' I/O
	// timeout, --io-timeout).
	Timeout time.Duration
	// MaxBody bounds a response body read into Lua (default 8 MiB).
	MaxBody int64
	// MaxConnsPerHost bounds connections to one host (default 64), which
	// is also how many requests to it run at once.
	MaxConnsPerHost int
	// CAFile is a PEM bundle trusted besides the system's roots.
	CAFile string
}

// RedisConfig is one Redis server.
type RedisConfig struct {
	// URL is redis://[user:password@]host:port[/db] (rediss:// for TLS);
	// ${NAME} is replaced by the environment variable NAME, so that
	// passwords need not be in the file.
	URL      string
	PoolSize int           // connections kept (default 10 per CPU, go-redis')
	Timeout  time.Duration // bound of one command (0: the handlers' I/O timeout)
}

// PGConfig is one PostgreSQL database.
type PGConfig struct {
	// URL is postgres://user[:password]@host:port/db?sslmode=...; ${NAME}
	// is replaced by the environment variable NAME.
	URL      string
	PoolSize int           // connections at most (default 4 or the CPUs, pgx')
	Timeout  time.Duration // bound of one query (0: the handlers' I/O timeout)
}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// expand replaces ${NAME} in s by the environment variable NAME, which
// must be set.
func expand(s string) (string, error) {
	var missing string
	out := envRef.ReplaceAllStringFunc(s, func(ref string) string {
		name := envRef.FindStringSubmatch(ref)[1]
		v, ok := os.LookupEnv(name)
		if !ok && missing == "" {
			missing = name
		}
		return v
	})
	if missing != "" {
		return "", fmt.Errorf("the environment variable %s is not set", missing)
	}
	return out, nil
}
