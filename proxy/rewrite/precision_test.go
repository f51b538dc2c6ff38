package rewrite

import (
	"bufio"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/tokproxy/tok/vault"
)

// The precision corpus: numbers that are not cards, one class
// per file in testdata/precision, one value per line as people type them;
// cards.txt is the recall corpus (every line must be caught) and
// headers.txt a corpus of realistic request headers, requests separated by
// blank lines. The files are generated from fixed seeds by
// writePrecisionCorpus: go test -run TestPrecision -update-precision.
var updatePrecision = flag.Bool("update-precision", false, "rewrite testdata/precision from its generator")

const precisionDir = "testdata/precision"

// precisionClasses are the false-positive classes, in report order.
var precisionClasses = []string{"phones", "ibans", "isbns", "tracking", "orders", "timestamps", "transaction_ids", "amounts"}

// TestPrecision measures the guard's false positives per class (each value
// read as a JSON string and inside a sentence of a text/plain body, with
// every reading on) and checks every card of the recall corpus is caught,
// in every shape. It fails if a class refuses more than 0.1% or one card
// passes. go test -v -run TestPrecision prints the figures the README
// quotes.
func TestPrecision(t *testing.T) {
	if *updatePrecision {
		writePrecisionCorpus(t)
	}
	r, err := New(Config{ReadAll: true})
	if err != nil {
		t.Fatal(err)
	}
	refused := func(v string) bool {
		q, _ := appendQuoted(nil, v)
		_, e1 := r.Rewrite([]byte(`{"v":`+string(q)+`}`), ctJSON, nines)
		_, e2 := r.Rewrite([]byte("Please use "+v+" for this order."), "text/plain", nines)
		return e1 != nil || e2 != nil
	}
	total, fps := 0, 0
	for _, class := range precisionClasses {
		vals := readLines(t, class+".txt")
		n := 0
		var first []string
		for _, v := range vals {
			if refused(v) {
				n++
				if len(first) < 3 {
					first = append(first, v)
				}
			}
		}
		total += len(vals)
		fps += n
		rate := 100 * float64(n) / float64(len(vals))
		t.Logf("%-16s %6d values  %4d refused  %.3f%%  %q", class, len(vals), n, rate, first)
		if rate > 0.1 {
			t.Errorf("%s: %.3f%% false positives, want at most 0.1%%", class, rate)
		}
	}
	t.Logf("%-16s %6d values  %4d refused  %.3f%%", "overall", total, fps, 100*float64(fps)/float64(total))
	for _, v := range []string{"+49 151 23456787", "DK50 0040 0440 1162 43"} {
		if refused(v) {
			t.Errorf("the issue's example %q is refused", v)
		}
	}
	cards := readLines(t, "cards.txt")
	missed := 0
	for _, v := range cards {
		if !refused(v) {
			missed++
			t.Errorf("card not caught: %s", maskDigits(v))
		}
	}
	t.Logf("recall: %d of %d cards caught", len(cards)-missed, len(cards))
}

// TestHeaderPrecision measures how many realistic requests the guard
// refuses for their headers alone: trace ids (W3C, B3, Datadog, AWS,
// Google Cloud), request ids, analytics cookies, Stripe-like ids,
// timestamps.
func TestHeaderPrecision(t *testing.T) {
	r, err := New(Config{ReadAll: true})
	if err != nil {
		t.Fatal(err)
	}
	reqs := readRequests(t)
	byName := map[string]int{}
	n := 0
	ignore := map[string]bool{}
	for _, h := range defaultIgnoreHeaders {
		ignore[h] = true
	}
	none := 0
	for _, h := range reqs {
		if r.GuardRequest("/", "shop.example", h, nil) != nil {
			none++
		}
		if err := r.GuardRequest("/", "shop.example", h, ignore); err != nil {
			n++
			for name, vs := range h {
				if r.GuardRequest("/", "", map[string][]string{name: vs}, nil) != nil {
					byName[strings.ToLower(name)]++
				}
			}
		}
	}
	rate := 100 * float64(n) / float64(len(reqs))
	t.Logf("headers: %d requests, %d refused (%.3f%%) with guard.ignore_headers %q; by header: %v", len(reqs), n, rate, defaultIgnoreHeaders, byName)
	t.Logf("headers: %d refused (%.3f%%) with guard.ignore_headers: []", none, 100*float64(none)/float64(len(reqs)))
	if rate > 0.1 {
		t.Errorf("%.3f%% of requests refused for their headers, want at most 0.1%%", rate)
	}
}

