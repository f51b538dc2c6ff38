package main

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"time"

	"github.com/tokproxy/tok/config"
	"github.com/tokproxy/tok/proxy"
	"github.com/tokproxy/tok/vault"
	"github.com/tokproxy/tok/vault/memory"
)

// explain is `tok explain`: a dry run of one request file (a raw HTTP
// request or a HAR file) through the real engine, printing what tok would
// do with it. Exit 0 when every request was explained (whether tok would
// forward or refuse it), 1 when a request file cannot be read, 2 for a
// usage or config error.
func explain(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("explain", stderr)
	cfgPath := fs.String("config", defaultConfigFile, "config `FILE`")
	egress := fs.Bool("egress", false, "send the requests to the egress listener (the app's calls to providers)")
	entry := fs.Int("entry", 0, "explain only entry `N` of a HAR file (1 is the first)")
	asJSON := fs.Bool("json", false, "print JSON, one object per request")
	files, code, ok := parseWithArgs(fs, args, stderr)
	if !ok {
		return code
	}
	if len(files) != 1 {
		return usageError(stderr, "tok explain: give one request file (raw HTTP or HAR)")
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		fmt.Fprintln(stderr, "tok explain:", err)
		return exitFail
	}
	sess, err := newDryRunSession(*cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, "tok explain:", err)
		return exitUsage
	}
	defer sess.close()
	listener := proxy.ListenerPublic
	if *egress {
		listener = proxy.ListenerEgress
	}
	reqs, err := sess.requests(context.Background(), b)
	if err != nil {
		fmt.Fprintf(stderr, "tok explain: %s: %v\n", files[0], err)
		return exitFail
	}
	first, last := 0, len(reqs)
	if *entry != 0 {
		if *entry < 1 || *entry > len(reqs) {
			fmt.Fprintf(stderr, "tok explain: %s has %d request(s); -entry %d is not one\n", files[0], len(reqs), *entry)
			return exitUsage
		}
		first, last = *entry-1, *entry
	}
	for i := first; i < last; i++ {
		ex, err := sess.explain(context.Background(), listener, reqs[i])
		if err != nil {
			fmt.Fprintln(stderr, "tok explain:", err)
			return exitUsage
		}
		if *asJSON {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			enc.SetEscapeHTML(false)
			enc.Encode(ex) // a write error on stdout: nothing to do
			continue
		}
		if len(reqs) > 1 {
			fmt.Fprintf(stdout, "=== entry %d\n", i+1)
		}
		ex.print(stdout)
	}
	return exitOK
}

