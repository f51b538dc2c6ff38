package tokbin

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// StartTimeout bounds [Proc.WaitReady] and [Proc.WaitListening].
const StartTimeout = 60 * time.Second

// StopGrace is how long [Proc.Stop] waits after SIGTERM before SIGKILL.
const StopGrace = 30 * time.Second

// Cmd describes a process to start.
type Cmd struct {
	Name string   // for error messages; the binary's base name if empty
	Bin  string   // the program
	Args []string // its arguments
	Dir  string   // its working directory
	// Env is its whole environment; nil means [Env]().
	Env []string
	// Log, if set, is a file that receives every line the process writes
	// (stdout and stderr), appended.
	Log string
	// Stdout, if set, receives the process's standard output instead of
	// the log (tok writes its audit log there with audit.path "-").
	Stdout io.Writer
	// OnLine, if set, is called with each line in order, from one
	// goroutine; the slice is only valid during the call. A slow OnLine
	// slows the process down once the pipe is full, and one that blocks
	// for good blocks [Proc.Stop] and [Proc.Kill] too.
	OnLine func(line []byte)
}

// Proc is one started process.
type Proc struct {
	name    string
	cmd     *exec.Cmd
	started time.Time
	exited  chan struct{} // closed when the process has exited
	waitErr error         // set before exited is closed

	mu    sync.Mutex
	addrs map[string]string // tok listener name → host:port
	lines []string          // everything it wrote
	added chan struct{}     // closed and replaced when addrs grows
}

// Start starts c.
func Start(c Cmd) (*Proc, error) {
	if c.Name == "" {
		c.Name = filepath.Base(c.Bin)
	}
	var logf *os.File
	if c.Log != "" {
		f, err := os.OpenFile(c.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return nil, fmt.Errorf("start %s: %w", c.Name, err)
		}
		logf = f
	}
	cmd := exec.Command(c.Bin, c.Args...)
	cmd.Dir = c.Dir
	cmd.Env = c.Env
	if cmd.Env == nil {
		cmd.Env = Env()
	}
	SetProcAttr(cmd)
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if c.Stdout != nil {
		cmd.Stdout = c.Stdout
	}
	p := &Proc{name: c.Name, cmd: cmd, exited: make(chan struct{}), addrs: map[string]string{}, added: make(chan struct{})}
	p.started = time.Now()
	if err := cmd.Start(); err != nil {
		if logf != nil {
			logf.Close()
		}
		return nil, fmt.Errorf("start %s: %w", c.Name, err)
	}
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		p.scan(pr, logf, c.OnLine)
	}()
	go func() {
		err := cmd.Wait()
		pw.Close()
		<-scanned
		if logf != nil {
			logf.Close()
		}
		p.waitErr = err
		close(p.exited)
	}()
	return p, nil
}

// scan keeps the process's lines, copies them to logf and onLine, and
// records tok's listener addresses.
func (p *Proc) scan(r io.Reader, logf io.Writer, onLine func([]byte)) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if logf != nil {
			logf.Write(append(line, '\n'))
		}
		var m struct{ Msg, Listener, Addr string }
		p.mu.Lock()
		p.lines = append(p.lines, string(line))
		if json.Unmarshal(line, &m) == nil && m.Msg == "listening" && m.Listener != "" {
			p.addrs[m.Listener] = m.Addr
			close(p.added)
			p.added = make(chan struct{})
		}
		p.mu.Unlock()
		if onLine != nil {
			onLine(line)
		}
	}
	io.Copy(io.Discard, r)
}

// Name is the process's name in messages ([Cmd.Name]).
func (p *Proc) Name() string { return p.name }

// Pid is the process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Started is when the process was started.
func (p *Proc) Started() time.Time { return p.started }

// Exited is closed once the process has exited and its output is read.
func (p *Proc) Exited() <-chan struct{} { return p.exited }

// Err is what waiting for the process returned; valid once [Proc.Exited]
// is closed.
func (p *Proc) Err() error {
	<-p.exited
	return p.waitErr
}

// ExitCode is the process's exit code once it has exited: -1 if a signal
// killed it.
func (p *Proc) ExitCode() int {
	err := p.Err()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	default:
		return -1
	}
}

// Running returns an error naming the process and its last lines if it
// has exited.
func (p *Proc) Running() error {
	select {
	case <-p.exited:
		return fmt.Errorf("%s exited (%v); its log:\n%s", p.name, p.waitErr, p.Tail(15))
	default:
		return nil
	}
}