// defaultIgnoreHeaders is config's DefaultIgnoreHeaders (the package
// cannot import config): decimal 64-bit trace ids.
var defaultIgnoreHeaders = []string{"x-datadog-trace-id", "x-datadog-parent-id", "x-cloud-trace-context"}

func maskDigits(s string) string {
	if len(s) < 10 {
		return "*"
	}
	return s[:6] + "…"
}

func readLines(t *testing.T, name string) []string {
	t.Helper()
	f, err := os.Open(filepath.Join(precisionDir, name))
	if err != nil {
		t.Fatalf("%v (generate with -update-precision)", err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if l := sc.Text(); l != "" {
			out = append(out, l)
		}
	}
	return out
}

func readRequests(t *testing.T) []map[string][]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(precisionDir, "headers.txt"))
	if err != nil {
		t.Fatalf("%v (generate with -update-precision)", err)
	}
	var out []map[string][]string
	for block := range strings.SplitSeq(string(b), "\n\n") {
		h := map[string][]string{}
		for l := range strings.SplitSeq(strings.TrimSpace(block), "\n") {
			if name, v, ok := strings.Cut(l, ": "); ok {
				h[name] = append(h[name], v)
			}
		}
		if len(h) > 0 {
			out = append(out, h)
		}
	}
	return out
}

