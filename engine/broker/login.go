package broker

import (
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/crypto/bcrypt"
)

// Logins checks passwords for scripts (broker.authenticate): bcrypt, with
// the defences a password check on a network service needs.
//
//   - An unknown user costs what a known user does: the password is
//     checked against a dummy bcrypt hash of the cost the users' hashes
//     have (NoteHash; bcrypt's default until one is seen), so the time
//     of a refusal does not tell which user names exist.
//   - Failures are counted per source address and per user name over a
//     window; past the limit, logins from that address (or for that user)
//     are refused without hashing until the window ends, so guessing
//     costs the broker nothing, and the burst is logged once, not per
//     attempt.
//   - At most half the CPUs hash at once: a flood of logins cannot take
//     every core from the connections already in.
type Logins struct {
	mu     sync.Mutex
	byAddr map[string]*failures
	byUser map[string]*failures
	log    *logrus.Logger
	slots  chan struct{}
	// Limits; a zero limit turns that count off.
	perAddr, perUser int
	window           time.Duration

	// refused counts logins refused by the limits, without a check;
	// checked the passwords compared (unknown users' too).
	refused, checked int64
	// cost is the bcrypt cost of the users' hashes (0: none seen yet).
	cost atomic.Int32
}

type failures struct {
	n      int
	since  time.Time
	logged bool
}

// dummyHashes are checked for unknown users, so that they cost what a
// known user does: one per bcrypt cost, made on first use. The cost is
// that of the users' hashes (NoteHash), bcrypt's default until one is
// seen.
var dummyHashes sync.Map // cost -> []byte

func dummyHash(cost int) []byte {
	if h, ok := dummyHashes.Load(cost); ok {
		return h.([]byte)
	}
	h, _ := bcrypt.GenerateFromPassword([]byte("not a password anyone has"), cost)
	dummyHashes.Store(cost, h)
	return h
}

// NoteHash records the cost of a user's bcrypt hash (from a password
// file, a script's table, broker.hash_password), which the dummy check
// for unknown users then matches.
func (l *Logins) NoteHash(hash []byte) {
	if c, err := bcrypt.Cost(hash); err == nil {
		l.cost.Store(int32(c))
	}
}

// maxTracked bounds the failure tables: past it, windows that ended are
// swept, and if that is not enough the table starts over (limiting less
// for a while rather than growing without bound).
const maxTracked = 100000

func newLogins(log *logrus.Logger) *Logins {
	n := runtime.NumCPU() / 2
	if n < 1 {
		n = 1
	}
	return &Logins{byAddr: map[string]*failures{}, byUser: map[string]*failures{}, log: log,
		slots: make(chan struct{}, n), perAddr: 10, perUser: 20, window: time.Minute}
}

// SetLimits sets the failures allowed per source address and per user
// name within window (0: no limit).
func (l *Logins) SetLimits(perAddr, perUser int, window time.Duration) {
	l.mu.Lock()
	l.perAddr, l.perUser, l.window = perAddr, perUser, window
	l.mu.Unlock()
}

// Limits returns the failures allowed per source address and per user
// name, and the window.
func (l *Logins) Limits() (perAddr, perUser int, window time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.perAddr, l.perUser, l.window
}

// Refused returns how many logins the limits refused.
func (l *Logins) Refused() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.refused
}

// Checked returns how many passwords were compared with a hash, an
// unknown user's with the dummy one included.
func (l *Logins) Checked() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.checked
}

// Check reports whether password matches hash (nil or empty: an unknown
// user, never a match) for a login from remote ("host:port"). limited is
// true when the address or the user name is over its limit: then no hash
// was checked.
func (l *Logins) Check(remote, user string, hash, password []byte) (ok, limited bool) {
	addr := remote
	if host, _, err := net.SplitHostPort(remote); err == nil {
		addr = host
	}
	now := time.Now()
	l.mu.Lock()
	if l.over(l.byAddr, addr, l.perAddr, now) || l.over(l.byUser, user, l.perUser, now) {
		l.refused++
		l.mu.Unlock()
		return false, true
	}
	l.mu.Unlock()

	unknown := len(hash) == 0
	if unknown {
		cost := int(l.cost.Load())
		if cost == 0 {
			cost = bcrypt.DefaultCost
		}
		hash = dummyHash(cost)
	} else {
		l.NoteHash(hash)
	}
	l.slots <- struct{}{}
	err := verifyPassword(hash, password)
	<-l.slots
	l.mu.Lock()
	l.checked++
	l.mu.Unlock()
	if err == nil && !unknown {
		return true, false
	}
	l.mu.Lock()
	l.fail(l.byAddr, addr, l.perAddr, now, "address")
	l.fail(l.byUser, user, l.perUser, now, "user_name")
	l.mu.Unlock()
	return false, false
}

// over reports whether key is over limit in its current window. l.mu is
// held.
func (l *Logins) over(table map[string]*failures, key string, limit int, now time.Time) bool {
	f := table[key]
	if limit <= 0 || f == nil {
		return false
	}
	if now.Sub(f.since) >= l.window {
		delete(table, key)
		return false
	}
	return f.n >= limit
}

// fail counts a failure for key, and logs once when it reaches the limit.
// l.mu is held.
func (l *Logins) fail(table map[string]*failures, key string, limit int, now time.Time, what string) {
	if limit <= 0 {
		return
	}
	f := table[key]
	if f == nil || now.Sub(f.since) >= l.window {
		if len(table) >= maxTracked {
			sweep(table, now, l.window)
		}
		f = &failures{since: now}
		table[key] = f
	}
	f.n++
	if f.n >= limit && !f.logged {
		f.logged = true
		l.log.WithFields(logrus.Fields{what: key, "failures": f.n, "window": l.window.String()}).
			Warn("login failures: refusing logins without checking for the rest of the window")
	}
}

// sweep drops the windows that ended, and everything if that is not
// enough.
func sweep(table map[string]*failures, now time.Time, window time.Duration) {
	for k, f := range table {
		if now.Sub(f.since) >= window {
			delete(table, k)
		}
	}
	if len(table) >= maxTracked {
		clear(table)
	}
}
