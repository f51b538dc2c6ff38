package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tokproxy/tok/examples/internal/freeport"
)

// startTimeout bounds the wait for a started process to accept requests.
const startTimeout = 15 * time.Second

// proc is a process the harness started. Every proc is stopped when the
// harness exits, also on Ctrl-C; the kernel kills it if the harness dies
// (Pdeathsig).
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	exited  chan struct{} // closed when the process has exited
	waitErr error
}

// procs is the set of processes to stop on exit.
type procs struct {
	mu   sync.Mutex
	list []*proc
}

// start runs bin with args, its output going to dir/name.log.
func (ps *procs) start(dir, name, bin string, args ...string) (*proc, error) {
	return ps.startEnv(dir, name, bin, nil, args...)
}

// startEnv is start with the environment env (nil: the harness's own).
func (ps *procs) startEnv(dir, name, bin string, env []string, args ...string) (*proc, error) {
	logPath := filepath.Join(dir, name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	defer logf.Close() // the child has its own descriptor
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group: a Ctrl-C reaches the harness alone, which
	// stops its children in order. Pdeathsig: if the harness is killed
	// outright, so are they.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, logPath: logPath, exited: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	ps.mu.Lock()
	ps.list = append(ps.list, p)
	ps.mu.Unlock()
	return p, nil
}

// stopAll stops every process, newest first.
func (ps *procs) stopAll() {
	ps.mu.Lock()
	list := ps.list
	ps.list = nil
	ps.mu.Unlock()
	for i := len(list) - 1; i >= 0; i-- {
		list[i].stop()
	}
}

// pid is the process id.
func (p *proc) pid() int { return p.cmd.Process.Pid }

// stop asks the process to exit (SIGTERM), and kills it if it has not
// within 5 seconds.
func (p *proc) stop() {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// logTail returns the last lines of the process's output, for error
// reports.
func (p *proc) logTail() string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-10):], "\n")
}

// waitReady polls ready until it succeeds, the process exits, ctx ends or
// startTimeout passes.
func (p *proc) waitReady(ctx context.Context, ready func() error) error {
	deadline := time.Now().Add(startTimeout)
	for {
		err := ready()
		if err == nil {
			return nil
		}
		select {
		case <-p.exited:
			return fmt.Errorf("%s exited during startup (%v); its log:\n%s", p.name, p.waitErr, p.logTail())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %v: %w; its log:\n%s", p.name, startTimeout, err, p.logTail())
		}
	}
}

// running reports an error if the process has exited.
func (p *proc) running() error {
	select {
	case <-p.exited:
		return fmt.Errorf("%s exited (%v); its log:\n%s", p.name, p.waitErr, p.logTail())
	default:
		return nil
	}
}

// tcpReady returns a check that addr accepts connections.
func tcpReady(addr string) func() error {
	return func() error {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	}
}

// httpReady returns a check that GET url answers 200.
func httpReady(url string) func() error {
	return func() error {
		c := http.Client{Timeout: time.Second}
		resp, err := c.Get(url)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		return nil
	}
}

// freePort returns a loopback address to start a target on; see
// freeport.Addr.
var freePort = freeport.Addr

// moduleRoot finds the tok module's root: dir or its nearest parent whose
// go.mod declares github.com/tokproxy/tok.
func moduleRoot(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil && modulePath(b) == "github.com/tokproxy/tok" {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no tok module (go.mod of github.com/tokproxy/tok) at or above %s; run from the repository or pass -root", dir)
		}
	}
}

// modulePath returns the module path declared by a go.mod file.
func modulePath(gomod []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(gomod))
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "module"); ok {
			return strings.Trim(strings.TrimSpace(rest), `"`)
		}
	}
	return ""
}

// build compiles tok (unless tokBin is given), the upstream and the plain
// proxy into dir and returns the paths of the three binaries.
func build(ctx context.Context, root, dir, tokBin string, out io.Writer) (tok, upstream, plain string, err error) {
	pkgs := []string{"./examples/bench/upstream", "./examples/bench/plainproxy"}
	if tokBin == "" {
		pkgs = append([]string{"."}, pkgs...)
		tokBin = filepath.Join(dir, "tok")
	}
	fmt.Fprintf(out, "building %s in %s ...\n", strings.Join(pkgs, " "), root)
	args := append([]string{"build", "-o", dir + string(filepath.Separator)}, pkgs...)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return "", "", "", fmt.Errorf("go build: %w\n%s", err, stderr.String())
	}
	return tokBin, filepath.Join(dir, "upstream"), filepath.Join(dir, "plainproxy"), nil
}

// runQuiet runs a short command and returns its combined output on error.
func runQuiet(ctx context.Context, dir, bin string, args ...string) error {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w\n%s", filepath.Base(bin), strings.Join(args, " "), err, out)
	}
	return nil
}

// metricValue returns the value of the sample named series (the metric
// name with its labels exactly as exposed, e.g.
// `tok_tokenize_values_total{outcome="ok"}`) in a Prometheus text
// exposition, and whether it was there.
func metricValue(exposition []byte, series string) (float64, bool) {
	sc := bufio.NewScanner(bytes.NewReader(exposition))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, series)
		if !ok || !strings.HasPrefix(rest, " ") {
			continue
		}
		f := strings.Fields(rest)
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return 0, false
		}
		return v, true
	}
	return 0, false
}

// bucketQuantile estimates the q quantile (0 < q ≤ 1) of what a
// Prometheus histogram observed between two expositions: the upper bound
// of the first bucket whose count reaches q of the total, so "at most"
// this value. ok is false if the histogram observed nothing in between;
// +Inf means the quantile is beyond the largest finite bucket.
func bucketQuantile(before, after []byte, histogram string, q float64) (le float64, ok bool) {
	type bucket struct{ le, n float64 }
	read := func(exposition []byte) map[float64]float64 {
		counts := map[float64]float64{}
		sc := bufio.NewScanner(bytes.NewReader(exposition))
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		prefix := histogram + `_bucket{le="`
		for sc.Scan() {
			rest, found := strings.CutPrefix(sc.Text(), prefix)
			if !found {
				continue
			}
			bound, value, found := strings.Cut(rest, `"} `)
			if !found {
				continue
			}
			f := strings.Fields(value)
			if len(f) == 0 {
				continue
			}
			b, err1 := strconv.ParseFloat(bound, 64) // "+Inf" parses too
			v, err2 := strconv.ParseFloat(f[0], 64)
			if err1 == nil && err2 == nil {
				counts[b] = v
			}
		}
		return counts
	}
	b, a := read(before), read(after)
	var buckets []bucket
	for le, n := range a {
		buckets = append(buckets, bucket{le, n - b[le]})
	}
	slices.SortFunc(buckets, func(x, y bucket) int { return cmp.Compare(x.le, y.le) })
	if len(buckets) == 0 || buckets[len(buckets)-1].n <= 0 {
		return 0, false
	}
	want := q * buckets[len(buckets)-1].n // buckets are cumulative; the last is +Inf
	for _, bk := range buckets {
		if bk.n >= want {
			return bk.le, true
		}
	}
	return math.Inf(1), true
}

// scrape fetches a Prometheus exposition.
func scrape(url string) ([]byte, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, errors.New("GET " + url + ": " + resp.Status)
	}
	return io.ReadAll(io.LimitReader(resp.Body, 8<<20))
}
