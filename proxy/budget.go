package proxy

import (
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"
)

// Budgets bound how many values a caller may send down the paths that
// answer whether a card maps to a token, or that reveal one (issue 19).
// Every budget is counted in values (card numbers, or /@me lookups), never
// in requests: one request carrying 1,000 candidates spends 1,000. A budget
// refills continuously at its size per Window and holds at most its size,
// so a caller may spend a whole budget at once and then its size per
// Window. Budgets are kept in memory per process: replicas sharing a vault
// each grant their own, and a restart refills them.
type Budgets struct {
	// Window is the period a budget refills in. If zero, DefaultBudgetWindow.
	Window time.Duration
	// HandleAnonymous is card numbers per source address per Window on the
	// public POST /handle. That path never converges (it is no oracle); the
	// budget bounds the records an address can make tok store. If zero,
	// DefaultHandleAnonymousBudget.
	HandleAnonymous int
	// HandleClient is card numbers per client per Window on the auth
	// listener's POST /handle, which converges. A client's own
	// [Client.HandleBudget] wins. If zero, DefaultHandleClientBudget.
	HandleClient int
	// Inbound is convergent values per source address per Window on the
	// inbound routes (fields without unique, store: memory or ttl, and
	// guard hits in tokenize mode). If zero, DefaultInboundBudget.
	Inbound int
	// Reveal is GET and POST /@me lookups per client per Window, whether
	// they reveal, show a masked card or find nothing. A client's own
	// [Client.RevealBudget] wins. If zero, DefaultRevealBudget.
	Reveal int
}

// Default budgets. An attacker holding a pan token (first 6 and last 4 of a
// 16-digit card visible) faces about 10^5 Luhn-valid candidates.
const (
	DefaultBudgetWindow = time.Hour
	// DefaultHandleAnonymousBudget bounds fresh records per address: about
	// 28 a second sustained, far above any legitimate unauthenticated use.
	DefaultHandleAnonymousBudget = 100_000
	// DefaultHandleClientBudget: one client searches at most 1,000
	// candidates an hour, so ~50 hours on average for one 16-digit card.
	DefaultHandleClientBudget = 1_000
	// DefaultInboundBudget: convergent card values per shopper address an
	// hour. A shopper sends a handful; an app that echoes tokens gives
	// one address at most 10,000 guesses an hour (~5 hours on average per
	// card). Behind a load balancer every shopper shares its address: then
	// this is a cap on all checkouts; size it above the peak.
	DefaultInboundBudget = 10_000
	// DefaultRevealBudget: /@me lookups per client an hour, above what a
	// person at a support console does, and far below enumerating the
	// 900 tokens of 3-digit CVCs.
	DefaultRevealBudget = 100

	// MaxBudget is the largest budget accepted: 10^9 values per window
	// is "off" for any deployment.
	MaxBudget = 1_000_000_000

	// maxBudgetKeys bounds the buckets kept per budget (source addresses
	// are chosen by the caller). Past it, full buckets (which carry no
	// state) are dropped; if none is, new keys share one bucket.
	maxBudgetKeys = 1 << 16
)

// Budget names, as in metrics (tok_budget_refusals_total{budget}).
const (
	budgetHandleAnonymous = "handle_anonymous"
	budgetHandleClient    = "handle_client"
	budgetInbound         = "inbound"
	budgetReveal          = "reveal"
)

// withDefaults fills zero fields.
func (b Budgets) withDefaults() Budgets {
	if b.Window <= 0 {
		b.Window = DefaultBudgetWindow
	}
	if b.HandleAnonymous <= 0 {
		b.HandleAnonymous = DefaultHandleAnonymousBudget
	}
	if b.HandleClient <= 0 {
		b.HandleClient = DefaultHandleClientBudget
	}
	if b.Inbound <= 0 {
		b.Inbound = DefaultInboundBudget
	}
	if b.Reveal <= 0 {
		b.Reveal = DefaultRevealBudget
	}
	return b
}

