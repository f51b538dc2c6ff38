package proxy

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"

	"github.com/tokproxy/tok/proxy/rewrite"
)

// A generator of provider answers as they come back from a payment: the
// shapes of Stripe's payment intent (with its latest charge), Adyen's
// /payments result, Checkout.com's payment and Braintree's GraphQL
// chargeCreditCard, with the ids a real answer carries. Network
// transaction ids are uniformly random 13-19 digits (about one in ten pass
// the Luhn check); the other numeric ids (Adyen's references, retrieval
// and acquirer reference numbers, auth codes, timestamps, amounts) follow
// the providers' documented formats. No answer holds a card number: every
// value the response guard changes is a false positive.

// answerShape is one provider's answers and the response-guard settings
// the README recommends for it.
type answerShape struct {
	provider string
	gen      func(r *rand.Rand) string
	// ignore is the recommended response_ignore: the paths of the ids
	// that may pass the Luhn check.
	ignore []string
	// cardPath is a path of the answer where a test plants a card number
	// to show the recommended settings still catch one.
	cardPath string
}

// recommendedCards is the recommended response_cards: the networks a
// merchant typically accepts.
var recommendedCards = []string{"visa", "mastercard", "amex"}

func digitsN(r *rand.Rand, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('0' + r.IntN(10))
	}
	return string(b)
}

func alnum(r *rand.Rand, n int, set string) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = set[r.IntN(len(set))]
	}
	return string(b)
}

const (
	base62 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	base32 = "abcdefghijklmnopqrstuvwxyz234567"
	hexUp  = "0123456789ABCDEF"
)

// nti is a network transaction id: 13 to 19 random digits.
func nti(r *rand.Rand) string { return digitsN(r, 13+r.IntN(7)) }

var answerShapes = []answerShape{
	{
		provider: "stripe",
		ignore:   []string{"latest_charge.payment_method_details.card.network_transaction_id"},
		cardPath: "metadata.order_id",
		gen: func(r *rand.Rand) string {
			created := 1_700_000_000 + r.IntN(50_000_000)
			amount := 100 + r.IntN(100_000)
			return fmt.Sprintf(`{"id":"pi_%s","object":"payment_intent","amount":%d,"amount_received":%d,"created":%d,"currency":"eur",`+
				`"status":"succeeded","metadata":{"order_id":"%s"},"latest_charge":{"id":"ch_%s","object":"charge","balance_transaction":"txn_%s",`+
				`"created":%d,"payment_method":"pm_%s","payment_method_details":{"type":"card","card":{"brand":"visa","last4":"%s",`+
				`"exp_month":%d,"exp_year":%d,"fingerprint":"%s","funding":"credit","network":"visa","network_transaction_id":"%s",`+
				`"authorization_code":"%s"}},"receipt_url":"https://pay.stripe.com/receipts/payment/%s"}}`,
				alnum(r, 24, base62), amount, amount, created, digitsN(r, 8+r.IntN(5)), alnum(r, 24, base62), alnum(r, 24, base62),
				created, alnum(r, 24, base62), digitsN(r, 4), 1+r.IntN(12), 2026+r.IntN(8), alnum(r, 16, base62), nti(r), digitsN(r, 6), alnum(r, 60, base62))
		},
	},
	{
		provider: "adyen",
		// Adyen's references are 16 digits starting 8 or 9 (outside the
		// card ranges the guard knows); a key holding "." is escaped.
		ignore:   []string{"additionalData.networkTxReference", "pspReference", `additionalData.recurring\.recurringDetailReference`},
		cardPath: "merchantReference",
		gen: func(r *rand.Rand) string {
			ref := func() string { return string("89"[r.IntN(2)]) + digitsN(r, 15) }
			return fmt.Sprintf(`{"additionalData":{"networkTxReference":"%s","authCode":"%s","cardSummary":"%s","cardBin":"%s",`+
				`"paymentMethod":"visa","expiryDate":"%d/%d","acquirerReference":"%s","recurring.recurringDetailReference":"%s",`+
				`"retry.attempt1.rawResponse":"AUTHORISED"},"pspReference":"%s","resultCode":"Authorised",`+
				`"amount":{"currency":"EUR","value":%d},"merchantReference":"order-%s"}`,
				nti(r), digitsN(r, 6), digitsN(r, 4), digitsN(r, 6), 1+r.IntN(12), 2026+r.IntN(8), digitsN(r, 11), ref(), ref(),
				100+r.IntN(100_000), digitsN(r, 6))
		},
	},
	{
		provider: "checkout",
		ignore:   []string{"scheme_id"},
		cardPath: "reference",
		gen: func(r *rand.Rand) string {
			return fmt.Sprintf(`{"id":"pay_%s","action_id":"act_%s","amount":%d,"currency":"EUR","approved":true,"status":"Authorized",`+
				`"auth_code":"%s","response_code":"10000","response_summary":"Approved","scheme_id":"%s","source":{"id":"src_%s",`+
				`"type":"card","expiry_month":%d,"expiry_year":%d,"scheme":"Visa","last4":"%s","fingerprint":"%s","bin":"%s",`+
				`"card_type":"CREDIT","issuer_country":"GB"},"processing":{"acquirer_transaction_id":"%s","retrieval_reference_number":"%s",`+
				`"acquirer_reference_number":"%s"},"processed_on":"2026-12-05T08:%02d:%02dZ","reference":"ORD-%s"}`,
				alnum(r, 26, base32), alnum(r, 26, base32), 100+r.IntN(100_000), digitsN(r, 6), nti(r), alnum(r, 26, base32),
				1+r.IntN(12), 2026+r.IntN(8), digitsN(r, 4), alnum(r, 64, hexUp), digitsN(r, 6), digitsN(r, 10), digitsN(r, 12),
				digitsN(r, 23), r.IntN(60), r.IntN(60), alnum(r, 8, hexUp))
		},
	},
	{
		// Braintree's GraphQL API answers in JSON (its Go SDK speaks XML,
		// which the XML guard reads).
		provider: "braintree",
		ignore:   []string{"data.chargeCreditCard.transaction.networkTransactionIdentifier"},
		cardPath: "data.chargeCreditCard.transaction.orderId",
		gen: func(r *rand.Rand) string {
			legacy := alnum(r, 8, "abcdefghijklmnopqrstuvwxyz0123456789")
			return fmt.Sprintf(`{"data":{"chargeCreditCard":{"transaction":{"id":"dHJhbnNhY3Rpb25f%s","legacyId":"%s","status":"SUBMITTED_FOR_SETTLEMENT",`+
				`"orderId":"%s","amount":{"value":"%d.%02d","currencyCode":"EUR"},"networkTransactionIdentifier":"%s",`+
				`"paymentMethodSnapshot":{"__typename":"CreditCardDetails","brandCode":"VISA","last4":"%s","bin":"%s","expirationMonth":"%02d",`+
				`"expirationYear":"%d"},"processorResponse":{"legacyCode":"1000","message":"Approved","authorizationId":"%s",`+
				`"retrievalReferenceNumber":"%s"}}}},"extensions":{"requestId":"%s-%s-%s-%s-%s"}}`,
				alnum(r, 12, base62), legacy, digitsN(r, 10), r.IntN(1000), r.IntN(100), nti(r), digitsN(r, 4), digitsN(r, 6),
				1+r.IntN(12), 2026+r.IntN(8), alnum(r, 6, hexUp), digitsN(r, 12),
				alnum(r, 8, "0123456789abcdef"), alnum(r, 4, "0123456789abcdef"), alnum(r, 4, "0123456789abcdef"), alnum(r, 4, "0123456789abcdef"), alnum(r, 12, "0123456789abcdef"))
		},
	},
}

