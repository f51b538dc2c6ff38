// Command upstream is the load harness's stand-in for the merchant app: it
// reads and discards every request body and answers 200 with a small JSON
// body. It does as little as possible, so that the harness measures the
// proxies in front of it.
//
//	go run ./examples/bench/upstream -addr 127.0.0.1:3001
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"strconv"
	"time"
)

// reply is the body of every answer.
var reply = []byte(`{"order_id":"ord_000001","status":"accepted"}` + "\n")

func main() {
	addr := flag.String("addr", "127.0.0.1:3001", "listen `address` (host:port)")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "upstream: unexpected argument %q\n", flag.Arg(0))
		os.Exit(2)
	}
	srv := &http.Server{
		Addr:              *addr,
		Handler:           http.HandlerFunc(serve),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
	log.Fatal(srv.ListenAndServe())
}

var replyLen = strconv.Itoa(len(reply))

func serve(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	h := w.Header()
	h["Content-Type"] = []string{"application/json"}
	h["Content-Length"] = []string{replyLen}
	_, _ = w.Write(reply)
}
