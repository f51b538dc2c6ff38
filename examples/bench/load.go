package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Bounds that hold whatever the flags say.
const (
	// maxRequestsPerRun caps the requests one run sends.
	maxRequestsPerRun = 20_000_000
	// maxSamplesPerRun caps the latencies one run keeps (8 bytes each);
	// requests beyond it are counted but not timed.
	maxSamplesPerRun = 4_000_000
	// requestTimeout bounds one request, connection included.
	requestTimeout = 10 * time.Second
	// dialTimeout bounds one connection attempt.
	dialTimeout = 2 * time.Second
)

// panPlaceholder marks where a request template carries its card number.
const panPlaceholder = "PPPPPPPPPPPPPPPP"

// checkoutBody is the ~300-byte JSON checkout that every target receives.
// The card number and security code sit at card.number and card.cvc, the
// fields of tok's checkout route; nothing else in it looks like a card.
const checkoutBody = `{"order":{"id":"ord_7QKX2M","currency":"EUR","amount":4999,` +
	`"items":[{"sku":"TSHIRT-BLK-M","qty":1,"price":4999}]},` +
	`"customer":{"email":"alex@example.com"},` +
	`"card":{"number":"` + panPlaceholder + `","exp_month":12,"exp_year":2030,"cvc":"123"},` +
	`"shipping":{"city":"Springfield","postcode":"12345","country":"DE"}}`

// handleBody is the body of tok's direct API, POST /handle.
const handleBody = `{"pan_number":"` + panPlaceholder + `"}`

// panKind says what a template's card number is for each request.
type panKind int

const (
	// uniqueValid is a fresh Luhn-valid Visa-like number every request, so
	// that tok creates (and durably commits) a new token for each one.
	uniqueValid panKind = iota
	// uniqueInvalid is a fresh number that fails the Luhn check, as a
	// token does: what the app sends on routes without card fields. The
	// guard lets it through.
	uniqueInvalid
	// minted is the next of the source's minted tokens, in turn: what the
	// app sends to tok's egress listener.
	minted
)

// template is an HTTP/1.1 request, ready to write to a connection, with a
// 16-digit card number at panOff that each request overwrites.
type template struct {
	method, path string
	raw          []byte
	panOff       int
	kind         panKind
}

// newTemplate builds a keep-alive request for host carrying body, whose
// panPlaceholder is replaced per request by a number of the given kind.
func newTemplate(method, host, path, contentType, body string, kind panKind) template {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: tok-bench\r\n", method, path, host)
	fmt.Fprintf(&b, "Content-Type: %s\r\nContent-Length: %d\r\n\r\n%s", contentType, len(body), body)
	return template{method: method, path: path, raw: b.Bytes(), panOff: bytes.Index(b.Bytes(), []byte(panPlaceholder)), kind: kind}
}

// panSource hands out distinct 16-digit card numbers. Numbers start at a
// random offset so that two harness runs (or a prefilled vault) do not
// share them. It also hands out the tokens set in tokens, in turn.
type panSource struct {
	base   uint64
	n      atomic.Uint64
	tokens []string // each len(panPlaceholder) bytes; set before any load
}

func newPANSource() *panSource {
	return &panSource{base: rand.Uint64N(1e13)}
}

// next writes the next 16-digit number of kind into dst[:16].
func (s *panSource) next(dst []byte, kind panKind) {
	if kind == minted {
		copy(dst[:len(panPlaceholder)], s.tokens[s.n.Add(1)%uint64(len(s.tokens))])
		return
	}
	v := (s.base + s.n.Add(1)) % 1e14
	dst[0] = '4'
	for i := 14; i >= 1; i-- {
		dst[i] = byte('0' + v%10)
		v /= 10
	}
	c := luhnCheckDigit(dst[:15])
	if kind == uniqueInvalid {
		c = (c + 1) % 10
	}
	dst[15] = '0' + c
}

