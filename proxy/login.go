package proxy

import (
	"context"
	"net/http"
	"strconv"

	"github.com/tokproxy/tok/proxy/audit"
	"github.com/tokproxy/tok/proxy/auth"
	"github.com/tokproxy/tok/proxy/internal/httpx"
)

type loginRequest struct {
	Client string `json:"bank_coordinates"`
	Secret string `json:"secret"`
}

type loginResponse struct {
	Client string `json:"bank_coordinates"`
	ID     string `json:"id"`
}

// serveLogin is POST /login: check the client's secret, open a session.
func (s *Server) serveLogin(w http.ResponseWriter, r *http.Request) error {
	if err := httpx.AllowMethods(w, r, http.MethodPost); err != nil {
		return err
	}
	var req loginRequest
	if err := httpx.DecodeJSON(w, r, 4<<10, &req); err != nil {
		return err
	}
	switch {
	case req.Client == "":
		return httpx.Errorf(http.StatusBadRequest, CodeMissingField, "bank_coordinates (the client name) is required")
	case req.Secret == "":
		return httpx.Errorf(http.StatusBadRequest, CodeMissingField, "secret is required")
	case len(req.Client) > auth.MaxNameLen || len(req.Secret) > auth.MaxSecretLen:
		return httpx.Errorf(http.StatusBadRequest, CodeInvalidRequest, "bank_coordinates or secret is too long")
	}
	a := s.auth
	switch {
	case a.Mode() == auth.ModeCertificate:
		return httpx.Errorf(http.StatusNotFound, CodeNotFound, "no login here: this listener authenticates clients by their certificate")
	case a.Mode() == auth.ModeBoth && auth.CertClient(r) != req.Client:
		return httpx.Errorf(http.StatusUnauthorized, auth.CodeCertificateMismatch, "log in as the client your certificate names")
	}
	// Per source address first: one address (an IPv6 /64;
	// behind budgets.trusted_proxies, the shopper's) holds at most one
	// bcrypt slot and makes lockout.source_rate attempts a minute.
	src := sourceKey(r, s.opts.Budgets.TrustedProxies)
	release, refusal, first, retry := s.loginSources.Acquire(src)
	switch refusal {
	case auth.SourceBusy:
		s.metrics.logins.WithLabelValues("source_busy").Inc()
		return httpx.Errorf(http.StatusTooManyRequests, CodeTooManyLogins, "a login from your address is in progress; retry when it is done")
	case auth.SourceLimited:
		s.metrics.logins.WithLabelValues("rate_limited").Inc()
		if first {
			// One line per episode, not per refused attempt: a flood must
			// not fill the audit disk. No secret was checked.
			s.tryRecord(r, audit.Event{Event: "login", Outcome: "too_many_logins"})
		}
		w.Header().Set("Retry-After", strconv.Itoa(int(retry.Seconds())+1))
		return httpx.Errorf(http.StatusTooManyRequests, CodeTooManyLogins, "too many login attempts from your address; retry later")
	}
	defer release()
	releaseSlot, ok := a.LoginSlot()
	if !ok {
		s.metrics.logins.WithLabelValues("busy").Inc()
		return httpx.Errorf(http.StatusTooManyRequests, CodeTooManyLogins, "too many logins in progress; retry shortly")
	}
	defer releaseSlot()
	client, known := a.Client(req.Client)
	sess, outcome, err := a.Login(r.Context(), client, known, req.Secret, src)
	auditClient := req.Client
	if !known {
		auditClient = "" // an unknown name may be a mistyped secret: not logged
	}
	s.metrics.logins.WithLabelValues(outcome).Inc()
	if aerr := s.mustRecord(r, audit.Event{Event: "login", Client: auditClient, Session: sess.ID, Outcome: outcome}, "log in"); aerr != nil {
		// Every login attempt is audited, failed ones too: one that cannot
		// be is refused whatever its outcome, so a disk outage cannot hide
		// a password guessing run. A failure was counted towards the
		// lockout all the same.
		if err == nil {
			a.Logout(context.WithoutCancel(r.Context()), sess.Key)
		}
		return aerr
	}
	if err != nil {
		return err
	}
	http.SetCookie(w, &http.Cookie{
		Name: auth.CookieName, Value: sess.Secret, Path: "/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil,
	})
	httpx.WriteJSON(w, http.StatusOK, loginResponse{Client: client.Name, ID: sess.ID})
	return nil
}

// serveLogout is POST /logout: end the session and clear the cookie.
func (s *Server) serveLogout(w http.ResponseWriter, r *http.Request) error {
	if err := httpx.AllowMethods(w, r, http.MethodPost); err != nil {
		return err
	}
	if s.auth.Mode() == auth.ModeCertificate {
		return httpx.Errorf(http.StatusNotFound, CodeNotFound, "no sessions here: this listener authenticates clients by their certificate")
	}
	sess, client, err := s.auth.Session(r)
	if err != nil {
		return err
	}
	if err := s.auth.Logout(r.Context(), sess.Key); err != nil {
		return err
	}
	s.tryRecord(r, audit.Event{Event: "logout", Client: client.Name, Session: sess.ID, Outcome: "ok"})
	http.SetCookie(w, &http.Cookie{Name: auth.CookieName, Value: "", Path: "/", MaxAge: -1, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	httpx.WriteJSON(w, http.StatusOK, map[string]string{"status": "logged_out"})
	return nil
}
