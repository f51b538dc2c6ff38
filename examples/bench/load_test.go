package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestLuhn(t *testing.T) {
	for _, valid := range []string{"4111111111111111", "5555555555554444", "378282246310005"} {
		if !luhnValid([]byte(valid)) {
			t.Errorf("%s fails the Luhn check", valid)
		}
	}
	if luhnValid([]byte("4111111111111112")) {
		t.Error("4111111111111112 passes the Luhn check")
	}
}

func TestPANSource(t *testing.T) {
	s := newPANSource()
	seen := map[string]bool{}
	buf := make([]byte, 16)
	for i := range 10000 {
		kind := panKind(i % 2)
		s.next(buf, kind)
		pan := string(buf)
		if seen[pan] {
			t.Fatalf("%s handed out twice", pan)
		}
		seen[pan] = true
		if pan[0] != '4' || strings.Trim(pan, "0123456789") != "" {
			t.Fatalf("%q is not a 16-digit Visa-like number", pan)
		}
		if got := luhnValid(buf); got != (kind == uniqueValid) {
			t.Fatalf("%s: Luhn valid %v for kind %d", pan, got, kind)
		}
	}
}

func TestPANSourceMinted(t *testing.T) {
	s := newPANSource()
	s.tokens = []string{"4111110000001112", "5555550000004445", "3782820000000006"}
	buf := []byte("xxPPPPPPPPPPPPPPPPyy")
	var got []string
	for range 6 {
		s.next(buf[2:], minted)
		got = append(got, string(buf))
	}
	for i, g := range got {
		if want := "xx" + s.tokens[(i+1)%3] + "yy"; g != want {
			t.Errorf("request %d carries %q, want %q (the tokens in turn, nothing else touched)", i, g, want)
		}
	}
}

func TestTemplates(t *testing.T) {
	if n := len(checkoutBody); n < 280 || n > 340 {
		t.Errorf("checkout body is %d bytes, want about 300", n)
	}
	for _, body := range []string{checkoutBody, handleBody} {
		b := strings.Replace(body, panPlaceholder, "4111111111111111", 1)
		if !json.Valid([]byte(b)) {
			t.Errorf("body is not JSON: %s", b)
		}
	}
	var req struct {
		Card struct{ Number, CVC string }
	}
	if err := json.Unmarshal([]byte(checkoutBody), &req); err != nil || req.Card.Number != panPlaceholder || req.Card.CVC == "" {
		t.Errorf("checkout body card = %+v, %v; want the number at card.number and a cvc", req.Card, err)
	}
	tm := newTemplate("POST", "127.0.0.1:1", "/checkout", "application/json", checkoutBody, uniqueValid)
	if tm.panOff < 0 || !bytes.HasPrefix(tm.raw, []byte("POST /checkout HTTP/1.1\r\nHost: 127.0.0.1:1\r\n")) {
		t.Errorf("template = %q", tm.raw)
	}
}

// recordingServer counts requests and keeps the card numbers it received.
type recordingServer struct {
	mu     sync.Mutex
	pans   map[string]bool
	status int
}

func (s *recordingServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	var req struct{ Card struct{ Number string } }
	_ = json.Unmarshal(b, &req)
	s.mu.Lock()
	s.pans[req.Card.Number] = true
	s.mu.Unlock()
	if s.status != 0 {
		w.WriteHeader(s.status)
		_, _ = w.Write([]byte(`{"error":"overloaded","message":"at capacity"}`))
		return
	}
	_, _ = w.Write([]byte("ok"))
}

func newRecording(t *testing.T, status int) (*recordingServer, string) {
	rs := &recordingServer{pans: map[string]bool{}, status: status}
	srv := httptest.NewServer(rs)
	t.Cleanup(srv.Close)
	return rs, strings.TrimPrefix(srv.URL, "http://")
}

