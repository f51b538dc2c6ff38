package auth

// Error codes of the auth listener's refusals (see [httpx.Error]), listed with
// every other in the README's error-code table.
const (
	CodeUnauthenticated     = "unauthenticated"      // 401: no session, an unknown one, or no client certificate naming a client
	CodeSessionExpired      = "session_expired"      // 401: idle or older than the absolute limit
	CodeInvalidCredentials  = "invalid_credentials"  // 401: an unknown client or a wrong secret (never which)
	CodeCertificateMismatch = "certificate_mismatch" // 401: the session's or login's client is not the certificate's CN
	CodeLocked              = "locked"               // 429: too many failed logins (the lockout rule, lockout.go)
)
