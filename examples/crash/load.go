package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tokproxy/tok/examples/internal/tokbin"
)

// ack is a token a client received with a 2xx, and the PAN it sent.
type ack struct {
	pan, token string
	checkout   bool // through the proxy (POST /checkout), else POST /handle
	cycle      int
}

// outcome is one request's result, kept for the PostgreSQL outage scenario.
type outcome struct {
	sent, done time.Time
	status     int // 0: no HTTP answer
}

// ledger is the client side's record of what it sent and what was
// acknowledged.
type ledger struct {
	prefix string // 5 random digits: PANs of this run differ from earlier runs'
	next   atomic.Uint64

	mu       sync.Mutex
	acks     []ack
	orders   map[string]string // order id → PAN sent with it
	statuses map[int]int       // non-2xx answers by status
	errs     int               // requests without an HTTP answer (tok down)
	bad2xx   []string          // 2xx answers without a usable token
	keepOut  bool
	outcomes []outcome
}

func newLedger(keepOutcomes bool) *ledger {
	n, _ := rand.Int(rand.Reader, big.NewInt(100000))
	return &ledger{prefix: fmt.Sprintf("%05d", n.Int64()), orders: map[string]string{}, statuses: map[int]int{}, keepOut: keepOutcomes}
}

// newPAN returns a fresh 16-digit Luhn-valid PAN, unique in this run.
func (l *ledger) newPAN() string {
	return luhn("4" + l.prefix + fmt.Sprintf("%09d", l.next.Add(1)))
}

// luhn appends the Luhn check digit to digits.
func luhn(digits string) string {
	sum := 0
	for i := len(digits) - 1; i >= 0; i-- {
		d := int(digits[i] - '0')
		if (len(digits)-1-i)%2 == 0 { // doubled: the check digit will be to the right
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return digits + strconv.Itoa((10-sum%10)%10)
}

func (l *ledger) newOrder(pan string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	id := "order-" + strconv.Itoa(len(l.orders)+1)
	l.orders[id] = pan
	return id
}

func (l *ledger) orderPAN(id string) (string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	pan, ok := l.orders[id]
	return pan, ok
}

func (l *ledger) record(o outcome, a *ack, bad string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case o.status == 0:
		l.errs++
	case o.status/100 != 2:
		l.statuses[o.status]++
	}
	if a != nil {
		l.acks = append(l.acks, *a)
	}
	if bad != "" {
		l.bad2xx = append(l.bad2xx, bad)
	}
	if l.keepOut {
		l.outcomes = append(l.outcomes, o)
	}
}

// okSince reports whether a request sent after t got a 2xx.
func (l *ledger) okSince(t time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := len(l.outcomes) - 1; i >= 0; i-- {
		if o := l.outcomes[i]; o.sent.After(t) && o.status/100 == 2 {
			return true
		}
	}
	return false
}

// acksSince returns the acknowledgements from index i on, and the new end.
func (l *ledger) acksSince(i int) ([]ack, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]ack(nil), l.acks[i:]...), len(l.acks)
}

// receipt is one request the upstream app received.
type receipt struct {
	order, token string
	cvc          string // the CVC's token, when the route has a CVC field
	at           time.Time
	truncated    bool // the body was cut off (tok killed mid-request)
}

// upstream is the merchant app behind tok: it records the token in place
// of every card number it receives and echoes it to the client.
type upstream struct {
	srv *http.Server
	url string

	mu  sync.Mutex
	got []receipt
}

func startUpstream() (*upstream, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	u := &upstream{url: "http://" + ln.Addr().String()}
	u.srv = &http.Server{Handler: http.HandlerFunc(u.serve), ReadHeaderTimeout: 10 * time.Second}
	go u.srv.Serve(ln)
	return u, nil
}

