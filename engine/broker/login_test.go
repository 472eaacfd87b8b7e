package broker

import (
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/crypto/bcrypt"
)

// TestLoginsUnknownUserCostsTheSame: a login for a user name with no hash
// compares the password with a hash all the same, and never succeeds.
func TestLoginsUnknownUserCostsTheSame(t *testing.T) {
	l := newLogins(logrus.New())
	if ok, limited := l.Check("192.0.2.1:1000", "nobody", nil, []byte("not a password anyone has")); ok || limited {
		t.Fatalf("unknown user: ok %v, limited %v", ok, limited)
	}
	if n := l.Checked(); n != 1 {
		t.Fatalf("an unknown user's login compared %d hashes, want 1 (the dummy)", n)
	}
}

// TestLoginsLimits: past the failures allowed per address, logins from it
// are refused without a check, even with the right password; other
// addresses are not; past the failures allowed per user name, that user
// is refused from anywhere; a new window starts over.
func TestLoginsLimits(t *testing.T) {
	l := newLogins(logrus.New())
	l.SetLimits(3, 5, time.Hour)
	hash, _ := bcrypt.GenerateFromPassword([]byte("right"), bcrypt.MinCost)
	for i := 0; i < 3; i++ {
		if ok, limited := l.Check("192.0.2.1:1000", "alice", hash, []byte("guess")); ok || limited {
			t.Fatalf("attempt %d: ok %v, limited %v", i+1, ok, limited)
		}
	}
	checked := l.Checked()
	if ok, limited := l.Check("192.0.2.1:1001", "alice", hash, []byte("right")); ok || !limited {
		t.Fatalf("over the address limit: ok %v, limited %v", ok, limited)
	}
	if l.Checked() != checked || l.Refused() != 1 {
		t.Fatalf("a limited login was checked (%d -> %d) or not counted (%d)", checked, l.Checked(), l.Refused())
	}
	if ok, _ := l.Check("198.51.100.9:2000", "alice", hash, []byte("right")); !ok {
		t.Fatal("another address was refused")
	}
	// Two more failures for alice, from two more addresses: the user's
	// limit of 5.
	l.Check("198.51.100.10:1", "alice", hash, []byte("x"))
	l.Check("198.51.100.11:1", "alice", hash, []byte("x"))
	if ok, limited := l.Check("198.51.100.12:1", "alice", hash, []byte("right")); ok || !limited {
		t.Fatalf("over the user limit: ok %v, limited %v", ok, limited)
	}
	if ok, _ := l.Check("198.51.100.12:1", "bob", nil, []byte("x")); ok {
		t.Fatal("bob has no hash")
	}
	// A window that ended starts over.
	l.SetLimits(3, 5, time.Millisecond)
	time.Sleep(5 * time.Millisecond)
	if ok, limited := l.Check("192.0.2.1:1000", "alice", hash, []byte("right")); !ok || limited {
		t.Fatalf("after the window: ok %v, limited %v", ok, limited)
	}
}