// writePrecisionCorpus generates every file of testdata/precision from
// fixed seeds.
func writePrecisionCorpus(t *testing.T) {
	t.Helper()
	if err := os.MkdirAll(precisionDir, 0o755); err != nil {
		t.Fatal(err)
	}
	gens := map[string]func(*rand.Rand) []string{
		"phones": genPhones, "ibans": genIBANs, "isbns": genISBNs, "tracking": genTracking, "orders": genOrders,
		"timestamps": genTimestamps, "transaction_ids": genTIDs, "amounts": genAmounts, "cards": genCards, "headers": genHeaders,
	}
	for i, name := range append(slices.Clone(precisionClasses), "cards", "headers") {
		rnd := rand.New(rand.NewPCG(14, uint64(i)))
		data := strings.Join(gens[name](rnd), "\n") + "\n"
		if err := os.WriteFile(filepath.Join(precisionDir, name+".txt"), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// digits returns n random digits, the first not zero if lead.
func digits(rnd *rand.Rand, n int, lead bool) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('0' + rnd.IntN(10))
	}
	if lead && n > 0 {
		b[0] = byte('1' + rnd.IntN(9))
	}
	return string(b)
}

// fill replaces each '#' of pattern with a random digit.
func fill(rnd *rand.Rand, pattern string) string {
	var sb strings.Builder
	for _, c := range pattern {
		if c == '#' {
			sb.WriteByte(byte('0' + rnd.IntN(10)))
		} else {
			sb.WriteRune(c)
		}
	}
	return sb.String()
}

// Phone numbers as people type them, international and national, per
// country's usual grouping.
func genPhones(rnd *rand.Rand) []string {
	patterns := []string{
		"+49 15# ########", "+49 (0)15# ########", "+49 30 ########", "0049 15# ########", "015# ########", "(030) ### ### ##",
		"+49 17# #######", "+4915#########", "+49 89 #######",
		"+1 (###) ###-####", "+1 ###-###-####", "(###) ###-####", "###-###-####", "1-###-###-####", "+1 ### ### ####", "+1##########",
		"+44 20 #### ####", "+44 7### ######", "07### ######", "+447#########",
		"+33 6 ## ## ## ##", "06 ## ## ## ##", "+33 1 ## ## ## ##",
		"+34 6## ## ## ##", "+39 3## ### ####", "+31 6 ########", "+43 664 #######", "+43 1 ########",
		"+41 7# ### ## ##", "+45 ## ## ## ##", "+46 7# ### ## ##", "+48 ### ### ###", "+351 9## ### ###",
		"+86 13# #### ####", "+8613#########", "+91 9#### #####", "+55 11 9####-####", "+62 812-####-####", "+62 8##########",
		"+7 9## ###-##-##", "+81 90-####-####", "+61 4## ### ###", "+52 1 55 #### ####", "+234 80# ### ####", "+20 10 #### ####",
	}
	var out []string
	for range 400 {
		for _, p := range patterns {
			out = append(out, fill(rnd, p))
		}
	}
	return out
}

// ibanFormats gives the BBAN of each SEPA country (and a few more): 'a'
// is a letter, 'n' a digit, 'c' either.
var ibanFormats = map[string]string{
	"AD": "nnnnnnnncccccccccccc", "AT": "nnnnnnnnnnnnnnnn", "BE": "nnnnnnnnnnnn", "BG": "aaaannnnnncccccccc", "CH": "nnnnncccccccccccc",
	"CY": "nnnnnnnncccccccccccccccc", "CZ": "nnnnnnnnnnnnnnnnnnnn", "DE": "nnnnnnnnnnnnnnnnnn", "DK": "nnnnnnnnnnnnnn", "EE": "nnnnnnnnnnnnnnnn",
	"ES": "nnnnnnnnnnnnnnnnnnnn", "FI": "nnnnnnnnnnnnnn", "FR": "nnnnnnnnnncccccccccccnn", "GB": "aaaannnnnnnnnnnnnn", "GI": "aaaaccccccccccccccc",
	"GR": "nnnnnnncccccccccccccccc", "HR": "nnnnnnnnnnnnnnnnn", "HU": "nnnnnnnnnnnnnnnnnnnnnnnn", "IE": "aaaannnnnnnnnnnnnn", "IS": "nnnnnnnnnnnnnnnnnnnnnn",
	"IT": "annnnnnnnnncccccccccccc", "LI": "nnnnncccccccccccc", "LT": "nnnnnnnnnnnnnnnn", "LU": "nnnccccccccccccc", "LV": "aaaaccccccccccccc",
	"MC": "nnnnnnnnnncccccccccccnn", "MT": "aaaannnnncccccccccccccccccc", "NL": "aaaannnnnnnnnn", "NO": "nnnnnnnnnnn", "PL": "nnnnnnnnnnnnnnnnnnnnnnnn",
	"PT": "nnnnnnnnnnnnnnnnnnnnn", "RO": "aaaacccccccccccccccc", "SE": "nnnnnnnnnnnnnnnnnnnn", "SI": "nnnnnnnnnnnnnnn", "SK": "nnnnnnnnnnnnnnnnnnnn",
	"SM": "annnnnnnnnncccccccccccc", "VA": "nnnnnnnnnnnnnnnnnn", "FO": "nnnnnnnnnnnnnn", "GL": "nnnnnnnnnnnnnn",
}

// ibanOf computes the check digits of country+bban (ISO 13616).
func ibanOf(country, bban string) string {
	rem := 0
	for _, c := range bban + country + "00" {
		if c >= '0' && c <= '9' {
			rem = (rem*10 + int(c-'0')) % 97
		} else {
			rem = (rem*100 + int(c-'A'+10)) % 97
		}
	}
	return fmt.Sprintf("%s%02d%s", country, 98-rem, bban)
}

func genIBANs(rnd *rand.Rand) []string {
	out := []string{"DK50 0040 0440 1162 43", "DK5000400440116243"}
	countries := make([]string, 0, len(ibanFormats))
	for c := range ibanFormats {
		countries = append(countries, c)
	}
	slices.Sort(countries)
	for range 100 {
		for _, c := range countries {
			var bban strings.Builder
			for _, f := range ibanFormats[c] {
				switch {
				case f == 'a' || f == 'c' && rnd.IntN(4) == 0:
					bban.WriteByte(byte('A' + rnd.IntN(26)))
				default:
					bban.WriteByte(byte('0' + rnd.IntN(10)))
				}
			}
			iban := ibanOf(c, bban.String())
			if len(iban) != ibanLength[c] {
				panic(fmt.Sprintf("%s: generated %d characters, want %d", c, len(iban), ibanLength[c]))
			}
			var grouped []string
			for i := 0; i < len(iban); i += 4 {
				grouped = append(grouped, iban[i:min(i+4, len(iban))])
			}
			out = append(out, strings.Join(grouped, " "), iban)
		}
	}
	return out
}

func isbn13(rnd *rand.Rand) string {
	d := "978" + digits(rnd, 9, false)
	if rnd.IntN(5) == 0 {
		d = "979" + strconv.Itoa(8+rnd.IntN(2)) + digits(rnd, 8, false)
	}
	sum := 0
	for i, c := range d {
		v := int(c - '0')
		if i%2 == 1 {
			v *= 3
		}
		sum += v
	}
	return d + strconv.Itoa((10-sum%10)%10)
}

func genISBNs(rnd *rand.Rand) []string {
	var out []string
	for range 1500 {
		d := isbn13(rnd)
		out = append(out, d, d[:3]+"-"+d[3:4]+"-"+d[4:7]+"-"+d[7:12]+"-"+d[12:], "ISBN "+d[:3]+"-"+d[3:5]+"-"+d[5:9]+"-"+d[9:12]+"-"+d[12:])
		ten := digits(rnd, 9, false)
		out = append(out, ten[:1]+"-"+ten[1:4]+"-"+ten[4:]+"-X", ten+strconv.Itoa(rnd.IntN(10)))
	}
	return out
}

func genTracking(rnd *rand.Rand) []string {
	var out []string
	alnum := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			if rnd.IntN(3) == 0 {
				b[i] = byte('A' + rnd.IntN(26))
			} else {
				b[i] = byte('0' + rnd.IntN(10))
			}
		}
		return string(b)
	}
	for range 1000 {
		ups := "1Z" + alnum(6) + digits(rnd, 10, false)
		usps := []string{"9400", "9205", "9361", "9270", "9303", "9407", "9208", "9202"}[rnd.IntN(8)] + digits(rnd, 18, false)
		usps20 := "0" + digits(rnd, 19, false)
		var uspsSpaced []string
		for i := 0; i < len(usps); i += 4 {
			uspsSpaced = append(uspsSpaced, usps[i:min(i+4, len(usps))])
		}
		out = append(out, ups, ups[:2]+" "+ups[2:5]+" "+ups[5:8]+" "+ups[8:10]+" "+ups[10:14]+" "+ups[14:],
			usps, strings.Join(uspsSpaced, " "), usps20,
			digits(rnd, 10, true),           // DHL Express
			"JJD"+digits(rnd, 18, false),    // DHL Parcel
			"00"+digits(rnd, 18, false),     // DHL/SSCC
			digits(rnd, 12, true),           // FedEx Express
			"96"+digits(rnd, 20, false),     // FedEx Ground 22
			"RR"+digits(rnd, 9, false)+"DE", // UPU S10
			"LX"+digits(rnd, 9, false)+"CN", // UPU S10
			"H"+digits(rnd, 19, false),      // Hermes
			"0034"+digits(rnd, 16, false),   // GLS/DPD style
			"05"+digits(rnd, 12, false),     // DPD
		)
	}
	return out
}

