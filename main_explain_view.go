package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tokproxy/tok/proxy"
	"github.com/tokproxy/tok/proxy/rewrite"
	"github.com/tokproxy/tok/vault"
)

// explanation is what tok explain prints about one request (and tok test
// checks): every card number in it masked, tokens shown.
type explanation struct {
	Request  string           `json:"request"`
	Listener string           `json:"listener"`
	Route    string           `json:"route"`
	NoRoute  []string         `json:"no_route,omitempty"`
	Fields   []explainedField `json:"fields"`
	Guard    string           `json:"guard"`
	Verdict  verdict          `json:"verdict"`
	// Forwarded is the request as the app or provider receives it, card
	// digits masked; empty when nothing is forwarded.
	Forwarded string `json:"forwarded,omitempty"`

	forwarded   []byte           // unmasked, for tok test's "forwarded contains"
	wouldRefuse []proxy.Decision // report mode's records
}

type explainedField struct {
	Path     string `json:"path"`
	Selector string `json:"selector"` // "" for a guard hit
	Format   string `json:"format,omitempty"`
	Store    string `json:"store,omitempty"`
	TTL      string `json:"ttl,omitempty"`
	Bind     string `json:"bind,omitempty"`
	// RevealTo, MaxReveals and RevealWindow are the reveal policy an
	// inbound field seals into its tokens; absent when it has none.
	RevealTo     []string `json:"reveal_to,omitempty"`
	MaxReveals   uint32   `json:"max_reveals,omitempty"`
	RevealWindow string   `json:"reveal_window,omitempty"`
	Offset       int      `json:"offset"`
	Value        string   `json:"value"`          // as sent, masked unless a token
	Became       string   `json:"became"`         // what replaced it, masked unless a token
	Outcome      string   `json:"outcome"`        // tokenized, revealed, refused
	Code         string   `json:"code,omitempty"` // why it was refused
}

type verdict struct {
	Forwarded bool   `json:"forwarded"`
	To        string `json:"to,omitempty"` // the host it goes to
	Status    int    `json:"status"`       // tok's answer to the client
	Code      string `json:"code,omitempty"`
	Message   string `json:"message,omitempty"`
	Path      string `json:"path,omitempty"`
	// Offset is the byte offset of the value at fault, in the body or in
	// the query string (In); absent when none is known.
	Offset *int   `json:"offset,omitempty"`
	In     string `json:"in,omitempty"`
}

// describe turns a dry run's result into an explanation, masking every
// card number and revealed value.
func (s *dryRunSession) describe(line string, res *proxy.DryRunResult) *explanation {
	egress := res.Listener == proxy.ListenerEgress
	ex := &explanation{Request: string(proxy.MaskCards([]byte(line), s.isToken)), Listener: res.Listener,
		Route: res.Route, NoRoute: res.NoRoute, Fields: []explainedField{}}
	for _, f := range res.Fields {
		ef := explainedField{Path: f.Path, Selector: f.Selector, Format: f.Format, Store: f.Store, Bind: f.Bind,
			RevealTo: slices.Sorted(slices.Values(f.RevealTo)), MaxReveals: f.MaxReveals, RevealWindow: shortDuration(f.RevealWindow), Offset: f.Offset, Code: f.Code}
		ef.TTL = shortDuration(f.TTL)
		if f.Field < 0 {
			ef.Selector = "(guard)"
		}
		switch {
		case egress:
			ef.Value, ef.Became = s.maskUnlessToken(f.In), maskValue(f.Out)
			if f.Out != "" && len(digitsOf(f.Out)) < vault.MinPANLength {
				s.revealed[f.Out] = true
			}
			ef.Outcome = "revealed"
		default:
			ef.Value, ef.Became = maskValue(f.In), f.Out
			if f.Out != "" {
				s.tokens[f.Out] = true
			}
			ef.Outcome = "tokenized"
		}
		if f.Code != "" || f.Out == "" {
			ef.Outcome, ef.Became = "refused", ""
		}
		ex.Fields = append(ex.Fields, ef)
	}
	v := verdict{Forwarded: res.Forwarded != nil, Status: res.Status}
	if v.Forwarded {
		v.To = res.Upstream
	}
	if rf := res.Refusal; rf != nil {
		v.Code, v.Message, v.Path = rf.Code, rf.Message, rf.Path
		if rf.Offset >= 0 {
			off := rf.Offset
			v.Offset, v.In = &off, "body"
			if rf.InQuery {
				v.In = "query"
			}
		}
	}
	ex.Verdict = v
	ex.wouldRefuse = res.WouldRefuse
	ex.Guard = s.guardVerdict(ex)
	if res.Forwarded != nil {
		ex.forwarded = res.Forwarded
		ex.Forwarded = string(s.mask(res.Forwarded))
	}
	return ex
}

