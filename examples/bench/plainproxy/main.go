// Command plainproxy is the load harness's baseline: a plain
// httputil.ReverseProxy, tuned the way a production proxy would be, so that
// tok is compared with a fair opponent rather than a strawman. It uses the
// Rewrite hook (with X-Forwarded-* headers, as tok sets them), a clone of
// http.DefaultTransport whose keep-alive pool holds at least as many idle
// connections as the load has clients (the default keeps 2 per host, which
// under load opens a new TCP connection for most requests), and a
// BufferPool for the copy buffers.
//
//	go run ./examples/bench/plainproxy -addr 127.0.0.1:8090 -upstream http://127.0.0.1:3001
package main

import (
	"flag"
	"fmt"
	"log"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"sync"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8090", "listen `address` (host:port)")
	upstream := flag.String("upstream", "http://127.0.0.1:3001", "upstream `URL`")
	idle := flag.Int("idle", 1024, "idle keep-alive connections kept to the upstream (at least the client concurrency)")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "plainproxy: unexpected argument %q\n", flag.Arg(0))
		os.Exit(2)
	}
	target, err := url.Parse(*upstream)
	if err != nil || target.Host == "" {
		log.Fatalf("plainproxy: bad -upstream %q", *upstream)
	}
	srv := &http.Server{
		Addr:              *addr,
		Handler:           newProxy(target, *idle),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
	log.Fatal(srv.ListenAndServe())
}

// newProxy returns the tuned reverse proxy to target.
func newProxy(target *url.URL, idle int) *httputil.ReverseProxy {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = idle
	t.MaxIdleConnsPerHost = idle
	t.IdleConnTimeout = 90 * time.Second
	t.ResponseHeaderTimeout = 30 * time.Second
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host
			pr.SetXForwarded()
		},
		Transport:  t,
		BufferPool: newBufferPool(),
	}
}

// bufferPool lends 32 KiB copy buffers to the reverse proxy.
type bufferPool struct{ p sync.Pool }

func newBufferPool() *bufferPool {
	return &bufferPool{p: sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}}
}

func (b *bufferPool) Get() []byte  { return *b.p.Get().(*[]byte) }
func (b *bufferPool) Put(p []byte) { b.p.Put(&p) }
