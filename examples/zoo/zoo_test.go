package zoo

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/tokproxy/tok/examples/internal/tokbin"
)

// binDir holds tok and the Go app, built once per run.
var binDir string

// tokBin is the tok binary the test runs in front of each app.
var tokBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tok-zoo")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	// TOK_ZOO_TOK runs the zoo against another build of tok (another
	// branch's, say) instead of this tree's.
	if tokBin = os.Getenv("TOK_ZOO_TOK"); tokBin == "" {
		if tokBin, err = tokbin.Build(context.Background(), dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// workersPerApp is how many corpus requests are in flight to one tok.
const workersPerApp = 4

// outcome is what became of one request of a case.
type outcome int

const (
	forwarded outcome = iota // the app answered (X-Zoo-App is set)
	refused                  // tok answered instead of the app: a refusal, or a redirect to the clean path
	failed                   // 502 or 504 (the app did not answer tok), or no answer at all
)

// caseResult is what one case (all its variants) did at one app.
type caseResult struct {
	name, class string
	counts      [3]int   // requests by outcome
	leaks       []string // where a card was found, deduplicated
	failures    []string // statuses of the failed answers, deduplicated
}

// appReport is one app's run over the corpus.
type appReport struct {
	app     string
	skipped string
	cases   []caseResult
}

// TestZoo sends every corpus case through tok to every app whose runtime
// is installed and fails if an app's parsed view of any request holds a
// card number of the corpus: the proof that no request trick smuggles a
// card number past tok.
// Cases listed in known_gaps.txt are reported and do not fail the test,
// unless TOK_ZOO_STRICT=1.
func TestZoo(t *testing.T) {
	zoo, cases, gaps := zooCorpus(t)
	strict := os.Getenv("TOK_ZOO_STRICT") == "1"
	only := os.Getenv("TOK_ZOO_APPS") // a comma-separated subset, for a quick run

	reports := make([]*appReport, len(apps))
	t.Run("apps", func(t *testing.T) {
		for i, a := range apps {
			reports[i] = &appReport{app: a.name}
			if only != "" && !slices.Contains(strings.Split(only, ","), a.name) {
				reports[i].skipped = "not in TOK_ZOO_APPS"
				continue
			}
			t.Run(a.name, func(t *testing.T) {
				t.Parallel()
				rep := reports[i]
				rep.skipped = "skipped" // until it runs
				addr := startApp(t, a, zoo)
				rep.skipped = ""
				tok := startTok(t, zoo, addr, nil).Addr("public")
				rep.cases = runCorpus(t, tok, cases)
				for _, c := range rep.cases {
					if len(c.leaks) == 0 {
						continue
					}
					if gaps.has(a.name, c.name) && !strict {
						continue
					}
					t.Errorf("a card reached %s", describe(a.name, c.name, c.leaks))
				}
			})
		}
	})
	var ran []*appReport
	for _, r := range reports {
		if r.skipped == "" {
			ran = append(ran, r)
		} else if r.skipped != "not in TOK_ZOO_APPS" {
			t.Logf("%s did not run: see its subtest", r.app)
		}
	}
	if len(ran) == 0 {
		t.Skip("no app of the zoo could run: install the runtimes (.ci/run does)")
	}
	t.Log(report(ran, cases, gaps))
	if p := os.Getenv("TOK_ZOO_GAPS_OUT"); p != "" {
		if err := os.WriteFile(p, []byte(gapLines(ran)), 0o644); err != nil {
			t.Error(err)
		}
	}
	if p := os.Getenv("TOK_ZOO_REPORT"); p != "" {
		if err := os.WriteFile(p, []byte(report(ran, cases, gaps)), 0o644); err != nil {
			t.Error(err)
		}
	}
	for _, r := range ran {
		for _, c := range r.cases {
			if len(c.leaks) == 0 && gaps.has(r.app, c.name) {
				msg := fmt.Sprintf("%s %s no longer leaks: remove it from known_gaps.txt", r.app, c.name)
				if strict {
					t.Error(msg)
				} else {
					t.Log(msg)
				}
			}
		}
	}
}

// zooCorpus skips a zoo test where it cannot run (-short, -race) and
// returns the zoo's directory, its corpus and its known gaps.
func zooCorpus(t *testing.T) (zoo string, cases []corpusCase, gaps knownGaps) {
	t.Helper()
	if testing.Short() {
		t.Skip("the framework zoo runs real apps; skipped with -short")
	}
	if raceEnabled {
		t.Skip("the framework zoo runs without -race (see race_test.go): go test ./examples/zoo")
	}
	zoo, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	if cases, err = loadCorpus(filepath.Join(zoo, "corpus")); err != nil {
		t.Fatal(err)
	}
	if len(cases) == 0 {
		t.Fatal("the corpus is empty")
	}
	if gaps, err = readKnownGaps(filepath.Join(zoo, "known_gaps.txt")); err != nil {
		t.Fatal(err)
	}
	return zoo, cases, gaps
}

// startTok starts tok with tok.yaml, changed by edit if not nil, in front
// of the app at upstream and returns it once its public listener is up.
func startTok(t *testing.T, zoo, upstream string, edit func(cfg map[string]any)) *tokbin.Proc {
	t.Helper()
	dir := t.TempDir()
	b, err := os.ReadFile(filepath.Join(zoo, "tok.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	keyring, err := tokbin.NewKeyring(context.Background(), tokBin, dir)
	if err != nil {
		t.Fatal(err)
	}
	cfg["listen"] = map[string]string{"public": "127.0.0.1:0", "auth": "127.0.0.1:0", "admin": "127.0.0.1:0"}
	cfg["vault"] = map[string]string{"bolt": filepath.Join(dir, "tok.db"), "keyring": keyring}
	cfg["audit"] = map[string]string{"path": filepath.Join(dir, "audit.log")}
	cfg["upstream"] = "http://" + upstream
	if edit != nil {
		edit(cfg)
	}
	if b, err = yaml.Marshal(cfg); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "tok.yaml")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := tokbin.Start(tokbin.Cmd{Name: "tok", Bin: tokBin, Args: []string{"serve", "-config", path}, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	p.StopAtEnd(t)
	if err := p.WaitListening(context.Background(), "public"); err != nil {
		t.Fatal(err)
	}
	return p
}

// runCorpus sends every variant of every case to tok at addr.
func runCorpus(t *testing.T, addr string, cases []corpusCase) []caseResult {
	results := make([]caseResult, len(cases))
	type job struct {
		i   int
		req []byte
	}
	jobs := make(chan job)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range workersPerApp {
		wg.Go(func() {
			for j := range jobs {
				resps, err := exchange(addr, j.req)
				mu.Lock()
				r := &results[j.i]
				if err != nil && len(resps) == 0 {
					// No answer in time (an app that hangs on a request
					// it cannot parse): no card reached it either way.
					r.counts[failed]++
					if f := "no answer: " + errorKind(err); !slices.Contains(r.failures, f) {
						r.failures = append(r.failures, f)
					}
				}
				for _, resp := range resps {
					r.counts[resp.outcome]++
					if f := resp.status + " " + firstLine(resp.body); resp.outcome == failed && !slices.Contains(r.failures, f) {
						r.failures = append(r.failures, f)
					}
					for _, where := range findCards(resp.body, testPANs) {
						if resp.outcome != forwarded {
							where = "in tok's refusal (" + resp.status + ") " + where
						}
						if !slices.Contains(r.leaks, where) {
							r.leaks = append(r.leaks, where)
						}
					}
				}
				mu.Unlock()
			}
		})
	}
	for i, c := range cases {
		results[i].name, results[i].class = c.Name, c.Class
		vs, err := c.variants()
		if err != nil {
			t.Errorf("%s: %v", c.Name, err)
			continue
		}
		for _, v := range vs {
			jobs <- job{i, v}
		}
	}
	close(jobs)
	wg.Wait()
	for i := range results {
		sort.Strings(results[i].leaks)
	}
	return results
}

// response is one answer read off the connection.
type response struct {
	outcome outcome
	status  string
	body    []byte
}

// exchange writes req to addr over a fresh TCP connection, byte for byte,
// and reads as many answers as Go's parser finds requests in it, or until
// the connection closes.
func exchange(addr string, req []byte) ([]response, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(8 * time.Second))
	if _, err := c.Write(req); err != nil {
		return nil, fmt.Errorf("write: %w", err)
	}
	n := countRequests(req)
	br := bufio.NewReader(c)
	var out []response
	for len(out) < n {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			if len(out) > 0 || err == io.EOF || isHangUp(err) {
				return out, nil
			}
			return out, fmt.Errorf("read answer: %w", err)
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
		resp.Body.Close()
		if resp.StatusCode < 200 {
			continue // 100 Continue and the like: the answer follows
		}
		r := response{status: resp.Status, body: body}
		switch {
		case resp.Header.Get("X-Zoo-App") != "":
			r.outcome = forwarded
		case resp.StatusCode == http.StatusBadGateway || resp.StatusCode == http.StatusGatewayTimeout:
			r.outcome = failed // tok forwarded it; the app did not answer
		default:
			r.outcome = refused // tok (or Go's server in it) answered: 4xx, 501, a 307 to the clean path
		}
		out = append(out, r)
		if err != nil || resp.Close {
			break
		}
	}
	return out, nil
}

// errorKind is err without the addresses, which differ per connection.
func errorKind(err error) string {
	var ne *net.OpError
	if errors.As(err, &ne) && ne.Err != nil {
		return ne.Op + ": " + ne.Err.Error()
	}
	return err.Error()
}

// firstLine is the start of b, for a report.
func firstLine(b []byte) string {
	s, _, _ := strings.Cut(string(b), "\n")
	if len(s) > 100 {
		s = s[:100]
	}
	return s
}

// isHangUp reports a connection the server reset or closed before
// answering: tok hanging up on a request it will not read is a refusal.
func isHangUp(err error) bool {
	s := err.Error()
	return strings.Contains(s, "connection reset") || strings.Contains(s, "unexpected EOF") || strings.Contains(s, "broken pipe")
}

// report is the table of the run: per app, cases and requests by outcome,
// and the leaking cases by class.
func report(reps []*appReport, cases []corpusCase, gaps knownGaps) string {
	var b strings.Builder
	byClass := map[string]int{}
	for _, c := range cases {
		byClass[c.Class]++
	}
	classes := make([]string, 0, len(byClass))
	for c := range byClass {
		classes = append(classes, c)
	}
	sort.Strings(classes)
	fmt.Fprintf(&b, "\ncorpus: %d cases in %d classes:", len(cases), len(classes))
	for _, c := range classes {
		fmt.Fprintf(&b, " %s %d,", c, byClass[c])
	}
	b.WriteString("\n\n")
	b.WriteString("cases: forwarded (some request of the case reached the app), refused (tok answered every request),\n")
	b.WriteString("failed (no answer from the app); leaked: a card reached the app; known: listed in known_gaps.txt\n\n")
	fmt.Fprintf(&b, "%-12s %9s %9s %7s %7s %7s %7s %7s\n", "app", "requests", "forwarded", "refused", "failed", "leaked", "known", "new")
	for _, r := range reps {
		var cnt [3]int
		leaked, known := 0, 0
		for _, c := range r.cases {
			switch {
			case c.counts[forwarded] > 0:
				cnt[forwarded]++
			case c.counts[failed] > 0:
				cnt[failed]++
			default:
				cnt[refused]++
			}
			if len(c.leaks) > 0 {
				leaked++
				if gaps.has(r.app, c.name) {
					known++
				}
			}
		}
		reqs := 0
		for _, c := range r.cases {
			reqs += c.counts[forwarded] + c.counts[refused] + c.counts[failed]
		}
		fmt.Fprintf(&b, "%-12s %9d %9d %7d %7d %7d %7d %7d\n", r.app, reqs, cnt[forwarded], cnt[refused], cnt[failed], leaked, known, leaked-known)
	}
	for _, r := range reps {
		var fails []string
		for _, c := range r.cases {
			if c.counts[failed] > 0 {
				fails = append(fails, fmt.Sprintf("%s (%s)", c.name, strings.Join(c.failures, "; ")))
			}
		}
		if len(fails) > 0 {
			fmt.Fprintf(&b, "\n%s: failed answers (502/504 or none) in\n  %s\n", r.app, strings.Join(fails, "\n  "))
		}
	}
	for _, r := range reps {
		leaks := map[string][]string{}
		for _, c := range r.cases {
			if len(c.leaks) > 0 {
				leaks[c.class] = append(leaks[c.class], strings.TrimPrefix(c.name, c.class+"/"))
			}
		}
		if len(leaks) == 0 {
			continue
		}
		fmt.Fprintf(&b, "\n%s: cards reached the app in\n", r.app)
		for _, c := range classes {
			if ls := leaks[c]; len(ls) > 0 {
				fmt.Fprintf(&b, "  %s (%d of %d): %s\n", c, len(ls), byClass[c], strings.Join(ls, ", "))
			}
		}
	}
	return b.String()
}

// gapLines writes this run's leaks in known_gaps.txt's form, a line per
// case, for a reviewer to compare with the file (TOK_ZOO_GAPS_OUT).
func gapLines(reps []*appReport) string {
	byCase := map[string][]string{}
	var names []string
	for _, r := range reps {
		for _, c := range r.cases {
			if len(c.leaks) == 0 {
				continue
			}
			if byCase[c.name] == nil {
				names = append(names, c.name)
			}
			byCase[c.name] = append(byCase[c.name], r.app)
		}
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		as := strings.Join(byCase[n], ",")
		if len(byCase[n]) == len(apps) {
			as = "*"
		}
		fmt.Fprintf(&b, "%-60s %s\n", as, n)
	}
	return b.String()
}

// knownGaps is known_gaps.txt: per app (or "*" for every app), the cases
// that still get a card through while tok's guard is being fixed.
type knownGaps map[string]map[string]bool

func (g knownGaps) has(app, name string) bool { return g[app][name] || g["*"][name] }

// readKnownGaps reads lines of "apps case": apps is a comma-separated
// list of app names, or "*" for every app; "#" starts a comment.
func readKnownGaps(path string) (knownGaps, error) {
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return knownGaps{}, nil
	}
	if err != nil {
		return nil, err
	}
	g := knownGaps{}
	for i, line := range strings.Split(string(b), "\n") {
		line, _, _ = strings.Cut(line, "#")
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) != 2 {
			return nil, fmt.Errorf("%s:%d: want \"apps class/case\", got %q", path, i+1, line)
		}
		for _, a := range strings.Split(f[0], ",") {
			if g[a] == nil {
				g[a] = map[string]bool{}
			}
			g[a][f[1]] = true
		}
	}
	return g, nil
}