// guardVerdict says what the card-number guard made of the request.
func (s *dryRunSession) guardVerdict(ex *explanation) string {
	if len(ex.wouldRefuse) > 0 {
		d := ex.wouldRefuse[0]
		where := "in the " + d.Where
		if d.Path != "" {
			where = "at " + d.Path + " in the " + d.Where
		}
		if d.Offset >= 0 {
			where += fmt.Sprintf(", byte %d", d.Offset)
		}
		return fmt.Sprintf("report mode: reject mode would refuse this request (%s %s); recorded, then guard.report_then: %s",
			d.Code, where, s.cfg.Guard.ReportThen)
	}
	if s.cfg.Guard.Mode == rewrite.GuardOff {
		return "off (guard.mode: off): card-like numbers outside the fields are not looked for"
	}
	v := ex.Verdict
	if v.Code == rewrite.CodeCardNumberDetected {
		where := "at " + v.Path
		if v.Path == "" {
			where = "in the body"
		}
		if v.Offset != nil {
			where += fmt.Sprintf(", byte %d of the %s", *v.Offset, inText[v.In])
		}
		msg := v.Message
		if _, m, ok := strings.Cut(msg, v.Path+": "); ok && v.Path != "" {
			msg = m
		}
		return "refused: " + msg + " (" + where + ")"
	}
	hits := 0
	for _, f := range ex.Fields {
		if f.Selector == "(guard)" {
			hits++
		}
	}
	if hits > 0 {
		return fmt.Sprintf("%d card-like number(s) outside the fields tokenized (guard.mode: tokenize)", hits)
	}
	if v.Forwarded {
		return "passed: no card-like number outside the configured fields"
	}
	return "not at fault: see the verdict"
}

// inText names where a refusal's offset counts from.
var inText = map[string]string{"body": "body", "query": "query string"}

func (s *dryRunSession) isToken(d string) bool { return s.tokens[d] }

// maskUnlessToken shows a token handed out in this run as it is, and
// masks anything else.
func (s *dryRunSession) maskUnlessToken(v string) string {
	if s.tokens[v] {
		return v
	}
	return maskValue(v)
}

// mask masks the card numbers in b (tokens of this run excepted) and the
// short values egress revealed, wherever they stand alone between
// non-digits.
func (s *dryRunSession) mask(b []byte) []byte {
	out := proxy.MaskCards(b, s.isToken)
	for v := range s.revealed {
		out = maskShort(out, v)
	}
	return out
}

// maskShort replaces each occurrence of v in b that no digit touches with
// asterisks.
func maskShort(b []byte, v string) []byte {
	if v == "" {
		return b
	}
	s := string(b)
	var out strings.Builder
	for {
		i := strings.Index(s, v)
		if i < 0 {
			out.WriteString(s)
			return []byte(out.String())
		}
		end := i + len(v)
		alone := (i == 0 || !isDigit(s[i-1])) && (end == len(s) || !isDigit(s[end]))
		out.WriteString(s[:i])
		if alone {
			out.WriteString(strings.Repeat("*", len(v)))
		} else {
			out.WriteString(v)
		}
		s = s[end:]
	}
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// maskValue masks a sensitive value: a card number as tok's logs show one,
// anything shorter (a CVC) whole.
func maskValue(v string) string {
	if v == "" {
		return ""
	}
	if d := digitsOf(v); len(d) >= vault.MinPANLength {
		return vault.Mask(d)
	}
	return strings.Repeat("*", len(v))
}

func digitsOf(v string) string {
	return strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, v)
}

