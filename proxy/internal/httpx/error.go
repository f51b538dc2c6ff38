// Package httpx is the HTTP plumbing every tok listener shares and that
// knows nothing of a Server: the error model (an [Error] keeps what the
// client is told apart from what is logged; [WriteError] renders it as
// tok's JSON refusal), capped body reading ([ReadBody], [DecodeJSON]), the
// loopback gate of admin endpoints ([CheckLoopback]), the pieces handlers
// are built from ([HandlerFunc], [StatusWriter], [AllowMethods],
// [BasicCredentials]), the rendering of client-chosen strings in errors and
// logs ([SafePath], [SafeMethod], [SafeHeader]), and serving one hijacked
// connection ([OneConnListener], [PrefixedConn], [ErrorLog]).
package httpx

import (
	"encoding/json"
	"fmt"
	"net/http"
)

// StatusClientClosed is the status of a request whose client went away
// before the answer (nginx's 499). It is counted in metrics and logs and
// never sent: nobody is listening.
const StatusClientClosed = 499

// Error is an error with what the client is told kept apart from what is
// logged: Status, Code and Msg go to the client, Err (masked, never a card
// number) to the log.
type Error struct {
	Status int
	Code   string // stable, machine-readable; a Code constant of proxy or its sub-packages
	Msg    string // short, human-readable, never a card number or secret
	Err    error  // detail for the log; may be nil
}

// NewError returns the refusal with status, code and msg; err, if not nil,
// is the detail the log gets.
func NewError(status int, code, msg string, err error) *Error {
	return &Error{Status: status, Code: code, Msg: msg, Err: err}
}

// Errorf returns the refusal with status and code whose message, formatted
// as [fmt.Sprintf] does, is also its log text.
func Errorf(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Msg: fmt.Sprintf(format, args...)}
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Code + ": " + e.Err.Error()
	}
	return e.Code + ": " + e.Msg
}

func (e *Error) Unwrap() error { return e.Err }

// ErrorBody is the JSON body of every refusal tok answers with itself.
type ErrorBody struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}

// WriteJSON writes v as the JSON response with status. Every response tok
// generates carries no-store: it may hold a token, a card number or a
// session id.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v) // a write error means the client is gone: nothing to do
}

// WriteError writes e as an [ErrorBody]. A [StatusClientClosed] error is
// written as 400, for a client that may still read it.
func WriteError(w http.ResponseWriter, e *Error) {
	status := e.Status
	if status == StatusClientClosed {
		status = http.StatusBadRequest
	}
	WriteJSON(w, status, ErrorBody{Error: e.Code, Message: e.Msg})
}