func (u *upstream) serve(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Order string `json:"order"`
		Card  struct {
			Number string `json:"number"`
			CVC    string `json:"cvc"`
		} `json:"card"`
	}
	b, err := io.ReadAll(r.Body)
	if err != nil {
		// tok was killed while forwarding: the app got part of a body. A
		// token in that part was still handed out, so it must have a record
		// too; the app answers nothing useful either way.
		rec := receipt{truncated: true, at: time.Now()}
		if m := partialOrder.FindSubmatch(b); m != nil {
			rec.order = string(m[1])
		}
		if m := partialToken.FindSubmatch(b); m != nil {
			rec.token = string(m[1])
		}
		u.mu.Lock()
		u.got = append(u.got, rec)
		u.mu.Unlock()
		return
	}
	err = json.Unmarshal(b, &body)
	// Recorded even if the body is unusable: the check then reports it.
	u.mu.Lock()
	u.got = append(u.got, receipt{order: body.Order, token: body.Card.Number, cvc: body.Card.CVC, at: time.Now()})
	u.mu.Unlock()
	if err != nil {
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]string{"order": body.Order, "token": body.Card.Number})
}

// The order and a complete card number in a truncated body.
var (
	partialOrder = regexp.MustCompile(`"order":\s*"([^"]+)"`)
	partialToken = regexp.MustCompile(`"number":\s*"([^"]+)"`)
)

// receiptsSince returns the receipts from index i on, and the new end.
func (u *upstream) receiptsSince(i int) ([]receipt, int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]receipt(nil), u.got[i:]...), len(u.got)
}

func (u *upstream) close() { u.srv.Close() }

// load runs workers against whichever tok is current until ctx ends.
type load struct {
	led    *ledger
	cur    *atomic.Pointer[tokbin.Proc]
	cycle  *atomic.Int64
	client *http.Client
	wg     sync.WaitGroup
	cvc    bool // checkouts carry card.cvc too (cvcFor the PAN)
}

func newLoad(led *ledger, cur *atomic.Pointer[tokbin.Proc], cycle *atomic.Int64, workers int) *load {
	tr := &http.Transport{MaxIdleConnsPerHost: workers, MaxConnsPerHost: 0, IdleConnTimeout: 30 * time.Second}
	return &load{led: led, cur: cur, cycle: cycle, client: &http.Client{Transport: tr, Timeout: 15 * time.Second}}
}

// start runs n workers until ctx ends: even ones POST /handle, odd ones
// POST /checkout through the proxy, each with a fresh PAN every time.
func (ld *load) start(ctx context.Context, n int) {
	for i := range n {
		ld.wg.Add(1)
		go func() {
			defer ld.wg.Done()
			ld.worker(ctx, i%2 == 1)
		}()
	}
}

// wait waits for the workers, after their ctx ended.
func (ld *load) wait() {
	ld.wg.Wait()
	ld.client.CloseIdleConnections()
}

func (ld *load) worker(ctx context.Context, checkout bool) {
	for ctx.Err() == nil {
		p := ld.cur.Load()
		if p == nil {
			sleep(ctx, 5*time.Millisecond)
			continue
		}
		pan := ld.led.newPAN()
		o := outcome{sent: time.Now()}
		var token, bad string
		var err error
		if checkout {
			order := ld.led.newOrder(pan)
			card := map[string]string{"number": pan}
			if ld.cvc {
				card["cvc"] = cvcFor(pan)
			}
			o.status, token, err = ld.post(ctx, "http://"+p.Addr("public")+"/checkout", map[string]any{"order": order, "card": card})
		} else {
			o.status, token, err = ld.post(ctx, "http://"+p.Addr("public")+"/handle", map[string]string{"pan_number": pan})
		}
		o.done = time.Now()
		if ctx.Err() != nil && err != nil {
			return // cut off by the harness, not by tok: not an outcome
		}
		var a *ack
		if o.status/100 == 2 {
			if err != nil || token == "" || token == pan {
				bad = fmt.Sprintf("%d answer with token %q (err %v)", o.status, token, err)
			} else {
				a = &ack{pan: pan, token: token, checkout: checkout, cycle: int(ld.cycle.Load())}
			}
		}
		ld.led.record(o, a, bad)
		if o.status == 0 {
			sleep(ctx, 2*time.Millisecond) // tok is down: don't spin
		}
	}
}

// post sends body as JSON and returns the status and the "token" of a 2xx
// answer.
func (ld *load) post(ctx context.Context, url string, body any) (int, string, error) {
	b, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(b))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := ld.client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, "", err // cut off mid-answer: the client has no token
	}
	if resp.StatusCode/100 != 2 {
		return resp.StatusCode, "", nil
	}
	var out struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(rb, &out); err != nil {
		return resp.StatusCode, "", errors.New("answer is not JSON: " + string(rb))
	}
	return resp.StatusCode, out.Token, nil
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