// print writes the explanation for a person.
func (ex *explanation) print(w io.Writer) {
	listener := map[string]string{proxy.ListenerPublic: "inbound (public listener)", proxy.ListenerEgress: "egress listener"}[ex.Listener]
	fmt.Fprintf(w, "request    %s, %s\n", ex.Request, listener)
	if ex.Route != "" {
		fmt.Fprintf(w, "route      %s\n", ex.Route)
	} else {
		fmt.Fprintln(w, "route      none matched")
		for _, why := range ex.NoRoute {
			fmt.Fprintf(w, "             %s\n", why)
		}
	}
	switch {
	case len(ex.Fields) == 0 && !ex.Verdict.Forwarded:
		fmt.Fprintln(w, "fields     none tokenized or revealed: the request was refused first")
	case len(ex.Fields) == 0:
		fmt.Fprintln(w, "fields     none found")
	default:
		fmt.Fprintln(w, "fields")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  PATH\tSELECTOR\tFORMAT\tSTORE\tBYTE\tVALUE\tBECAME\tOUTCOME")
		for _, f := range ex.Fields {
			store := strings.Join(slices.DeleteFunc([]string{f.Store, f.TTL}, func(s string) bool { return s == "" }), " ")
			if f.Bind != "" {
				store = strings.TrimSpace(store + " bound to " + f.Bind)
			}
			store += f.policyText()
			outcome := f.Outcome
			if f.Code != "" {
				outcome += ": " + f.Code
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", f.Path, f.Selector, dash(f.Format), dash(store), f.Offset, f.Value, dash(f.Became), outcome)
		}
		tw.Flush()
	}
	fmt.Fprintf(w, "guard      %s\n", ex.Guard)
	v := ex.Verdict
	if v.Forwarded {
		to := map[string]string{proxy.ListenerPublic: "the app", proxy.ListenerEgress: "the provider"}[ex.Listener]
		fmt.Fprintf(w, "verdict    forwarded to %s (%s); tok answered %d (the stand-in's answer)\n", v.To, to, v.Status)
	} else {
		msg := fmt.Sprintf("refused %d %s: %s", v.Status, dash(v.Code), v.Message)
		if v.Offset != nil {
			msg += fmt.Sprintf(" (byte %d of the %s)", *v.Offset, inText[v.In])
		}
		fmt.Fprintf(w, "verdict    %s\n", msg)
	}
	if ex.Forwarded != "" {
		fmt.Fprintln(w, "forwarded  (card digits masked)")
		for l := range strings.SplitSeq(strings.TrimRight(ex.Forwarded, "\r\n"), "\n") {
			fmt.Fprintln(w, strings.TrimRight("  | "+strings.TrimRight(l, "\r"), " "))
		}
	}
}

// policyText is f's reveal policy as the STORE column shows it after the
// store, e.g. "; reveal_to stripe,@me; max_reveals 2; reveal_window 24h",
// or "" when it has none.
func (f explainedField) policyText() string {
	var b strings.Builder
	if len(f.RevealTo) > 0 {
		b.WriteString("; reveal_to " + strings.Join(f.RevealTo, ","))
	}
	if f.MaxReveals > 0 {
		fmt.Fprintf(&b, "; max_reveals %d", f.MaxReveals)
	}
	if f.RevealWindow != "" {
		b.WriteString("; reveal_window " + f.RevealWindow)
	}
	return b.String()
}

// shortDuration is d as a config would spell it ("15m", "10m", "24h"), or
// "" for zero: only the zero units at its end are dropped ("10m0s" is
// "10m", never "1").
func shortDuration(d time.Duration) string {
	if d <= 0 {
		return ""
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