// parseWithArgs parses fs with flags and positional arguments in any
// order ("explain req.http -json" as well as "explain -json req.http").
func parseWithArgs(fs *flag.FlagSet, args []string, stderr io.Writer) (pos []string, code int, ok bool) {
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, exitOK, false
			}
			return nil, exitUsage, false
		}
		if fs.NArg() == 0 {
			return pos, exitOK, true
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// dryRunKeyring is the fixed keyring of every dry run: its keys are derived
// from public strings, so they protect nothing, and tok explain and tok
// test never need a real keyring.
func dryRunKeyring() (*vault.Keyring, error) {
	key := func(purpose string) string {
		k := sha256.Sum256([]byte("tok dry run " + purpose))
		return base64.StdEncoding.EncodeToString(k[:])
	}
	return vault.NewKeyring(vault.KeyringFile{Primary: 1, FingerprintKey: key("fingerprint key"), DataKeys: map[uint32]string{1: key("data key 1")}})
}

// dryRunEnv stands in for the environment a dry run resolves env:NAME
// secrets with: the placeholder "<env:NAME>", so that no secret from the
// real environment ever reaches the output.
func dryRunEnv(name string) string { return "<env:" + name + ">" }

// dryRunSession is one dry run: a config's engine over a throwaway vault
// in memory, and the tokens it has handed out (shown unmasked).
type dryRunSession struct {
	cfg      *config.Config
	dr       *proxy.DryRun
	vault    *vault.Vault
	stores   []*memory.Store
	tokens   map[string]bool
	revealed map[string]bool // short values revealed on egress, masked in output
}

func newDryRunSession(path string) (*dryRunSession, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	cfg.ApplyEnv(os.Getenv)
	cfg.TLS = config.TLS{} // no listeners, no forward proxy: their files are not read
	opts, err := proxyOptions(cfg, dryRunEnv)
	if err != nil {
		return nil, err
	}
	keys, err := dryRunKeyring()
	if err != nil {
		return nil, err
	}
	durable, volatile := memory.New(), memory.New()
	v, err := vault.New(durable, keys, vault.WithVolatile(volatile))
	if err != nil {
		return nil, err
	}
	opts.Vault, opts.Store, opts.Volatile = v, durable, volatile
	dr, err := proxy.NewDryRun(opts)
	if err != nil {
		durable.Close()
		volatile.Close()
		return nil, err
	}
	return &dryRunSession{cfg: cfg, dr: dr, vault: v, stores: []*memory.Store{durable, volatile},
		tokens: map[string]bool{}, revealed: map[string]bool{}}, nil
}

func (s *dryRunSession) close() {
	s.dr.Close()
	for _, st := range s.stores {
		st.Close()
	}
}

// seedPattern is a token placeholder in a request file: {{token CARD}} is
// replaced by the card's pan token, {{token VALUE bound to CARD}} by a
// token for VALUE (a CVC) bound to that card's token, as a checkout
// through tok would have minted them.
var seedPattern = regexp.MustCompile(`\{\{\s*token\s+([0-9][0-9 -]*[0-9])(?:\s+bound\s+to\s+([0-9][0-9 -]*[0-9]))?\s*\}\}`)

// seedTTL is how long a seeded bound value lives: the demo config's CVC ttl.
const seedTTL = 15 * time.Minute

// requests resolves the token placeholders of a request file and parses it.
func (s *dryRunSession) requests(ctx context.Context, b []byte) ([]*http.Request, error) {
	ms := seedPattern.FindAllSubmatch(b, -1)
	if len(ms) > 0 {
		var reqs []vault.Request
		cards := map[string]int{} // card → its index in reqs
		card := func(c string) int {
			if i, ok := cards[c]; ok {
				return i
			}
			cards[c] = len(reqs)
			reqs = append(reqs, vault.Request{Value: c, Spec: vault.Spec{Format: vault.FormatPAN}})
			return cards[c]
		}
		for _, m := range ms {
			if len(m[2]) > 0 {
				card(string(m[2]))
			} else {
				card(string(m[1]))
			}
		}
		first := len(reqs)
		for _, m := range ms {
			if len(m[2]) > 0 {
				reqs = append(reqs, vault.Request{Value: string(m[1]), BindTo: cards[string(m[2])],
					Spec: vault.Spec{Format: vault.FormatDigits, Volatile: true, Bound: true, TTL: seedTTL}})
			}
		}
		toks, err := s.vault.Tokenize(ctx, reqs)
		if err != nil {
			return nil, fmt.Errorf("token placeholders: %w", err)
		}
		for _, t := range toks {
			s.tokens[t] = true
		}
		next := first
		b = seedPattern.ReplaceAllFunc(b, func(m []byte) []byte {
			sm := seedPattern.FindSubmatch(m)
			if len(sm[2]) == 0 {
				return []byte(toks[cards[string(sm[1])]])
			}
			next++
			return []byte(toks[next-1])
		})
	}
	return proxy.ReadRequests(b)
}

// explain runs r on listener and describes the result, masked.
func (s *dryRunSession) explain(ctx context.Context, listener string, r *http.Request) (*explanation, error) {
	line := r.Method + " " + r.URL.RequestURI()
	res, err := s.dr.Do(ctx, listener, r)
	if err != nil {
		return nil, err
	}
	return s.describe(line, res), nil
}