// luhnCheckDigit returns the digit that makes digits followed by it pass
// the Luhn check.
func luhnCheckDigit(digits []byte) byte {
	sum := 0
	double := true // the check digit is not doubled; the one before it is
	for i := len(digits) - 1; i >= 0; i-- {
		d := int(digits[i] - '0')
		if double {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
	}
	return byte((10 - sum%10) % 10)
}

// luhnValid reports whether the digits pass the Luhn check.
func luhnValid(digits []byte) bool {
	if len(digits) < 2 {
		return false
	}
	return luhnCheckDigit(digits[:len(digits)-1]) == digits[len(digits)-1]-'0'
}

// client is one keep-alive HTTP/1.1 connection, written and read directly:
// net/http's client spends more CPU per request than the proxies under
// test do, and on a shared 2-core machine every cycle the generator burns
// is taken from them.
type client struct {
	addr string
	req  []byte
	tmpl template
	pans *panSource
	conn net.Conn
	br   *bufio.Reader
}

func newClient(addr string, t template, pans *panSource) *client {
	return &client{addr: addr, req: bytes.Clone(t.raw), tmpl: t, pans: pans}
}

// dial connects, unless connected already.
func (c *client) dial() error {
	if c.conn != nil {
		return nil
	}
	conn, err := net.DialTimeout("tcp", c.addr, dialTimeout)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	c.conn, c.br = conn, bufio.NewReaderSize(conn, 16<<10)
	return nil
}

// do sends one request and returns its status code and, for an answer
// other than 2xx, the start of its body.
func (c *client) do() (int, string, error) {
	if err := c.dial(); err != nil {
		return 0, "", err
	}
	if c.tmpl.panOff >= 0 {
		c.pans.next(c.req[c.tmpl.panOff:], c.tmpl.kind)
	}
	if err := c.conn.SetDeadline(time.Now().Add(requestTimeout)); err != nil {
		c.close()
		return 0, "", err
	}
	if _, err := c.conn.Write(c.req); err != nil {
		c.close()
		return 0, "", fmt.Errorf("write: %w", err)
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		c.close()
		return 0, "", fmt.Errorf("read: %w", err)
	}
	var excerpt []byte
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		excerpt, _ = io.ReadAll(io.LimitReader(resp.Body, maxExcerpt))
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || resp.Close {
		c.close()
	}
	return resp.StatusCode, string(bytes.TrimSpace(excerpt)), err
}

// maxExcerpt is how much of a non-2xx answer's body is kept.
const maxExcerpt = 256

func (c *client) close() {
	if c.conn != nil {
		c.conn.Close()
		c.conn, c.br = nil, nil
	}
}

// result is what one load run measured on the client side.
type result struct {
	Elapsed time.Duration
	OK      int // 2xx answers
	Shed    int // 503 answers saying "overloaded": tok at capacity
	Other   int // any other non-2xx answer
	Errors  int // transport errors
	Missed  int // open loop: scheduled sends the generator could not make
	// FirstProblem describes the first non-2xx answer or error, for the
	// report.
	FirstProblem string
	// Latencies of 2xx answers, sorted after the run.
	Latencies []time.Duration
}

// Rate is the 2xx answers per second.
func (r *result) Rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.OK) / r.Elapsed.Seconds()
}

// recorder collects one worker's outcomes; merged after the run.
type recorder struct {
	result
	maxSamples int
}

func (w *recorder) record(status int, excerpt string, err error, lat time.Duration) {
	switch {
	case err != nil:
		w.Errors++
		if w.FirstProblem == "" {
			w.FirstProblem = err.Error()
		}
		return
	case status >= 200 && status < 300:
		w.OK++
		if len(w.Latencies) < w.maxSamples {
			w.Latencies = append(w.Latencies, lat)
		}
		return
	case status == http.StatusServiceUnavailable && strings.Contains(excerpt, `"overloaded"`):
		w.Shed++
		return
	default:
		w.Other++
	}
	if w.FirstProblem == "" {
		w.FirstProblem = "HTTP " + strconv.Itoa(status) + " " + excerpt
	}
}

func merge(elapsed time.Duration, parts []*recorder) result {
	r := result{Elapsed: elapsed}
	for _, p := range parts {
		r.OK += p.OK
		r.Shed += p.Shed
		r.Other += p.Other
		r.Errors += p.Errors
		r.Missed += p.Missed
		if r.FirstProblem == "" {
			r.FirstProblem = p.FirstProblem
		}
		r.Latencies = append(r.Latencies, p.Latencies...)
	}
	sortDurations(r.Latencies)
	return r
}

// closedLoop runs conns workers, each with its own keep-alive connection,
// sending the next request as soon as the previous answer arrives, for d
// (and at most maxRequestsPerRun requests). It measures throughput; its
// latencies under-report tails (a slow answer delays the requests behind
// it instead of being overtaken by them), which is what openLoop is for.
func closedLoop(ctx context.Context, addr string, t template, pans *panSource, conns int, d time.Duration) result {
	r, _ := closedLoopSplit(ctx, []dest{{addr, t}}, pans, conns, d)
	return r
}

// dest is one address a closed loop sends to, with its request template.
type dest struct {
	addr string
	tmpl template
}

