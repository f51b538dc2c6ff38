package proxy

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/tokproxy/tok/vault"
)

// ReadRequests parses a request file for a dry run: a HAR file (JSON, as a
// browser's network panel exports it: every entry's request, in order) or
// one raw HTTP/1.1 request as it would go over the wire, with CRLF or bare
// LF line endings. In a raw request the body is everything after the
// blank line that ends the header, less one final line break, and
// Content-Length is set to its length (a hand-written file's own is
// replaced); leading blank lines and "#" comment lines are skipped.
func ReadRequests(b []byte) ([]*http.Request, error) {
	if t := bytes.TrimSpace(b); len(t) > 0 && t[0] == '{' {
		return readHAR(t)
	}
	r, err := readRawRequest(b)
	if err != nil {
		return nil, err
	}
	return []*http.Request{r}, nil
}

// readRawRequest parses one raw HTTP/1.1 request.
func readRawRequest(b []byte) (*http.Request, error) {
	// Skip leading blank and comment lines.
	for len(b) > 0 {
		line, rest, _ := bytes.Cut(b, []byte("\n"))
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] != '#' {
			break
		}
		b = rest
	}
	var head, body []byte
	rest := b
	for {
		line, after, found := bytes.Cut(rest, []byte("\n"))
		if len(bytes.TrimRight(line, "\r")) == 0 {
			head, body = b[:len(b)-len(rest)], after
			break
		}
		if !found {
			head = append(bytes.Clone(b), '\n') // no blank line: headers only
			break
		}
		rest = after
	}
	if len(head) == 0 {
		return nil, errors.New("request file: no request line")
	}
	body = trimFinalNewline(body)
	r, err := http.ReadRequest(bufio.NewReader(io.MultiReader(bytes.NewReader(head), strings.NewReader("\r\n"))))
	if err != nil {
		return nil, fmt.Errorf("request file: %w", err)
	}
	if r.Host == "" {
		return nil, errors.New("request file: no Host header (the request line or a Host: line names the host)")
	}
	r.Header.Del("Transfer-Encoding")
	r.TransferEncoding = nil
	r.Header.Del("Content-Length")
	r.ContentLength = int64(len(body))
	r.Body = http.NoBody
	if len(body) > 0 {
		r.Header.Set("Content-Length", strconv.Itoa(len(body)))
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	return r, nil
}

// trimFinalNewline drops one line break at the end of b: editors end every
// file with one, and it is not part of the body.
func trimFinalNewline(b []byte) []byte {
	if t, ok := bytes.CutSuffix(b, []byte("\r\n")); ok {
		return t
	}
	t, _ := bytes.CutSuffix(b, []byte("\n"))
	return t
}

// harFile is the part of a HAR 1.2 file a dry run reads.
type harFile struct {
	Log struct {
		Entries []struct {
			Request harRequest `json:"request"`
		} `json:"entries"`
	} `json:"log"`
}

type harRequest struct {
	Method  string `json:"method"`
	URL     string `json:"url"`
	Headers []struct {
		Name  string `json:"name"`
		Value string `json:"value"`
	} `json:"headers"`
	PostData *struct {
		MimeType string `json:"mimeType"`
		Text     string `json:"text"`
		Encoding string `json:"encoding"`
	} `json:"postData"`
}

// readHAR turns every entry of a HAR file into a raw HTTP/1.1 request and
// parses it as a request file: what the browser sent over HTTP/2 reaches
// tok the same way.
func readHAR(b []byte) ([]*http.Request, error) {
	var h harFile
	if err := json.Unmarshal(b, &h); err != nil {
		return nil, fmt.Errorf("HAR file: %w", err)
	}
	if len(h.Log.Entries) == 0 {
		return nil, errors.New("HAR file: no entries")
	}
	out := make([]*http.Request, 0, len(h.Log.Entries))
	for i, e := range h.Log.Entries {
		r, err := harToRequest(e.Request)
		if err != nil {
			return nil, fmt.Errorf("HAR entry %d: %w", i+1, err)
		}
		out = append(out, r)
	}
	return out, nil
}

func harToRequest(h harRequest) (*http.Request, error) {
	u, err := url.Parse(h.URL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("url %q is not absolute", h.URL)
	}
	var raw bytes.Buffer
	fmt.Fprintf(&raw, "%s %s HTTP/1.1\r\nHost: %s\r\n", h.Method, u.RequestURI(), u.Host)
	hasType := false
	for _, hd := range h.Headers {
		switch {
		case strings.HasPrefix(hd.Name, ":"), // HTTP/2 pseudo-headers
			strings.EqualFold(hd.Name, "Host"), strings.EqualFold(hd.Name, "Content-Length"),
			strings.EqualFold(hd.Name, "Transfer-Encoding"), strings.EqualFold(hd.Name, "Connection"):
			continue
		case strings.ContainsAny(hd.Name+hd.Value, "\r\n"):
			return nil, fmt.Errorf("header %q holds a line break", hd.Name)
		}
		hasType = hasType || strings.EqualFold(hd.Name, "Content-Type")
		fmt.Fprintf(&raw, "%s: %s\r\n", hd.Name, hd.Value)
	}
	var body []byte
	if p := h.PostData; p != nil {
		body = []byte(p.Text)
		if p.Encoding == "base64" {
			if body, err = base64.StdEncoding.DecodeString(p.Text); err != nil {
				return nil, fmt.Errorf("postData: %w", err)
			}
		}
		if !hasType && p.MimeType != "" {
			fmt.Fprintf(&raw, "Content-Type: %s\r\n", p.MimeType)
		}
	}
	raw.WriteString("\r\n")
	raw.Write(body)
	if len(body) > 0 {
		raw.WriteString("\r\n") // the final line break readRawRequest drops
	}
	return readRawRequest(raw.Bytes())
}

// MaskCards returns b with every run of 12 or more digits (spaces and
// dashes allowed between them) masked as [vault.Mask] masks a PAN, except
// the runs keep accepts (tokens, which may be shown). Over-masking is the
// safe side: a long order id comes out masked too.
func MaskCards(b []byte, keep func(digits string) bool) []byte {
	out := bytes.Clone(b)
	for i := 0; i < len(out); {
		if out[i] < '0' || out[i] > '9' {
			i++
			continue
		}
		var pos []int // positions of the run's digits
		j := i
		for j < len(out) {
			switch c := out[j]; {
			case c >= '0' && c <= '9':
				pos = append(pos, j)
				j++
				continue
			case (c == ' ' || c == '-') && j+1 < len(out) && out[j+1] >= '0' && out[j+1] <= '9':
				j++
				continue
			}
			break
		}
		if len(pos) >= vault.MinPANLength {
			digits := make([]byte, len(pos))
			for k, p := range pos {
				digits[k] = out[p]
			}
			if keep == nil || !keep(string(digits)) {
				masked := vault.Mask(string(digits))
				for k, p := range pos {
					out[p] = masked[k]
				}
			}
		}
		i = j
	}
	return out
}