// guardSetting is one way a route's response guard may be set up.
type guardSetting struct {
	name        string
	ignore      bool // the shape's recommended response_ignore
	cards       bool // the recommended response_cards
	recommended bool
}

var guardSettings = []guardSetting{
	{name: "default"},
	{name: "response_cards", cards: true},
	{name: "response_ignore", ignore: true},
	{name: "both", ignore: true, cards: true, recommended: true},
}

// route returns an egress route with setting g for shape s.
func (g guardSetting) route(s answerShape) (EgressRoute, error) {
	var r EgressRoute
	if g.ignore {
		r.ResponseIgnore = s.ignore
	}
	if g.cards {
		cs, err := rewrite.NewCardSet(recommendedCards, nil, nil)
		if err != nil {
			return r, err
		}
		r.ResponseCards = cs
	}
	return r, nil
}

// guardChanges reports whether the response guard changes answer.
func guardChanges(guard *rewrite.Rewriter, answer string) (bool, error) {
	out, err := guard.Rewrite([]byte(answer), "application/json", func(vals []rewrite.Value) ([]string, error) {
		repl := make([]string, len(vals))
		for i := range vals {
			repl[i] = "tok_guarded"
		}
		return repl, nil
	})
	if err != nil {
		return false, err
	}
	return string(out) != answer, nil
}

// plantCard returns answer with the string at path (dot-separated object
// keys) replaced by pan.
func plantCard(answer, path, pan string) (string, error) {
	var doc map[string]any
	d := json.NewDecoder(strings.NewReader(answer))
	d.UseNumber()
	if err := d.Decode(&doc); err != nil {
		return "", err
	}
	keys := strings.Split(path, ".")
	m := doc
	for _, k := range keys[:len(keys)-1] {
		next, ok := m[k].(map[string]any)
		if !ok {
			return "", fmt.Errorf("no object at %s", k)
		}
		m = next
	}
	if _, ok := m[keys[len(keys)-1]].(string); !ok {
		return "", fmt.Errorf("no string at %s", path)
	}
	m[keys[len(keys)-1]] = pan
	b, err := json.Marshal(doc)
	return string(b), err
}
