package auth

import (
	"sync"
	"time"
)

// Login limits per source address: without them a flood of unknown login
// names from one address blocked every legitimate login, since the bcrypt
// slots are shared by all. Each source address may have
// maxLoginsPerSource logins in progress and make lockout.source_rate
// attempts per minute; the excess is refused (429 too_many_logins) before
// any secret is checked or anything is written, so one address can hold
// at most one of the bcrypt slots.
const (
	// maxLoginsPerSource is how many logins one address may have in
	// progress at once.
	maxLoginsPerSource = 1
	// maxLoginSources bounds the addresses tracked; past it, idle
	// addresses are forgotten (their budgets start full again).
	maxLoginSources = 1 << 16
)

// SourceLimiter refusals.
const (
	SourceBusy    = "busy"         // a login from this address is in progress
	SourceLimited = "rate_limited" // this address used its attempts for now
)

// SourceLimiter is a token bucket and an in-progress count per source
// address, shared by every configuration generation. It is safe for
// concurrent use.
type SourceLimiter struct {
	mu      sync.Mutex
	now     func() time.Time
	rate    int // attempts per minute, and the bucket's size
	sources map[string]*loginSource
}

type loginSource struct {
	tokens   float64
	last     time.Time // when tokens was computed
	inFlight int
	limited  bool // refused as rate limited since its last allowed attempt
}

// NewSourceLimiter allows rate attempts per minute per source address.
func NewSourceLimiter(now func() time.Time, rate int) *SourceLimiter {
	return &SourceLimiter{now: now, rate: rate, sources: map[string]*loginSource{}}
}

// SetRate changes the rate (a reload).
func (l *SourceLimiter) SetRate(rate int) {
	l.mu.Lock()
	l.rate = rate
	l.mu.Unlock()
}

// Acquire takes one attempt for src. It returns a release func to call
// when the attempt is over, or the refusal (SourceBusy, SourceLimited) and,
// for SourceLimited, whether it is the first since src was last allowed
// (the one refusal of an episode the audit log records) and how long until
// an attempt is allowed again.
func (l *SourceLimiter) Acquire(src string) (release func(), refusal string, first bool, retry time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	s := l.sources[src]
	if s == nil {
		if len(l.sources) >= maxLoginSources {
			l.prune(now)
		}
		s = &loginSource{tokens: float64(l.rate), last: now}
		l.sources[src] = s
	}
	l.refill(s, now)
	if s.inFlight >= maxLoginsPerSource {
		return nil, SourceBusy, false, 0
	}
	if s.tokens < 1 {
		first = !s.limited
		s.limited = true
		retry = time.Duration((1 - s.tokens) * float64(time.Minute) / float64(l.rate))
		return nil, SourceLimited, first, retry
	}
	s.tokens--
	s.limited = false
	s.inFlight++
	return func() {
		l.mu.Lock()
		s.inFlight--
		l.mu.Unlock()
	}, "", false, 0
}

// refill adds the tokens earned since s.last.
func (l *SourceLimiter) refill(s *loginSource, now time.Time) {
	if d := now.Sub(s.last); d > 0 {
		s.tokens = min(float64(l.rate), s.tokens+d.Minutes()*float64(l.rate))
		s.last = now
	}
}

// prune forgets idle sources whose budget has refilled; if that is not
// enough (a flood from very many addresses), idle ones at random, down to
// half the cap. l.mu is held.
func (l *SourceLimiter) prune(now time.Time) {
	for k, s := range l.sources {
		l.refill(s, now)
		if s.inFlight == 0 && s.tokens >= float64(l.rate) {
			delete(l.sources, k)
		}
	}
	for k, s := range l.sources {
		if len(l.sources) <= maxLoginSources/2 {
			break
		}
		if s.inFlight == 0 {
			delete(l.sources, k)
		}
	}
}