// splitConns assigns conns connections to n destinations in turn
// (connection i to destination i mod n): each destination gets conns/n
// connections, give or take one, for as long as the run lasts, as replicas
// behind a load balancer that pins each keep-alive connection see.
func splitConns(conns, n int) []int {
	pick := make([]int, conns)
	for i := range pick {
		pick[i] = i % max(n, 1)
	}
	return pick
}

// closedLoopSplit is closedLoop over several destinations, each connection
// pinned to one of them (splitConns). It also returns the 2xx answers of
// each destination.
func closedLoopSplit(ctx context.Context, dests []dest, pans *panSource, conns int, d time.Duration) (result, []int) {
	pick := splitConns(conns, len(dests))
	// start is taken before the deadline is set, so Elapsed is never
	// shorter than d.
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var budget atomic.Int64
	budget.Store(maxRequestsPerRun)
	parts := make([]*recorder, conns)
	var wg sync.WaitGroup
	for i := range parts {
		w := &recorder{maxSamples: maxSamplesPerRun / conns}
		parts[i] = w
		to := dests[pick[i]]
		wg.Go(func() {
			c := newClient(to.addr, to.tmpl, pans)
			defer c.close()
			for ctx.Err() == nil && budget.Add(-1) >= 0 {
				t0 := time.Now()
				status, excerpt, err := c.do()
				if err != nil && ctx.Err() != nil {
					return // the run ended mid-request
				}
				w.record(status, excerpt, err, time.Since(t0))
				if err != nil {
					sleepCtx(ctx, 10*time.Millisecond) // do not spin on a dead target
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	perDest := make([]int, len(dests))
	for i, p := range parts {
		perDest[pick[i]] += p.OK
	}
	return merge(elapsed, parts), perDest
}

// openLoop sends requests on a fixed schedule, rate per second for d, over
// at most conns connections, whatever the target's latency. Each latency is
// measured from the request's intended send time, not from when a free
// connection sent it, so a stall counts against every request it delayed
// (no coordinated omission). Sends that fall more than d/2 (at most 5 s)
// behind schedule are abandoned and counted as Missed.
func openLoop(ctx context.Context, addr string, t template, pans *panSource, rate float64, conns int, d time.Duration) (result, error) {
	total := int(rate * d.Seconds())
	if total <= 0 || total > maxRequestsPerRun {
		return result{}, fmt.Errorf("open loop: %v at %.0f/s is %d requests; want 1 to %d", d, rate, total, maxRequestsPerRun)
	}
	interval := time.Duration(float64(time.Second) / rate)
	grace := min(d/2, 5*time.Second)
	due := make(chan time.Time, conns)
	parts := make([]*recorder, conns)
	var wg, connected sync.WaitGroup
	connected.Add(conns)
	for i := range parts {
		w := &recorder{maxSamples: maxSamplesPerRun / conns}
		parts[i] = w
		wg.Go(func() {
			c := newClient(addr, t, pans)
			defer c.close()
			_ = c.dial() // connect before the clock starts; do retries
			connected.Done()
			for intended := range due {
				status, excerpt, err := c.do()
				if err != nil && ctx.Err() != nil {
					return
				}
				w.record(status, excerpt, err, time.Since(intended))
			}
		})
	}
	connected.Wait()
	start := time.Now()
	end := start.Add(d + grace)
	missed := 0
	timer := time.NewTimer(0)
	<-timer.C
dispatch:
	for i := range total {
		intended := start.Add(time.Duration(i) * interval)
		if wait := time.Until(intended); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-ctx.Done():
				missed = total - i
				break dispatch
			}
		}
		if time.Now().After(end) {
			missed = total - i
			break
		}
		select {
		case due <- intended:
		case <-ctx.Done():
			missed = total - i
			break dispatch
		}
	}
	close(due)
	wg.Wait()
	r := merge(time.Since(start), parts)
	r.Missed = missed
	return r, ctx.Err()
}

// sleepCtx sleeps for d or until ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// errNoAnswer is returned by probe when the target answered nothing.
var errNoAnswer = errors.New("no answer")

// probe sends one request of t to addr and returns its status and body.
func probe(addr string, t template, pans *panSource) (int, string, error) {
	req := bytes.Clone(t.raw)
	if t.panOff >= 0 {
		pans.next(req[t.panOff:], t.kind)
	}
	conn, err := net.DialTimeout("tcp", addr, dialTimeout)
	if err != nil {
		return 0, "", err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(requestTimeout)); err != nil {
		return 0, "", err
	}
	if _, err := conn.Write(req); err != nil {
		return 0, "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0, "", fmt.Errorf("%w: %w", errNoAnswer, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	return resp.StatusCode, string(bytes.TrimSpace(b)), nil
}
