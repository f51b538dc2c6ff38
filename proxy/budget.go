package proxy

import (
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tokproxy/tok/proxy/internal/httpx"
)

// Budgets bound how many values a caller may send down the paths that
// answer whether a card maps to a token, or that reveal one.
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
	// TrustedProxies are the peers (a load balancer, an ingress) whose
	// X-Forwarded-For names the client: for a request from one of them,
	// the source a budget is kept for is the last address in
	// X-Forwarded-For that is not itself trusted. Without them every
	// shopper behind a load balancer shares its address, and a per-source
	// budget caps all checkouts together.
	TrustedProxies []netip.Prefix
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
	b.Window = positiveOr(b.Window, DefaultBudgetWindow)
	b.HandleAnonymous = positiveOr(b.HandleAnonymous, DefaultHandleAnonymousBudget)
	b.HandleClient = positiveOr(b.HandleClient, DefaultHandleClientBudget)
	b.Inbound = positiveOr(b.Inbound, DefaultInboundBudget)
	b.Reveal = positiveOr(b.Reveal, DefaultRevealBudget)
	return b
}

// budgetSet holds one budget's state by key (a client name or a source
// address). The size and window are passed on each call, so a reload that
// changes them keeps what callers have spent. Safe for concurrent use.
//
// It is the generic cell rate algorithm: each value costs window/size of
// time, and a key's tat ("theoretical arrival time") is when its spending
// so far would be paid off at that rate. A request fits if paying for it
// too ends no more than a whole budget's time (size × cost) ahead of now.
// All integers: a refill is exact, with no float drift at its edge.
type budgetSet struct {
	mu       sync.Mutex
	tat      map[string]time.Time
	overflow time.Time // shared by new keys once maxBudgetKeys are held
	pruned   time.Time // last sweep of paid-off keys: at most one a second
}

func newBudgetSet() *budgetSet { return &budgetSet{tat: map[string]time.Time{}} }

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
	cost := max(window/time.Duration(size), 1)
	burst := cost * time.Duration(size)
	s.mu.Lock()
	defer s.mu.Unlock()
	tat := s.get(key, now)
	if tat.Before(now) {
		tat = now
	}
	next := tat.Add(cost * time.Duration(n))
	if ahead := next.Sub(now); ahead > burst {
		return false, ahead - burst
	}
	s.set(key, next)
	return true, 0
}

// get returns key's tat; a key never seen, or past maxBudgetKeys, starts
// with a full budget. Called with mu held.
func (s *budgetSet) get(key string, now time.Time) time.Time {
	if t, ok := s.tat[key]; ok {
		return t
	}
	if len(s.tat) >= maxBudgetKeys && now.Sub(s.pruned) >= time.Second {
		s.pruned = now
		for k, t := range s.tat {
			if !t.After(now) {
				delete(s.tat, k) // paid off: the same as absent
			}
		}
	}
	if len(s.tat) >= maxBudgetKeys {
		// Still full: every held key is spending. New keys share one
		// budget rather than grow memory or go unbounded.
		return s.overflow
	}
	return time.Time{}
}

// set stores key's tat, in the shared overflow slot when the map is full.
// Called with mu held.
func (s *budgetSet) set(key string, t time.Time) {
	if _, ok := s.tat[key]; ok || len(s.tat) < maxBudgetKeys {
		s.tat[key] = t
		return
	}
	s.overflow = t
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
		return httpx.Errorf(http.StatusRequestEntityTooLarge, CodeBatchTooLarge,
			"this request holds %d values; the %s budget allows at most %d per %s: split it", n, name, size, s.opts.Budgets.Window)
	}
	secs := int64(math.Ceil(wait.Seconds()))
	w.Header().Set("Retry-After", strconv.FormatInt(max(secs, 1), 10))
	return httpx.Errorf(http.StatusTooManyRequests, CodeBudgetExceeded,
		"the %s budget of %d values per %s is spent; retry after %d s", name, size, s.opts.Budgets.Window, max(secs, 1))
}

// sourceKey is the budget key of r's source: its IPv4 address, or the /64
// of an IPv6 one (one host commonly holds a whole /64). The source is the
// peer, unless the peer is one of trusted: then the last address of
// X-Forwarded-For (rightmost first, as each proxy appends) that is not
// trusted. Any client can write X-Forwarded-For, so only what trusted
// proxies appended is believed.
func sourceKey(r *http.Request, trusted []netip.Prefix) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	a = a.Unmap()
	if isTrusted(a, trusted) {
		a = forwardedFor(r, a, trusted)
	}
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}

// forwardedFor walks r's X-Forwarded-For from the right past trusted
// proxies and returns the first untrusted address, or peer if there is
// none (or a hop that does not parse: what is left of it is unverified).
func forwardedFor(r *http.Request, peer netip.Addr, trusted []netip.Prefix) netip.Addr {
	var hops []string
	for _, v := range r.Header.Values("X-Forwarded-For") {
		hops = append(hops, strings.Split(v, ",")...)
	}
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			return peer
		}
		a = a.Unmap()
		if !isTrusted(a, trusted) {
			return a
		}
		peer = a
	}
	return peer
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// clientBudget is a client's own budget if set, else the default.
func clientBudget(own, def int) int {
	if own > 0 {
		return own
	}
	return def
}
