// Command goapp is the Go net/http app of tok's framework zoo: it
// answers every request it routes with JSON holding everything net/http and
// encoding/json parsed from it — the body unmarshalled as JSON whatever its
// Content-Type (into an any, and into a checkout struct, whose fields
// encoding/json matches case-insensitively), the form (ParseMultipartForm:
// query, urlencoded and multipart fields), multipart file contents, headers,
// trailers, cookies, path and method. The zoo test searches the answer for
// card numbers.
//
//	PORT=5005 goapp -mux pattern   # Go 1.22 method patterns: "POST /checkout"
//	PORT=5006 goapp -mux any       # the method-less idiom: "/" takes everything
//
// It listens on 127.0.0.1 only.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"time"
)

// checkout is how a Go shop would declare its checkout body.
type checkout struct {
	Card struct {
		Number any `json:"number"`
		CVC    any `json:"cvc"`
	} `json:"card"`
	Note   string `json:"note"`
	Amount any    `json:"amount"`
}

func record(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 16<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var asAny any
	if json.Unmarshal(body, &asAny) != nil {
		asAny = nil
	}
	var asStruct *checkout
	if c := new(checkout); json.Unmarshal(body, c) == nil {
		asStruct = c
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	formErr := r.ParseMultipartForm(16 << 20)
	files := map[string][]map[string]string{}
	if r.MultipartForm != nil {
		for name, fhs := range r.MultipartForm.File {
			for _, fh := range fhs {
				f, err := fh.Open()
				if err != nil {
					continue
				}
				b, _ := io.ReadAll(f)
				f.Close()
				files[name] = append(files[name], map[string]string{
					"filename": fh.Filename, "content_type": fh.Header.Get("Content-Type"), "content": string(b),
				})
			}
		}
	}
	cookies := map[string][]string{}
	for _, c := range r.Cookies() {
		cookies[c.Name] = append(cookies[c.Name], c.Value)
	}
	answer := map[string]any{
		"framework":  "go-" + muxName,
		"method":     r.Method,
		"path":       r.URL.Path,
		"raw_path":   r.URL.RawPath,
		"query":      r.URL.Query(),
		"json":       asAny,
		"checkout":   asStruct,
		"form":       r.Form,
		"post_form":  r.PostForm,
		"form_error": fmt.Sprint(formErr),
		"files":      files,
		"headers":    r.Header,
		"trailers":   r.Trailer,
		"cookies":    cookies,
		"referer":    r.Referer(),
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(answer)
}

var muxName string

// marked sets X-Zoo-App on every answer of the app, its mux's 404 and 405
// included, so the zoo test tells the app's answers from tok's.
func marked(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Zoo-App", "go-"+muxName)
		h.ServeHTTP(w, r)
	})
}

func main() {
	flag.StringVar(&muxName, "mux", "any", "`kind` of routing: pattern (Go 1.22 method patterns) or any (method-less)")
	flag.Parse()
	port := os.Getenv("PORT")
	if flag.NArg() > 0 {
		port = flag.Arg(0)
	}
	if port == "" {
		port = "5005"
	}
	mux := http.NewServeMux()
	switch muxName {
	case "pattern":
		// A shop that states its methods: other methods get 405, other
		// paths 404, and no handler runs.
		mux.HandleFunc("POST /checkout", record)
		mux.HandleFunc("POST /profile", record)
		mux.HandleFunc("PUT /profile/{id}", record)
		mux.HandleFunc("GET /search", record)
		mux.HandleFunc("GET /orders/{id}", record)
	case "any":
		mux.HandleFunc("/", record)
	default:
		log.Fatalf("goapp: -mux %q: want pattern or any", muxName)
	}
	srv := &http.Server{
		Addr:              "127.0.0.1:" + port,
		Handler:           marked(mux),
		ReadHeaderTimeout: 10 * time.Second,
	}
	log.Fatal(srv.ListenAndServe())
}
