package proxy

import (
	"encoding/hex"
	"net/http"
	"strconv"

	"github.com/tokproxy/tok/proxy/rewrite"
	"github.com/tokproxy/tok/vault"
)

// UnknownBrand is a card's brand when no network of the guard's table
// issues numbers of its prefix and length.
const UnknownBrand = "unknown"

// CardMeta is what may be told about a card without revealing it: its
// network, as many leading and trailing digits as its mask shows, its
// length, whether it passes the Luhn check and, where the caller may
// match cards, its keyed fingerprint. /handle (on request), /@me and the
// Tok-Card-* headers of inbound routes carry it.
type CardMeta struct {
	// Brand is the network issuing numbers like the card's (the guard's
	// table, [rewrite.Brand]), or UnknownBrand.
	Brand string `json:"brand"`
	// Prefix is the issuer prefix: the leading digits [vault.Mask] shows
	// (6 of a PAN of 16 or more digits, fewer of a shorter one).
	Prefix string `json:"prefix"`
	// Last4 is the trailing digits the mask shows (4 of every PAN).
	Last4  string `json:"last4"`
	Length int    `json:"length"`
	Luhn   bool   `json:"luhn"`
	// Fingerprint is the card's keyed fingerprint (HMAC-SHA256 under the
	// keyring's fingerprint key, in the default pan domain: the one
	// convergent pan tokens are matched on), hex. Empty where the caller
	// may not match cards.
	Fingerprint string `json:"fingerprint,omitempty"`
}

// cardMetaDomain is the fingerprint domain of card metadata: the default
// pan spec's, so a card has one fingerprint whichever endpoint tells it.
var cardMetaDomain = vault.Spec{}.Domain()

// cardMeta describes d, a PAN's digits (normalized). The fingerprint is
// computed only with withFingerprint.
func (s *Server) cardMeta(d string, withFingerprint bool) CardMeta {
	first, last := vault.MaskShows(len(d))
	m := CardMeta{Brand: UnknownBrand, Prefix: d[:first], Last4: d[len(d)-last:], Length: len(d), Luhn: vault.Luhn(d)}
	if b, ok := rewrite.Brand(d); ok {
		m.Brand = b
	}
	if withFingerprint {
		m.Fingerprint = hex.EncodeToString(s.opts.Vault.Keyring().Fingerprint(cardMetaDomain, d))
	}
	return m
}

// Card metadata headers on inbound routes with card_headers. Every header
// of the CardHeaderPrefix a client sends is dropped on every inbound
// request, so that the app can trust those it gets.
const (
	CardHeaderPrefix      = "Tok-Card-"
	HeaderCardBrand       = "Tok-Card-Brand"
	HeaderCardPrefix      = "Tok-Card-Prefix"
	HeaderCardLast4       = "Tok-Card-Last4"
	HeaderCardLength      = "Tok-Card-Length"
	HeaderCardLuhn        = "Tok-Card-Luhn"
	HeaderCardFingerprint = "Tok-Card-Fingerprint"
	HeaderCardField       = "Tok-Card-Field"
)

// dropCardHeaders removes every Tok-Card-* header from h: only tok sets
// them. Underscores count as dashes: Werkzeug (Flask), PHP and Rack name a
// header by its CGI variable, where Tok_Card_Fingerprint and
// Tok-Card-Fingerprint are both HTTP_TOK_CARD_FINGERPRINT, so a client's
// Tok_Card_* header would reach the app as tok's own, or joined to it.
func dropCardHeaders(h http.Header) {
	for name := range h {
		if isCardHeader(name) {
			delete(h, name)
		}
	}
}

// isCardHeader reports whether name is of the CardHeaderPrefix, in any
// case, with underscores for dashes.
func isCardHeader(name string) bool {
	if len(name) < len(CardHeaderPrefix) {
		return false
	}
	for i := range len(CardHeaderPrefix) {
		c, want := name[i], CardHeaderPrefix[i]
		if c == '_' {
			c = '-'
		}
		if c|0x20 != want|0x20 {
			return false
		}
	}
	return true
}

// setCardHeaders sets m, the metadata of the card at field, on h.
func setCardHeaders(h http.Header, field string, m CardMeta) {
	h.Set(HeaderCardField, field)
	h.Set(HeaderCardBrand, m.Brand)
	h.Set(HeaderCardPrefix, m.Prefix)
	h.Set(HeaderCardLast4, m.Last4)
	h.Set(HeaderCardLength, strconv.Itoa(m.Length))
	h.Set(HeaderCardLuhn, strconv.FormatBool(m.Luhn))
	if m.Fingerprint != "" {
		h.Set(HeaderCardFingerprint, m.Fingerprint)
	}
}

// seenCard is the card an inbound route's Tok-Card-* headers describe: the
// value at the first of the route's card fields (in the order configured)
// that the request carries, the first found where that field matches
// several. A bound or volatile field (a CVC) is not a card field.
type seenCard struct {
	field     int // index in the route's fields; -1: no card yet
	digits    string
	matchable bool // convergent: the app gets a stable token anyway, so the fingerprint tells it nothing more
}

// see notes the value d, normalized, of the route's field i with spec.
func (c *seenCard) see(i int, spec vault.Spec, d string) {
	if spec.Bound || spec.Volatile || (c.field >= 0 && c.field <= i) {
		return
	}
	if _, err := vault.NormalizePAN(d); err != nil {
		return
	}
	c.field, c.digits, c.matchable = i, d, convergent(spec)
}