func genOrders(rnd *rand.Rand) []string {
	var out []string
	for range 1500 {
		y := 2020 + rnd.IntN(7)
		out = append(out,
			fmt.Sprintf("ORD-%d-%06d", y, rnd.IntN(1000000)),
			fmt.Sprintf("INV-%d%02d%02d-%04d", y, 1+rnd.IntN(12), 1+rnd.IntN(28), rnd.IntN(10000)),
			"#"+digits(rnd, 4+rnd.IntN(6), true),
			fmt.Sprintf("%03d-%s-%s", []int{111, 112, 113, 114, 171, 202, 203, 204, 205, 302, 402, 403, 404, 405, 702}[rnd.IntN(15)], digits(rnd, 7, false), digits(rnd, 7, false)),
			"PO "+digits(rnd, 10, true),
			fmt.Sprintf("RE%d/%05d", y, rnd.IntN(100000)),
			digits(rnd, 8, true),
			fmt.Sprintf("%d%s", y, digits(rnd, 8, false)),
			"pi_"+digits(rnd, 4, false)+"AbCd"+digits(rnd, 6, false),
			fmt.Sprintf("%d-%06d-%02d", y, rnd.IntN(1000000), rnd.IntN(100)),
		)
	}
	return out
}

func genTimestamps(rnd *rand.Rand) []string {
	var out []string
	for range 3000 {
		s := 946684800 + rnd.Int64N(2000000000-946684800) // 2000 to 2033
		out = append(out, strconv.FormatInt(s, 10), strconv.FormatInt(s*1000+rnd.Int64N(1000), 10),
			strconv.FormatInt(s*1000000+rnd.Int64N(1000000), 10), strconv.FormatInt(s*1000000000+rnd.Int64N(1000000000), 10))
	}
	return out
}

