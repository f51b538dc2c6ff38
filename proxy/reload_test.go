package proxy

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// TestReload swaps routes and clients under running listeners: a request
// in flight finishes on the old configuration, new requests use the new
// one, and a bad configuration changes nothing.
func TestReload(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan string, 4)
	up := newRecordingUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		arrived <- r.URL.Path
		if r.URL.Path == "/slow" {
			<-release
		}
		io.WriteString(w, "ok")
	})
	u, _ := url.Parse(up.URL)
	route := func(field string) []Route {
		return []Route{{Name: "checkout", Path: "/checkout", Fields: []RouteField{{JSON: field}}}}
	}
	e := newTestEnv(t, nil, func(o *Options) { o.Upstream, o.Routes = u, route("card.number") })
	ls := map[string]net.Listener{}
	for _, name := range []string{ListenerPublic, ListenerAuth} {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls[name] = l
	}
	public, auth := "http://"+ls[ListenerPublic].Addr().String(), "http://"+ls[ListenerAuth].Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.srv.Serve(ctx, ls) }()
	defer func() { cancel(); <-done }()

	// A request in flight across the reload.
	slow := make(chan response, 1)
	go func() { slow <- do(t, nil, "GET", public+"/slow", "", "") }()
	<-arrived

	opts := e.srv.opts
	opts.Routes = route("payment.pan")
	h, _ := bcrypt.GenerateFromPassword([]byte("new-secret"), bcrypt.MinCost)
	opts.Clients = append(append([]Client{}, opts.Clients...), Client{Name: "newbie", SecretHash: string(h)})
	if err := e.srv.Reload(opts); err != nil {
		t.Fatalf("Reload = %v", err)
	}
	close(release)
	if r := <-slow; r.StatusCode != 200 {
		t.Errorf("in-flight request across the reload = %d, want 200", r.StatusCode)
	}

	n := up.count()
	r := do(t, nil, "POST", public+"/checkout", "application/json", `{"payment":{"pan":"4111111111111111"}}`)
	if r.StatusCode != 200 || strings.Contains(string(up.since(n)[0].Body), "4111111111111111") {
		t.Errorf("after reload the new field was not tokenized: %d", r.StatusCode)
	}
	r = do(t, nil, "POST", auth+"/login", "application/json", `{"bank_coordinates":"newbie","secret":"new-secret"}`)
	if r.StatusCode != 200 {
		t.Errorf("login as a client added by reload = %d %s", r.StatusCode, r.body)
	}

	// A bad configuration is refused whole; the running one stays.
	bad := opts
	bad.Routes = route("payment..pan")
	if err := e.srv.Reload(bad); err == nil {
		t.Error("Reload accepted an invalid selector")
	}
	moved := opts
	moved.Listen.Public = "127.0.0.1:1"
	if err := e.srv.Reload(moved); err == nil {
		t.Error("Reload accepted a changed listener address")
	}
	n = up.count()
	do(t, nil, "POST", public+"/checkout", "application/json", `{"payment":{"pan":"4111111111111111"}}`)
	if got := up.since(n); len(got) != 1 || strings.Contains(string(got[0].Body), "4111111111111111") {
		t.Error("after a refused reload the running configuration no longer tokenizes")
	}
}
