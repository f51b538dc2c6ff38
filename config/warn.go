package config

import (
	"fmt"
	"math"
	"net/url"
	"strings"
	"time"

	"github.com/tokproxy/tok/proxy"
	"github.com/tokproxy/tok/proxy/rewrite"
	"github.com/tokproxy/tok/vault"
)

// Warnings returns what in a valid configuration will likely hurt in
// production without being an error: each names the item and the fix.
// `tok check` prints them and `tok serve` logs them: serve warns of
// nothing in the configuration that check does not print.
func (c *Config) Warnings() []string {
	var out []string
	reportWarn := func(item string) string {
		then := "forwards it unchanged to the app, card numbers included"
		if c.Guard.ReportThen == proxy.ReportTokenize {
			then = "tokenizes the card numbers in it instead of refusing"
		}
		return fmt.Sprintf("%s is in report mode: it forwards what it would refuse — tok records each request reject mode would refuse "+
			"(tok_would_refuse_total, GET /report on the admin listener) and %s (guard.report_then: %s); set reject once the report is clean", item, then, c.Guard.ReportThen)
	}
	if c.Guard.Mode == rewrite.GuardReport {
		out = append(out, reportWarn("guard.mode"))
	}
	for i, r := range c.Inbound {
		if r.Guard != nil && *r.Guard == rewrite.GuardReport {
			out = append(out, reportWarn(fmt.Sprintf("inbound[%d] (%s)", i, r.Name)))
		}
		if !r.Inspected() {
			out = append(out, fmt.Sprintf("inbound[%d] (%s): inspect: false: bodies on %s reach the app unread by the guard; "+
				"a card in them is neither tokenized nor refused (the path, query and headers are still guarded)", i, r.Name, r.Match.Path))
		}
		for j, f := range r.Fields {
			if w := f.tokenSpaceWarning(); w != "" {
				out = append(out, fmt.Sprintf("inbound[%d].fields[%d] (%s, %s): %s", i, j, r.Name, f.Selector(), w))
			}
		}
	}
	for i, r := range c.Egress {
		if r.Guard != nil && *r.Guard == rewrite.GuardReport {
			out = append(out, fmt.Sprintf("egress[%d] (%s) is in report mode: it forwards what it would refuse — tok records each request reject mode would refuse "+
				"(tok_would_refuse_total{listener=\"egress\"}, GET /report on the admin listener) and sends it to %s as the app sent it: a card number outside the fields or where a token belongs, "+
				"a token at a field the route does not reveal (guard.report_then applies to inbound routes only); set reject once the report is clean", i, r.Name, r.Upstream))
		}
		if r.EgressKey == "" {
			out = append(out, fmt.Sprintf("egress[%d] (%s): no egress_key: any process on this host can have its tokens revealed to the provider; set egress_key: env:NAME and send it in X-Tok-Egress-Key", i, r.Name))
		}
		for j, f := range r.Fields {
			if f.Format != vault.FormatPAN || f.Keep != nil || f.Unique || f.Store == StoreMemory || f.TTL != 0 {
				out = append(out, fmt.Sprintf("egress[%d].fields[%d] (%s, %s): format, keep, unique, store and ttl shape the tokens inbound routes make; an egress route reveals tokens and ignores them: remove them", i, j, r.Name, f.Selector()))
			}
		}
		if c.Guard.Mode == rewrite.GuardOff && (len(r.ResponseIgnore) > 0 || r.ResponseCards != nil) {
			out = append(out, fmt.Sprintf("egress[%d] (%s): guard.mode is off, which turns off the guard of providers' answers too: response_ignore and response_cards have no effect, and a card number in an answer reaches the app", i, r.Name))
		}
		f := providerFormat(r.Upstream)
		if f != "" && r.ErrorFormat != f {
			out = append(out, fmt.Sprintf("egress[%d] (%s): error_format is %s for %s: the provider's SDK cannot read tok's refusals and may resend them; set error_format: %s", i, r.Name, r.ErrorFormat, r.Upstream, f))
		}
		if f != "" && c.Guard.Mode != rewrite.GuardOff && len(r.ResponseIgnore) == 0 {
			out = append(out, fmt.Sprintf("egress[%d] (%s): no response_ignore for %s: its answers carry numeric ids (network transaction ids, references) of which 1 to 5 in 100 pass the card check and reach the app as tokens; "+
				"list their paths in response_ignore (README: Response guard precision)", i, r.Name, r.Upstream))
		}
	}
	return out
}

// providerFormat is the error format of a well-known provider's API URL,
// or "".
func providerFormat(upstream string) proxy.ErrorFormat {
	u, err := url.Parse(upstream)
	if err != nil {
		return ""
	}
	switch h := strings.ToLower(u.Hostname()); {
	case h == "api.stripe.com":
		return proxy.ErrorFormatStripe
	case strings.HasSuffix(h, ".adyen.com") || strings.HasSuffix(h, ".adyenpayments.com"):
		return proxy.ErrorFormatAdyen
	case strings.HasSuffix(h, ".checkout.com"):
		return proxy.ErrorFormatCheckout
	case strings.HasSuffix(h, ".braintreegateway.com"):
		return proxy.ErrorFormatBraintree
	}
	return ""
}

// tokenSpaceWarning warns about an unbound digits field: a value shorter
// than a card number gets a token of its own length from one space shared
// by every value of that length, so it can run out, and such a short token
// never reveals on its own (vault.IsShortToken).
func (f Field) tokenSpaceWarning() string {
	if f.Format != vault.FormatDigits || f.Bind != "" {
		return ""
	}
	const digits = vault.MinDigitsLength
	space := 9 * math.Pow10(digits-1) // a token keeps a value's nonzero first digit
	limit := fmt.Sprintf("%.0f values in all, ever", space)
	if f.TTL > 0 {
		limit = fmt.Sprintf("%.0f live values per ttl, so at %s it runs out at %s values a second", space, f.TTL, rate(space, f.TTL))
	}
	return fmt.Sprintf("a %d-digit value gets a short token from a space of %s (each extra digit gives 10x); "+
		"short tokens also never reveal on their own. For a CVC, bind it to the card field it is collected with (bind: %s), "+
		"which makes its tokens unique per card and never run out", digits, limit, cardExample(f))
}

func rate(space float64, ttl time.Duration) string {
	r := space / ttl.Seconds()
	if r >= 10 {
		return fmt.Sprintf("%.0f", r)
	}
	return fmt.Sprintf("%.1f", r)
}

func cardExample(f Field) string {
	if f.Form != "" {
		return "card[number]"
	}
	return "card.number"
}