// Network transaction ids: Visa's 15-digit transaction identifier (from
// a Julian date and a sequence; can pass the Luhn check), Mastercard's
// trace id (financial network code, banknet reference, date).
func genTIDs(rnd *rand.Rand) []string {
	var out []string
	for range 4000 {
		day := 1 + rnd.IntN(365)
		out = append(out,
			fmt.Sprintf("%d%03d%s", rnd.IntN(10), day, digits(rnd, 11, false)), // Visa TID: year digit, day, sequence
			"MCC"+digits(rnd, 6, false)+fmt.Sprintf("%02d%02d", 1+rnd.IntN(12), 1+rnd.IntN(28)),
		)
	}
	return out
}

func genAmounts(rnd *rand.Rand) []string {
	var out []string
	for range 2500 {
		c := rnd.Int64N(100000000)
		out = append(out,
			fmt.Sprintf("%d.%02d", c/100, c%100), fmt.Sprintf("EUR %d,%02d", c/100, c%100), strconv.FormatInt(c, 10),
			fmt.Sprintf("$%s.%02d", thousands(c/100), c%100))
	}
	return out
}

func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// luhnComplete appends the check digit to d.
func luhnComplete(d string) string {
	for c := '0'; c <= '9'; c++ {
		if vault.Luhn(d + string(c)) {
			return d + string(c)
		}
	}
	return ""
}

// genCards is the recall corpus: cards of every network and length the
// guard knows, typed in every shape.
func genCards(rnd *rand.Rand) []string {
	type net struct {
		prefix string
		n      int
	}
	nets := []net{{"4", 16}, {"4", 13}, {"4", 19}, {"51", 16}, {"55", 16}, {"2221", 16}, {"2720", 16}, {"34", 15}, {"37", 15},
		{"6011", 16}, {"6011", 19}, {"644", 16}, {"65", 16}, {"3528", 16}, {"3589", 19}, {"36", 14}, {"300", 14}, {"38", 16},
		{"62", 16}, {"62", 19}, {"6759", 16}, {"5018", 19}, {"2200", 16}, {"9792", 16}, {"81", 16}}
	var out []string
	for range 40 {
		for _, nt := range nets {
			d := luhnComplete(nt.prefix + digits(rnd, nt.n-len(nt.prefix)-1, false))
			g4 := func(sep string) string {
				var gs []string
				for i := 0; i < len(d); i += 4 {
					gs = append(gs, d[i:min(i+4, len(d))])
				}
				return strings.Join(gs, sep)
			}
			out = append(out, d, g4(" "), g4("-"), "card "+g4(" ")+" exp 12/30", "my card is "+d+", thanks")
			if nt.n == 15 {
				out = append(out, d[:4]+" "+d[4:10]+" "+d[10:])
			}
			if nt.n == 14 {
				out = append(out, d[:4]+" "+d[4:10]+" "+d[10:])
			}
			// As a JSON number would print it, exponent form.
			out = append(out, d[:1]+"."+d[1:]+"E+"+strconv.Itoa(len(d)-1))
			// A leading plus before more digits than a phone number has
			// (see maxPhoneDigits) is still a card.
			if nt.n >= 14 {
				out = append(out, "+"+d)
			}
		}
	}
	return out
}