// budgetSet holds one budget's buckets by key (a client name or a source
// address). The size and window are passed on each call, so a reload that
// changes them keeps what callers have spent. Safe for concurrent use.
type budgetSet struct {
	mu       sync.Mutex
	buckets  map[string]*bucket
	overflow bucket // shared by new keys once maxBudgetKeys are held
}

// bucket is what a key has left: level values at time at.
type bucket struct {
	level float64
	at    time.Time
}

func newBudgetSet() *budgetSet { return &budgetSet{buckets: map[string]*bucket{}} }

// take spends n values of key's budget of size per window at now. If the
// budget holds fewer than n it spends nothing and returns how long until it
// holds n (ok false). n larger than size never fits: wait is then zero.
func (s *budgetSet) take(key string, n, size int, window time.Duration, now time.Time) (ok bool, wait time.Duration) {
	if n <= 0 {
		return true, 0
	}
	if n > size {
		return false, 0
	}
	rate := float64(size) / float64(window) // values per nanosecond
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.bucket(key, size, rate, now)
	if el := now.Sub(b.at); el > 0 {
		b.level = math.Min(float64(size), b.level+float64(el)*rate)
		b.at = now
	}
	if b.level >= float64(n) {
		b.level -= float64(n)
		return true, 0
	}
	return false, time.Duration(math.Ceil((float64(n) - b.level) / rate))
}

// bucket returns key's bucket, a full one if it has none. Called with mu held.
func (s *budgetSet) bucket(key string, size int, rate float64, now time.Time) *bucket {
	if b, ok := s.buckets[key]; ok {
		return b
	}
	if len(s.buckets) >= maxBudgetKeys {
		for k, b := range s.buckets {
			if b.level+float64(now.Sub(b.at))*rate >= float64(size) {
				delete(s.buckets, k) // refilled: the same as absent
			}
		}
	}
	if len(s.buckets) >= maxBudgetKeys {
		// Still full: every held key is spending. New keys share one bucket
		// rather than grow memory or go unbounded.
		if s.overflow.at.IsZero() {
			s.overflow = bucket{level: float64(size), at: now}
		}
		return &s.overflow
	}
	b := &bucket{level: float64(size), at: now}
	s.buckets[key] = b
	return b
}

// budgets is the state of every budget, shared by all Server generations.
type budgets struct {
	handleAnonymous, handleClient, inbound, reveal *budgetSet
}

func newBudgets() *budgets {
	return &budgets{newBudgetSet(), newBudgetSet(), newBudgetSet(), newBudgetSet()}
}

// spend takes n values from key's budget name of size. A refusal sets
// Retry-After on w and returns the 429 (or, for a batch larger than the
// whole budget, the 413) to answer with, and counts it on /metrics.
func (s *Server) spend(w http.ResponseWriter, set *budgetSet, name, key string, n, size int) error {
	ok, wait := set.take(key, n, size, s.opts.Budgets.Window, s.opts.Now())
	if ok {
		return nil
	}
	s.metrics.budgetRefusals.WithLabelValues(name).Inc()
	if wait == 0 {
		return errorf(http.StatusRequestEntityTooLarge, "batch_too_large",
			"this request holds %d values; the %s budget allows at most %d per %s: split it", n, name, size, s.opts.Budgets.Window)
	}
	secs := int64(math.Ceil(wait.Seconds()))
	w.Header().Set("Retry-After", strconv.FormatInt(max(secs, 1), 10))
	return errorf(http.StatusTooManyRequests, "budget_exceeded",
		"the %s budget of %d values per %s is spent; retry after %d s", name, size, s.opts.Budgets.Window, max(secs, 1))
}

// sourceKey is the budget key of r's peer: its IPv4 address, or the /64 of
// an IPv6 one (one host commonly holds a whole /64). X-Forwarded-For is not
// trusted: any client can write it.
func sourceKey(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}

// clientBudget is a client's own budget if set, else the default.
func clientBudget(own, def int) int {
	if own > 0 {
		return own
	}
	return def
}