// Addr returns the address tok logged for the named listener ("public",
// "auth", "egress", "admin").
//
// tok logs its listeners one by one as it starts serving them, and this
// process's lines are read as they come, so a listener may answer (the
// admin's /readyz, say) before another's line is read: Addr waits for the
// line, until tok exits or [StartTimeout] passes ("" then).
func (p *Proc) Addr(listener string) string {
	if p.WaitListening(context.Background(), listener) != nil {
		return ""
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.addrs[listener]
}

// Log returns every line the process has written so far.
func (p *Proc) Log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.lines, "\n")
}

// Tail returns the last n lines the process has written.
func (p *Proc) Tail(n int) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.lines[max(0, len(p.lines)-n):], "\n")
}

// WaitListening waits until tok has logged the address of every named
// listener.
func (p *Proc) WaitListening(ctx context.Context, listeners ...string) error {
	deadline := time.NewTimer(StartTimeout)
	defer deadline.Stop()
	for {
		p.mu.Lock()
		missing := ""
		for _, l := range listeners {
			if p.addrs[l] == "" {
				missing = l
				break
			}
		}
		added := p.added
		p.mu.Unlock()
		if missing == "" {
			return nil
		}
		select {
		case <-added:
		case <-p.exited:
			return fmt.Errorf("%s exited before listening (%v); its log:\n%s", p.name, p.waitErr, p.Tail(15))
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			return fmt.Errorf("%s did not log its %s listener within %v; its log:\n%s", p.name, missing, StartTimeout, p.Tail(15))
		}
	}
}

// WaitReady waits until tok's admin listener answers GET /readyz with 200
// and returns the time from the start to that answer.
func (p *Proc) WaitReady(ctx context.Context) (time.Duration, error) {
	if err := p.WaitListening(ctx, "admin"); err != nil {
		return 0, err
	}
	if err := p.Poll(ctx, HTTPReady("http://"+p.Addr("admin")+"/readyz")); err != nil {
		return 0, err
	}
	return time.Since(p.started), nil
}

// Poll calls ready every few milliseconds until it returns nil, the
// process exits, ctx ends or [StartTimeout] passes.
func (p *Proc) Poll(ctx context.Context, ready func() error) error {
	deadline := time.NewTimer(StartTimeout)
	defer deadline.Stop()
	for {
		err := ready()
		if err == nil {
			return nil
		}
		select {
		case <-p.exited:
			return fmt.Errorf("%s exited during startup (%v); its log:\n%s", p.name, p.waitErr, p.Tail(15))
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			return fmt.Errorf("%s not ready within %v: %w; its log:\n%s", p.name, StartTimeout, err, p.Tail(15))
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// HTTPReady returns a check that GET url answers 200.
func HTTPReady(url string) func() error {
	client := &http.Client{Timeout: 3 * time.Second}
	return func() error {
		resp, err := client.Get(url)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		return nil
	}
}

// TCPReady returns a check that addr accepts connections.
func TCPReady(addr string) func() error {
	return func() error {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	}
}

// Signal sends sig to the process (SIGHUP makes tok reload, say).
func (p *Proc) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Kill sends SIGKILL and waits for the process to be gone.
func (p *Proc) Kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}

// Stop sends SIGTERM and waits for the process to exit, sending SIGKILL
// after grace. It returns an error unless the process exited 0 within
// grace, including when it had already exited.
func (p *Proc) Stop(grace time.Duration) error {
	select {
	case <-p.exited:
		if p.waitErr != nil {
			return fmt.Errorf("%s had already exited: %w", p.name, p.waitErr)
		}
		return fmt.Errorf("%s had already exited", p.name)
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-p.exited:
		return p.waitErr
	case <-timer.C:
		p.Kill()
		return fmt.Errorf("%s did not exit within %v of SIGTERM", p.name, grace)
	}
}

// TB is the part of [testing.TB] that [Proc.StopAtEnd] uses.
type TB interface {
	Cleanup(func())
	Failed() bool
	Logf(format string, args ...any)
}

// StopAtEnd stops the process (SIGTERM, then SIGKILL after 5 s) when t's
// test ends, and logs everything it wrote if the test failed.
func (p *Proc) StopAtEnd(t TB) {
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = p.Stop(5 * time.Second)
		}
		if t.Failed() {
			t.Logf("--- %s's output:\n%s", p.name, p.Log())
		}
	})
}