func TestClosedLoop(t *testing.T) {
	rs, addr := newRecording(t, 0)
	tm := newTemplate("POST", addr, "/checkout", "application/json", checkoutBody, uniqueValid)
	r := closedLoop(context.Background(), addr, tm, newPANSource(), 8, 300*time.Millisecond)
	if r.OK == 0 || r.Errors+r.Other+r.Shed != 0 {
		t.Fatalf("result %+v: want only 2xx", r.counts())
	}
	if len(r.Latencies) != r.OK || r.Elapsed < 300*time.Millisecond || r.Elapsed > 5*time.Second {
		t.Errorf("%d latencies for %d answers in %v", len(r.Latencies), r.OK, r.Elapsed)
	}
	for i := 1; i < len(r.Latencies); i++ {
		if r.Latencies[i] < r.Latencies[i-1] {
			t.Fatal("latencies are not sorted")
		}
	}
	if len(rs.pans) != r.OK {
		t.Errorf("server saw %d distinct card numbers for %d requests", len(rs.pans), r.OK)
	}
}

func TestOpenLoopKeepsTheSchedule(t *testing.T) {
	_, addr := newRecording(t, 0)
	tm := newTemplate("POST", addr, "/checkout", "application/json", checkoutBody, uniqueValid)
	start := time.Now()
	r, err := openLoop(context.Background(), addr, tm, newPANSource(), 200, 4, 500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if r.OK != 100 || r.Missed != 0 {
		t.Errorf("result %+v: want 100 answered, none missed", r.counts())
	}
	if d := time.Since(start); d < 490*time.Millisecond {
		t.Errorf("100 requests at 200/s took %v, want about 500ms", d)
	}
}

func TestOpenLoopCountsStallsFromTheSchedule(t *testing.T) {
	// One connection, a 20 ms server and 100 req/s: the server can answer
	// 50/s, so requests queue and latency from the schedule grows far past
	// the service time, as it would for real clients. A closed-loop tool
	// would report 20 ms.
	stall := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		time.Sleep(20 * time.Millisecond)
	}))
	t.Cleanup(stall.Close)
	addr := strings.TrimPrefix(stall.URL, "http://")
	tm := newTemplate("POST", addr, "/x", "application/json", checkoutBody, uniqueValid)
	r, err := openLoop(context.Background(), addr, tm, newPANSource(), 100, 1, 400*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if max := percentile(r.Latencies, 100); max < 100*time.Millisecond {
		t.Errorf("max latency %v: queueing behind a slow server is not counted", max)
	}
}

func TestRecorderClassifies(t *testing.T) {
	_, addr := newRecording(t, http.StatusServiceUnavailable)
	tm := newTemplate("POST", addr, "/checkout", "application/json", checkoutBody, uniqueValid)
	r := closedLoop(context.Background(), addr, tm, newPANSource(), 2, 100*time.Millisecond)
	if r.Shed == 0 || r.OK+r.Other+r.Errors != 0 {
		t.Errorf("result %+v: want only shed answers", r.counts())
	}
	var w recorder
	w.record(http.StatusServiceUnavailable, `{"error":"vault_unavailable"}`, nil, time.Millisecond)
	w.record(http.StatusUnprocessableEntity, `{"error":"card_number_found"}`, nil, time.Millisecond)
	w.record(0, "", io.ErrUnexpectedEOF, 0)
	if w.Other != 2 || w.Errors != 1 || w.Shed != 0 || !strings.Contains(w.FirstProblem, "503") {
		t.Errorf("recorder = %+v, want a vault 503 counted as a failure, not shedding", w.result.counts())
	}
}

func TestLoopsStopOnCancel(t *testing.T) {
	_, addr := newRecording(t, 0)
	tm := newTemplate("POST", addr, "/checkout", "application/json", checkoutBody, uniqueValid)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	closedLoop(ctx, addr, tm, newPANSource(), 4, time.Minute)
	if _, err := openLoop(ctx, addr, tm, newPANSource(), 100, 4, time.Minute); err == nil {
		t.Error("open loop: no error after cancel")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("cancelled loops took %v", d)
	}
}

func (r result) counts() map[string]int {
	return map[string]int{"ok": r.OK, "shed": r.Shed, "other": r.Other, "errors": r.Errors, "missed": r.Missed}
}