func hexs(rnd *rand.Rand, n int) string {
	const h = "0123456789abcdef"
	b := make([]byte, n)
	for i := range b {
		b[i] = h[rnd.IntN(16)]
	}
	return string(b)
}

func uuid(rnd *rand.Rand) string {
	h := hexs(rnd, 32)
	return h[:8] + "-" + h[8:12] + "-4" + h[13:16] + "-" + h[16:20] + "-" + h[20:]
}

// genHeaders writes realistic requests' headers: every request carries
// tracing headers of one vendor, analytics cookies and ids.
func genHeaders(rnd *rand.Rand) []string {
	var out []string
	for i := range 3000 {
		ts := 1700000000 + rnd.Int64N(100000000)
		h := []string{
			"User-Agent: Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/" + strconv.Itoa(110+rnd.IntN(20)) + ".0." + strconv.Itoa(rnd.IntN(6000)) + "." + strconv.Itoa(rnd.IntN(200)) + " Safari/537.36",
			"Accept-Language: de-DE,de;q=0.9,en;q=0.8",
			"X-Request-Id: " + uuid(rnd),
			"Idempotency-Key: " + uuid(rnd),
			fmt.Sprintf("Cookie: _ga=GA1.2.%d.%d; _gid=GA1.2.%d.%d; _fbp=fb.1.%d%03d.%d; __stripe_mid=%s; session=%s",
				rnd.Int64N(2000000000), ts, rnd.Int64N(2000000000), ts, ts, rnd.IntN(1000), rnd.Int64N(2000000000), uuid(rnd), hexs(rnd, 40)),
			"X-Timestamp: " + strconv.FormatInt(ts, 10),
			"X-Client-Time: " + strconv.FormatInt(ts*1000+rnd.Int64N(1000), 10),
			"Referer: https://shop.example/cart?utm_source=google&gclid=Cj0KCQ" + hexs(rnd, 20) + "&item=" + strconv.Itoa(rnd.IntN(100000)),
			"X-Forwarded-For: " + fmt.Sprintf("%d.%d.%d.%d", rnd.IntN(256), rnd.IntN(256), rnd.IntN(256), rnd.IntN(256)),
			"If-None-Match: W/\"" + hexs(rnd, 32) + "\"",
			"Stripe-Account: acct_1" + hexs(rnd, 15),
		}
		switch i % 5 {
		case 0: // W3C
			h = append(h, "Traceparent: 00-"+hexs(rnd, 32)+"-"+hexs(rnd, 16)+"-01", "Tracestate: congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")
		case 1: // Datadog: decimal 64-bit trace id, 63-bit parent id
			h = append(h, "X-Datadog-Trace-Id: "+strconv.FormatUint(rnd.Uint64(), 10), "X-Datadog-Parent-Id: "+strconv.FormatUint(rnd.Uint64()>>1, 10),
				"X-Datadog-Sampling-Priority: 1", "X-Datadog-Origin: rum")
		case 2: // B3
			h = append(h, "X-B3-Traceid: "+hexs(rnd, 32), "X-B3-Spanid: "+hexs(rnd, 16), "X-B3-Sampled: 1", "B3: "+hexs(rnd, 32)+"-"+hexs(rnd, 16)+"-1")
		case 3: // AWS
			h = append(h, fmt.Sprintf("X-Amzn-Trace-Id: Root=1-%08x-%s;Parent=%s;Sampled=1", ts, hexs(rnd, 24), hexs(rnd, 16)))
		case 4: // Google Cloud: decimal span id
			h = append(h, "X-Cloud-Trace-Context: "+hexs(rnd, 32)+"/"+strconv.FormatUint(rnd.Uint64(), 10)+";o=1",
				"Sentry-Trace: "+hexs(rnd, 32)+"-"+hexs(rnd, 16)+"-1", "Uber-Trace-Id: "+hexs(rnd, 16)+":"+hexs(rnd, 16)+":0:1")
		}
		out = append(out, strings.Join(h, "\n"), "")
	}
	return out
}
