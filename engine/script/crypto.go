package script

import (
	"crypto"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	lua "github.com/yuin/gopher-lua"
)

// The crypto module: what token and signature checks in auth scripts
// need. Digests and MACs return raw bytes (Lua strings); hex and base64
// turn them into text.
//
//	crypto.sha256(s), crypto.sha512(s)                  -> raw digest
//	crypto.hmac_sha256(key, s), crypto.hmac_sha512(key, s) -> raw MAC
//	crypto.hex_encode(s), crypto.hex_decode(s)          -> string | nil, err
//	crypto.base64_encode(s), crypto.base64_decode(s)    (standard, padded)
//	crypto.base64url_encode(s), crypto.base64url_decode(s) (URL-safe, unpadded)
//	crypto.random_bytes(n)                              -> n bytes from crypto/rand (n <= 65536)
//	crypto.equal(a, b)                                  -> constant-time comparison
//	crypto.jwt_verify(token, options)                   -> claims | nil, err
func (vm *VM) openCrypto() *lua.LTable {
	L := vm.L
	digest := func(h func() hash.Hash) lua.LGFunction {
		return func(L *lua.LState) int {
			d := h()
			d.Write([]byte(L.CheckString(1)))
			L.Push(lua.LString(d.Sum(nil)))
			return 1
		}
	}
	mac := func(h func() hash.Hash) lua.LGFunction {
		return func(L *lua.LState) int {
			m := hmac.New(h, []byte(L.CheckString(1)))
			m.Write([]byte(L.CheckString(2)))
			L.Push(lua.LString(m.Sum(nil)))
			return 1
		}
	}
	decoded := func(L *lua.LState, b []byte, err error) int {
		if err != nil {
			L.Push(lua.LNil)
			L.Push(lua.LString(err.Error()))
			return 2
		}
		L.Push(lua.LString(b))
		return 1
	}
	return L.SetFuncs(L.NewTable(), map[string]lua.LGFunction{
		"sha256":      digest(sha256.New),
		"sha512":      digest(sha512.New),
		"hmac_sha256": mac(sha256.New),
		"hmac_sha512": mac(sha512.New),
		"hex_encode": func(L *lua.LState) int {
			L.Push(lua.LString(hex.EncodeToString([]byte(L.CheckString(1)))))
			return 1
		},
		"hex_decode": func(L *lua.LState) int {
			b, err := hex.DecodeString(L.CheckString(1))
			return decoded(L, b, err)
		},
		"base64_encode": func(L *lua.LState) int {
			L.Push(lua.LString(base64.StdEncoding.EncodeToString([]byte(L.CheckString(1)))))
			return 1
		},
		"base64_decode": func(L *lua.LState) int {
			b, err := base64.StdEncoding.DecodeString(L.CheckString(1))
			return decoded(L, b, err)
		},
		"base64url_encode": func(L *lua.LState) int {
			L.Push(lua.LString(base64.RawURLEncoding.EncodeToString([]byte(L.CheckString(1)))))
			return 1
		},
		"base64url_decode": func(L *lua.LState) int {
			b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(L.CheckString(1), "="))
			return decoded(L, b, err)
		},
		"random_bytes": func(L *lua.LState) int {
			n := L.CheckInt(1)
			if n < 0 || n > 65536 {
				L.ArgError(1, "want 0 to 65536 bytes")
			}
			b := make([]byte, n)
			rand.Read(b)
			L.Push(lua.LString(b))
			return 1
		},
		"equal": func(L *lua.LState) int {
			L.Push(lua.LBool(subtle.ConstantTimeCompare([]byte(L.CheckString(1)), []byte(L.CheckString(2))) == 1))
			return 1
		},
		"jwt_verify": jwtVerify,
	})
}

// crypto.jwt_verify(token, {secret = "...", public_key = PEM,
// algorithms = {"HS256"}, audience = "...", issuer = "...", leeway = s,
// require_exp = true}) -> claims | nil, err
//
// The algorithms the token may use must be listed (no "none", and no
// switching from RS256 to HS256 with the public key as secret); HS* take
// the secret, RS*/PS*/ES*/EdDSA the PEM public key. Expiry is required
// unless require_exp = false; exp, nbf and iat are checked with the
// leeway; audience and issuer when given.
func jwtVerify(L *lua.LState) int {
	token := L.CheckString(1)
	opts := L.CheckTable(2)
	str := func(name string) string {
		if s, ok := opts.RawGetString(name).(lua.LString); ok {
			return string(s)
		}
		return ""
	}
	var algs []string
	if t, ok := opts.RawGetString("algorithms").(*lua.LTable); ok {
		t.ForEach(func(_, v lua.LValue) {
			if s, ok := v.(lua.LString); ok {
				algs = append(algs, string(s))
			}
		})
	}
	if len(algs) == 0 {
		L.ArgError(2, "algorithms: list the algorithms the tokens use, e.g. { \"HS256\" }")
	}
	popts := []jwt.ParserOption{jwt.WithValidMethods(algs), jwt.WithIssuedAt()}
	if a := str("audience"); a != "" {
		popts = append(popts, jwt.WithAudience(a))
	}
	if i := str("issuer"); i != "" {
		popts = append(popts, jwt.WithIssuer(i))
	}
	if l, ok := opts.RawGetString("leeway").(lua.LNumber); ok {
		popts = append(popts, jwt.WithLeeway(time.Duration(float64(l)*float64(time.Second))))
	}
	if opts.RawGetString("require_exp") != lua.LFalse {
		popts = append(popts, jwt.WithExpirationRequired())
	}
	secret, pem := str("secret"), str("public_key")
	claims := jwt.MapClaims{}
	_, err := jwt.NewParser(popts...).ParseWithClaims(token, claims, func(t *jwt.Token) (any, error) {
		switch t.Method.(type) {
		case *jwt.SigningMethodHMAC:
			if secret == "" {
				return nil, errors.New("an HMAC token needs the secret option")
			}
			return []byte(secret), nil
		}
		if pem == "" {
			return nil, fmt.Errorf("a %s token needs the public_key option", t.Method.Alg())
		}
		return publicKey(pem)
	})
	if err != nil {
		L.Push(lua.LNil)
		L.Push(lua.LString(err.Error()))
		return 2
	}
	L.Push(ToLua(L, map[string]any(claims)))
	return 1
}

// publicKeys caches parsed PEM public keys: a script passes the same PEM
// on every CONNECT.
var publicKeys sync.Map // PEM string -> crypto.PublicKey

func publicKey(pem string) (crypto.PublicKey, error) {
	if k, ok := publicKeys.Load(pem); ok {
		return k, nil
	}
	var k crypto.PublicKey
	var err error
	for _, parse := range []func([]byte) (crypto.PublicKey, error){
		func(b []byte) (crypto.PublicKey, error) { return jwt.ParseRSAPublicKeyFromPEM(b) },
		func(b []byte) (crypto.PublicKey, error) { return jwt.ParseECPublicKeyFromPEM(b) },
		func(b []byte) (crypto.PublicKey, error) { return jwt.ParseEdPublicKeyFromPEM(b) },
	} {
		if k, err = parse([]byte(pem)); err == nil {
			publicKeys.Store(pem, k)
			return k, nil
		}
	}
	return nil, fmt.Errorf("public_key: no RSA, ECDSA or Ed25519 public key in the PEM: %v", err)
}
