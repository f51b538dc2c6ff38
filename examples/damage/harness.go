package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/tokproxy/tok/examples/internal/tokbin"
)

// result is what one case found.
type result struct {
	name       string
	acked      int
	outcome    string // "refused", "started", "panic", or "error" (the harness failed)
	panicked   bool
	message    string // the refusal
	clear      bool   // the refusal names what the case wants it to
	silent     int    // acknowledged tokens gone while tok started without a word about them
	reported   int    // acknowledged tokens gone with a start-up warning that names the loss (a torn last frame)
	unreadable int    // tokens whose record /@me reports as record_unreadable
	newTokens  int    // known cards given a second token while their first still reveals
	reissued   int    // cards whose token was lost (and the loss stated) tokenized anew after the recovery
	recovery   string // "ok" if the recovery commands ran and tok started, else what failed
	backAfter  int    // acknowledged tokens revealing their PAN after the recovery
	lostAfter  int    // … not revealing it
	lostStated bool   // the recovery's output said tokens were lost (or none were)
	problems   []string
	dir        string // kept temporary directory
}

func (r *result) problem(format string, args ...any) {
	r.problems = append(r.problems, fmt.Sprintf(format, args...))
}

// ok: no silent loss, no panic, no new token for a known card, a clear
// refusal, a recovery that ran and said what it could not bring back.
func (r *result) ok() bool {
	return len(r.problems) == 0 && r.silent == 0 && !r.panicked && r.newTokens == 0 &&
		(r.outcome != "refused" || r.clear) && (r.recovery == "" || (r.recovery == "ok" && r.lostStated))
}

// runCase runs one case in a directory of its own.
func runCase(ctx context.Context, o options, c dcase) *result {
	r := &result{name: c.name, outcome: "error"}
	e, err := newEnv()
	if e != nil {
		defer func() {
			if o.keep || !r.ok() {
				r.dir = e.dir
				return
			}
			os.RemoveAll(e.dir)
		}()
	}
	if err != nil {
		r.problem("setup: %v", err)
		return r
	}
	fmt.Fprintf(o.out, "%s: tokenizing %d cards ...\n", c.name, o.tokens)
	cards, err := populate(ctx, o, e, c)
	r.acked = len(cards)
	if err != nil {
		r.problem("populate: %v", err)
		return r
	}
	if err := c.damage(e); err != nil {
		r.problem("damage: %v", err)
		return r
	}
	p, err := startTok(o.tokBin, e.dir, e.cfg)
	if err != nil {
		r.problem("%v", err)
		return r
	}
	out := wait(ctx, p)
	switch {
	case out.panicked:
		r.outcome, r.panicked, r.message = "panic", true, out.refusal
		return r
	case !out.ready:
		r.outcome, r.message = "refused", out.refusal
		r.clear = containsAll(out.refusal, c.want)
		if c.want == nil {
			r.problem("tok refused although this case expects it to start")
		}
	default:
		r.outcome = "started"
		chk, err := verify(ctx, p, client, e.secret, cards)
		if err != nil {
			r.problem("verify: %v", err)
		}
		r.unreadable, r.newTokens, r.reissued = chk.unreadable, chk.newToken, chk.reissued
		if chk.lost > 0 {
			if strings.Contains(p.Log(), "torn last frame dropped") {
				r.reported = chk.lost
			} else {
				r.silent = chk.lost
			}
		}
		if chk.otherErr > 0 {
			r.problem("%d reveals failed otherwise: %s", chk.otherErr, strings.Join(chk.samples, "; "))
		}
		if chk.unreadable > 0 && chk.refused < chk.unreadable {
			r.problem("%d unreadable records, but /handle refused only %d of their cards", chk.unreadable, chk.refused)
		}
		if err := p.Stop(stopGrace); err != nil {
			r.problem("SIGTERM: %v", err)
		}
		return r
	}
	recoverCase(ctx, o, e, c, cards, r)
	return r
}

// populate starts tok on a fresh vault, tokenizes half the cards, takes a
// backup, tokenizes the other half and stops tok as the case says.
func populate(ctx context.Context, o options, e *env, c dcase) ([]card, error) {
	if c.rotate {
		if _, err := tokbin.Run(ctx, o.tokBin, e.dir, "keys", "rotate", "-keyring", e.keyring); err != nil {
			return nil, err
		}
	}
	p, err := startTok(o.tokBin, e.dir, e.cfg)
	if err != nil {
		return nil, err
	}
	if out := wait(ctx, p); !out.ready {
		return nil, fmt.Errorf("first start: %s", out.refusal)
	}
	if e.keyringBefore, err = os.ReadFile(e.keyring); err != nil {
		p.Kill()
		return nil, err
	}
	pans := newPANs(o.tokens)
	half := len(pans) / 2
	first, err := tokenize(ctx, p, client, e.secret, pans[:half], 20, 4)
	if err == nil {
		err = backup(ctx, p.Addr("admin"), e.backup)
	}
	var second []card
	if err == nil {
		second, err = tokenize(ctx, p, client, e.secret, pans[half:], 20, 4)
	}
	cards := append(first, second...)
	if err != nil {
		p.Kill()
		return cards, err
	}
	if c.kill {
		p.Kill()
		return cards, nil
	}
	return cards, p.Stop(stopGrace)
}

// recoverCase runs the case's recovery commands after a refusal, starts
// tok and counts what came back.
func recoverCase(ctx context.Context, o options, e *env, c dcase, cards []card, r *result) {
	var said strings.Builder
	for _, args := range c.recovery {
		if args[0] == "KEYRING" {
			if err := os.WriteFile(e.keyring, e.keyringBefore, 0o600); err != nil {
				r.recovery = "put the keyring back: " + err.Error()
				return
			}
			said.WriteString("the keyring tok ran with is back\n")
			continue
		}
		full := append(append([]string(nil), args...), "-config", e.cfg)
		for i, a := range full {
			if a == "BACKUP" { // the operand goes after the flags
				full = append(append(full[:i:i], full[i+1:]...), e.backup)
				break
			}
		}
		out, err := tokbin.Run(ctx, o.tokBin, e.dir, full...)
		said.WriteString(out)
		// "vault recover" without -salvage exits 1 when it found damage:
		// that is its report, not a failure.
		if err != nil && !(len(args) == 2 && args[1] == "recover") {
			r.recovery = err.Error()
			return
		}
	}
	p, err := startTok(o.tokBin, e.dir, e.cfg)
	if err != nil {
		r.recovery = err.Error()
		return
	}
	out := wait(ctx, p)
	if !out.ready {
		r.recovery = "tok still refuses: " + out.refusal
		r.panicked = r.panicked || out.panicked
		return
	}
	defer p.Stop(stopGrace)
	chk, err := verify(ctx, p, client, e.secret, cards)
	if err != nil {
		r.recovery = "verify: " + err.Error()
		return
	}
	r.recovery = "ok"
	r.backAfter, r.lostAfter = chk.revealed, chk.lost+chk.unreadable+chk.otherErr
	r.newTokens += chk.newToken
	r.reissued = chk.reissued
	text := said.String()
	// The loss must have been stated: by recover's LOST lines, or by
	// restore saying that what followed the backup is not in it.
	r.lostStated = r.lostAfter == 0 || strings.Contains(text, "LOST:") || strings.Contains(text, "not in it")
	if testing := os.Getenv("TOK_DAMAGE_VERBOSE"); testing != "" {
		fmt.Fprintf(o.out, "%s recovery said:\n%s\n", c.name, text)
	}
}

func containsAll(s string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
