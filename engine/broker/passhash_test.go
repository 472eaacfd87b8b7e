package broker_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mqttlua/broker/codec"
	"github.com/mqttlua/broker/engine"
	"github.com/mqttlua/broker/engine/enginetest"
)

// Lines mosquitto_passwd 2.0 wrote: alice (PBKDF2-SHA512, its default)
// with password secret1, bob (-H sha512) with secret2.
const mosquittoPasswd = `alice:$7$101$tRZShOYXoDu2XJGd$Yp9WM7vwW8SfP6nc44DeYkF9FHteiuumD8KEwEg/YHM2Rg+e6wn8+DldvSKZw2Hs7RuYUVQMUYbcIDgDryMJPQ==
bob:$6$bOoop4X3qIrfQeAY$sNxvzlyc4DQSeNPmWv9IR1qds7SP4CLwV1oW9JnctKpoK2s9izCnXPDf54rlPGSHY6nVr8/HP2Io+/vfnJMWgw==
`

// TestMosquittoPasswordFile: the default scripts accept a password file
// mosquitto_passwd made, as it is ($7$ and $6$ hashes beside bcrypt), and
// refuse at start, naming file and line, a hash in no known format.
func TestMosquittoPasswordFile(t *testing.T) {
	passwd := mosquittoPasswd
	if tool, err := exec.LookPath("mosquitto_passwd"); err == nil {
		// And one made now, by the real tool.
		f := filepath.Join(t.TempDir(), "pw")
		if out, err := exec.Command(tool, "-c", "-b", f, "carol", "secret3").CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_passwd: %v %s", err, out)
		}
		b, _ := os.ReadFile(f)
		passwd += string(b)
	}
	scripts := enginetest.CopyScripts(t, nil)
	os.WriteFile(filepath.Join(scripts, "passwd"), []byte(passwd), 0o600)
	_, addr, _ := enginetest.Start(t, engine.Config{Scripts: scripts})
	login := func(user, password string) codec.ReasonCode {
		c := enginetest.Dial(t, addr, codec.V5)
		c.Send(&codec.Packet{Type: codec.CONNECT, ProtocolLevel: codec.V5, ClientID: "pw-" + user, CleanSession: true,
			UsernameFlag: true, Username: user, PasswordFlag: true, Password: []byte(password)})
		return c.Expect(codec.CONNACK).ReasonCode
	}
	cases := [][3]string{{"alice", "secret1", "ok"}, {"alice", "secret2", "bad"}, {"bob", "secret2", "ok"}, {"bob", "", "bad"}}
	if strings.Contains(passwd, "carol:") {
		cases = append(cases, [3]string{"carol", "secret3", "ok"}, [3]string{"carol", "secret1", "bad"})
	}
	for _, tc := range cases {
		want := codec.ReasonCode(0)
		if tc[2] == "bad" {
			want = codec.BadUserNameOrPassword
		}
		if got := login(tc[0], tc[1]); got != want {
			t.Errorf("%s/%q: CONNACK %#x, want %#x", tc[0], tc[1], byte(got), byte(want))
		}
	}

	os.WriteFile(filepath.Join(scripts, "passwd"), []byte(mosquittoPasswd+"dave:plaintext\n"), 0o600)
	_, err := engine.New(engine.Config{Scripts: scripts})
	if err == nil || !strings.Contains(err.Error(), "passwd:3: user dave: unknown password hash format") {
		t.Fatalf("an unknown hash format: %v", err)
	}
}
