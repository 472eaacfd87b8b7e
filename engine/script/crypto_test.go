package script_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	lua "github.com/yuin/gopher-lua"
)

// luaVM returns a VM of a server on scripts that do nothing, for running
// Lua snippets against the bindings.
func luaVM(t *testing.T) *lua.LState { return sharedVMs(t, 1)[0].L }

// TestCryptoModule: digests, MACs and encodings against known answers
// (FIPS 180 and RFC 4231 vectors), random bytes, constant-time equal.
func TestCryptoModule(t *testing.T) {
	L := luaVM(t)
	err := L.DoString(`
local c = crypto
local function check(got, want, what) if got ~= want then error(what .. ": got " .. tostring(got) .. ", want " .. want) end end
check(c.hex_encode(c.sha256("abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", "sha256")
check(c.hex_encode(c.sha512("abc")):sub(1, 32), "ddaf35a193617abacc417349ae204131", "sha512")
-- RFC 4231 test case 2
check(c.hex_encode(c.hmac_sha256("Jefe", "what do ya want for nothing?")), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843", "hmac_sha256")
check(c.hex_encode(c.hmac_sha512("Jefe", "what do ya want for nothing?")):sub(1, 32), "164b7a7bfcf819e2e395fbe73b56e0a3", "hmac_sha512")
check(c.base64_encode("hello?>"), "aGVsbG8/Pg==", "base64")
check(c.base64url_encode("hello?>"), "aGVsbG8_Pg", "base64url")
check(c.base64url_decode("aGVsbG8_Pg"), "hello?>", "base64url_decode")
check(c.hex_decode("414243"), "ABC", "hex_decode")
local v, err = c.hex_decode("zz")
check(v, nil, "bad hex") ; assert(err)
check(#c.random_bytes(32), 32, "random_bytes length")
assert(c.random_bytes(16) ~= c.random_bytes(16), "random bytes repeat")
assert(c.equal("abc", "abc") and not c.equal("abc", "abd"), "equal")
`)
	if err != nil {
		t.Fatal(err)
	}
}

// TestJWTVerify: HS256 and ES256 tokens with expiry, audience and
// issuer checks; expired, wrong audience, wrong key, alg "none" and an
// algorithm not listed are refused with a reason.
func TestJWTVerify(t *testing.T) {
	L := luaVM(t)
	secret := []byte("s3cret")
	sign := func(m jwt.SigningMethod, key any, claims jwt.MapClaims) string {
		s, err := jwt.NewWithClaims(m, claims).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	now := time.Now()
	good := jwt.MapClaims{"sub": "alice", "aud": "mqtt", "iss": "auth.example", "exp": now.Add(time.Hour).Unix(), "iat": now.Unix()}
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&ecKey.PublicKey)
	pubPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	expired := jwt.MapClaims{"sub": "alice", "aud": "mqtt", "exp": now.Add(-time.Hour).Unix()}
	noExp := jwt.MapClaims{"sub": "alice", "aud": "mqtt"}
	otherAud := jwt.MapClaims{"sub": "alice", "aud": "web", "exp": now.Add(time.Hour).Unix()}
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, good).SignedString(jwt.UnsafeAllowNoneSignatureType)
	for name, v := range map[string]string{
		"hs":       sign(jwt.SigningMethodHS256, secret, good),
		"es":       sign(jwt.SigningMethodES256, ecKey, good),
		"expired":  sign(jwt.SigningMethodHS256, secret, expired),
		"noexp":    sign(jwt.SigningMethodHS256, secret, noExp),
		"otheraud": sign(jwt.SigningMethodHS256, secret, otherAud),
		"wrongkey": sign(jwt.SigningMethodHS256, []byte("other"), good),
		"none":     none,
		"pub":      pubPEM,
	} {
		L.SetGlobal(name, lua.LString(v))
	}
	err := L.DoString(`
local hopts = { secret = "s3cret", algorithms = { "HS256" }, audience = "mqtt", issuer = "auth.example" }
local claims, err = crypto.jwt_verify(hs, hopts)
assert(claims, err)
assert(claims.sub == "alice" and claims.aud == "mqtt", "claims")
claims, err = crypto.jwt_verify(es, { public_key = pub, algorithms = { "ES256" }, audience = "mqtt" })
assert(claims and claims.sub == "alice", err)
local function refused(token, opts, why)
  local c, e = crypto.jwt_verify(token, opts)
  assert(c == nil and e and e:find(why, 1, true), "want a refusal with '" .. why .. "', got " .. tostring(e))
end
local h = { secret = "s3cret", algorithms = { "HS256" }, audience = "mqtt" }
refused(expired, h, "expired")
refused(noexp, h, "exp")
refused(otheraud, h, "aud")
refused(wrongkey, h, "signature")
refused(none, h, "signing method none")
refused(hs, { secret = "s3cret", algorithms = { "RS256" } }, "signing method HS256 is invalid")
refused(es, { secret = pub, algorithms = { "HS256" } }, "signing method ES256 is invalid")
local ok = pcall(crypto.jwt_verify, hs, { secret = "s3cret" })
assert(not ok, "no algorithms listed must raise")
-- require_exp = false accepts a token without expiry.
assert(crypto.jwt_verify(noexp, { secret = "s3cret", algorithms = { "HS256" }, require_exp = false }))
`)
	if err != nil {
		t.Fatal(err)
	}
}
