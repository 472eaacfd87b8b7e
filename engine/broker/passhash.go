package broker

import (
	"crypto/pbkdf2"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// Password hashes the broker checks: bcrypt ("$2a$", "$2b$", "$2y$", what
// `broker passwd` writes) and the two mosquitto_passwd writes, so that a
// Mosquitto password file works as it is:
//
//	$7$ITERATIONS$SALT$HASH   PBKDF2-HMAC-SHA512, 64 bytes (mosquitto_passwd's default)
//	$6$SALT$HASH              SHA-512 of the password then the salt (-H sha512)
//
// SALT and HASH in standard base64.

// ErrHashFormat is a hash in none of the formats above.
var ErrHashFormat = errors.New("unknown password hash format (want bcrypt, or mosquitto_passwd's $7$ or $6$)")

var errMismatch = errors.New("password mismatch")

// CheckHashFormat reports whether hash is in a format the broker checks.
func CheckHashFormat(hash string) error {
	switch {
	case strings.HasPrefix(hash, "$2a$"), strings.HasPrefix(hash, "$2b$"), strings.HasPrefix(hash, "$2y$"):
		_, err := bcrypt.Cost([]byte(hash))
		return err
	case strings.HasPrefix(hash, "$7$"):
		_, _, _, err := parsePBKDF2(hash)
		return err
	case strings.HasPrefix(hash, "$6$"):
		_, _, err := parseSHA512(hash)
		return err
	}
	return ErrHashFormat
}

// verifyPassword returns nil when password matches hash.
func verifyPassword(hash, password []byte) error {
	h := string(hash)
	switch {
	case strings.HasPrefix(h, "$7$"):
		iter, salt, want, err := parsePBKDF2(h)
		if err != nil {
			return err
		}
		got, err := pbkdf2.Key(sha512.New, string(password), salt, iter, len(want))
		if err != nil {
			return err
		}
		return equal(got, want)
	case strings.HasPrefix(h, "$6$"):
		salt, want, err := parseSHA512(h)
		if err != nil {
			return err
		}
		d := sha512.New()
		d.Write(password)
		d.Write(salt)
		return equal(d.Sum(nil), want)
	}
	return bcrypt.CompareHashAndPassword(hash, password)
}

func equal(got, want []byte) error {
	if subtle.ConstantTimeCompare(got, want) == 1 {
		return nil
	}
	return errMismatch
}

func parsePBKDF2(h string) (iter int, salt, hash []byte, err error) {
	parts := strings.Split(h, "$") // "", "7", iterations, salt, hash
	if len(parts) != 5 {
		return 0, nil, nil, ErrHashFormat
	}
	iter, err = strconv.Atoi(parts[2])
	if err != nil || iter < 1 || iter > 10_000_000 {
		return 0, nil, nil, errors.New("$7$ hash: bad iteration count")
	}
	salt, hash, err = decodeSaltHash(parts[3], parts[4])
	return iter, salt, hash, err
}

func parseSHA512(h string) (salt, hash []byte, err error) {
	parts := strings.Split(h, "$") // "", "6", salt, hash
	if len(parts) != 4 {
		return nil, nil, ErrHashFormat
	}
	salt, hash, err = decodeSaltHash(parts[2], parts[3])
	if err == nil && len(hash) != sha512.Size {
		err = errors.New("$6$ hash: not a SHA-512 digest")
	}
	return salt, hash, err
}

func decodeSaltHash(s, h string) (salt, hash []byte, err error) {
	if salt, err = base64.StdEncoding.DecodeString(s); err != nil || len(salt) == 0 {
		return nil, nil, errors.New("bad base64 salt")
	}
	if hash, err = base64.StdEncoding.DecodeString(h); err != nil || len(hash) == 0 {
		return nil, nil, errors.New("bad base64 hash")
	}
	return salt, hash, nil
}
