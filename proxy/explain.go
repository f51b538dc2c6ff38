package proxy

import (
	"context"
	"errors"
	"net/http"

	"github.com/tokproxy/tok/proxy/rewrite"
)

// Trace records what the proxy did with one request: the values it found
// at configured fields or by the guard, what replaced each, and why it
// refused the request. A dry run (tok explain, tok test) attaches one with
// [WithTrace]; tok serve never does. The handlers fill it on the request's
// goroutine; read it after the handler returns.
//
// A Trace holds card numbers in the clear (TracedValue.In inbound, Out on
// egress): whoever prints it masks them.
type Trace struct {
	Values  []TracedValue
	Refusal *TracedRefusal
}

// TracedValue is one value the proxy found in a request.
type TracedValue struct {
	// Path locates the value as [rewrite.Value.Path] does.
	Path string
	// Field is the index of the route's field it was found at, or -1 for
	// a card-like number the guard found elsewhere.
	Field int
	// Offset is where the value starts in the (decoded) body read.
	Offset int
	// In is the value as the request held it; Out what replaced it (a
	// token inbound, the revealed value on egress), or "" if it was not
	// replaced.
	In, Out string
	// Code is the refusal code when this value refused the request.
	Code string
}

// TracedRefusal is why the proxy refused a request: what the client was
// told, and where the value at fault is.
type TracedRefusal struct {
	Status  int
	Code    string
	Message string
	// Path is the field or the part of the request ("path", "header
	// Cookie") at fault, when one is known.
	Path string
	// Offset is the byte offset of the value at fault in the body, or in
	// the query string when InQuery; -1 when none is known.
	Offset  int
	InQuery bool
}

type traceKey struct{}

// WithTrace returns ctx carrying t: requests served with it record into t.
func WithTrace(ctx context.Context, t *Trace) context.Context {
	return context.WithValue(ctx, traceKey{}, t)
}

// traceOf returns the Trace attached to r, or nil: every hook below is a
// no-op without one.
func traceOf(r *http.Request) *Trace {
	t, _ := r.Context().Value(traceKey{}).(*Trace)
	return t
}

// traceTokens records the values an inbound request had tokenized.
func traceTokens(r *http.Request, vals []rewrite.Value, toks []string, err error) {
	t := traceOf(r)
	if t == nil {
		return
	}
	for i, v := range vals {
		tv := TracedValue{Path: v.Path, Field: v.Field, Offset: v.Offset, In: v.Text}
		if err == nil && i < len(toks) {
			tv.Out = toks[i]
		}
		t.Values = append(t.Values, tv)
	}
}

// traceReveal records one egress value: the token sent and the value it
// revealed, or the code it was refused with.
func traceReveal(r *http.Request, v rewrite.Value, val string, err error) {
	t := traceOf(r)
	if t == nil {
		return
	}
	tv := TracedValue{Path: v.Path, Field: v.Field, Offset: v.Offset, In: v.Text, Out: val}
	if err != nil {
		tv.Code = toAPIError(err).Code
	}
	t.Values = append(t.Values, tv)
}

// traceRefusal records why r was refused.
func traceRefusal(r *http.Request, err error) {
	t := traceOf(r)
	if t == nil || err == nil {
		return
	}
	ae := toAPIError(err)
	tr := &TracedRefusal{Status: ae.Status, Code: ae.Code, Message: ae.Msg, Offset: -1}
	var re *rewrite.Error
	if errors.As(err, &re) {
		tr.Path, tr.Offset = re.Path, re.Offset
	}
	var fe *fieldError
	if errors.As(err, &fe) {
		tr.Path = fe.field
	}
	var qe *queryError
	tr.InQuery = errors.As(err, &qe)
	t.Refusal = tr
}

// queryError marks a refusal of the query string, so that its offset is
// read in the query and not in the body.
type queryError struct{ err error }

func (e *queryError) Error() string { return e.err.Error() }
func (e *queryError) Unwrap() error { return e.err }

// inQuery wraps a refusal of the query string (nil stays nil).
func inQuery(err error) error {
	if err == nil {
		return nil
	}
	return &queryError{err}
}
