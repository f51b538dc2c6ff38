package proxy

// Error codes: the stable, machine-readable "error" of every JSON refusal
// tok answers with, each with its status. The README's error-code table
// lists exactly these, rewrite's (rewrite.Code*: bodies the rewrite engine
// refuses), auth's (auth.Code*: logins and sessions) and httpx's
// (httpx.Code*: unreadable bodies, methods, the loopback gate);
// TestREADMECodes checks it.
const (
	CodeAdminHeaderMissing    = "admin_header_missing"       // 403: an admin endpoint called from a web page, or a POST without X-Tok-Admin: 1
	CodeAmbiguousToken        = "ambiguous_token"            // 409: both stores hold the token, so it stands for two values
	CodeAuditUnavailable      = "audit_unavailable"          // 503: the audit log cannot take the line an effect needs (mustRecord)
	CodeBatchTooLarge         = "batch_too_large"            // 413: more values than one call (or a whole budget) takes
	CodeBudgetExceeded        = "budget_exceeded"            // 429: a convergent path's or /@me's budget is spent (with Retry-After)
	CodeClientClosed          = "client_closed"              // 499: the client went away; counted in metrics, never sent
	CodeCrossSite             = "cross_site"                 // 403: a browser request from another site
	CodeDestinationNotAllowed = "destination_not_allowed"    // 403: egress CONNECT to a host no route names
	CodeForwardProxyOff       = "forward_proxy_off"          // 501: egress CONNECT without tls.egress_ca
	CodeInternal              = "internal"                   // 500: a bug; nothing is forwarded
	CodeInvalidCardNumber     = "invalid_card_number"        // 422: a value at a card field that is not a card number
	CodeInvalidEgressKey      = "invalid_egress_key"         // 401: the egress listener's key is missing or wrong (407 on CONNECT)
	CodeInvalidPAN            = "invalid_pan"                // 400: a card number that is not 12 to 19 digits
	CodeInvalidRequest        = "invalid_request"            // 400: a request tok cannot take as sent
	CodeInvalidToken          = "invalid_token"              // 400 or 422: not a token
	CodeInvalidVersion        = "invalid_version"            // 400: an admin call naming a key version that is not one
	CodeKeyInUse              = "key_in_use"                 // 409: retiring the primary or a version records still use
	CodeMisdirectedRequest    = "misdirected_request"        // 421: a request in an egress tunnel for another host
	CodeMissingField          = "missing_field"              // 400: a required field is absent
	CodeNoRoute               = "no_route"                   // 404: no egress route matches
	CodeNotAToken             = "not_a_token"                // 422: an egress field holds a card number, not a token
	CodeNotFound              = "not_found"                  // 404: no such endpoint
	CodeNotReady              = "not_ready"                  // 503: /readyz: the store or the audit log cannot serve
	CodeOverloaded            = "overloaded"                 // 503: more requests in flight than limits.max_in_flight
	CodeRecordUnreadable      = "record_unreadable"          // 500: the vault holds a record that cannot be opened (damaged, or a key the keyring lacks)
	CodeRekeyRunning          = "rekey_running"              // 409: a rekey is running already
	CodeResponseTooLarge      = "response_too_large"         // 502: the provider's response is too large to inspect
	CodeResponseUninspectable = "response_uninspectable"     // 502: the provider's response could not be inspected
	CodeShuttingDown          = "shutting_down"              // 503: tok is draining for a shutdown
	CodeTokenNotFound         = "token_not_found"            // 404: no such token, or it has expired
	CodeRevealNotAllowed      = "token_reveal_not_allowed"   // 422: the token's reveal_to does not name this egress route (or @me)
	CodeRevealWindowClosed    = "token_reveal_window_closed" // 422: the token's reveal_window has ended
	CodeRevealsExhausted      = "token_reveals_exhausted"    // 422: the token has revealed max_reveals times
	CodeTokenSpaceExhausted   = "token_space_exhausted"      // 507: a field's format has no free token left
	CodeTooManyLogins         = "too_many_logins"            // 429: login limits per source address, or all bcrypt slots busy
	CodeUnboundToken          = "unbound_token"              // 422: a short token asked to reveal alone
	CodeUnboundValue          = "unbound_value"              // 422: a bound value (a CVC) without its card
	CodeUnknownToken          = "unknown_token"              // 422: egress: no such token, or it has expired
	CodeUnrevealedToken       = "unrevealed_token"           // 422: egress with unrevealed_tokens: refuse
	CodeUpgradeNotAllowed     = "upgrade_not_allowed"        // 400: a protocol upgrade (h2c, WebSocket) tok cannot inspect
	CodeUpstreamTimeout       = "upstream_timeout"           // 504: the upstream did not answer in time
	CodeUpstreamTLS           = "upstream_tls"               // 502: the provider's TLS certificate did not verify
	CodeUpstreamUnavailable   = "upstream_unavailable"       // 502: the upstream cannot be reached
	CodeVaultFull             = "vault_full"                 // 507: the vault has reached limits.vault_bytes
	CodeVaultUnavailable      = "vault_unavailable"          // 503: the store cannot serve or commit now
	CodeVolatileStoreFull     = "volatile_store_full"        // 503: limits.volatile_records values are held already
)
