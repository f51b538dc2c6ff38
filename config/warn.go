package config

import (
	"fmt"
	"math"
	"time"

	"github.com/tokproxy/tok/vault"
)

// Warnings returns what in a valid configuration will likely hurt in
// production without being an error: each names the item and the fix.
// `tok check` prints them and `tok serve` logs them.
func (c *Config) Warnings() []string {
	var out []string
	for i, r := range c.Inbound {
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
	return out
}

// tokenSpaceWarning warns about an unbound digits field: a value shorter
// than a card number gets a token of its own length from one space shared
// by every value of that length, so it can run out, and such a short token
// never reveals on its own (vault.IsShortToken).
func (f Field) tokenSpaceWarning() string {
	if f.Format != "digits" || f.Bind != "" {
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
